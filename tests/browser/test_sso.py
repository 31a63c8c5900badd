"""Single sign-on in Chromium through the real test provider (tests/idp/ on 127.0.0.1; the
app's live server on localhost, so the two keep their own cookies): a person whose provider
asserted a second factor lands in the catalog with the roles the claim mapping gives; while
the provider is down, single sign-on says so plainly, the local login serves only the accounts
allowed to use it, and each use alerts the security reviewers."""

import re

import pytest
from django.core import mail

from accounts import sso
from accounts.models import User
from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import relay_if_due
from breakglass.models import ClaimMapping, Group
from demo.organisation import seed_demo
from tests.accounts.idp_server import identity_provider  # noqa: F401 (a fixture)
from tests.conftest import PASSWORD, add_authenticator, current_totp, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCAL_LOGIN_ALERT = "The local password login was used while single sign-on is configured"


@pytest.fixture
def single_sign_on(settings, identity_provider):  # noqa: F811 (the fixture imported above)
    """The demo organisation, signing in through the test provider."""
    seed_demo(PASSWORD)
    settings.OIDC_ISSUER = identity_provider.issuer
    settings.OIDC_RP_CLIENT_ID = identity_provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = identity_provider.client_secret
    settings.OIDC_CREATE_USER = True
    return identity_provider


def your_access(page, group_name: str) -> str:
    row = page.get_by_role("row", name=re.compile(re.escape(group_name)))
    # The phone layout stacks the cell's badge and words on separate lines.
    return " ".join(row.locator('td[data-label="Your access"]').inner_text().split())


def sign_in_locally(page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()


def test_a_person_signs_in_through_the_provider_with_the_roles_the_mapping_gives(
        live_server, page, single_sign_on):
    staging = Group.objects.get(slug="staging")
    ClaimMapping.objects.create(claim_value="breakglass-responders",
                                role=ClaimMapping.Role.GROUP_MEMBER, group=staging)
    ClaimMapping.objects.create(claim_value="breakglass-responders",
                                role=ClaimMapping.Role.SECURITY_REVIEWER)
    ClaimMapping.objects.create(claim_value="platform-admins", role=ClaimMapping.Role.STAFF)

    page.goto(f"{live_server.url}/accounts/login/")
    assert page.get_by_text("Break-glass local login").is_visible()
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/login/"))
    page.get_by_label("Username").fill("sso-mfa")
    page.get_by_label("Password").fill(single_sign_on.password("sso-mfa"))
    page.get_by_role("button", name="Sign in to the provider").click()

    # The provider asserted mfa: no second factor is asked here.
    page.wait_for_url(re.compile(r"/catalog/$"))
    assert page.get_by_text("Sign out (sso-mfa)").is_visible()
    assert your_access(page, "Staging environment") == "Active member"
    assert your_access(page, "Production database (admin role)") == "None"
    navigation = page.get_by_role("navigation", name="Main")
    assert navigation.get_by_role("link", name="Reviews").is_visible()
    assert navigation.get_by_role("link", name="Admin").count() == 0

    person = User.objects.get(username="sso-mfa")
    assert list(person.member_groups.values_list("slug", flat=True)) == ["staging"]
    assert person.is_security_reviewer and not person.is_staff
    assert AuditEvent.objects.get(kind=EventKind.SSO_SIGN_IN).actor_id == str(person.pk)
    assert AuditEvent.objects.get(kind=EventKind.SSO_ROLES_CHANGED).data["added"] == [
        "Member of a catalog group staging", "Security reviewer"]


def test_with_the_provider_down_an_allowed_account_signs_in_locally_and_reviewers_hear(
        live_server, page, single_sign_on, monkeypatch):
    alice = User.objects.get(username="alice")  # the demo allows her the local login
    device = add_authenticator(alice)
    make_user("everyday")  # signs in through the provider only
    # A discovery document kept from before the outage must not send the browser on to the
    # stopped provider (its own connection error page): the start looks the provider up.
    sso.discovery()
    mail.outbox.clear()
    sms.outbox.clear()

    with single_sign_on.down():
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_role("link", name="Sign in with single sign-on").click()
        page.wait_for_url(re.compile(r"/accounts/login/$"))
        assert page.get_by_text("Single sign-on did not complete: the provider could not be "
                                "reached; the local login is for break-glass accounts").is_visible()

        sign_in_locally(page, "everyday", PASSWORD)
        assert page.get_by_role("alert").get_by_text(
            "Please enter a correct username and password").is_visible()

        sign_in_locally(page, "alice", PASSWORD)
        page.get_by_label("Code").fill(current_totp(device))
        page.get_by_role("button", name="Verify").click()
        page.wait_for_url(re.compile(r"/catalog/$"))
        assert page.get_by_text("Sign out (alice)").is_visible()

    assert AuditEvent.objects.get(kind=EventKind.SSO_FAILED).reason.startswith(
        "the provider could not be reached")
    refused = AuditEvent.objects.get(kind=EventKind.LOCAL_LOGIN_REFUSED)
    assert refused.actor_id == str(User.objects.get(username="everyday").pk)
    used = AuditEvent.objects.get(kind=EventKind.LOCAL_LOGIN_USED)
    assert used.actor_id == str(alice.pk)
    relay_if_due()  # the worker's tick; the request's own nudge may have sent them already
    emailed = {address for message in mail.outbox for address in message.to
               if LOCAL_LOGIN_ALERT in message.subject}
    assert emailed == {"erin@example.org"}
    texted = {message.to for message in sms.outbox if LOCAL_LOGIN_ALERT in message.body}
    assert texted == {"+15555550105"}
