"""Alert latency with a real worker: 100 alerts committed over ~10 seconds while
`manage.py qcluster` runs; prints how long each waited until it was handed to the provider
(the mail backend), p50 and p95 (target: p95 <= 10 s). Twice: alerts queued directly
(alert(), which nudges the relay), and break-glass activations, whose one fan-out row the
worker's one-second tick finds and expands (QUALITY Q31: within 60 s).

    .venv/bin/python bench/alert_latency.py            # SQLite file in a temporary folder
    DATABASE_URL=postgres://... .venv/bin/python bench/alert_latency.py   # a scratch database!
"""

import statistics
import sys
import time

from _worker import running_worker
from django.db import transaction

ALERTS = 100


def main() -> int:
    from accounts.models import User
    from audit.alerts import alert
    from audit.catalogue import EventKind
    from audit.services import record
    from breakglass.models import Group
    from breakglass.services.break_glass import break_glass

    reviewer, _ = User.objects.get_or_create(username="latency-reviewer",
                                             defaults={"email": "reviewer@example.org"})
    group = Group.objects.create(name="Latency bench", slug=f"latency-{int(time.time())}")
    owner = User.objects.create_user(f"owner-{group.slug}", email="owner@example.org")
    group.owners.add(owner)
    holders = [User.objects.create_user(f"holder-{n}-{group.slug}") for n in range(ALERTS)]
    group.break_glass_users.add(*holders)

    def direct(_):
        with transaction.atomic():
            alert(record(EventKind.LOCKOUT, actor=None), users=[reviewer], channels=["email"])

    def press(n):
        break_glass(group, actor=holders[n], reason="latency bench")

    results = [measure(direct, "direct alerts"), measure(press, "break-glass alerts")]
    return 0 if all(results) else 1


def measure(commit_one, label: str) -> bool:
    from audit.models import AuditEvent, Delivery

    with running_worker():
        first = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for n in range(ALERTS):
            commit_one(n)
            time.sleep(0.1)
        deadline = time.monotonic() + 120
        ours = Delivery.objects.filter(event__pk__gt=first, channel=Delivery.Channel.EMAIL)
        while (ours.count() < ALERTS or ours.exclude(status=Delivery.Status.SENT).exists()) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        waits = [(sent - recorded).total_seconds() for recorded, sent in ours.values_list(
            "event__recorded_at", "sent_at") if sent]
    if len(waits) < ALERTS:
        print(f"{label}: only {len(waits)} of {ALERTS} alerts were sent within two minutes")
        return False
    p95 = statistics.quantiles(waits, n=20)[-1]
    print(f"{label}: {len(waits)}; wait from the event to the provider: p50 "
          f"{statistics.median(waits):.2f} s, p95 {p95:.2f} s, max {max(waits):.2f} s "
          f"(target p95 <= 10 s)")
    return p95 <= 10


if __name__ == "__main__":
    sys.exit(main())
