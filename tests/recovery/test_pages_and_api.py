"""The recovery pages, the configuration page in the admin and the bundle endpoint."""

import json

import pytest
from django.urls import reverse

from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.models import Application
from recovery import crypto, services
from recovery.models import RecoveryAttempt, RecoveryPolicy
from tests.conftest import current_totp, make_user, sign_in
from tests.recovery.helpers import root_policy

pytestmark = pytest.mark.django_db

SECRET = "root-password-for-the-page-tests-41"


@pytest.fixture
def policy(pair):
    return root_policy(pair, secret=SECRET, name="Root", slug="root")


def fresh(user) -> str:
    return current_totp(user.totpdevice_set.get(), steps_ahead=1)


def test_start_and_confirm_through_the_pages(client, policy, pair):
    alice, bob = pair
    sign_in(client, alice)
    assert b"Start break-glass recovery" in client.get(reverse("recovery:overview")).content
    response = client.post(reverse("recovery:start", args=["root"]),
                           {"reason": "SSO down", "code": fresh(alice)})
    attempt = RecoveryAttempt.objects.get()
    assert response["Location"] == reverse("recovery:attempt", args=[attempt.pk])
    page = client.get(response["Location"])
    assert b"1 of 2 needed" in page.content and SECRET.encode() not in page.content
    assert "no-store" in page["Cache-Control"]

    bobs = sign_in(type(client)(), bob)
    done = bobs.post(reverse("recovery:confirm", args=[attempt.pk]), {"code": fresh(bob)})
    assert done.status_code == 302
    page = bobs.get(reverse("recovery:attempt", args=[attempt.pk]))
    assert SECRET.encode() not in page.content and b"Show credentials" in page.content
    shown = bobs.post(reverse("recovery:reveal", args=[attempt.pk]))
    assert SECRET.encode() in shown.content and "no-store" in shown["Cache-Control"]
    twice = bobs.post(reverse("recovery:confirm", args=[attempt.pk]), {"code": fresh(bob)})
    assert twice.status_code == 409 and b"already confirmed" in twice.content


def test_strangers_get_404_for_policies_and_attempts(client, policy, pair):
    alice, _ = pair
    attempt = services.start_attempt(policy, actor=alice, reason="x",
                                     code=current_totp(alice.totpdevice_set.get()))
    sign_in(client, make_user("mallory"))
    assert client.get(reverse("recovery:attempt", args=[attempt.pk])).status_code == 404
    assert client.post(reverse("recovery:confirm", args=[attempt.pk]),
                       {"code": "123456"}).status_code == 404
    assert client.post(reverse("recovery:cancel", args=[attempt.pk])).status_code == 404
    assert client.post(reverse("recovery:start", args=["root"]),
                       {"reason": "x", "code": "1"}).status_code == 404
    assert client.get(reverse("recovery:kit", args=["root"])).status_code == 404
    assert b"No recovery policy names you" in client.get(reverse("recovery:overview")).content


def test_enrolment_needs_matching_passphrases_and_a_fresh_code(client, db):
    dave = make_user("dave")
    sign_in(client, dave)
    url = reverse("recovery:enrol")
    mismatch = client.post(url, {"passphrase": "one long passphrase", "again": "another one",
                                 "code": fresh(dave)})
    assert mismatch.status_code == 400 and b"differ" in mismatch.content
    short = client.post(url, {"passphrase": "short", "again": "short", "code": fresh(dave)})
    assert short.status_code == 400
    ok = client.post(url, {"passphrase": "one long passphrase", "again": "one long passphrase",
                           "code": fresh(dave)})
    assert ok.status_code == 302
    assert dave.recovery_enrolment.public_key
    assert AuditEvent.objects.filter(kind=EventKind.RECOVERY_ENROLLED).count() == 1


def test_the_kit_names_holders_and_fingerprints_without_secrets(client, policy, pair):
    sign_in(client, pair[0])
    page = client.get(reverse("recovery:kit", args=["root"])).content.decode()
    bundle = services.current_bundle(policy)
    assert bundle.fingerprint in page and "alice" in page and "bob" in page
    assert SECRET not in page


