import pytest
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from accounts.models import BackupCodeDevice
from accounts.services import issue_backup_codes
from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent, ChainHead
from audit.services import Anonymous, record, verify_trail
from tests.audit.helpers import triggers_lifted
from tests.conftest import PASSWORD, add_authenticator, current_totp

pytestmark = pytest.mark.django_db


def kinds() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("kind", flat=True))


def test_events_form_a_gapless_chain_and_move_the_head(member):
    first = record(EventKind.SIGN_IN, actor=member, target=member)
    second = record(EventKind.SIGN_OUT, actor=member)
    head = ChainHead.objects.get()
    assert (first.sequence, second.sequence) == (1, 2)
    assert (head.sequence, head.mac) == (2, second.mac)
    assert first.mac != second.mac and len(second.mac) == 64
    assert verify_trail().intact


def test_unknown_kinds_and_unsafe_data_are_refused(member):
    with pytest.raises(ValueError, match="unknown audit event kind"):
        record("auth.made_up", actor=member)
    with pytest.raises(TypeError, match=r"data\.ratio holds a float"):
        record(EventKind.SIGN_IN, actor=member, data={"ratio": 0.5})
    assert AuditEvent.objects.count() == 0


def test_actors_are_described_for_users_anonymous_callers_and_the_system(member):
    by_user = record(EventKind.SIGN_IN, actor=member)
    by_name = record(EventKind.SIGN_IN_FAILED, actor=Anonymous("mallory"))
    by_system = record(EventKind.CHAIN_BROKEN, actor=None)
    assert (by_user.actor_type, by_user.actor_id, by_user.actor_label) == (
        "user", str(member.pk), member.username)
    assert (by_name.actor_type, by_name.actor_label) == ("anonymous", "mallory")
    assert (by_system.actor_type, by_system.actor_label) == ("system", "system")


def test_request_context_is_recorded(member):
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="Probe/1.0")
    request.request_id = "abc123abc123"
    event = record(EventKind.SIGN_IN, actor=member, request=request)
    assert (event.ip, event.user_agent, event.request_id) == (
        "198.51.100.4", "Probe/1.0", "abc123abc123")


def test_every_response_carries_its_request_id_and_the_event_has_it(client, member):
    client.post(reverse("accounts:login"), {"username": member.username, "password": "wrong"})
    event = AuditEvent.objects.get(kind=EventKind.SIGN_IN_FAILED)
    assert len(event.request_id) == 32


def test_sign_in_journey_is_recorded_end_to_end(client, member):
    device = add_authenticator(member)
    client.post(reverse("accounts:login"), {"username": member.username, "password": "nope"})
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    client.post(reverse("accounts:verify"), {"code": "000000"})
    client.post(reverse("accounts:verify"), {"code": "111111"})
    device.refresh_from_db()
    device.throttle_reset()
    client.post(reverse("accounts:verify"), {"code": current_totp(device)})
    client.post(reverse("accounts:backup-codes"), {"password": PASSWORD})
    client.post(reverse("accounts:logout"))
    assert kinds() == [
        EventKind.SIGN_IN_FAILED, EventKind.SIGN_IN, EventKind.OTP_FAILED,
        EventKind.OTP_THROTTLED, EventKind.OTP_VERIFIED, EventKind.BACKUP_CODES_REGENERATED,
        EventKind.SIGN_OUT,
    ]
    failed = AuditEvent.objects.get(kind=EventKind.SIGN_IN_FAILED)
    assert failed.outcome == Outcome.FAILURE and failed.target_id == str(member.pk)
    assert "nope" not in repr(list(AuditEvent.objects.values()))
    assert verify_trail().intact


def test_lockout_is_recorded_and_alerted_once_per_cool_off(client, member, reviewer):
    reviewer.mobile = "+15555550199"
    reviewer.save()
    for _ in range(8):
        client.post(reverse("accounts:login"), {"username": member.username, "password": "x"},
                    REMOTE_ADDR="203.0.113.77")
    lockouts = AuditEvent.objects.filter(kind=EventKind.LOCKOUT)
    assert lockouts.count() == 1
    lockout = lockouts.get()
    assert (lockout.outcome, lockout.ip, lockout.target_id) == (
        "denied", "203.0.113.77", str(member.pk))
    channels = sorted(lockout.deliveries.values_list("channel", "recipient"))
    assert channels == [("email", reviewer.email), ("sms", "+15555550199")]


def test_a_change_whose_event_cannot_be_written_does_not_happen(verified_client, member):
    """Fail closed (Q22): with the chain head gone, issuing backup codes is refused with a
    clear page and the old codes stay valid; a failed sign-in is still recorded after."""
    old_codes = issue_backup_codes(member, actor=member)
    client = verified_client(member)
    events_before = AuditEvent.objects.count()
    with triggers_lifted():  # the database itself refuses to lose the head
        ChainHead.objects.all().delete()

    response = client.post(reverse("accounts:backup-codes"), {"password": PASSWORD})

    assert response.status_code == 503
    assert b"Nothing was changed" in response.content
    assert AuditEvent.objects.count() == events_before
    device = BackupCodeDevice.objects.get(user=member)
    assert device.unused_count() == 10
    assert device.verify_token(old_codes[3])


def test_refused_attempts_are_recorded_in_their_own_transaction(client, member):
    client.post(reverse("accounts:login"), {"username": member.username, "password": "bad"})
    client.post(reverse("accounts:login"), {"username": "nobody", "password": "bad"})
    failed = AuditEvent.objects.filter(kind=EventKind.SIGN_IN_FAILED).order_by("sequence")
    assert [e.actor_label for e in failed] == [member.username, "nobody"]
    assert failed.last().target_id == ""


def test_the_database_refuses_update_and_delete_of_audit_rows(member):
    record(EventKind.SIGN_IN, actor=member)
    from django.db import DatabaseError, transaction

    for statement in ("UPDATE audit_auditevent SET reason = 'x'", "DELETE FROM audit_auditevent"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AuditEvent.objects.get().reason == ""
