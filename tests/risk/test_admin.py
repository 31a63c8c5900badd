"""The risk admin (SPEC §2.7) through its pages: the rule table edited as a whole on its list
page (refused with a gap or a contradiction, each named by its cell; every changed cell audited
with before and after and kept in its history), cells never added or deleted, and incidents
opened and resolved in the admin through the same service as the API."""

from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Grant, Group
from breakglass.services.break_glass import break_glass
from risk.models import Incident, RiskRule, cell_label
from risk.rules import RULE_FIELDS, SENSITIVITIES, SEVERITIES, current_table, table_problems
from tests.breakglass.helpers import open_incident
from tests.conftest import make_user, sign_in

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:risk_riskrule_changelist"


class _Inputs(HTMLParser):
    """The named inputs of a page as a browser would submit them: text, number and hidden
    inputs with their values, ticked checkboxes as "on", unticked ones left out."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag != "input" or not name or not name.startswith("form-"):
            return
        if attrs.get("type") == "checkbox":
            if "checked" in attrs:
                self.data[name] = "on"
        else:
            self.data[name] = attrs.get("value") or ""


def changelist_form(client: Client) -> tuple[dict, dict[tuple[str, str], int]]:
    """The rule table's list page as its form would post it (with `_save`), and the form index
    of each cell."""
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    parser = _Inputs()
    parser.feed(page.content.decode())
    data = {**parser.data, "_save": "Save"}
    cells = {rule.pk: (rule.sensitivity, rule.severity) for rule in RiskRule.objects.all()}
    index = {cells[int(value)]: int(name.split("-")[1])
             for name, value in data.items() if name.endswith("-id")}
    return data, index


def set_cell(data: dict, index: dict, cell: tuple[str, str], **values) -> dict:
    """Change fields of one cell in a posted table; booleans as a browser sends them."""
    for name, value in values.items():
        key = f"form-{index[cell]}-{name}"
        if value is True:
            data[key] = "on"
        elif value is False:
            data.pop(key, None)
        else:
            data[key] = str(value)
    return data


@pytest.fixture
def admin_client(verified_client, admin_user):
    return verified_client(admin_user)


def history_counts() -> dict[tuple[str, str], int]:
    return {(rule.sensitivity, rule.severity): rule.history.count()
            for rule in RiskRule.objects.all()}


def rules_changed() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=EventKind.RISK_RULES_CHANGED).order_by("sequence"))


def test_the_table_page_shows_every_cell_in_order(admin_client):
    data, index = changelist_form(admin_client)
    assert (data["form-TOTAL_FORMS"], data["form-INITIAL_FORMS"]) == ("16", "16")
    expected = [(sensitivity, severity) for sensitivity in SENSITIVITIES
                for severity in SEVERITIES]
    assert sorted(index, key=index.get) == expected
    assert {"form-15-max_minutes", "form-15-approvals"} <= set(data)


def test_a_contradiction_in_the_whole_table_is_refused_naming_the_cell(admin_client):
    before, histories = current_table(), history_counts()
    data, index = changelist_form(admin_client)
    assert before[("critical", "sev1")]["self_service"]  # and stays so
    set_cell(data, index, ("high", "sev1"), self_service=False)
    set_cell(data, index, ("low", "sev3"), alert_sms=True)  # valid on its own
    response = admin_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert ("critical × SEV1: allows self-service break glass but high × SEV1 does not; "
            "a more sensitive system cannot be looser.") in html
    assert ("high × SEV2: allows self-service break glass but high × SEV1 does not; "
            "a less severe incident cannot be looser.") in html
    assert current_table() == before
    assert history_counts() == histories
    assert rules_changed() == [] and not LogEntry.objects.exists()


def test_a_gap_in_the_posted_values_is_refused_naming_the_cell(admin_client):
    before = current_table()
    data, index = changelist_form(admin_client)
    for name in ("alert_email", "alert_sms", "alert_webhook"):
        set_cell(data, index, ("medium", "sev4"), **{name: False})
    response = admin_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 200
    assert "medium × SEV4: choose at least one alert channel" in response.content.decode()
    assert current_table() == before and rules_changed() == []


def test_a_change_of_several_cells_at_once_is_saved_and_each_cell_audited(admin_client,
                                                                           admin_user):
    """No self-service for high and critical systems during any incident: refused cell by
    cell (each step alone contradicts its neighbours), accepted as a whole."""
    before, histories = current_table(), history_counts()
    data, index = changelist_form(admin_client)
    off = [("high", "sev1"), ("high", "sev2"), ("high", "sev3"), ("critical", "sev1"),
           ("critical", "sev2")]
    for cell in off:
        set_cell(data, index, cell, self_service=False)
    set_cell(data, index, ("low", "sev3"), alert_sms=True)
    set_cell(data, index, ("critical", "sev4"), max_minutes=30, approvals=3)
    response = admin_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 302, response.content.decode()
    after = current_table()
    assert table_problems(after) == []
    changed = {*off, ("low", "sev3"), ("critical", "sev4")}
    assert {key for key in after if after[key] != before[key]} == changed
    events = rules_changed()
    assert len(events) == len(changed)
    by_cell = {event.data["cell"]: event for event in events}
    assert set(by_cell) == {cell_label(*cell) for cell in changed}
    for cell in off:
        event = by_cell[cell_label(*cell)]
        assert event.actor_label == admin_user.username
        assert event.data["changed"] == ["self_service"]
        assert (event.data["before"], event.data["after"]) == (
            before[cell], {**before[cell], "self_service": False})
    assert by_cell[cell_label("low", "sev3")].data["changed"] == ["alert_sms"]
    strictest = by_cell[cell_label("critical", "sev4")].data
    assert strictest["changed"] == ["approvals", "max_minutes"]
    assert (strictest["before"]["max_minutes"], strictest["after"]["max_minutes"]) == (60, 30)
    assert (strictest["before"]["approvals"], strictest["after"]["approvals"]) == (2, 3)
    assert history_counts() == {key: count + (key in changed)
                                for key, count in histories.items()}
    rule = RiskRule.objects.get(sensitivity="low", severity="sev3")
    assert rule.history.latest().alert_sms is True
    page = admin_client.get(reverse("admin:risk_riskrule_history", args=[rule.pk]))
    assert page.status_code == 200


def test_posting_the_table_unchanged_changes_nothing(admin_client):
    data, _ = changelist_form(admin_client)
    histories = history_counts()
    assert admin_client.post(reverse(CHANGELIST), data).status_code == 302
    assert rules_changed() == [] and history_counts() == histories


def test_the_change_page_checks_the_cell_against_the_rest(admin_client):
    before = current_table()
    rule = RiskRule.objects.get(sensitivity="high", severity="sev1")
    values = {name: getattr(rule, name) for name in RULE_FIELDS}
    posted = {name: ("on" if value is True else value) for name, value in values.items()
              if value is not False}
    posted.pop("self_service")
    response = admin_client.post(reverse("admin:risk_riskrule_change", args=[rule.pk]),
                                 {**posted, "_save": "Save"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "critical × SEV1: allows self-service break glass but high × SEV1 does not" in html
    assert "high × SEV2: allows self-service break glass but high × SEV1 does not" in html
    assert current_table() == before and rules_changed() == []


def test_rules_are_never_added_or_deleted(admin_client):
    rule = RiskRule.objects.get(sensitivity="low", severity="sev1")
    values = {"self_service": "on", "max_minutes": 60, "approvals": 1, "alert_email": "on"}
    assert admin_client.get(reverse("admin:risk_riskrule_add")).status_code == 403
    assert admin_client.post(reverse("admin:risk_riskrule_add"), values).status_code == 403
    delete = reverse("admin:risk_riskrule_delete", args=[rule.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    # The list page offers no actions: a posted delete_selected is not run.
    admin_client.post(reverse(CHANGELIST), {"action": "delete_selected", "index": "0",
                                            "_selected_action": [rule.pk], "post": "yes"})
    assert RiskRule.objects.count() == 16 and table_problems(current_table()) == []


def test_an_extra_form_on_the_table_adds_nothing_and_saves_nothing(admin_client):
    before = current_table()
    data, index = changelist_form(admin_client)
    set_cell(data, index, ("low", "sev3"), alert_sms=True)
    data.update({"form-TOTAL_FORMS": "17", "form-16-max_minutes": "60",
                 "form-16-approvals": "1", "form-16-alert_email": "on"})
    response = admin_client.post(reverse(CHANGELIST), data)
    assert response.status_code == 400
    assert RiskRule.objects.count() == 16
    assert current_table() == before and rules_changed() == []


def test_a_staff_member_who_may_only_view_the_table_cannot_change_it(verified_client,
                                                                     admin_client):
    data, index = changelist_form(admin_client)
    set_cell(data, index, ("low", "sev3"), alert_sms=True)
    viewer = make_user("vera", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="risk",
                                                       codename="view_riskrule"))
    client = verified_client(viewer)
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and b'name="form-0-id"' not in page.content
    before = current_table()
    assert client.post(reverse(CHANGELIST), data).status_code == 403
    rule = RiskRule.objects.get(sensitivity="low", severity="sev3")
    assert client.post(reverse("admin:risk_riskrule_change", args=[rule.pk]),
                       {"alert_sms": "on", "_save": "Save"}).status_code == 403
    assert current_table() == before and rules_changed() == []


# Incidents.

@pytest.fixture
def payments(owner, member) -> Group:
    group = Group.objects.create(name="Payments", slug="payments")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    return group


@pytest.fixture
def ledger(owner, member) -> Group:
    """A group whose grants outlive the incident."""
    group = Group.objects.create(name="Ledger", slug="ledger", end_grants_on_resolve=False)
    group.break_glass_users.add(member)
    return group


def incident_form(**fields) -> dict:
    return {"external_id": "PD-5", "title": "Card payments fail", "severity": "sev2",
            "status": "open", "url": "https://pager.example.com/PD-5", "groups": [],
            "policies": [], "_save": "Save", **fields}


def test_creating_an_incident_in_the_admin_links_groups_and_is_audited(admin_client,
                                                                       admin_user, payments,
                                                                       ledger):
    response = admin_client.post(reverse("admin:risk_incident_add"),
                                 incident_form(groups=[payments.pk, ledger.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:risk_incident_changelist")
    incident = Incident.objects.get()
    assert (incident.external_id, incident.status, incident.severity) == ("PD-5", "open",
                                                                          "sev2")
    assert set(incident.groups.values_list("slug", flat=True)) == {"payments", "ledger"}
    opened = AuditEvent.objects.get(kind=EventKind.INCIDENT_OPENED)
    assert opened.actor_label == admin_user.username
    assert (opened.data["external_id"], opened.data["groups"]) == ("PD-5",
                                                                   ["ledger", "payments"])
    assert incident.history.exists()


def test_resolving_in_the_admin_ends_the_grants_opened_under_it(admin_client, admin_user,
                                                                payments, ledger, member):
    incident = open_incident("PD-5", "sev2", groups=["payments", "ledger"])
    ended = break_glass(payments, actor=member, reason="refunds", incident="PD-5")
    kept = break_glass(ledger, actor=member, reason="refunds", incident="PD-5")
    change = reverse("admin:risk_incident_change", args=[incident.pk])
    response = admin_client.post(change, incident_form(
        status="resolved", groups=[payments.pk, ledger.pk]), follow=True)
    assert response.status_code == 200
    assert b"1 grant(s) opened under this incident were ended." in response.content
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolved_at is not None
    assert Grant.objects.get(pk=ended.pk).status == Grant.Status.REVOKED
    assert Grant.objects.get(pk=kept.pk).status == Grant.Status.ACTIVE
    revoked = AuditEvent.objects.get(kind=EventKind.GRANT_REVOKED)
    assert revoked.target_id == str(ended.pk)
    assert revoked.actor_label == admin_user.username
    assert revoked.data["cause"] == {"incident": "PD-5", "incident_id": incident.pk}
    assert AuditEvent.objects.filter(kind=EventKind.INCIDENT_RESOLVED).count() == 1
    # Saving the resolved incident again ends nothing more.
    again = admin_client.post(change, incident_form(status="resolved",
                                                    groups=[payments.pk, ledger.pk]))
    assert again.status_code == 302
    assert AuditEvent.objects.filter(kind=EventKind.GRANT_REVOKED).count() == 1
    assert AuditEvent.objects.filter(kind=EventKind.INCIDENT_RESOLVED).count() == 1


def test_the_external_id_is_not_changed_in_the_admin(admin_client, payments):
    incident = open_incident("PD-5", "sev2", groups=["payments"])
    response = admin_client.post(reverse("admin:risk_incident_change", args=[incident.pk]),
                                 incident_form(external_id="PD-6", title="Renamed",
                                               groups=[payments.pk]))
    assert response.status_code == 302
    incident.refresh_from_db()
    assert (incident.external_id, incident.title) == ("PD-5", "Renamed")
    assert not Incident.objects.filter(external_id="PD-6").exists()


def test_incidents_are_never_deleted(admin_client, payments):
    incident = open_incident("PD-5", "sev2", groups=["payments"])
    delete = reverse("admin:risk_incident_delete", args=[incident.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    admin_client.post(reverse("admin:risk_incident_changelist"), {
        "action": "delete_selected", "index": "0", "_selected_action": [incident.pk],
        "post": "yes"})
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_a_link_the_service_refuses_is_a_form_error_not_a_500(admin_user, payments):
    """The admin form's URLField accepts ftp://; the incident service takes https:// or
    http:// only (in any case). The admin shows the refusal on the form, never a 500."""
    client = sign_in(Client(raise_request_exception=False), admin_user)
    add = reverse("admin:risk_incident_add")
    response = client.post(add, incident_form(url="ftp://pager.example.com/PD-5"))
    assert response.status_code == 200, response.status_code
    assert "https:// or http://" in response.content.decode()
    assert not Incident.objects.exists()
    accepted = client.post(add, incident_form(url="HTTPS://pager.example.com/PD-5"))
    assert accepted.status_code == 302, accepted.status_code
    assert Incident.objects.get().url == "HTTPS://pager.example.com/PD-5"
