"""Paging settings in the admin: secrets write-only, stored encrypted or hashed, and set or
replaced only with a fresh one-time code (audited); every change kept in exactly one history
row with the staff member who made it."""

import pytest
from django.urls import reverse

from accounts.models import TOTPDevice
from audit.catalogue import EventKind
from audit.models import AuditEvent
from breakglass.tokens import hash_token
from paging.models import PrioritySeverity, ServiceLink, Source, Subscription
from paging.signatures import opsgenie_token_accepted, pagerduty_signature, pagerduty_signed
from recovery.crypto import decrypt_field
from recovery.models import RecoveryPolicy
from tests.conftest import current_totp
from tests.paging.conftest import OPSGENIE_TOKEN, PAGERDUTY_SECRET

pytestmark = pytest.mark.django_db

SECRET = "pagerduty-signing-secret-" + "9" * 40
BODY = b'{"event": {"id": "01DEN4HPBQAJ5UYIGMCSZ2T8PK"}}'
SUBSCRIPTIONS = [("pagerduty", PAGERDUTY_SECRET), ("opsgenie", OPSGENIE_TOKEN)]


@pytest.fixture
def admin_client(verified_client, admin_user):
    return verified_client(admin_user)


def fresh_code(user) -> str:
    """The authenticator's next code: the sign-in used the current one."""
    return current_totp(TOTPDevice.objects.get(user=user), steps_ahead=1)


def subscription_form(**fields) -> dict:
    return {"name": "Production", "slug": "production", "source": "pagerduty",
            "enabled": "on", "default_severity": "sev3", "secret": SECRET, "_save": "Save",
            **fields}


def change_url(subscription: Subscription) -> str:
    return reverse("admin:paging_subscription_change", args=[subscription.pk])


def secret_events(kind: str):
    return AuditEvent.objects.filter(kind=kind, target_type="paging.subscription")


def authenticates(subscription: Subscription, secret: str) -> bool:
    """Whether a delivery signed with (PagerDuty) or bearing (Opsgenie) `secret` is taken."""
    subscription.refresh_from_db()
    if subscription.source == Source.PAGERDUTY:
        return pagerduty_signed(subscription, BODY, pagerduty_signature(secret, BODY))
    return opsgenie_token_accepted(subscription, f"Bearer {secret}")


