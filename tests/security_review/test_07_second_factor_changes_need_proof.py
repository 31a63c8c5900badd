"""Replacing the authenticator app or regenerating backup codes needs the account password and
a second factor verified in the last 5 minutes; each change is audited and the user is told
by email and SMS."""

import time

import pytest
from django.urls import reverse

from accounts.models import BackupCodeDevice
from accounts.models import TOTPDevice as Authenticator
from accounts.services import issue_backup_codes
from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent, Delivery
from tests.conftest import PASSWORD, current_totp

pytestmark = pytest.mark.django_db

SIX_MINUTES = 6 * 60


@pytest.fixture
def signed_in(verified_client, member):
    member.mobile = "+15555550123"
    member.save(update_fields=["mobile"])
    return verified_client(member)


def age_step_up(client, seconds: int) -> None:
    session = client.session
    session["step_up_at"] = time.time() - seconds
    session.save()


def old_device(user):
    return Authenticator.objects.get(user=user, confirmed=True)


def start_replacement(client, user):
    assert client.get(reverse("accounts:two-factor")).status_code == 200
    return Authenticator.objects.get(user=user, confirmed=False)


def replace(client, new, **proof):
    return client.post(reverse("accounts:two-factor"), {"code": current_totp(new), **proof})


def alerts_to(user, kind) -> set[tuple[str, str]]:
    return set(Delivery.objects.filter(event__kind=kind).values_list("channel", "recipient"))


def assert_not_replaced(user, old, new):
    assert list(Authenticator.objects.filter(user=user, confirmed=True)) == [old]
    assert not Authenticator.objects.get(pk=new.pk).confirmed
    assert not AuditEvent.objects.filter(kind=EventKind.AUTHENTICATOR_REPLACED,
                                         outcome=Outcome.SUCCESS).exists()


# --- Replacing the authenticator -------------------------------------------------------------

def test_replacing_without_the_password_is_refused(signed_in, member):
    old = old_device(member)
    new = start_replacement(signed_in, member)
    response = replace(signed_in, new)
    assert response.status_code == 400
    assert_not_replaced(member, old, new)


def test_replacing_with_a_wrong_password_is_refused_and_audited(signed_in, member):
    old = old_device(member)
    new = start_replacement(signed_in, member)
    response = replace(signed_in, new, password="not the password")
    assert response.status_code == 400
    assert b"password" in response.content
    assert_not_replaced(member, old, new)
    refused = AuditEvent.objects.get(kind=EventKind.SECOND_FACTOR_CHANGE_REFUSED)
    assert (refused.outcome, refused.data["change"]) == (Outcome.DENIED, "authenticator")
    assert "not the password" not in str(refused.data)


def test_replacing_without_a_fresh_second_factor_is_refused(signed_in, member):
    old = old_device(member)
    new = start_replacement(signed_in, member)
    age_step_up(signed_in, SIX_MINUTES)
    response = replace(signed_in, new, password=PASSWORD)
    assert response.status_code == 400
    assert_not_replaced(member, old, new)


def test_replacing_with_a_wrong_current_code_is_refused(signed_in, member):
    old = old_device(member)
    new = start_replacement(signed_in, member)
    age_step_up(signed_in, SIX_MINUTES)
    response = replace(signed_in, new, password=PASSWORD, current_code="000000")
    assert response.status_code in {400, 429}
    assert_not_replaced(member, old, new)


def test_password_and_current_code_replace_the_authenticator_and_tell_the_user(
        signed_in, member):
    old = old_device(member)
    new = start_replacement(signed_in, member)
    age_step_up(signed_in, SIX_MINUTES)
    response = replace(signed_in, new, password=PASSWORD,
                       current_code=current_totp(old, steps_ahead=1))
    assert response.status_code in {200, 302}
    assert list(Authenticator.objects.filter(user=member)) == [new]
    assert Authenticator.objects.get(pk=new.pk).confirmed
    event = AuditEvent.objects.get(kind=EventKind.AUTHENTICATOR_REPLACED)
    assert (event.actor_label, event.outcome) == (member.username, Outcome.SUCCESS)
    assert alerts_to(member, EventKind.AUTHENTICATOR_REPLACED) == {
        ("email", member.email), ("sms", member.mobile)}
    email = Delivery.objects.get(event=event, channel="email")
    assert email.subject == "[Breakglass] Your authenticator app was replaced"
    assert "If this was not you" in email.body
    assert "Not you?" in Delivery.objects.get(event=event, channel="sms").body


