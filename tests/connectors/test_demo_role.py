"""The demo on PostgreSQL: prod-database is the role prod_admin on the same server, and
pg_has_role('alice', 'prod_admin', 'member') flips when alice breaks glass (README)."""

import os
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.outbox import send_due_deliveries
from breakglass.models import Group
from breakglass.services.break_glass import break_glass
from demo.connectors import DEMO_ROLE, database_url
from demo.organisation import DEMO_INCIDENT

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def is_member(login: str) -> bool:
    with psycopg.connect(database_url(), autocommit=True) as admin:
        return admin.execute("SELECT pg_has_role(%s, %s, 'member')",
                             [login, DEMO_ROLE]).fetchone()[0]


def may_create_roles() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolcreaterole OR rolsuper FROM pg_roles "
                       "WHERE rolname = current_user")
        return cursor.fetchone()[0]


def test_the_demo_role_flips_when_alice_breaks_glass(settings):
    if not may_create_roles():
        reason = "the test database account lacks CREATEROLE (.ci/run gives it)"
        if os.environ.get("BREAKGLASS_REQUIRE_POSTGRES"):
            pytest.fail(f"BREAKGLASS_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "prod-database is the role prod_admin on this PostgreSQL server" in out.getvalue()
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute("REVOKE prod_admin FROM alice")  # roles outlive test databases
    assert not is_member("alice")
    from accounts.models import User

    alice = User.objects.get(username="alice")
    break_glass(Group.objects.get(slug="prod-database"), actor=alice, reason="demo",
                incident=DEMO_INCIDENT, stepped_up_at=timezone.now())
    while send_due_deliveries():
        pass
    assert is_member("alice")
    call_command("seed_demo", stdout=StringIO())  # idempotent: one connector still
    from breakglass.models import Connector

    assert Connector.objects.filter(name="prod-admin-role").count() == 1
