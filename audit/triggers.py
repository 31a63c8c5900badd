"""Database triggers that make the audit table append-only (QUALITY Q25). The HMAC chain
detects tampering; the triggers stop it through the application's own database account."""

TABLE = "audit_auditevent"
MESSAGE = "audit events are append-only"

SQLITE_INSTALL = [
    f"CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    f"CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
]
POSTGRES_INSTALL = [
    "CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger "
    f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$",
    f"DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE}",
    f"CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_event_refuse_change()",
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

    from audit.chain import GENESIS_MAC
    from audit.models import ChainHead

    ChainHead.objects.using(using).get_or_create(pk=1, defaults={"mac": GENESIS_MAC})
    install(connections[using])
