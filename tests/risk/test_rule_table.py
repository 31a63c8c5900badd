"""The default rule table (SPEC §2.7), cell by cell, through every path that asks it: the group
page, the API, access requests (service and page) and quorum attempts. Every expected value is
read from risk.rules.default_cells(), so these tests follow the table that ships.

A typed SEV1 or SEV2 counts as SEV3 on high and critical groups and policies, so those four
cells are reached with an open incident of that severity linked to the group or policy
(`choosing`); every other cell with the typed severity."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.services import STEP_UP_SESSION_KEY
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import AccessRequest, Grant, Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.errors import InvalidInput
from breakglass.services.requests import approve_request, request_access
from recovery import services as recovery
from recovery.models import RecoveryAttempt, RecoveryPolicy
from risk.incidents import upsert_incident
from risk.models import cell_label
from risk.rules import (
    CAPPED_SENSITIVITIES,
    RULE_FIELDS,
    SENSITIVITIES,
    SEVERITIES,
    RiskRefused,
    current_table,
    default_cells,
    table_problems,
)
from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = pytest.mark.django_db

CELLS = default_cells()
KEYS = [(sensitivity, severity) for sensitivity in SENSITIVITIES for severity in SEVERITIES]
IDS = [f"{sensitivity}-{severity}" for sensitivity, severity in KEYS]
GROUP_MINUTES = 24 * 60
FOURTEEN_DAYS = 14 * 24 * 60
STEP_UP_WORDS = "one-time code verified in the last 5 minutes"


def by_cell(test):
    return pytest.mark.parametrize(("sensitivity", "severity"), KEYS, ids=IDS)(test)


@pytest.fixture
def second_owner(db):
    return make_user("otto")


@pytest.fixture
def make_group(owner, second_owner, member):
    def _make(sensitivity: str) -> Group:
        on_call = Group.objects.create(name="On call", slug="on-call")
        on_call.members.add(member)
        group = Group.objects.create(
            name="Payments", slug="payments", sensitivity=sensitivity,
            break_glass_minutes=GROUP_MINUTES, requestable=True,
            request_max_minutes=FOURTEEN_DAYS, auto_approve_group=on_call)
        group.owners.add(owner, second_owner)
        group.break_glass_users.add(member)
        return group

    return _make


def choosing(sensitivity: str, severity: str, *, group: str = "", policies=()) -> dict:
    """How a use asks for the cell: the typed severity where it counts, else an open incident
    of that severity linked to the group or policy."""
    if sensitivity not in CAPPED_SENSITIVITIES or severity not in ("sev1", "sev2"):
        return {"severity": severity}
    external_id = f"INC-{sensitivity}-{severity}"
    upsert_incident(external_id=external_id, title="incident", severity=severity,
                    groups=[group] if group else None, policies=list(policies) or None,
                    actor=None)
    return {"incident": external_id}


def expected_minutes(cell: dict) -> int:
    return min(GROUP_MINUTES, cell["max_minutes"])


def last_event(kind: str) -> AuditEvent:
    return AuditEvent.objects.filter(kind=kind).order_by("-sequence").first()


def assert_decision_stored(event: AuditEvent, *, path: str, label: str, cell: dict,
                           decision: str) -> None:
    assert event is not None, "no audit event was recorded"
    risk = event.data["risk"]
    assert (risk["path"], risk["cell"], risk["decision"]) == (path, label, decision)
    assert (risk["max_minutes"], risk["approvals"], risk["step_up"]) == (
        cell["max_minutes"], cell["approvals"], cell["step_up"])
    channels = [name for name in ("email", "sms", "webhook") if cell[f"alert_{name}"]]
    assert risk["channels"] == channels


def make_stale(client) -> None:
    """The sign-in code counted as a step-up; move it 6 minutes into the past."""
    session = client.session
    session[STEP_UP_SESSION_KEY] = (timezone.now() - timedelta(minutes=6)).timestamp()
    session.save()


def test_the_migration_loads_the_default_table():
    assert current_table() == default_cells()
    assert len(CELLS) == 16
    assert table_problems(CELLS) == []


# --- The group page ----------------------------------------------------------------------------

@by_cell
def test_the_page_follows_the_cell(verified_client, make_group, member, sensitivity, severity):
    cell, label = CELLS[sensitivity, severity], cell_label(sensitivity, severity)
    group = make_group(sensitivity)
    client = verified_client(member)
    make_stale(client)
    url = reverse("breakglass:break-glass", args=[group.slug])
    form = {"reason": "payments are failing",
            **choosing(sensitivity, severity, group=group.slug)}
    response = client.post(url, form)
    if not cell["self_service"]:
        assert response.status_code == 403
        refusal = f"Risk rule {label} does not allow self-service break glass"
        assert refusal in response.content.decode()
        assert_decision_stored(last_event(EventKind.GRANT_REFUSED), path="break_glass",
                               label=label, cell=cell, decision="refused")
        # A fresh code does not change a cell that refuses self-service.
        code = current_totp(member.totpdevice_set.get(), steps_ahead=1)
        assert client.post(url, {**form, "code": code}).status_code == 403
        assert not Grant.objects.exists()
        assert AuditEvent.objects.filter(kind=EventKind.GRANT_REFUSED).count() == 2
        return
    if cell["step_up"]:
        assert response.status_code == 403
        assert STEP_UP_WORDS in response.content.decode()
        assert_decision_stored(last_event(EventKind.GRANT_REFUSED), path="break_glass",
                               label=label, cell=cell, decision="refused")
        assert not Grant.objects.exists()
        code = current_totp(member.totpdevice_set.get(), steps_ahead=1)
        response = client.post(url, {**form, "code": code})
    assert response.status_code == 302, response.content[:2000]
    grant = Grant.objects.get(user=member, group=group)
    assert grant.status == Grant.Status.ACTIVE and grant.severity == severity
    assert grant.expires_at - grant.activated_at == timedelta(minutes=expected_minutes(cell))
    assert (grant.risk["cell"], grant.risk["decision"]) == (label, "allowed")
    assert_decision_stored(last_event(EventKind.GRANT_ACTIVATED), path="break_glass",
                           label=label, cell=cell, decision="allowed")


def test_a_wrong_code_on_the_page_is_not_a_step_up(verified_client, make_group, member):
    group = make_group("critical")  # critical × SEV1: self-service with step-up
    client = verified_client(member)
    make_stale(client)
    right = current_totp(member.totpdevice_set.get(), steps_ahead=1)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    response = client.post(reverse("breakglass:break-glass", args=[group.slug]),
                           {"reason": "r", "code": wrong,
                            **choosing("critical", "sev1", group=group.slug)})
    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert not Grant.objects.exists()


def test_the_sign_in_code_counts_as_a_step_up_for_five_minutes(verified_client, make_group,
                                                               member):
    group = make_group("critical")
    client = verified_client(member)  # just signed in with a code: no stale step-up
    response = client.post(reverse("breakglass:break-glass", args=[group.slug]),
                           {"reason": "r", **choosing("critical", "sev1", group=group.slug)})
    assert response.status_code == 302
    assert Grant.objects.get().risk["cell"] == "critical × SEV1"


# --- The API -----------------------------------------------------------------------------------

def api_break_glass(client, token, body):
    return client.post("/api/v1/break-glass", json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def token(db):
    return create_application("pager", [Scope.BREAK_GLASS_WRITE], actor=None)[1]


@by_cell
def test_the_api_follows_the_cell(client, token, make_group, member, sensitivity, severity):
    cell, label = CELLS[sensitivity, severity], cell_label(sensitivity, severity)
    group = make_group(sensitivity)
    response = api_break_glass(client, token, {
        "user": member.username, "group": group.slug, "reason": "pager",
        **choosing(sensitivity, severity, group=group.slug)})
    allowed = cell["self_service"] and not cell["step_up"]
    if not allowed:
        assert response.status_code == 403, response.content
        detail = response.json()["detail"]
        assert label in detail
        if cell["self_service"]:
            assert "one-time code" in detail
        else:
            assert "does not allow self-service break glass" in detail
        assert not Grant.objects.exists()
        assert_decision_stored(last_event(EventKind.GRANT_REFUSED), path="api", label=label,
                               cell=cell, decision="refused")
        return
    assert response.status_code == 201, response.content
    grant = Grant.objects.get(pk=response.json()["id"])
    assert (grant.user, grant.source, grant.status) == (member, Grant.Source.API, "active")
    assert grant.expires_at - grant.activated_at == timedelta(minutes=expected_minutes(cell))
    assert_decision_stored(last_event(EventKind.GRANT_ACTIVATED), path="api", label=label,
                           cell=cell, decision="allowed")


@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
def test_no_severity_counts_as_sev4(client, token, make_group, member, sensitivity):
    cell, label = CELLS[sensitivity, "sev4"], cell_label(sensitivity, "sev4")
    group = make_group(sensitivity)
    response = api_break_glass(client, token, {"user": member.username, "group": group.slug,
                                               "reason": "pager"})
    allowed = cell["self_service"] and not cell["step_up"]
    assert response.status_code == (201 if allowed else 403)
    kind = EventKind.GRANT_ACTIVATED if allowed else EventKind.GRANT_REFUSED
    assert last_event(kind).data["risk"]["cell"] == label


# --- Access requests ---------------------------------------------------------------------------

@by_cell
def test_a_request_follows_the_cell(make_group, member, owner, second_owner, sensitivity,
                                    severity):
    cell, label = CELLS[sensitivity, severity], cell_label(sensitivity, severity)
    group = make_group(sensitivity)
    now = timezone.now()
    ask = {"actor": member, "reason": "audit",
           **choosing(sensitivity, severity, group=group.slug)}
    if cell["step_up"]:
        for stale in (None, now - timedelta(minutes=6)):
            with pytest.raises(RiskRefused) as refused:
                request_access(group, minutes=cell["max_minutes"],
                                               stepped_up_at=stale, **ask)
            assert refused.value.decision.needs_code
            assert STEP_UP_WORDS in str(refused.value) and label in str(refused.value)
            assert_decision_stored(last_event(EventKind.GRANT_REFUSED), path="request",
                                   label=label, cell=cell, decision="refused")
        assert not AccessRequest.objects.exists()
    fresh = now - timedelta(minutes=1)
    if cell["max_minutes"] < FOURTEEN_DAYS:
        with pytest.raises(InvalidInput) as too_long:
            request_access(group, minutes=cell["max_minutes"] + 15,
                                           stepped_up_at=fresh, **ask)
        assert too_long.value.field == "minutes" and label in str(too_long.value)
        assert not AccessRequest.objects.exists()
    access_request = request_access(group, minutes=cell["max_minutes"],
                                                    stepped_up_at=fresh, **ask)
    assert access_request.approvals_needed == max(group.approvals_needed, cell["approvals"])
    created = last_event(EventKind.REQUEST_CREATED)
    assert_decision_stored(created, path="request", label=label, cell=cell, decision="allowed")
    assert created.data["approvals_needed"] == cell["approvals"]
    # The on-call auto-approval stands for one approval only.
    if cell["approvals"] <= 1:
        assert access_request.status == AccessRequest.Status.APPROVED
    else:
        assert access_request.status == AccessRequest.Status.PENDING
        approvers = [owner, second_owner][:cell["approvals"]]
        for count, approver in enumerate(approvers, start=1):
            access_request.refresh_from_db()
            assert access_request.status == AccessRequest.Status.PENDING
            approve_request(access_request, actor=approver)
            access_request.refresh_from_db()
            assert access_request.approvals.count() == count
        assert access_request.status == AccessRequest.Status.APPROVED
    grant = Grant.objects.get(pk=access_request.grant_id)
    assert grant.status == Grant.Status.ACTIVE
    assert grant.expires_at - grant.activated_at == timedelta(minutes=cell["max_minutes"])


def test_a_group_wanting_more_approvals_than_the_cell_keeps_its_number(make_group, member):
    group = make_group("low")
    group.approvals_needed = 2
    group.save()
    access_request = request_access(group, actor=member, minutes=60,
                                                    reason="r", severity="sev1")
    assert access_request.approvals_needed == 2
    assert access_request.status == AccessRequest.Status.PENDING  # no auto-approval above one


@by_cell
def test_the_request_page_follows_the_cell(verified_client, make_group, member, sensitivity,
                                           severity):
    cell, label = CELLS[sensitivity, severity], cell_label(sensitivity, severity)
    group = make_group(sensitivity)
    group.auto_approve_group = None
    group.save()
    client = verified_client(member)
    make_stale(client)
    url = reverse("breakglass:request-access", args=[group.slug])
    form = {"minutes": cell["max_minutes"], "reason": "quarterly audit",
            **choosing(sensitivity, severity, group=group.slug)}
    response = client.post(url, form)
    if cell["step_up"]:
        assert response.status_code == 403
        page = response.content.decode()
        assert STEP_UP_WORDS in page and label in page
        assert not AccessRequest.objects.exists()
        code = current_totp(member.totpdevice_set.get(), steps_ahead=1)
        response = client.post(url, {**form, "code": code})
    assert response.status_code == 302, response.content[:2000]
    access_request = AccessRequest.objects.get()
    assert response["Location"] == reverse("breakglass:request-detail",
                                           args=[access_request.pk])
    assert access_request.approvals_needed == cell["approvals"]
    assert access_request.minutes == cell["max_minutes"]
    assert access_request.risk["cell"] == label


# --- Quorum attempts ---------------------------------------------------------------------------

@pytest.fixture
def quorum_users(db):
    users = [make_user(name) for name in ("alice", "bob", "erin")]
    for user in users:
        add_authenticator(user)
    return users


def quorum_policy(slug, sensitivity, users) -> RecoveryPolicy:
    first, *others = users
    return RecoveryPolicy.objects.create(
        name=slug, slug=slug, sensitivity=sensitivity, required=1, enabled=True,
        first_user=first, second_user=others[0] if others else None)


def code_of(user) -> str:
    return current_totp(user.totpdevice_set.get())


@by_cell
def test_a_quorum_attempt_follows_the_cell(quorum_users, sensitivity, severity):
    cell, label = CELLS[sensitivity, severity], cell_label(sensitivity, severity)
    alice, bob, erin = quorum_users
    alone = quorum_policy("alone", sensitivity, [alice])
    pair = quorum_policy("pair", sensitivity, [bob, erin])
    asking = choosing(sensitivity, severity, policies=[alone.slug, pair.slug])

    # Step-up is built in: no code, no attempt, whatever the cell says.
    with pytest.raises(recovery.RecoveryRefused, match="code"):
        recovery.start_attempt(pair, actor=erin, reason="SSO down", code="",
                               **asking)
    assert not RecoveryAttempt.objects.exists()

    # One authorized user cannot meet a cell that wants two confirmations.
    if cell["approvals"] > 1:
        with pytest.raises(recovery.RecoveryRefused) as refused:
            recovery.start_attempt(alone, actor=alice, reason="SSO down",
                                   code=code_of(alice), **asking)
        assert label in str(refused.value)
        assert f"needs {cell['approvals']} confirmations" in str(refused.value)
        event = last_event(EventKind.RECOVERY_REFUSED)
        assert event.target_label == str(alone)
        assert_decision_stored(event, path="quorum", label=label, cell=cell,
                               decision="refused")
        assert not RecoveryAttempt.objects.filter(policy=alone).exists()
    else:
        attempt = recovery.start_attempt(alone, actor=alice, reason="SSO down",
                                         code=code_of(alice), **asking)
        assert attempt.required == 1 and attempt.status == RecoveryAttempt.Status.BROKEN
        assert attempt.reveal_until - attempt.broken_at == timedelta(
            minutes=min(alone.reveal_minutes, cell["max_minutes"]))

    attempt = recovery.start_attempt(pair, actor=bob, reason="SSO down", code=code_of(bob),
                                     **asking)
    assert attempt.required == max(pair.required, cell["approvals"])
    assert attempt.risk["cell"] == label
    assert_decision_stored(last_event(EventKind.RECOVERY_STARTED), path="quorum", label=label,
                           cell=cell, decision="allowed")
    expected = (RecoveryAttempt.Status.OPEN if cell["approvals"] > 1
                else RecoveryAttempt.Status.BROKEN)
    assert attempt.status == expected


# --- The table's own checks --------------------------------------------------------------------

def table_with(**changes) -> dict:
    """The default table with `changes`, keyed "sensitivity_severity", applied."""
    cells = {key: dict(values) for key, values in default_cells().items()}
    for key, values in changes.items():
        sensitivity, severity = key.split("_")
        cells[sensitivity, severity].update(values)
    return cells


def test_a_gap_names_its_cell():
    cells = default_cells()
    del cells["high", "sev2"]
    problems = table_problems(cells)
    assert problems == ["high × SEV2: missing. Every sensitivity needs a rule for every "
                        "severity."]


CONTRADICTIONS = [
    # (what changes, the cell named, words of the problem)
    ({"critical_sev4": {"self_service": True}}, "critical × SEV4",
     "allows self-service break glass but high × SEV4 does not; a more sensitive system"),
    ({"critical_sev4": {"self_service": True}}, "critical × SEV4",
     "allows self-service break glass but critical × SEV3 does not; a less severe incident"),
    ({"high_sev2": {"max_minutes": 2 * 24 * 60}}, "high × SEV2",
     "allows longer access (2880 min) than high × SEV1 (1440 min); a less severe incident"),
    ({"critical_sev1": {"max_minutes": 2 * 24 * 60}}, "critical × SEV1",
     "allows longer access (2880 min) than high × SEV1 (1440 min); a more sensitive system"),
    ({"critical_sev4": {"approvals": 1}}, "critical × SEV4",
     "needs fewer approvals (1) than critical × SEV3 (2); a less severe incident"),
    ({"high_sev3": {"approvals": 3}}, "critical × SEV3",
     "needs fewer approvals (2) than high × SEV3 (3); a more sensitive system"),
    ({"high_sev4": {"step_up": False}}, "high × SEV4",
     "needs no step-up code but high × SEV3 does; a less severe incident"),
    ({"critical_sev3": {"step_up": False}}, "critical × SEV3",
     "needs no step-up code but high × SEV3 does; a more sensitive system"),
    ({"medium_sev1": {"alert_sms": False}}, "medium × SEV1",
     "does not alert by sms but low × SEV1 does; a more sensitive system cannot alert fewer"),
    ({"high_sev2": {"alert_webhook": False}}, "high × SEV2",
     "does not alert by webhook but medium × SEV2 does"),
    ({"critical_sev3": {"alert_email": False}}, "critical × SEV3",
     "does not alert by email but high × SEV3 does"),
    ({"low_sev4": {"alert_email": False, "alert_sms": False, "alert_webhook": False}},
     "low × SEV4", "choose at least one alert channel"),
    ({"low_sev1": {"max_minutes": 10}}, "low × SEV1",
     "the maximum duration must be 15 minutes to 14 days"),
    ({"low_sev1": {"max_minutes": FOURTEEN_DAYS + 1}}, "low × SEV1",
     "the maximum duration must be 15 minutes to 14 days"),
    ({"critical_sev4": {"approvals": 4}}, "critical × SEV4", "approvals needed must be 1 to 3"),
    ({"low_sev1": {"approvals": 0}}, "low × SEV1", "approvals needed must be 1 to 3"),
]


@pytest.mark.parametrize(("changes", "label", "words"), CONTRADICTIONS,
                         ids=[f"{next(iter(changes))}-{words.split()[0]}-{number}"
                              for number, (changes, _, words) in enumerate(CONTRADICTIONS)])
def test_each_contradiction_names_its_cell(changes, label, words):
    problems = table_problems(table_with(**changes))
    assert any(problem.startswith(f"{label}: ") and words in problem for problem in problems), (
        problems)


def test_severity_may_change_the_channels():
    # Channels are compared across sensitivities only: the default low × SEV3 has no SMS
    # while low × SEV2 has, and that is not a contradiction.
    assert not CELLS["low", "sev3"]["alert_sms"] and CELLS["low", "sev2"]["alert_sms"]
    assert table_problems(default_cells()) == []


def test_every_problem_of_a_broken_table_names_a_cell():
    cells = table_with(critical_sev4={"self_service": True, "approvals": 1, "step_up": False},
                       low_sev4={"alert_email": False, "alert_sms": False,
                                 "alert_webhook": False})
    del cells["medium", "sev2"]
    problems = table_problems(cells)
    labels = {cell_label(s, v) for s, v in KEYS}
    assert len(problems) >= 5
    assert all(problem.split(": ", 1)[0] in labels for problem in problems), problems
    assert set(RULE_FIELDS) == set(CELLS["low", "sev1"])