def test_a_sign_in_within_5_minutes_counts_as_the_fresh_factor(signed_in, member):
    new = start_replacement(signed_in, member)
    response = replace(signed_in, new, password=PASSWORD)
    assert response.status_code in {200, 302}
    assert list(Authenticator.objects.filter(user=member)) == [new]


def test_an_unused_backup_code_is_a_current_factor(signed_in, member):
    codes = issue_backup_codes(member, actor=None)
    new = start_replacement(signed_in, member)
    age_step_up(signed_in, SIX_MINUTES)
    response = replace(signed_in, new, password=PASSWORD, current_code=codes[0])
    assert response.status_code in {200, 302}
    assert list(Authenticator.objects.filter(user=member)) == [new]


def test_first_enrolment_needs_no_password_again(client, member):
    """A user with no confirmed factor enrols right after the password step, as before."""
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    device = start_replacement(client, member)
    response = client.post(reverse("accounts:two-factor"), {"code": current_totp(device)})
    assert response.status_code == 200 and len(response.context["codes"]) == 10
    assert Authenticator.objects.get(pk=device.pk).confirmed
    assert AuditEvent.objects.filter(kind=EventKind.DEVICE_ENROLLED).exists()
    assert not AuditEvent.objects.filter(kind=EventKind.AUTHENTICATOR_REPLACED).exists()


# --- Regenerating backup codes ---------------------------------------------------------------

def regenerate(client, **proof):
    return client.post(reverse("accounts:backup-codes"), proof)


def assert_codes_kept(user, old_codes):
    device = BackupCodeDevice.objects.get(user=user)
    assert device.unused_count() == len(old_codes)
    assert not AuditEvent.objects.filter(kind=EventKind.BACKUP_CODES_REGENERATED).exists()


def test_regenerating_backup_codes_without_the_password_is_refused(signed_in, member):
    old = issue_backup_codes(member, actor=None)
    response = regenerate(signed_in)
    assert response.status_code == 400
    assert "codes" not in (response.context or {})
    assert_codes_kept(member, old)


def test_regenerating_backup_codes_with_a_wrong_password_is_refused(signed_in, member):
    old = issue_backup_codes(member, actor=None)
    response = regenerate(signed_in, password="wrong horse")
    assert response.status_code == 400
    assert_codes_kept(member, old)


def test_regenerating_backup_codes_without_a_fresh_factor_is_refused(signed_in, member):
    old = issue_backup_codes(member, actor=None)
    age_step_up(signed_in, SIX_MINUTES)
    response = regenerate(signed_in, password=PASSWORD)
    assert response.status_code == 400
    assert_codes_kept(member, old)


def test_password_and_current_code_regenerate_backup_codes_and_tell_the_user(
        signed_in, member):
    old = issue_backup_codes(member, actor=None)
    age_step_up(signed_in, SIX_MINUTES)
    response = regenerate(signed_in, password=PASSWORD,
                          current_code=current_totp(old_device(member), steps_ahead=1))
    assert response.status_code == 200
    new = response.context["codes"]
    assert len(new) == 10 and not set(new) & set(old)
    device = BackupCodeDevice.objects.get(user=member)
    assert device.unused_count() == 10
    assert not device.verify_token(old[1])
    event = AuditEvent.objects.get(kind=EventKind.BACKUP_CODES_REGENERATED)
    assert event.actor_label == member.username
    assert alerts_to(member, EventKind.BACKUP_CODES_REGENERATED) == {
        ("email", member.email), ("sms", member.mobile)}
    for delivery in Delivery.objects.filter(event=event):
        assert not any(code in delivery.body for code in new)
        assert "new backup codes were generated" in delivery.body.lower()


def test_the_security_page_asks_for_the_proof(signed_in):
    page = signed_in.get(reverse("accounts:security")).content.decode()
    assert 'name="password"' in page and 'name="current_code"' in page


# --- Removing a user's second factor in the admin --------------------------------------------

def remove_in_admin(client, model, device, **extra):
    url = reverse(f"admin:accounts_{model._meta.model_name}_changelist")
    return client.post(url, {"action": "remove_second_factor", "index": "0",
                             "_selected_action": [device.pk], **extra})


