"""100,000 grants expiring in the same minute, each audited (issue 19). Target: the sweep
(breakglass.services.grants.expire_due_grants, batches of transactions) within 5x a bulk
insert of the same 100,000 grant rows, measured in the same run, on PostgreSQL; and the
access decision exact throughout.

1. Baseline: `Grant.objects.bulk_create` of the 100,000 grant rows (1,000 per statement), the
   rows the sweep then ends: 1,000 users x 100 groups, expiring over one minute in the past.
   Timed again after the sweep (the same pairs, new grants) and averaged, so that the
   machine's drift during the run falls on both sides.
2. The deployment around them, untimed: two owners per group, security reviewers, a
   connector on each group, each grant's expiry job, and 1,000 grants still running.
3. The sweep, timed, until none is due; meanwhile a thread asks the access decision about
   due grants (must deny) and running ones (must allow) and counts wrong answers.
4. The result: one expiry event and one follow-up row per grant (the relay turns it into
   the holder's email and each connector's revocation), the audit chain verified.

Exits non-zero if the decision was ever wrong, a grant was not expired exactly once, or the
chain does not verify; prints (does not fail) a ratio over 5.

    DATABASE_URL=postgres://... .venv/bin/python bench/expiry_bulk.py   # a scratch server!
    .venv/bin/python bench/expiry_bulk.py --grants 5000    # SQLite: a smoke run, no target
"""

import argparse
import random
import sys
import threading
import time
from datetime import timedelta
from io import StringIO

from _setup import rate, throwaway_database, timer

USERS_PER_GROUP = 1_000
RUNNING_GRANTS = 1_000
TARGET_RATIO = 5
PAUSE_SECONDS = 0.002


def build_cast(groups: int, users: int):
    """Users, groups with their owners and connectors, and security reviewers, as a
    deployment has them."""
    from django.contrib.auth.models import Group as AuthGroup

    from accounts.models import SECURITY_REVIEWERS_GROUP, User
    from breakglass.models import Connector, Group

    reviewers = User.objects.bulk_create(
        [User(username=f"reviewer-{n}", email=f"reviewer-{n}@example.com") for n in range(3)])
    AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0].user_set.add(*reviewers)
    owners = User.objects.bulk_create(
        [User(username=f"owner-{n}", email=f"owner-{n}@example.com") for n in range(20)])
    holders = User.objects.bulk_create(
        [User(username=f"holder-{n}", email=f"holder-{n}@example.com", mobile="+15555550100")
         for n in range(users)])
    catalog = Group.objects.bulk_create(
        [Group(name=f"Database {n}", slug=f"db-{n}") for n in range(groups + 1)])
    owned = Group.owners.through
    owned.objects.bulk_create([owned(group=group, user=owners[(index + k) % len(owners)])
                               for index, group in enumerate(catalog) for k in range(2)])
    may_break = Group.break_glass_users.through
    may_break.objects.bulk_create([may_break(group=group, user=user)
                                   for group in catalog for user in holders])
    for group in catalog:
        Connector.objects.create(name=f"{group.slug}-deployers", group=group,
                                 kind="django_group",
                                 django_group=AuthGroup.objects.create(name=group.slug))
    return holders, catalog


def grant_rows(holders, groups, *, expiring_from, spread: timedelta):
    """One active break-glass grant per (holder, group), expiries spread evenly over `spread`
    from `expiring_from`."""
    from breakglass.models import Grant

    pairs = [(user, group) for group in groups for user in holders]
    step = spread / len(pairs)
    return [Grant(user=user, group=group, status=Grant.Status.ACTIVE,
                  source=Grant.Source.BREAK_GLASS, reason="Restoring replication after SEV1",
                  severity="sev1", requested_at=expiring_from - timedelta(hours=1),
                  activated_at=expiring_from - timedelta(hours=1),
                  expires_at=expiring_from + index * step)
            for index, (user, group) in enumerate(pairs)]


class DecisionSampler(threading.Thread):
    """Asks the access decision about due and running grants until stopped, on its own
    database connection, and counts the answers that were wrong."""

    def __init__(self, due: list, running: list):
        super().__init__(daemon=True)
        self.due, self.running = due, running
        self.stop = threading.Event()
        self.samples = self.wrong = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connection

        from breakglass.access import decide

        pick = random.Random(19)
        try:
            while not self.stop.is_set():
                for grants, expected in ((self.due, False), (self.running, True)):
                    user, group_id = pick.choice(grants)
                    if decide(user, group_id).allowed != expected:
                        self.wrong += 1
                    self.samples += 1
                # Hundreds of checks a second are plenty to catch a wrong answer; a tight
                # loop would mostly measure this thread taking the interpreter from the sweep.
                self.stop.wait(PAUSE_SECONDS)
        except BaseException as exc:  # reported by main(), never lost with the thread
            self.error = exc
        finally:
            connection.close()


