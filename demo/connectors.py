"""The demo's real system: on PostgreSQL, the prod-database group is the role `prod_admin` on
the same server, with a login per demo user, so a newcomer sees access land:

    SELECT pg_has_role('alice', 'prod_admin', 'member');   -- false, then true after break glass

On SQLite there is no server to reach, and the demo says so."""

from urllib.parse import quote

import psycopg
from django.db import connection
from psycopg import errors, sql

from breakglass.models import Connector
from breakglass.models import Group as CatalogGroup
from breakglass.services import connectors

DEMO_ROLE = "prod_admin"
DEMO_CONNECTOR = "prod-admin-role"
DEMO_LOGINS = ["alice", "bob", "carol", "dave", "erin"]


def database_url() -> str:
    db = connection.settings_dict
    credentials = f"{quote(db['USER'], safe='')}:{quote(db['PASSWORD'] or '', safe='')}"
    return (f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
            f"{quote(db['NAME'], safe='')}")


def seed_database_role() -> str:
    """Create the role and the logins if missing, and the connector once. Returns what the
    demo tells the newcomer."""
    if connection.vendor != "postgresql":
        return ("prod-database reaches no real system on SQLite: run with a PostgreSQL "
                "DATABASE_URL and it becomes the role prod_admin on that server.")
    url = database_url()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
            for role, login in [(DEMO_ROLE, False), *((name, True) for name in DEMO_LOGINS)]:
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                 [role]).fetchone() is None:
                    admin.execute(sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN"))
                                  .format(sql.Identifier(role)))
    except errors.InsufficientPrivilege:
        return (f"prod-database reaches no real system: the database account "
                f"{connection.settings_dict['USER']!r} may not create roles (give it CREATEROLE "
                "to see the demo role prod_admin).")
    if not Connector.objects.filter(name=DEMO_CONNECTOR).exists():
        connectors.create_connector(
            Connector.Kind.POSTGRES_ROLE, DEMO_CONNECTOR,
            CatalogGroup.objects.get(slug="prod-database"),
            {"url": url, "role": DEMO_ROLE}, actor=None)
    return (f"prod-database is the role {DEMO_ROLE} on this PostgreSQL server (connector "
            f"{DEMO_CONNECTOR}): SELECT pg_has_role('alice', '{DEMO_ROLE}', 'member'); "
            "turns true when alice breaks glass.")
