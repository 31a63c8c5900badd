"""PostgreSQL with real threads: the directory sending the same creation several times at
once (identity providers retry) gets one account, and 409 for the others, never a 500; a
deprovisioning racing a break glass leaves no access behind."""

import threading
import time

import pytest
from django.db import connection

from accounts import deprovisioning
from accounts.models import DirectoryGroup, User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant
from breakglass.services.break_glass import break_glass
from breakglass.services.errors import BreakGlassRefused
from tests.audit.test_concurrency import run_in_threads
from tests.conftest import make_user
from tests.scim.conftest import GROUP_SCHEMA, new_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_ten_simultaneous_creations_of_one_username_give_one_account(scim):
    statuses = []
    errors = run_in_threads(10, lambda index: statuses.append(
        scim("POST", "/Users", new_user("alice")).status_code))
    assert errors == []
    assert sorted(statuses) == [201] + [409] * 9
    assert User.objects.filter(username="alice").count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.SCIM_USER_CREATED).count() == 1


def test_ten_simultaneous_creations_of_one_group_give_one_group(scim):
    statuses = []
    errors = run_in_threads(10, lambda index: statuses.append(scim(
        "POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "SRE"}).status_code))
    assert errors == []
    assert sorted(statuses) == [201] + [409] * 9
    assert DirectoryGroup.objects.filter(display_name="SRE").count() == 1


def test_a_break_glass_racing_a_deprovisioning_never_leaves_access_behind(database,
                                                                         monkeypatch):
    """The directory deactivates alice while she presses Break glass. Either her press lands
    first and the deprovisioning ends it, or it waits and is refused: never a grant that
    outlives the account (connectors would land it in real systems)."""
    alice = make_user("alice")
    database.break_glass_users.add(alice)
    deprovisioning_holds_alice = threading.Event()
    find_sessions = deprovisioning.signed_in_sessions

    def slow_session_scan(user):
        # The deprovisioning now holds alice's row and has listed her grants.
        deprovisioning_holds_alice.set()
        time.sleep(1.5)
        return find_sessions(user)

    monkeypatch.setattr(deprovisioning, "signed_in_sessions", slow_session_scan)
    outcomes: list = []

    def leave():
        try:
            deprovisioning.deprovision(alice, actor=None, reason="left the company")
        finally:
            connection.close()

    def press():
        try:
            deprovisioning_holds_alice.wait(timeout=30)
            outcomes.append(break_glass(database, actor=alice, reason="database down"))
        except BreakGlassRefused as refused:
            outcomes.append(refused)
        finally:
            connection.close()

    threads = [threading.Thread(target=leave), threading.Thread(target=press)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == 1
    assert not Grant.objects.filter(user=alice, status=Grant.Status.ACTIVE).exists()
    assert not User.objects.get(pk=alice.pk).is_active
