"""Passkeys beside the authenticator app and backup codes (accounts/passkeys.py): adding one
needs the account page's proof first; removing one is audited and never leaves an account
with a password alone. The ceremonies themselves run in Chromium (tests/browser/
test_passkeys.py); here, who may start them and what the pages offer."""

import os
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential

from accounts.services import (
    PASSKEY_PERMIT_SESSION_KEY,
    SecondFactorChangeRefused,
    has_confirmed_device,
    remove_passkey,
)
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from tests.conftest import PASSWORD, make_user, sign_in

pytestmark = pytest.mark.django_db

REGISTRATION_BEGIN = "otp_webauthn:credential-registration-begin"


def a_passkey(user, name="YubiKey 5") -> WebAuthnCredential:
    """A stored passkey, as a completed ceremony leaves it (the key material is not used
    here: these tests never run a ceremony)."""
    credential_id = os.urandom(32)
    return WebAuthnCredential.objects.create(
        user=user, name=name, confirmed=True, credential_id=credential_id,
        public_key=os.urandom(77), sign_count=0, aaguid="00000000-0000-0000-0000-000000000000",
        credential_id_sha256=WebAuthnCredential.get_credential_id_sha256(credential_id))


@pytest.fixture
def alice(db):
    return make_user("alice")


def begin_registration(client):
    return client.post(reverse(REGISTRATION_BEGIN), "{}", content_type="application/json")


def test_a_passkey_cannot_be_added_without_the_account_page_proof(client, alice):
    sign_in(client, alice)
    refused = begin_registration(client)
    assert refused.status_code == 403
    assert refused.json()["code"] == "passkey_registration_not_allowed"


def test_the_password_opens_five_minutes_to_add_one(client, alice, settings):
    settings.OTP_WEBAUTHN_RP_ID = "testserver"
    sign_in(client, alice)
    page = client.post(reverse("accounts:passkey-add"), {"passkey-password": PASSWORD})
    assert page.status_code == 200
    assert b"Create the passkey" in page.content
    options = begin_registration(client)
    assert options.status_code == 200, options.content
    assert options.json()["rp"]["id"] == "testserver"

    session = client.session
    session[PASSKEY_PERMIT_SESSION_KEY] = (timezone.now() - timedelta(minutes=6)).timestamp()
    session.save()
    assert begin_registration(client).status_code == 403


def test_a_wrong_password_opens_nothing_and_is_audited(client, alice):
    sign_in(client, alice)
    page = client.post(reverse("accounts:passkey-add"), {"passkey-password": "not it"})
    assert page.status_code == 400
    assert b"The password is not right." in page.content
    refusal = AuditEvent.objects.get(kind=EventKind.SECOND_FACTOR_CHANGE_REFUSED)
    assert refusal.data["change"] == "passkey"
    assert begin_registration(client).status_code == 403


def test_a_ceremony_needs_a_signed_in_person(client, alice):
    for name in (REGISTRATION_BEGIN, "otp_webauthn:credential-authentication-begin"):
        response = client.post(reverse(name), "{}", content_type="application/json")
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


def test_a_passkey_counts_as_a_second_factor_and_the_verify_page_offers_it(client, alice):
    passkey = a_passkey(alice)
    assert has_confirmed_device(alice)
    passkey.delete()
    sign_in(client, alice)  # adds an authenticator app
    a_passkey(alice)
    client.logout()
    client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})
    page = client.get(reverse("accounts:verify")).content.decode()
    assert 'id="passkey-verification-available-template"' in page
    assert "otp_webauthn_auth.js" in page


def test_removing_a_passkey_is_audited_and_told_to_its_owner(client, alice):
    sign_in(client, alice)
    passkey = a_passkey(alice)
    response = client.post(reverse("accounts:passkey-remove", args=[passkey.pk]),
                           {"passkey-password": PASSWORD})
    assert response.status_code == 302
    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    removed = AuditEvent.objects.get(kind=EventKind.PASSKEY_REMOVED)
    assert removed.data == {"device": "passkey", "name": "YubiKey 5"}
    assert Delivery.objects.filter(event=removed, recipient=alice.email).exists()


def test_the_last_second_factor_is_never_removed(alice):
    passkey = a_passkey(alice)
    with pytest.raises(SecondFactorChangeRefused, match="only second factor"):
        remove_passkey(passkey, actor=alice)
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    assert not AuditEvent.objects.filter(kind=EventKind.PASSKEY_REMOVED).exists()


def test_nobody_removes_another_persons_passkey(client, alice):
    bob = make_user("bob")
    passkey = a_passkey(bob)
    sign_in(client, alice)
    response = client.post(reverse("accounts:passkey-remove", args=[passkey.pk]),
                           {"passkey-password": PASSWORD})
    assert response.status_code == 404
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
