"""Connectors against real target servers with a real worker (`manage.py qcluster`):

1. Propagation, per kind (PostgreSQL role, MariaDB role, LDAP group): 100 break-glass
   activations, then 100 revocations; how long until each login is present in (then absent
   from) the target, as the target itself answers. Goal: p99 <= 2 s each way, measured with
   activations 0.25 s apart (people breaking glass, not a script); the same 100 at once
   (a burst) are printed too, queueing included. The baseline is one direct call of the
   target (grant then revoke), measured in the same run.
2. Reconciliation, per kind: 10,000 holders against a target that already has 10,000
   members (nothing to do), then with 100 removed and 100 extra added by hand (200 repairs).
   Goal: <= 10 s, and the same number of Breakglass queries whatever the size (shown for
   100 and 10,000). The baseline is reading the target's members alone.

    .venv/bin/python bench/connector_propagation.py [postgres_role mariadb_role ldap_group]

Target servers are started like the tests start them (tests/connectors/*_server.py), on
throwaway directories and free ports; the Breakglass database is a scratch SQLite file unless
DATABASE_URL names one (a scratch database!)."""

import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from _worker import running_worker

ACTIVATIONS = 100
HOLDERS = 10_000
DRIFT = 100
POLL_SECONDS = 0.02
PACE_SECONDS = 0.25
RUN = f"{int(time.time()) % 100_000}"  # names of this run, beside any earlier run's


# --- Target servers, started as the tests start them ----------------------------------------

@contextmanager
def target_server(kind: str):
    directory = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    try:
        if kind == "postgres_role":
            from tests.connectors.postgres_server import PostgresTarget, _pg_bin

            server = PostgresTarget(_pg_bin(), directory)
        elif kind == "mariadb_role":
            from tests.connectors.mariadb_server import MariaDBServer, _binaries

            server = MariaDBServer(directory, _binaries())
            server.install()
        else:
            from tests.connectors.slapd_server import SlapdServer, _slapd

            server = SlapdServer(_slapd(), directory)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def bulk_logins(server, target: str, logins: list[str], *, members: bool) -> None:
    """Create many logins (and make them members) in a few statements: the set-up of the
    reconciliation bench, not what is measured."""
    if server.kind == "postgres_role":
        from psycopg import sql

        with server.admin() as admin:
            for start in range(0, len(logins), 1000):
                chunk = [sql.Identifier(login) for login in logins[start:start + 1000]]
                admin.execute(sql.SQL("; ").join(
                    sql.SQL("CREATE ROLE {} LOGIN").format(name) for name in chunk))
                if members:
                    admin.execute(sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(target), sql.SQL(", ").join(chunk)))
    elif server.kind == "mariadb_role":
        from tests.connectors.mariadb_server import account, quote_identifier

        for start in range(0, len(logins), 1000):
            accounts = ", ".join(account(login) for login in logins[start:start + 1000])
            server.execute(f"CREATE USER {accounts}")
            if members:
                server.execute(f"GRANT {quote_identifier(target)} TO {accounts}")
    else:
        import ldap3

        from tests.connectors.slapd_server import group_dn, person_dn

        if members:
            with server.admin() as admin:
                admin.modify(group_dn(target), {"member": [
                    (ldap3.MODIFY_ADD, [person_dn(login) for login in logins])]})
                assert admin.result["result"] == 0, admin.result


def present(server, target: str) -> set[str]:
    return server.members_by_hand(target)


# --- 1. Propagation -------------------------------------------------------------------------

def propagation(kind: str, server, pace: float) -> tuple[list[float], list[float], float]:
    from accounts.models import User
    from breakglass.models import Grant, Group
    from breakglass.services import connectors
    from breakglass.services.break_glass import break_glass
    from breakglass.services.grants import revoke_grant

    tag = f"{kind[:2]}{'paced' if pace else 'burst'}{RUN}"
    target = f"bench_{tag}_{int(time.time())}"
    server.prepare_target(target)
    group = Group.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}-{int(time.time())}")
    connector = connectors.create_connector(kind, f"bench-{group.slug}", group,
                                            server.settings(target), actor=None)
    target_name = connector.target_name
    users = User.objects.bulk_create(
        [User(username=f"p{n}_{tag}") for n in range(ACTIVATIONS)])
    for user in users:
        server.create_login(user.username)
    group.break_glass_users.add(*users)

    baseline = time.perf_counter()
    with connectors.target_for(connector) as direct:
        direct.grant(users[0].username)
        direct.revoke(users[0].username)
    baseline = time.perf_counter() - baseline

    arrivals = Watch(server, target_name, want_present=True)
    for user in users:
        break_glass(group, actor=user, reason="propagation benchmark")
        arrivals.since[user.username] = time.monotonic()
        arrivals.watch(pace)
    granted = arrivals.wait()
    departures = Watch(server, target_name, want_present=False)
    for grant in Grant.objects.filter(group=group).select_related("user"):
        revoke_grant(grant, actor=grant.user, reason="propagation benchmark")
        departures.since[grant.user.username] = time.monotonic()
        departures.watch(pace)
    revoked = departures.wait()
    return granted, revoked, baseline