def device_remover(verified_client, *codenames):
    from django.contrib.auth.models import Permission

    from tests.conftest import make_user

    staff = make_user("stella", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_totpdevice", "view_backupcodedevice", *codenames]))
    return staff, verified_client(staff)


def test_staff_removing_an_authenticator_with_a_fresh_code_is_audited_and_told(
        verified_client, signed_in, member):
    device = old_device(member)
    staff, client = device_remover(verified_client, "delete_totpdevice")
    asked = remove_in_admin(client, Authenticator, device)
    assert asked.status_code == 200 and b'name="code"' in asked.content
    assert Authenticator.objects.filter(pk=device.pk).exists()
    code = current_totp(old_device(staff), steps_ahead=1)
    response = remove_in_admin(client, Authenticator, device, post="yes", code=code)
    assert response.status_code == 302
    assert not Authenticator.objects.filter(pk=device.pk).exists()
    event = AuditEvent.objects.get(kind=EventKind.SECOND_FACTOR_REMOVED)
    assert (event.actor_id, event.target_id, event.data["device"]) == (
        str(staff.pk), str(member.pk), "totp")
    assert alerts_to(member, EventKind.SECOND_FACTOR_REMOVED) == {
        ("email", member.email), ("sms", member.mobile)}
    email = Delivery.objects.get(event=event, channel="email")
    assert "authenticator app was removed" in email.subject
    assert "If this was not you" in email.body


def test_staff_removing_backup_codes_is_audited_and_told(verified_client, signed_in, member):
    issue_backup_codes(member, actor=None)
    staff, client = device_remover(verified_client, "delete_backupcodedevice")
    code = current_totp(old_device(staff), steps_ahead=1)
    device = BackupCodeDevice.objects.get(user=member)
    response = remove_in_admin(client, BackupCodeDevice, device, post="yes", code=code)
    assert response.status_code == 302
    assert not BackupCodeDevice.objects.filter(user=member).exists()
    event = AuditEvent.objects.get(kind=EventKind.SECOND_FACTOR_REMOVED)
    assert event.data["device"] == "backup_codes"
    assert "backup codes were removed" in Delivery.objects.get(event=event, channel="sms").body


def test_removing_without_a_fresh_code_is_refused_and_changes_nothing(
        verified_client, signed_in, member):
    device = old_device(member)
    _, client = device_remover(verified_client, "delete_totpdevice")
    response = remove_in_admin(client, Authenticator, device, post="yes", code="000000")
    assert response.status_code == 200
    assert b"fresh one-time code" in response.content
    assert Authenticator.objects.filter(pk=device.pk, confirmed=True).exists()
    assert not AuditEvent.objects.filter(kind=EventKind.SECOND_FACTOR_REMOVED).exists()
    assert not Delivery.objects.filter(recipient=member.email).exists()


def test_staff_without_the_delete_permission_cannot_remove_a_factor(
        verified_client, signed_in, member):
    device = old_device(member)
    staff, client = device_remover(verified_client)
    code = current_totp(old_device(staff), steps_ahead=1)
    response = remove_in_admin(client, Authenticator, device, post="yes", code=code)
    assert response.status_code == 403
    assert Authenticator.objects.filter(pk=device.pk).exists()
    assert not AuditEvent.objects.filter(kind=EventKind.SECOND_FACTOR_REMOVED).exists()


def test_the_admin_no_longer_deletes_a_second_factor_silently(admin_user, signed_in, member):
    """Superusers included: bulk delete and the delete page are refused, not just hidden."""
    from tests.conftest import sign_in

    issue_backup_codes(member, actor=None)
    client = sign_in(type(signed_in)(), admin_user)
    for device in (old_device(member), BackupCodeDevice.objects.get(user=member)):
        name = device._meta.model_name
        bulk = client.post(reverse(f"admin:accounts_{name}_changelist"),
                           {"action": "delete_selected", "index": "0", "post": "yes",
                            "_selected_action": [device.pk]})
        page = client.post(reverse(f"admin:accounts_{name}_delete", args=[device.pk]),
                           {"post": "yes"})
        assert (bulk.status_code, page.status_code) == (403, 403)
        assert type(device).objects.filter(pk=device.pk).exists()


def test_the_admin_cannot_unconfirm_a_backup_code_set(admin_user, signed_in, member):
    """An unconfirmed set no longer counts as a factor: that would be a removal too."""
    from tests.conftest import sign_in

    issue_backup_codes(member, actor=None)
    device = BackupCodeDevice.objects.get(user=member)
    client = sign_in(type(signed_in)(), admin_user)
    client.post(reverse("admin:accounts_backupcodedevice_change", args=[device.pk]),
                {"name": "Backup codes"})
    assert BackupCodeDevice.objects.get(pk=device.pk).confirmed
