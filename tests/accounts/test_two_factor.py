import pytest
from django.db import connection
from django.urls import reverse

from accounts.models import BackupCode, BackupCodeDevice, TOTPDevice
from accounts.services import issue_backup_codes
from tests.conftest import PASSWORD, add_authenticator, current_totp

pytestmark = pytest.mark.django_db


def password_only(client, user):
    response = client.post(
        reverse("accounts:login"), {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def test_first_sign_in_without_a_device_goes_to_enrolment(client, member):
    password_only(client, member)
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:two-factor"))


def test_enrolment_shows_a_qr_code_and_gives_ten_backup_codes_once(client, member):
    password_only(client, member)
    page = client.get(reverse("accounts:two-factor"))
    assert page.status_code == 200
    assert b"data:image/svg+xml" in page.content
    device = TOTPDevice.objects.get(user=member, confirmed=False)

    response = client.post(reverse("accounts:two-factor"), {"code": current_totp(device)})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    codes = response.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(reverse("accounts:security")).status_code == 200


def test_reloading_the_enrolment_page_keeps_the_same_pending_key(client, member):
    password_only(client, member)
    client.get(reverse("accounts:two-factor"))
    client.get(reverse("accounts:two-factor"))
    assert TOTPDevice.objects.filter(user=member).count() == 1


def test_enrolment_with_a_wrong_code_does_not_confirm_the_device(client, member):
    password_only(client, member)
    client.get(reverse("accounts:two-factor"))
    response = client.post(reverse("accounts:two-factor"), {"code": "12345"})
    assert response.status_code == 400
    assert b"Enter the 6 digits" in response.content
    assert not TOTPDevice.objects.filter(user=member, confirmed=True).exists()


def test_a_password_alone_cannot_enrol_a_new_device_once_one_exists(client, member):
    add_authenticator(member)
    password_only(client, member)
    response = client.get(reverse("accounts:two-factor"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))
    assert not TOTPDevice.objects.filter(user=member, confirmed=False).exists()


def test_a_password_alone_cannot_enrol_after_every_backup_code_is_used(client, member):
    device = BackupCodeDevice.objects.create(user=member, name="Backup codes", confirmed=True)
    assert device.unused_count() == 0
    password_only(client, member)
    response = client.get(reverse("accounts:two-factor"))
    assert response["Location"].startswith(reverse("accounts:verify"))


def test_verified_user_can_replace_the_authenticator(verified_client, member):
    issue_backup_codes(member, actor=member)
    client = verified_client(member)
    old = TOTPDevice.objects.get(user=member, confirmed=True)
    client.get(reverse("accounts:two-factor"))
    new = TOTPDevice.objects.get(user=member, confirmed=False)
    response = client.post(reverse("accounts:two-factor"),
                           {"code": current_totp(new), "password": PASSWORD})
    assert response.status_code == 302
    assert list(TOTPDevice.objects.filter(user=member).values_list("pk", flat=True)) == [new.pk]
    assert not TOTPDevice.objects.filter(pk=old.pk).exists()


def test_backup_codes_are_stored_only_as_keyed_hashes(member):
    codes = issue_backup_codes(member, actor=member)
    digests = list(BackupCode.objects.values_list("digest", flat=True))
    assert len(digests) == 10
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_backupcode")
        dump = repr(cursor.fetchall())
    for code in codes:
        assert code not in dump
        assert code.replace("-", "") not in dump


def test_a_backup_code_signs_in_once_and_is_refused_on_replay(client, member):
    codes = issue_backup_codes(member, actor=member)
    password_only(client, member)
    response = client.post(reverse("accounts:verify"), {"code": codes[0].upper()})
    assert response.status_code == 302
    client.post(reverse("accounts:logout"))

    password_only(client, member)
    response = client.post(reverse("accounts:verify"), {"code": codes[0]})
    assert response.status_code in {400, 429}
    assert client.get(reverse("accounts:security")).status_code == 302


def test_new_backup_codes_replace_the_old_ones(verified_client, member):
    old = issue_backup_codes(member, actor=member)
    client = verified_client(member)
    response = client.post(reverse("accounts:backup-codes"), {"password": PASSWORD})
    assert response.status_code == 200
    new = response.context["codes"]
    device = BackupCodeDevice.objects.get(user=member)
    assert device.unused_count() == 10
    assert not device.verify_token(old[1])
    device.refresh_from_db()
    device.throttle_reset()
    assert device.verify_token(new[1])


def test_repeated_wrong_codes_are_throttled_with_429(client, member):
    add_authenticator(member)
    password_only(client, member)
    statuses = [
        client.post(reverse("accounts:verify"), {"code": "000000"}).status_code for _ in range(3)
    ]
    assert statuses[0] == 400
    assert 429 in statuses[1:]
    assert b"Too many wrong codes" in client.post(
        reverse("accounts:verify"), {"code": "000000"}
    ).content


def test_a_totp_code_cannot_be_replayed(client, member):
    device = add_authenticator(member)
    code = current_totp(device)
    password_only(client, member)
    assert client.post(reverse("accounts:verify"), {"code": code}).status_code == 302
    client.post(reverse("accounts:logout"))
    password_only(client, member)
    assert client.post(reverse("accounts:verify"), {"code": code}).status_code in {400, 429}