class Watch:
    """Polls the target while changes are made, so each change's lag is when the target
    first showed it, measured from when its activation (or revocation) committed."""

    def __init__(self, server, target: str, *, want_present: bool):
        self.server, self.target, self.want_present = server, target, want_present
        self.since: dict[str, float] = {}
        self.lags: dict[str, float] = {}

    def poll(self) -> None:
        members = present(self.server, self.target)
        now = time.monotonic()
        for login, at in self.since.items():
            if login not in self.lags and (login in members) == self.want_present:
                self.lags[login] = now - at

    def watch(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.poll()
            time.sleep(POLL_SECONDS)

    def wait(self, limit: float = 120) -> list[float]:
        deadline = time.monotonic() + limit
        while len(self.lags) < len(self.since) and time.monotonic() < deadline:
            self.watch(POLL_SECONDS)
        if len(self.lags) < len(self.since):
            raise RuntimeError(f"only {len(self.lags)} of {len(self.since)} changes landed "
                               f"in {limit} s")
        return list(self.lags.values())


# --- 2. Reconciliation ----------------------------------------------------------------------

def reconciliation(kind: str, server, holders: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from breakglass.models import Group
    from breakglass.services import connectors

    tag = f"{kind[:2]}{holders}_{RUN}"
    target = f"rec_{tag}_{int(time.time())}"
    server.prepare_target(target)
    group = Group.objects.create(name=f"Reconcile {tag}", slug=f"rec-{tag}-{int(time.time())}")
    connector = connectors.create_connector(kind, f"rec-{group.slug}", group,
                                            server.settings(target), actor=None)
    logins = [f"r{n}_{tag}" for n in range(holders)]
    users = User.objects.bulk_create([User(username=login) for login in logins])
    Group.members.through.objects.bulk_create(
        [Group.members.through(group_id=group.pk, user_id=user.pk) for user in users])
    extra = [f"x{n}_{tag}" for n in range(min(DRIFT, holders))]
    bulk_logins(server, connector.target_name, logins, members=True)
    bulk_logins(server, connector.target_name, extra, members=False)
    if kind == "ldap_group":
        for login in logins[:len(extra)]:  # granted again below: the entries must exist
            server.create_login(login)

    with connectors.target_for(connector) as target_system:
        started = time.perf_counter()
        read = target_system.members()
        members_only = time.perf_counter() - started
    assert len(read) >= holders, (len(read), holders)

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        clean = connectors.reconcile(connector)
        clean_seconds = time.perf_counter() - started
    assert not clean.drifted, (clean.missing[:5], clean.extra[:5])

    with connectors.target_for(connector) as target_system:
        for login in logins[:len(extra)]:
            target_system.revoke(login)
    for login in extra:
        server.add_by_hand(connector.target_name, login)
    started = time.perf_counter()
    repaired = connectors.reconcile(connector)
    repair_seconds = time.perf_counter() - started
    assert len(repaired.granted) == len(repaired.revoked) == len(extra), repaired.failed
    return {"members_only": members_only, "clean": clean_seconds, "repair": repair_seconds,
            "queries": len(queries.captured_queries), "repairs": 2 * len(extra)}


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[-1]


def main(kinds: list[str]) -> int:
    failures = 0
    with running_worker(start_seconds=4):
        for kind in kinds:
            with target_server(kind) as server:
                for pace, how in ((PACE_SECONDS, "0.25 s apart"), (0, "all at once")):
                    granted, revoked, baseline = propagation(kind, server, pace)
                    print(f"{kind}: one direct grant+revoke (baseline) "
                          f"{baseline * 1000:.0f} ms")
                    for label, lags in (("grant -> present", granted),
                                        ("revoke -> absent", revoked)):
                        goal = " (goal p99 <= 2 s)" if pace else " (a burst: queueing shows)"
                        print(f"{kind}: {label}, {ACTIVATIONS} {how}: p50 "
                              f"{statistics.median(lags):.2f} s, p99 {p99(lags):.2f} s, max "
                              f"{max(lags):.2f} s{goal}; p99/baseline "
                              f"{p99(lags) / baseline:.0f}x")
                        failures += bool(pace) and p99(lags) > 2
    for kind in kinds:
        with target_server(kind) as server:
            small = reconciliation(kind, server, 100)
            large = reconciliation(kind, server, HOLDERS)
            print(f"{kind}: reconcile {HOLDERS:,} holders vs {HOLDERS:,} members: "
                  f"{large['clean']:.2f} s with nothing to do, {large['repair']:.2f} s with "
                  f"{large['repairs']} repairs (goal <= 10 s); reading the members alone "
                  f"{large['members_only']:.2f} s (ratio "
                  f"{large['clean'] / large['members_only']:.1f}x); "
                  f"Breakglass queries: {small['queries']} for 100 holders, "
                  f"{large['queries']} for {HOLDERS:,}")
            failures += large["clean"] > 10 or large["repair"] > 10
            failures += small["queries"] != large["queries"]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:] or ["postgres_role", "mariadb_role", "ldap_group"]))
