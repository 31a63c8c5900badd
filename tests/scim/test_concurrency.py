"""PostgreSQL with real threads: the directory sending the same creation several times at
once (identity providers retry) gets one account, and 409 for the others, never a 500."""

import pytest

from accounts.models import DirectoryGroup, User
from audit.catalogue import EventKind
from audit.models import AuditEvent
from tests.audit.test_concurrency import run_in_threads
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
