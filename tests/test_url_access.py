"""Deny by default (SPEC §1, QUALITY Q11): every URL is classified here, and an unclassified
URL fails the suite. The classification is then checked against the running app."""

import sys
import types

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, path, reverse

from tests.conftest import PASSWORD, add_authenticator

pytestmark = pytest.mark.django_db

PUBLIC = "public"  # anyone
SIGN_IN = "sign-in stage"  # a password-authenticated user, second factor not yet given
VERIFIED = "verified user"  # any user verified by a second factor
STAFF = "verified staff"  # the admin (django-otp's OTPAdminSite)
TOKEN = "application token"  # the JSON API: a bearer token with the operation's scope

ACCESS = {
    "home": VERIFIED,
    # Slack, PagerDuty and Opsgenie sign their calls; no session (chatops/, paging/).
    "chatops:interactions": PUBLIC,
    "chatops:link": VERIFIED,
    "chatops:unlink": VERIFIED,
    "paging:pagerduty": PUBLIC,
    "paging:opsgenie": PUBLIC,
    "healthz": PUBLIC,
    "livez": PUBLIC,
    "readyz": PUBLIC,
    # Its own bearer token or address allow-list, never a session (tests/ops/test_metrics.py).
    "metrics": PUBLIC,
    "accounts:login": PUBLIC,
    # Single sign-on starts and ends before anyone is signed in (accounts/sso.py).
    "accounts:sso-start": PUBLIC,
    "accounts:sso-callback": PUBLIC,
    "accounts:logout": SIGN_IN,
    "accounts:two-factor": SIGN_IN,
    "accounts:verify": SIGN_IN,
    "accounts:security": VERIFIED,
    "accounts:backup-codes": VERIFIED,
    "accounts:passkey-add": VERIFIED,
    "accounts:passkey-remove": VERIFIED,
    # Passkey ceremonies (accounts/passkeys.py): using one is a sign-in step; adding one needs
    # a verified session and the account page's fresh proof on top.
    "otp_webauthn:credential-authentication-begin": SIGN_IN,
    "otp_webauthn:credential-authentication-complete": SIGN_IN,
    "otp_webauthn:js-i18n-catalog": SIGN_IN,
    "otp_webauthn:credential-registration-begin": VERIFIED,
    "otp_webauthn:credential-registration-complete": VERIFIED,
    "admin:login": PUBLIC,  # only redirects to accounts:login
    # Views check their own roles (tests/breakglass/test_pages.py holds the role matrix).
    "breakglass:catalog": VERIFIED,
    "breakglass:group-detail": VERIFIED,
    "breakglass:break-glass": VERIFIED,
    "breakglass:break-glass-users": VERIFIED,
    "breakglass:my-access": VERIFIED,
    "breakglass:end-grant": VERIFIED,
    "breakglass:grant-timeline": VERIFIED,
    "breakglass:request-access": VERIFIED,
    "breakglass:request-settings": VERIFIED,
    "breakglass:request-extension": VERIFIED,
    "breakglass:request-detail": VERIFIED,
    "breakglass:approve-request": VERIFIED,
    "breakglass:deny-request": VERIFIED,
    "breakglass:withdraw-request": VERIFIED,
    "review:list": VERIFIED,
    "review:detail": VERIFIED,
    "review:abort": VERIFIED,
    "recovery:overview": VERIFIED,
    "recovery:enrol": VERIFIED,
    "recovery:start": VERIFIED,
    "recovery:kit": VERIFIED,
    "recovery:attempt": VERIFIED,
    "recovery:confirm": VERIFIED,
    "recovery:cancel": VERIFIED,
    "recovery:reveal": VERIFIED,
    # The emergency page and its narrow session check their own access (tests/backups).
    "emergency:start": PUBLIC,
    "emergency:verify": PUBLIC,
    "emergency:new-code": PUBLIC,
    "emergency:session": PUBLIC,
    "emergency:start-backup": PUBLIC,
    "emergency:download": PUBLIC,
    "emergency:handover": PUBLIC,
    "emergency:end": PUBLIC,
    "api:openapi-json": PUBLIC,
    "api:openapi-view": PUBLIC,
    "api:api-root": TOKEN,
    "api:check_access": TOKEN,
    "api:list_grants": TOKEN,
    "api:revoke": TOKEN,
    "api:break_glass": TOKEN,
    "api:audit_events": TOKEN,
    "api:replace_shifts": TOKEN,
    "api:recovery_bundle": TOKEN,
    "api:report_activity": TOKEN,
    "api:incidents": TOKEN,
    "api:requests": TOKEN,
    "api:request": TOKEN,
    "api:approve_request": TOKEN,
    "api:deny_request": TOKEN,
    "api:withdraw_request": TOKEN,
    "api:groups": TOKEN,
    "api:group": TOKEN,
    # Every other path under /api/: a JSON 404 or a problem type's description (api/views.py).
    "api-fallback": PUBLIC,
    "scim:endpoint": TOKEN,
}
NAMESPACE_ACCESS = {"admin": STAFF}
SAMPLE_KWARGS = {"app_label": "accounts", "content_type_id": 1, "object_id": "1",
                 "slug": "some-group", "grant_id": 1, "request_id": 1, "attempt_id": 1,
                 "policy_id": 1, "job_id": 1, "review_id": 1, "token": "not-a-token",
                 "kind": "grant", "fmt": "json"}


