"""Database triggers that make the audit trail append-only (QUALITY Q25) and a sent alert
final (Q42). The HMAC chain detects tampering; the triggers stop it through the
application's own database account.

- Events: no UPDATE, no DELETE, and on PostgreSQL no TRUNCATE (a statement-level trigger:
  row triggers never see a TRUNCATE).
- The chain head (one row): created once at sequence 0 with the genesis MAC, then only moved
  forward by exactly one, to the sequence and MAC of an event that exists; never deleted or
  truncated. So it cannot be rewound to hide a deleted tail, nor pointed at a forged MAC.
- A sent delivery keeps its status, send time and provider id for good.

There is deliberately no switch (setting, role, session variable) that lets these writes
through: emptying the tables means dropping the triggers (`remove()`), which only the owner
of the tables can do, the same right that could drop any trigger. The test suite does that
before each flush, and post_migrate (`prepare_trail`) puts them back.
"""

from audit.chain import GENESIS_MAC

TABLE = "audit_auditevent"
HEAD_TABLE = "audit_chainhead"
DELIVERY_TABLE = "audit_delivery"
MESSAGE = "audit events are append-only"
HEAD_MESSAGE = "the audit chain head only moves forward, one appended event at a time"
SENT_MESSAGE = "a sent delivery never changes again"

# Written by audit.services.record() after (SQLite) or in the same statement as (PostgreSQL)
# the event it names: both see the event when the check runs.
_EVENT_NAMED_BY_NEW = f"SELECT 1 FROM {TABLE} WHERE sequence = NEW.sequence AND mac = NEW.mac"  # noqa: S608
_HEAD_STEP = (
    f"NEW.id = OLD.id AND NEW.sequence = OLD.sequence + 1 AND EXISTS ({_EVENT_NAMED_BY_NEW})"
)
_HEAD_BIRTH = f"NEW.id = 1 AND NEW.sequence = 0 AND NEW.mac = '{GENESIS_MAC}'"
_SENT_KEPT = (
    "NEW.status IS NOT DISTINCT FROM OLD.status AND NEW.sent_at IS NOT DISTINCT FROM "
    "OLD.sent_at AND NEW.provider_message_id IS NOT DISTINCT FROM OLD.provider_message_id"
)


def _sqlite_refusal(name: str, when: str, table: str, message: str, condition: str = "") -> str:
    guard = f" WHEN {condition}" if condition else ""
    return (f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {when} ON {table}{guard} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


SQLITE_TRIGGERS = {
    "audit_event_no_update": ("UPDATE", TABLE, MESSAGE, ""),
    "audit_event_no_delete": ("DELETE", TABLE, MESSAGE, ""),
    "audit_chainhead_birth": ("INSERT", HEAD_TABLE, HEAD_MESSAGE, f"NOT ({_HEAD_BIRTH})"),
    "audit_chainhead_forward": ("UPDATE", HEAD_TABLE, HEAD_MESSAGE, f"NOT ({_HEAD_STEP})"),
    "audit_chainhead_no_delete": ("DELETE", HEAD_TABLE, HEAD_MESSAGE, ""),
    "audit_delivery_sent_is_final": (
        "UPDATE", DELIVERY_TABLE, SENT_MESSAGE,
        # SQLite's IS is PostgreSQL's IS NOT DISTINCT FROM (and older than SQLite's own).
        f"OLD.status = 'sent' AND NOT ({_SENT_KEPT.replace('IS NOT DISTINCT FROM', 'IS')})"),
}
SQLITE_INSTALL = [_sqlite_refusal(name, *spec) for name, spec in SQLITE_TRIGGERS.items()]
SQLITE_REMOVE = [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


def _plpgsql(name: str, body: str) -> str:
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} END; $$")


# (trigger, table, timing and events, level and condition, function)
POSTGRES_TRIGGERS = [
    ("audit_event_append_only", TABLE, "BEFORE UPDATE OR DELETE", "FOR EACH ROW",
     "audit_event_refuse_change"),
    ("audit_event_no_truncate", TABLE, "BEFORE TRUNCATE", "FOR EACH STATEMENT",
     "audit_event_refuse_change"),
    ("audit_chainhead_guard", HEAD_TABLE, "BEFORE INSERT OR UPDATE OR DELETE", "FOR EACH ROW",
     "audit_chainhead_refuse_jump"),
    # AFTER: in record()'s single statement the event is inserted beside the head's UPDATE,
    # and only an AFTER trigger, fired at the end of that statement, sees both.
    ("audit_chainhead_in_step", HEAD_TABLE, "AFTER UPDATE", "FOR EACH ROW",
     "audit_chainhead_require_event"),
    ("audit_chainhead_no_truncate", HEAD_TABLE, "BEFORE TRUNCATE", "FOR EACH STATEMENT",
     "audit_event_refuse_change"),
    ("audit_delivery_sent_is_final", DELIVERY_TABLE, "BEFORE UPDATE",
     f"FOR EACH ROW WHEN (OLD.status = 'sent' AND NOT ({_SENT_KEPT}))",
     "audit_delivery_refuse_change"),
]
POSTGRES_FUNCTIONS = {
    "audit_event_refuse_change": f"RAISE EXCEPTION '{MESSAGE}';",
    "audit_chainhead_refuse_jump": (
        f"IF TG_OP = 'INSERT' AND {_HEAD_BIRTH} THEN RETURN NEW; END IF; "
        "IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.sequence = OLD.sequence + 1 "
        f"THEN RETURN NEW; END IF; RAISE EXCEPTION '{HEAD_MESSAGE}';"),
    "audit_chainhead_require_event": (
        f"IF NOT EXISTS ({_EVENT_NAMED_BY_NEW}) THEN RAISE EXCEPTION '{HEAD_MESSAGE}'; "
        "END IF; RETURN NULL;"),
    "audit_delivery_refuse_change": f"RAISE EXCEPTION '{SENT_MESSAGE}';",
}
POSTGRES_INSTALL = [
    *(_plpgsql(name, body) for name, body in POSTGRES_FUNCTIONS.items()),
    *(statement for name, table, timing, level, function in POSTGRES_TRIGGERS for statement in (
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
        f"CREATE TRIGGER {name} {timing} ON {table} {level} EXECUTE FUNCTION {function}()",
    )),
]
POSTGRES_REMOVE = [
    *(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, *_ in POSTGRES_TRIGGERS),
    *(f"DROP FUNCTION IF EXISTS {name}()" for name in POSTGRES_FUNCTIONS),
]


def _run(connection, statements) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection) -> None:
    if connection.vendor == "postgresql":
        _run(connection, POSTGRES_INSTALL)
    elif connection.vendor == "sqlite":
        _run(connection, SQLITE_INSTALL)


def remove(connection) -> None:
    if connection.vendor == "postgresql":
        _run(connection, POSTGRES_REMOVE)
    elif connection.vendor == "sqlite":
        _run(connection, SQLITE_REMOVE)


def prepare_trail(using: str = "default", **kwargs) -> None:
    """After every migrate (and every test-database flush): the chain head row exists and
    the append-only triggers are in place. Idempotent. A head recreated here after deletion
    starts at the genesis MAC, which verify_audit reports as a broken chain."""
    from django.db import connections

    from audit.models import ChainHead

    ChainHead.objects.using(using).get_or_create(pk=1, defaults={"mac": GENESIS_MAC})
    install(connections[using])
