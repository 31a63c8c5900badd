"""Idle and absolute session limits for every user whose action can release access or secrets:
break-glass users, group owners, holders of an active grant, quorum holders of a recovery
policy, security reviewers, staff, superusers and website managers."""

import time

import pytest
from django.contrib.auth.models import Group as UserGroup
from django.urls import reverse

from accounts.models import SECURITY_REVIEWERS_GROUP
from audit.catalogue import EventKind
from audit.models import AuditEvent
from backups.models import Website
from breakglass.models import Grant, Group
from breakglass.services.grants import revoke_grant
from breakglass.services.requests import approve_request, request_access
from recovery.models import RecoveryPolicy
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def age_session(client, *, idle_seconds=0, signed_in_seconds=0):
    session = client.session
    now = time.time()
    session["seen_at"] = now - idle_seconds
    session["signed_in_at"] = now - signed_in_seconds
    session.save()


def break_glass_user():
    user = make_user("bianca")
    Group.objects.create(name="Production", slug="production").break_glass_users.add(user)
    return user


def group_owner():
    user = make_user("gordon")
    Group.objects.create(name="Staging", slug="staging").owners.add(user)
    return user


def grant_holder():
    """Holds an active grant reached through a request and an owner's approval, and has no
    other right."""
    owner = make_user("olga")
    group = Group.objects.create(name="Billing", slug="billing", requestable=True)
    group.owners.add(owner)
    holder = make_user("hugo")
    pending = request_access(group, actor=holder, minutes=60,
                                             reason="deploy a fix")
    approve_request(pending, actor=owner, comment="ok")
    assert Grant.objects.active().filter(user=holder).exists()
    return holder


def quorum_holder():
    creator = make_user("carl")
    user = make_user("quinn")
    RecoveryPolicy.objects.create(name="Root", slug="root", first_user=creator,
                                  second_user=user, required=1)
    return user


def security_reviewer():
    user = make_user("rhea")
    user.groups.add(UserGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)[0])
    return user


def staff_member():
    return make_user("stan", is_staff=True)


def superuser():
    return make_user("sue", is_superuser=True)


def website_manager():
    user = make_user("wendy")
    Website.objects.create(name="Example", address="example.org", manager=user)
    return user


PRIVILEGED = [break_glass_user, group_owner, grant_holder, quorum_holder, security_reviewer,
              staff_member, superuser, website_manager]


def signed_out(response, client) -> bool:
    return (response.status_code == 302
            and response["Location"].startswith(reverse("accounts:login"))
            and "_auth_user_id" not in client.session)


@pytest.mark.parametrize("make", PRIVILEGED, ids=lambda make: make.__name__)
def test_privileged_user_is_signed_out_after_the_idle_limit(make, verified_client):
    user = make()
    client = verified_client(user)
    age_session(client, idle_seconds=15 * 60 + 5)
    assert signed_out(client.get(reverse("accounts:security")), client)
    event = AuditEvent.objects.filter(kind=EventKind.SESSION_EXPIRED).get()
    assert (event.actor_label, event.data["limit"]) == (user.username, "idle")


@pytest.mark.parametrize("make", PRIVILEGED, ids=lambda make: make.__name__)
def test_privileged_user_is_signed_out_after_the_absolute_limit(make, verified_client):
    user = make()
    client = verified_client(user)
    age_session(client, idle_seconds=10, signed_in_seconds=12 * 3600 + 5)
    assert signed_out(client.get(reverse("accounts:security")), client)
    event = AuditEvent.objects.filter(kind=EventKind.SESSION_EXPIRED).get()
    assert event.data["limit"] == "absolute"


@pytest.mark.parametrize("make", PRIVILEGED, ids=lambda make: make.__name__)
def test_privileged_user_within_the_limits_stays_signed_in(make, verified_client):
    client = verified_client(make())
    age_session(client, idle_seconds=14 * 60, signed_in_seconds=11 * 3600)
    assert client.get(reverse("accounts:security")).status_code == 200


def test_ordinary_user_keeps_the_existing_behaviour(verified_client, member):
    """A plain group member with no right to release anything is held to neither limit."""
    Group.objects.create(name="Docs", slug="docs").members.add(member)
    client = verified_client(member)
    age_session(client, idle_seconds=60 * 60, signed_in_seconds=13 * 3600)
    assert client.get(reverse("accounts:security")).status_code == 200
    assert not AuditEvent.objects.filter(kind=EventKind.SESSION_EXPIRED).exists()


def test_a_past_grant_alone_does_not_bring_the_limits(verified_client):
    holder = grant_holder()

    revoke_grant(Grant.objects.get(user=holder), actor=make_user("ops", is_superuser=True),
                 reason="done")
    client = verified_client(holder)
    age_session(client, idle_seconds=60 * 60)
    assert client.get(reverse("accounts:security")).status_code == 200


def test_the_rights_check_costs_one_query(verified_client, django_assert_max_num_queries):
    """Checked only once a limit has passed, and then in a single query."""
    user = website_manager()
    with django_assert_max_num_queries(1):
        assert user.has_break_glass_rights()
    ordinary = make_user("nora")
    with django_assert_max_num_queries(1):
        assert not ordinary.has_break_glass_rights()
