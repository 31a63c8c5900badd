"""The evidence pack: one export per incident or grant of every event concerned, with the
chain MACs. A pack verifies against the chain; editing the pack, or an event in the database
before or after the export, fails verification naming the event."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from audit.outbox import send_due_deliveries
from breakglass.models import Grant, Group, Scope
from breakglass.services.applications import create_application, report_activity
from breakglass.services.break_glass import break_glass
from demo.organisation import DEMO_INCIDENT, seed_demo
from reports.evidence import build_pack, verify_pack
from review.models import Review
from risk.incidents import upsert_incident
from tests.audit.helpers import raw, triggers_lifted
from tests.breakglass.helpers import open_incident
from tests.conftest import add_authenticator, make_user

pytestmark = pytest.mark.django_db

# The admin button's route as it is wired into the admin site (reports/evidence_admin.py).



@pytest.fixture
def lifecycle(member, owner):
    """An incident's whole night: opened, broken glass under it, an alert sent, an action
    reported, resolved (which ends the grant), and a review opened."""
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    incident = open_incident("INC-7", groups=["prod-db"])
    grant = break_glass(group, actor=member, reason="replica lag", incident="INC-7")
    application, _ = create_application("pager", list(Scope.values), actor=None)
    report_activity(grant, actor=application, action="restart replica",
                             detail="step 1")
    send_due_deliveries()
    upsert_incident(external_id="INC-7", severity="sev2", status="resolved", actor=None)
    # Break glass opens the review once review/services.py is wired in; until then, here.
    Review.objects.get_or_create(grant=grant, defaults={
        "path": Review.Path.GROUP, "group": group, "subject": member,
        "subject_label": member.username, "opened_at": timezone.now()})
    incident.refresh_from_db()
    grant.refresh_from_db()
    return incident, grant


def export(tmp_path, *subject) -> dict:
    out = StringIO()
    call_command("export_evidence", *subject, str(tmp_path / "pack"), stdout=out)
    assert "events in" in out.getvalue()
    return json.loads((tmp_path / "pack.json").read_text(encoding="utf-8"))


def verify(tmp_path) -> str:
    out = StringIO()
    call_command("verify_evidence", str(tmp_path / "pack.json"), stdout=out)
    return out.getvalue()


def sequence_of(kind: str, pack: dict) -> int:
    return next(event["sequence"] for event in pack["events"] if event["kind"] == kind)


def test_an_incident_pack_holds_everything_concerned_and_verifies(lifecycle, tmp_path):
    incident, grant = lifecycle
    pack = export(tmp_path, "--incident", "INC-7")
    kinds = [event["kind"] for event in pack["events"]]
    assert kinds[0] == EventKind.INCIDENT_OPENED
    assert {EventKind.GRANT_ACTIVATED, EventKind.GRANT_ACTIVITY, EventKind.INCIDENT_RESOLVED,
            EventKind.GRANT_REVOKED} <= set(kinds)
    assert [event["sequence"] for event in pack["events"]] == sorted(
        event["sequence"] for event in pack["events"])
    assert pack["grants"][0]["id"] == grant.pk and pack["grants"][0]["status"] == "revoked"
    assert [action["action"] for action in pack["reported_actions"]] == ["restart replica"]
    assert pack["reported_actions"][0]["event"] == sequence_of(EventKind.GRANT_ACTIVITY, pack)
    assert pack["reviews"][0]["grant"] == grant.pk

    activated = next(e for e in pack["events"] if e["kind"] == EventKind.GRANT_ACTIVATED)
    sent = [d for d in activated["deliveries"] if d["status"] == Delivery.Status.SENT]
    assert sent and all(d["provider_message_id"] for d in sent)
    assert "body" not in json.dumps(activated["deliveries"])  # message bodies can hold secrets
    previous = AuditEvent.objects.get(sequence=activated["sequence"] - 1)
    assert activated["previous_mac"] == previous.mac

    assert verify(tmp_path).strip() == f"evidence pack verified: {len(kinds)} events"
    call_command("verify_audit", stdout=StringIO())
    exported = AuditEvent.objects.get(kind=EventKind.EVIDENCE_EXPORTED)
    assert exported.target_id == str(incident.pk) and exported.actor_type == "system"
    assert exported.data == {"files": ["pack.json", "pack.html"], "events": len(kinds),
                             "chain_head": pack["chain_head"]["sequence"]}
    assert exported.sequence > pack["chain_head"]["sequence"]  # not part of its own pack


def test_the_printable_page_shows_the_events_alerts_and_how_to_verify(lifecycle, tmp_path):
    pack = export(tmp_path, "--incident", "INC-7")
    page = (tmp_path / "pack.html").read_text(encoding="utf-8")
    first = pack["events"][0]
    assert f'title="{first["mac"]}"' in page and first["mac"] not in page.replace(
        f'title="{first["mac"]}"', "")
    assert "restart replica" in page and "replica lag" in page
    message_id = next(d["provider_message_id"] for e in pack["events"] for d in e["deliveries"]
                      if d["provider_message_id"])
    assert message_id in page
    assert "manage.py verify_evidence FILE.json" in page and "verify_audit" in page
    assert "<script" not in page and 'src="' not in page  # stands alone on paper or disk


def test_an_event_edited_in_the_database_after_the_export_fails_naming_it(lifecycle, tmp_path):
    pack = export(tmp_path, "--grant", str(lifecycle[1].pk))
    edited = sequence_of(EventKind.GRANT_ACTIVATED, pack)
    with triggers_lifted():
        raw("UPDATE audit_auditevent SET reason = 'nothing to see' WHERE sequence = %s",
            [edited])
    with pytest.raises(CommandError) as failure:
        verify(tmp_path)
    message = str(failure.value)
    assert f"event {edited} in the database differs from the pack" in message
    assert f"the audit chain in the database is broken: event {edited} was edited" in message


def test_an_event_edited_before_the_export_fails_through_the_chain(lifecycle, tmp_path):
    edited = AuditEvent.objects.get(kind=EventKind.GRANT_ACTIVITY).sequence
    with triggers_lifted():
        raw("UPDATE audit_auditevent SET data = '{}' WHERE sequence = %s", [edited])
    export(tmp_path, "--incident", str(lifecycle[0].pk))  # by primary key this time
    with pytest.raises(CommandError, match=f"event {edited} was edited or forged"):
        verify(tmp_path)


@pytest.mark.parametrize("edit", ["reason", "mac", "drop_event", "data"])
def test_an_edited_pack_file_fails_verification(lifecycle, tmp_path, edit):
    pack = export(tmp_path, "--incident", "INC-7")
    revoked = next(e for e in pack["events"] if e["kind"] == EventKind.GRANT_REVOKED)
    if edit == "reason":
        revoked["reason"] = "routine maintenance"
    elif edit == "mac":
        revoked["mac"] = "f" * 64
    elif edit == "data":
        revoked["data"]["incident"] = "INC-8"
    else:
        pack["events"].remove(revoked)
    (tmp_path / "pack.json").write_text(json.dumps(pack), encoding="utf-8")
    expected = ("missing from the pack" if edit == "drop_event"
                else f"event {revoked['sequence']}: its MAC does not match")
    with pytest.raises(CommandError, match=expected):
        verify(tmp_path)


@pytest.mark.parametrize("content", ["not json", "[]", '{"events": [{"sequence": "1"}]}',
                                     '{"events": [{"sequence": 1}], "chain_head": 3}'])
def test_a_file_that_is_no_pack_is_refused_without_a_traceback(tmp_path, content, db):
    (tmp_path / "pack.json").write_text(content, encoding="utf-8")
    with pytest.raises(CommandError):
        verify(tmp_path)


@pytest.mark.parametrize("subject", [["--incident", "INC-404"], ["--incident", "9999"],
                                     ["--grant", "9999"], ["--grant", "abc"]])
def test_an_unknown_incident_or_grant_is_refused_clearly(tmp_path, subject, db):
    with pytest.raises(CommandError, match=f"no {subject[0][2:]} '{subject[1]}' is known"):
        call_command("export_evidence", *subject, str(tmp_path / "pack"), stdout=StringIO())
    assert not list(tmp_path.iterdir())
    assert not AuditEvent.objects.filter(kind=EventKind.EVIDENCE_EXPORTED).exists()


def test_the_export_needs_exactly_one_subject(tmp_path, db):
    with pytest.raises(CommandError, match="one of the arguments --incident --grant"):
        call_command("export_evidence", str(tmp_path / "pack"))


def test_out_ending_in_json_names_both_files_by_its_stem(lifecycle, tmp_path):
    call_command("export_evidence", "--grant", str(lifecycle[1].pk),
                 str(tmp_path / "grant.json"), stdout=StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grant.html", "grant.json"]


def test_a_pack_is_about_one_subject(db):
    with pytest.raises(ValueError, match="one incident or one grant"):
        build_pack()


def test_the_demo_incident_pack_verifies_against_the_chain(tmp_path, db):
    seed_demo("demo-breakglass")
    from accounts.models import User

    alice = User.objects.get(username="alice")
    break_glass(Group.objects.get(slug="prod-database"), actor=alice,
                         reason="primary refuses connections", incident=DEMO_INCIDENT,
                         stepped_up_at=timezone.now())
    pack = export(tmp_path, "--incident", DEMO_INCIDENT)
    assert {EventKind.INCIDENT_OPENED, EventKind.GRANT_ACTIVATED} <= {
        event["kind"] for event in pack["events"]}
    assert verify(tmp_path).startswith("evidence pack verified:")
    assert verify_pack(pack) == []


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_staff_download_the_pack_from_the_admin(lifecycle, admin_user, verified_client, fmt):
    grant = lifecycle[1]
    url = reverse("admin:evidence", args=["grant", grant.pk, fmt])
    response = verified_client(admin_user).get(url)
    assert response.status_code == 200
    if fmt == "json":
        assert response["Content-Disposition"] == (
            f'attachment; filename="evidence-grant-{grant.pk}.json"')
        assert verify_pack(json.loads(response.content)) == []
    else:
        assert "Content-Disposition" not in response
        nonce = response.context["csp_nonce"]
        assert f'<style nonce="{nonce}">' in response.content.decode()
        assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    exported = AuditEvent.objects.get(kind=EventKind.EVIDENCE_EXPORTED)
    assert (exported.actor_id, exported.target_id) == (str(admin_user.pk), str(grant.pk))
    assert exported.ip and exported.data["files"] == [f"evidence-grant-{grant.pk}.{fmt}"]


def test_others_get_no_pack_from_the_admin(lifecycle, member, verified_client, client):
    url = reverse("admin:evidence", args=["incident", lifecycle[0].pk, "json"])
    assert verified_client(member).get(url).status_code in (302, 403)
    staff = make_user("stan", is_staff=True)  # staff without the audit trail permission
    add_authenticator(staff)
    assert verified_client(staff).get(url).status_code == 403
    assert client.get(url).status_code == 302  # signed out: to the sign-in page
    assert not AuditEvent.objects.filter(kind=EventKind.EVIDENCE_EXPORTED).exists()


@pytest.mark.parametrize(("kind", "object_id", "fmt"), [
    ("incident", 9999, "html"), ("grant", 9999, "json"), ("review", 1, "json"),
    ("grant", 1, "pdf"),
])
def test_unknown_subjects_are_404_in_the_admin(admin_user, verified_client, kind, object_id,
                                                fmt, db):
    url = reverse("admin:evidence", args=[kind, object_id, fmt])
    assert verified_client(admin_user).get(url).status_code == 404
    assert not Grant.objects.exists()