def walk(patterns, namespace=""):
    """Yield (view name, pattern) for every URL pattern, as resolver_match.view_name sees it."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern):
            yield namespace + (entry.name or entry.lookup_str), entry


def classify(view_name: str) -> str | None:
    if view_name in ACCESS:
        return ACCESS[view_name]
    return NAMESPACE_ACCESS.get(view_name.split(":", 1)[0]) if ":" in view_name else None


def unclassified(urlconf=None) -> list[str]:
    return [name for name, _ in walk(get_resolver(urlconf).url_patterns) if classify(name) is None]


def sample_url(name: str) -> str | None:
    pattern = dict(walk(get_resolver().url_patterns))[name]
    params = set(pattern.pattern.regex.groupindex)
    try:
        return reverse(name, kwargs={key: SAMPLE_KWARGS.get(key, "1") for key in params})
    except NoReverseMatch:
        return None


# Every URL that can be reversed with sample arguments is probed below; the admin's few
# unnamed redirect views cannot be, and stay covered by their namespace's classification.
PROBES = [
    (name, url)
    for name, url in ((n, sample_url(n)) for n, _ in walk(get_resolver().url_patterns))
    if url is not None
]


def test_every_url_is_classified():
    assert unclassified() == [], (
        "Unclassified URLs: add each to ACCESS in tests/test_url_access.py, and to "
        "settings.PUBLIC_URLS only if anonymous visitors truly need it."
    )


def test_a_new_url_without_a_classification_is_caught():
    module = types.ModuleType("tests_extra_urls")
    new_page = path("new-page/", lambda request: None, name="new")
    module.urlpatterns = [*get_resolver().url_patterns, new_page]
    sys.modules[module.__name__] = module
    try:
        assert unclassified(module.__name__) == ["new"]
    finally:
        del sys.modules[module.__name__]


def test_settings_lists_agree_with_the_classification():
    names = [name for name, _ in walk(get_resolver().url_patterns)]
    assert set(settings.PUBLIC_URLS) == {n for n in names if classify(n) == PUBLIC}
    assert set(settings.SIGN_IN_STAGE_URLS) == {n for n in names if classify(n) == SIGN_IN}


@pytest.mark.parametrize(("name", "url"), PROBES)
def test_anonymous_visitors_reach_only_public_urls(client, name, url):
    cache.clear()  # the API's failure throttle counts per address across these probes
    response = client.get(url)
    login = reverse("accounts:login")
    redirected_to_login = response.status_code == 302 and response["Location"].startswith(login)
    if classify(name) == PUBLIC:
        assert not redirected_to_login or name == "admin:login"
    elif classify(name) == TOKEN:
        method = {"api:revoke": "POST", "api:break_glass": "POST", "api:report_activity": "POST",
                  "api:incidents": "POST", "api:approve_request": "POST",
                  "api:deny_request": "POST", "api:withdraw_request": "POST",
                  "api:replace_shifts": "PUT"}.get(name, "GET")
        response = client.generic(method, url, "{}", content_type="application/json")
        assert response.status_code in {401, 404}, (name, response.status_code)
        if response.status_code == 401 and name.startswith("scim:"):
            # SCIM answers in its own error format (RFC 7644 §3.12).
            assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
            assert response["WWW-Authenticate"].startswith("Bearer")
        elif response.status_code == 401:
            assert response["Content-Type"] == "application/problem+json"
            assert response.json()["detail"] == "A valid bearer token is required."
    else:
        assert redirected_to_login, f"{name} ({url}) answered {response.status_code} to anonymous"


@pytest.mark.parametrize(
    ("name", "url"), [(n, u) for n, u in PROBES if classify(n) in {VERIFIED, STAFF}]
)
def test_a_password_without_second_factor_reaches_no_protected_url(client, member, name, url):
    add_authenticator(member)
    client.post(reverse("accounts:login"), {"username": member.username, "password": PASSWORD})
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))


@pytest.mark.parametrize(("name", "url"), [(n, u) for n, u in PROBES if classify(n) == STAFF])
def test_verified_non_staff_users_are_refused_by_the_admin(verified_client, member, name, url):
    response = verified_client(member).get(url, follow=True)
    assert response.status_code in {403, 404}


def test_settings_exempt_only_the_token_authenticated_api_from_sessions():
    names = [name for name, _ in walk(get_resolver().url_patterns)]
    token_names = {n for n in names if classify(n) == TOKEN}
    assert {n.split(":")[0] for n in token_names} == set(settings.TOKEN_AUTH_NAMESPACES)