def test_only_the_policys_own_enabled_application_fetches_the_bundle(client, policy, pair):
    alice, _ = pair
    token = services.generate_token(policy, actor=alice)
    policy.refresh_from_db()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    response = client.get("/api/v1/recovery/root/bundle", **headers)
    assert response.status_code == 200
    document = crypto.verify_bundle(response.content)
    assert document["policy"] == "root" and SECRET.encode() not in response.content
    assert crypto.open_bundle(document, [("alice", "alice recovery passphrase"),
                                         ("bob", "bob recovery passphrase")])[0]["secret"] == SECRET
    # Another application, even with the scope: 403, audited.
    from breakglass.models import Scope
    from breakglass.services.applications import create_application

    _, other = create_application("other", [Scope.RECOVERY_BUNDLE], actor=None)
    assert client.get("/api/v1/recovery/root/bundle",
                      HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 403
    # A regenerated token stops the old one on the next request.
    new_token = services.generate_token(policy, actor=alice)
    assert client.get("/api/v1/recovery/root/bundle", **headers).status_code == 401
    assert client.get("/api/v1/recovery/root/bundle",
                      HTTP_AUTHORIZATION=f"Bearer {new_token}").status_code == 200
    # A disabled application: 403.
    Application.objects.filter(pk=policy.application_id).update(enabled=False)
    assert client.get("/api/v1/recovery/root/bundle",
                      HTTP_AUTHORIZATION=f"Bearer {new_token}").status_code == 403
    fetched = AuditEvent.objects.filter(kind=EventKind.BUNDLE_FETCHED)
    assert [event.outcome for event in fetched.order_by("sequence")] == [
        "success", "denied", "success"]


def config_form(policy, **changes) -> dict:
    data = {"name": policy.name, "slug": policy.slug, "description": "",
            "first_user": policy.first_user_id, "second_user": policy.second_user_id or "",
            "third_user": policy.third_user_id or "", "required": policy.required,
            "enabled": "on" if policy.enabled else "", "sensitivity": policy.sensitivity,
            "attempt_minutes": 60,
            "reveal_minutes": 15, "application_enabled": "",
            "credentials-TOTAL_FORMS": "0", "credentials-INITIAL_FORMS": "0",
            "credentials-MIN_NUM_FORMS": "0", "credentials-MAX_NUM_FORMS": "1000",
            "_continue": "Apply changes"}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.parametrize(("changes", "message"), [
    ({"required": 3}, b"3 required, but only 2 authorized users"),
    ({"second_user": "first"}, b"Each authorized user may appear only once"),
    ({"third_user": "carol"}, b"must set a recovery passphrase"),
])
def test_the_configuration_page_refuses_bad_settings(verified_client, admin_user, policy, pair,
                                                     changes, message):
    carol = make_user("carol")
    values = {key: {"first": policy.first_user_id, "carol": carol.pk}.get(value, value)
              for key, value in changes.items()}
    client = verified_client(admin_user)
    url = reverse("admin:recovery_recoverypolicy_change", args=[policy.pk])
    response = client.post(url, config_form(policy, **values))
    assert response.status_code == 200 and message in response.content
    policy.refresh_from_db()
    assert (policy.required, policy.third_user_id) == (2, None)


def test_the_configuration_page_shows_no_secret_and_generates_a_token_once(
        verified_client, admin_user, policy):
    client = verified_client(admin_user)
    url = reverse("admin:recovery_recoverypolicy_change", args=[policy.pk])
    page = client.get(url).content
    assert b"Apply changes" in page and b"Undo" in page and b"Generate token" in page
    assert SECRET.encode() not in page
    url_token = reverse("admin:recovery_recoverypolicy_generate_token", args=[policy.pk])
    refused = client.post(url_token, {"code": "000000"})
    assert refused.status_code == 302 and RecoveryPolicy.objects.get().application is None
    admin_user.totpdevice_set.get().throttle_reset()  # as if the back-off second had passed
    response = client.post(url_token, {"code": current_totp(
        admin_user.totpdevice_set.get(), steps_ahead=1)})
    token = json.dumps(response.content.decode())
    assert response.status_code == 200 and "bg_" in token
    policy.refresh_from_db()
    assert policy.application is not None
    assert policy.application.token_prefix in client.get(url).content.decode()
    assert policy.application.token_hash not in client.get(url).content.decode()


def test_a_bundle_that_no_longer_matches_the_policy_is_not_served(client, policy, pair):
    alice, _ = pair
    token = services.generate_token(policy, actor=alice)
    carol = make_user("carol")
    RecoveryPolicy.objects.filter(pk=policy.pk).update(second_user=carol)  # not enrolled
    response = client.get("/api/v1/recovery/root/bundle", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 409 and "out of date" in response.json()["detail"]


def test_the_admin_refuses_naming_a_user_who_has_not_enrolled_and_asks_for_a_code(
        verified_client, admin_user, policy, pair):
    carol = make_user("carol")
    client = verified_client(admin_user)
    url = reverse("admin:recovery_recoverypolicy_change", args=[policy.pk])
    response = client.post(url, config_form(policy, second_user=carol.pk, enabled=""))
    assert b"must set a recovery passphrase" in response.content
    response = client.post(url, config_form(policy, required=1))
    assert b"A fresh one-time code is needed" in response.content and b"Say why" in response.content
    code = current_totp(admin_user.totpdevice_set.get(), steps_ahead=1)
    response = client.post(url, config_form(policy, required=1, code=code, reason="one is enough"))
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.required == 1
    assert services.current_bundle(policy).version == 2  # re-issued with the change
