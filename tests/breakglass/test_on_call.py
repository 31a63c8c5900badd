"""On call now is a group (its members come from a schedule), and Opal's break-glass pattern:
a requestable "breakglass-" group that contains the target and is auto-approved for whoever
is on call."""

from datetime import timedelta

import pytest
from django.utils import timezone

from breakglass.access import access_by_group, decide
from breakglass.models import AccessRequest, Group
from breakglass.services.grants import revoke_grant
from breakglass.services.requests import request_access
from oncall.models import Schedule, Shift
from tests.breakglass.test_api import call
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db):
    return make_user("carol")


@pytest.fixture
def rota(carol):
    """primary-oncall: carol's shift started an hour ago and ends in seven."""
    schedule = Schedule.objects.create(name="Primary on call", slug="primary-oncall")
    now = timezone.now()
    Shift.objects.create(schedule=schedule, user=carol, starts_at=now - timedelta(hours=1),
                         ends_at=now + timedelta(hours=7))
    return schedule


@pytest.fixture
def groups(rota, owner):
    prod = Group.objects.create(name="Production database", slug="prod-database")
    oncall = Group.objects.create(name="Primary on call", slug="primary-oncall",
                                  members_from_schedule=rota)
    target = Group.objects.create(name="Break glass: prod database",
                                  slug="breakglass-prod-database", requestable=True,
                                  auto_approve_group=oncall)
    target.contains.add(prod)
    for group in (prod, oncall, target):
        group.owners.add(owner)
    return prod, oncall, target


def test_whoever_is_on_call_now_has_access_to_the_schedules_group(groups, carol, member):
    _, oncall, _ = groups
    decision = decide(carol, oncall)
    assert (decision.allowed, decision.via) == (True, "on_call")
    assert decision.expires_at == Shift.objects.get().ends_at
    assert not decide(member, oncall).allowed
    assert access_by_group(carol)[oncall.pk].via == "on_call"
    later = timezone.now() + timedelta(hours=8)
    assert not decide(carol, oncall, at=later).allowed  # the shift is over


def test_on_call_requests_are_approved_at_once_and_reach_the_target_through_nesting(
        client, groups, carol, app_token):
    prod, _, target = groups
    access_request = request_access(target, actor=carol, minutes=60,
                                                    reason="pager: db down")
    assert access_request.status == "approved"
    assert "on call now in Primary on call" in access_request.auto_rule
    assert decide(carol, prod).via == "nested"
    body = call(client, "GET", "/access", app_token, user="carol",
                group="prod-database").json()
    assert (body["allowed"], body["via"]) == (True, "nested")

    # Her shift ends; her grant lasts, so the API still says nested...
    Shift.objects.update(ends_at=timezone.now() - timedelta(seconds=1))
    body = call(client, "GET", "/access", app_token, user="carol",
                group="prod-database").json()
    assert (body["allowed"], body["via"]) == (True, "nested")
    # ...but once it has ended, a new request waits for the owners.
    revoke_grant(access_request.grant, actor=carol)
    again = request_access(target, actor=carol, minutes=60, reason="again")
    assert again.status == AccessRequest.Status.PENDING


def test_the_api_says_on_call_for_the_schedules_own_group(client, groups, app_token):
    body = call(client, "GET", "/access", app_token, user="carol",
                group="primary-oncall").json()
    assert (body["allowed"], body["via"], body["grant_id"]) == (True, "on_call", None)


def test_the_on_call_decision_is_still_one_query(groups, carol, django_assert_num_queries):
    prod, _, _ = groups
    with django_assert_num_queries(1):
        decide(carol, prod)