def test_a_pagerduty_secret_is_stored_encrypted_and_never_shown_again(admin_client,
                                                                      admin_user):
    response = admin_client.post(reverse("admin:paging_subscription_add"),
                                 subscription_form(code=fresh_code(admin_user)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    subscription = Subscription.objects.get()
    assert SECRET not in subscription.secret_encrypted
    assert decrypt_field(subscription.secret_encrypted) == SECRET
    page = admin_client.get(reverse("admin:paging_subscription_change",
                                    args=[subscription.pk]))
    assert page.status_code == 200
    assert SECRET.encode() not in page.content
    assert subscription.secret_encrypted.encode() not in page.content
    version = subscription.history.get()
    assert version.history_user == admin_user
    assert not hasattr(version, "secret_encrypted")
    event = secret_events(EventKind.APPLICATION_CREATED).get()
    assert event.actor_id == str(admin_user.pk) and event.target_id == str(subscription.pk)
    assert event.data["secret"] == "signing secret"
    assert SECRET not in str(event.data) and subscription.secret_encrypted not in str(event.data)


def test_saving_without_a_secret_needs_no_code_and_keeps_the_stored_one(admin_client,
                                                                        pagerduty):
    stored = pagerduty.secret_encrypted
    response = admin_client.post(change_url(pagerduty),
                                 subscription_form(secret="", enabled=""))
    assert response.status_code == 302
    pagerduty.refresh_from_db()
    assert (pagerduty.secret_encrypted, pagerduty.enabled) == (stored, False)
    assert pagerduty.history.count() == 2
    assert not secret_events(EventKind.TOKEN_ROTATED).exists()


def test_an_opsgenie_token_is_stored_as_a_hash(admin_client, admin_user):
    token = "an-opsgenie-token-" + "x" * 30
    admin_client.post(reverse("admin:paging_subscription_add"), subscription_form(
        name="Operations", slug="operations", source="opsgenie", secret=token,
        code=fresh_code(admin_user)))
    subscription = Subscription.objects.get()
    assert subscription.token_hash == hash_token(token) and not subscription.secret_encrypted
    assert secret_events(EventKind.APPLICATION_CREATED).get().data["secret"] == "token"


@pytest.mark.parametrize("code", ["", "000000"], ids=["no code", "wrong code"])
def test_adding_a_subscription_without_a_fresh_code_adds_nothing(admin_client, code):
    response = admin_client.post(reverse("admin:paging_subscription_add"),
                                 subscription_form(code=code))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["code"]
    assert b"fresh one-time code" in response.content
    assert not Subscription.objects.exists()
    assert not secret_events(EventKind.APPLICATION_CREATED).exists()


@pytest.mark.parametrize(("fixture", "old"), SUBSCRIPTIONS, ids=["pagerduty", "opsgenie"])
@pytest.mark.parametrize("code", ["", "000000"], ids=["no code", "wrong code"])
def test_replacing_a_secret_without_a_fresh_code_changes_nothing(admin_client, request,
                                                                 fixture, old, code):
    subscription = request.getfixturevalue(fixture)
    stored = (subscription.secret_encrypted, subscription.token_hash)
    response = admin_client.post(change_url(subscription), subscription_form(
        name=subscription.name, slug=subscription.slug, source=subscription.source,
        secret=SECRET, code=code))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["code"]
    subscription.refresh_from_db()
    assert (subscription.secret_encrypted, subscription.token_hash) == stored
    assert authenticates(subscription, old) and not authenticates(subscription, SECRET)
    assert subscription.history.count() == 1
    assert not secret_events(EventKind.TOKEN_ROTATED).exists()


@pytest.mark.parametrize(("fixture", "old"), SUBSCRIPTIONS, ids=["pagerduty", "opsgenie"])
def test_replacing_a_secret_with_a_fresh_code_is_kept_in_history_and_audited(
        admin_client, admin_user, request, fixture, old):
    subscription = request.getfixturevalue(fixture)
    response = admin_client.post(change_url(subscription), subscription_form(
        name=subscription.name, slug=subscription.slug, source=subscription.source,
        secret=SECRET, code=fresh_code(admin_user)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert authenticates(subscription, SECRET) and not authenticates(subscription, old)
    assert subscription.history.count() == 2
    assert subscription.history.first().history_user == admin_user
    event = secret_events(EventKind.TOKEN_ROTATED).get()
    assert (event.actor_id, event.target_id) == (str(admin_user.pk), str(subscription.pk))
    assert event.data == {"source": subscription.source, "subscription": subscription.slug,
                          "secret": "signing secret" if fixture == "pagerduty" else "token"}


@pytest.mark.parametrize("secret", ["", "too-short"])
def test_a_new_subscription_needs_a_long_enough_secret(admin_client, secret):
    response = admin_client.post(reverse("admin:paging_subscription_add"),
                                 subscription_form(secret=secret))
    assert response.status_code == 200
    assert "secret" in response.context["adminform"].form.errors
    assert not Subscription.objects.exists()


def test_the_priority_table_and_service_links_keep_their_history(admin_client, admin_user,
                                                                 armed):
    row = PrioritySeverity.objects.get(source=Source.OPSGENIE, priority="P3")
    response = admin_client.post(reverse("admin:paging_priorityseverity_change", args=[row.pk]),
                                 {"source": "opsgenie", "priority": "P3", "severity": "sev2",
                                  "_save": "Save"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.severity == "sev2"
    assert row.history.first().history_user == admin_user

    response = admin_client.post(reverse("admin:paging_servicelink_add"), {
        "source": "pagerduty", "key": "PF9KMXH", "description": "API Service",
        "groups": [armed.pk], "policies": [], "_save": "Save"})
    assert response.status_code == 302
    link = ServiceLink.objects.get()
    assert list(link.groups.all()) == [armed]
    version = link.history.get()
    assert (version.history_type, version.history_user) == ("+", admin_user)
    assert list(version.groups.values_list("group_id", flat=True)) == [armed.pk]
    assert admin_client.get(reverse("admin:paging_servicelink_changelist")).status_code == 200


def link_form(**fields) -> dict:
    return {"source": "pagerduty", "key": "PF9KMXH", "description": "API Service",
            "groups": [], "policies": [], "_save": "Save", **fields}


def test_each_admin_change_of_a_service_link_writes_exactly_one_history_row(
        admin_client, admin_user, armed, database, owner):
    policy = RecoveryPolicy.objects.create(name="Root", slug="root", first_user=owner)
    link = ServiceLink.objects.create(source=Source.PAGERDUTY, key="PF9KMXH",
                                      description="API Service")
    link.groups.add(armed)
    url = reverse("admin:paging_servicelink_change", args=[link.pk])
    before = link.history.count()

    response = admin_client.post(url, link_form(groups=[database.pk],
                                                policies=[policy.pk]))
    assert response.status_code == 302
    assert link.history.count() == before + 1
    version = link.history.first()
    assert (version.history_type, version.history_user) == ("~", admin_user)
    assert list(version.groups.values_list("group_id", flat=True)) == [database.pk]
    assert list(version.policies.values_list("recoverypolicy_id", flat=True)) == [policy.pk]
    assert list(link.groups.all()) == [database] and list(link.policies.all()) == [policy]

    response = admin_client.post(url, link_form(groups=[database.pk], policies=[policy.pk]))
    assert response.status_code == 302
    assert link.history.count() == before + 1  # saved unchanged: no change, no row