class Progress(threading.Thread):
    """Counts the expired grants every second while the sweep runs: a batch costing more as
    the sweep goes on (a transaction walking what earlier ones left behind) shows as a last
    quarter slower than the first."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.seen: list[tuple[float, int]] = []

    def run(self) -> None:
        from django.db import connection

        from breakglass.models import Grant

        try:
            while not self.stop.wait(1):
                expired = Grant.objects.filter(status=Grant.Status.EXPIRED).count()
                self.seen.append((time.perf_counter(), expired))
        finally:
            connection.close()

    def rate_between(self, low: int, high: int) -> str:
        """Grants a second from the first count reaching `low` to the first reaching `high`."""
        start = next(((at, n) for at, n in self.seen if n >= low), None)
        end = next(((at, n) for at, n in self.seen if n >= high), None)
        if start is None or end is None or end[0] <= start[0]:
            return "too quick to tell"
        return rate(end[1] - start[1], end[0] - start[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None)
    options = parser.parse_args()
    from django.db import connection

    if connection.vendor == "postgresql":
        # Its own scratch database: the test suite's may be in use on the same server.
        connection.settings_dict["TEST"]["NAME"] = "bench_expiry_bulk"
    with throwaway_database() as vendor:
        if vendor != "postgresql":
            print(f"warning: {vendor}: the target is stated for PostgreSQL (set DATABASE_URL); "
                  "this run says nothing about it")
        return run(options.grants, options.batch_size)


def run(count: int, batch_size: int | None) -> int:
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connection
    from django.utils import timezone
    from django_q.models import Schedule

    from audit.catalogue import EventKind
    from audit.models import AuditEvent, Delivery
    from breakglass.models import Grant
    from breakglass.services import grants as grant_services

    groups = -(-count // USERS_PER_GROUP)
    holders, catalog = build_cast(groups, min(count, USERS_PER_GROUP))
    now = timezone.now()
    due = grant_rows(holders, catalog[:groups], expiring_from=now - timedelta(minutes=2),
                     spread=timedelta(minutes=1))[:count]
    result: dict = {}
    with timer(result, "baseline_before"):
        Grant.objects.bulk_create(due, batch_size=1_000)
    running = Grant.objects.bulk_create(grant_rows(
        holders[:RUNNING_GRANTS], catalog[groups:], expiring_from=now + timedelta(hours=1),
        spread=timedelta(minutes=1)))
    Schedule.objects.bulk_create([grant_services.expiry_job(grant) for grant in due + running],
                                 batch_size=5_000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum has by the time the grants are due
    print(f"{len(due):,} grants due ({len(holders):,} users x {groups} groups, expiring over "
          f"one minute), {len(running):,} still running")

    sampler = DecisionSampler([(grant.user, grant.group_id) for grant in due],
                              [(grant.user, grant.group_id) for grant in running])
    sampler.start()
    progress = Progress()
    progress.start()
    sweep = {} if batch_size is None else {"batch_size": batch_size}
    with timer(result, "sweep"):
        expired = grant_services.expire_due_grants(**sweep)
    progress.seen.append((time.perf_counter(), expired))
    sampler.stop.set()
    progress.stop.set()
    sampler.join()
    progress.join()

    events = AuditEvent.objects.filter(kind=EventKind.GRANT_EXPIRED)
    follow_ups = Delivery.objects.filter(channel=Delivery.Channel.FANOUT, event__in=events)
    once = (expired == len(due) == events.count() == follow_ups.count()
            == Grant.objects.filter(status=Grant.Status.EXPIRED).count()
            and events.values("target_id").distinct().count() == len(due)
            and Grant.objects.filter(status=Grant.Status.ACTIVE).count() == len(running))

    # The baseline again, after the sweep (the same pairs may hold a grant again): the
    # machine's speed drifting during the run then falls on both sides alike.
    again = grant_rows(holders, catalog[:groups], expiring_from=now + timedelta(hours=2),
                       spread=timedelta(minutes=1))[:count]
    with timer(result, "baseline_after"):
        Grant.objects.bulk_create(again, batch_size=1_000)
    baseline = (result["baseline_before"] + result["baseline_after"]) / 2
    print(f"baseline: bulk_create of the {len(due):,} grant rows, 1,000 a statement: "
          f"{result['baseline_before']:.2f} s before the sweep, "
          f"{result['baseline_after']:.2f} s after, mean {baseline:.2f} s "
          f"({rate(len(due), baseline)})")
    ratio = result["sweep"] / baseline
    print(f"sweep: {expired:,} expired in {result['sweep']:.2f} s "
          f"({rate(expired, result['sweep'])}), {events.count():,} expiry events, "
          f"{follow_ups.count():,} follow-up rows (holder's message, connector revocation)")
    print(f"ratio sweep/baseline: {ratio:.2f}x (target <= {TARGET_RATIO}x)"
          + ("" if ratio <= TARGET_RATIO else "  ABOVE TARGET"))
    quarter = len(due) // 4
    print(f"sweep rate over its first quarter {progress.rate_between(0, quarter)}, "
          f"over its last {progress.rate_between(len(due) - quarter, len(due))}")
    print(f"access decision during the sweep: {sampler.samples:,} checks, {sampler.wrong} wrong"
          + (f", sampler failed: {sampler.error!r}" if sampler.error else ""))
    output = StringIO()
    try:
        call_command("verify_audit", stdout=output)
        verified = True
    except CommandError as exc:
        output.write(str(exc))
        verified = False
    print(f"verify_audit: {output.getvalue().strip()}")
    if not once:
        print("FAILED: not every due grant was expired exactly once")
    decision_exact = sampler.error is None and sampler.wrong == 0 and sampler.samples > 0
    return 0 if decision_exact and verified and once else 1


if __name__ == "__main__":
    sys.exit(main())
