"""Alert latency with a real worker: 100 alerts committed over ~10 seconds while
`manage.py qcluster` runs; prints how long each waited until it was handed to the provider
(the mail backend), p50 and p95 (target: p95 <= 10 s).

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
    from audit.models import Delivery
    from audit.services import record

    reviewer, _ = User.objects.get_or_create(username="latency-reviewer",
                                             defaults={"email": "reviewer@example.org"})
    with running_worker():
        first = Delivery.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for _ in range(ALERTS):
            with transaction.atomic():
                alert(record(EventKind.LOCKOUT, actor=None), users=[reviewer],
                      channels=["email"])
            time.sleep(0.1)
        deadline = time.monotonic() + 120
        ours = Delivery.objects.filter(pk__gt=first)
        while ours.exclude(status=Delivery.Status.SENT).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        waits = [(sent - created).total_seconds()
                 for created, sent in ours.values_list("created_at", "sent_at") if sent]
    if len(waits) < ALERTS:
        print(f"only {len(waits)} of {ALERTS} alerts were sent within two minutes")
        return 1
    p95 = statistics.quantiles(waits, n=20)[-1]
    print(f"alerts: {len(waits)}; wait from commit to provider: p50 "
          f"{statistics.median(waits):.2f} s, p95 {p95:.2f} s, max {max(waits):.2f} s "
          f"(target p95 <= 10 s)")
    return 0 if p95 <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
