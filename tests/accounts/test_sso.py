"""Single sign-on against a real OpenID Connect provider (tests/idp/, django-oauth-toolkit on
127.0.0.1): PKCE, state and nonce; people found by `sub`; the second factor unless the
provider asserts one; every failure on the sign-in page in plain words and audited; the local
login kept as the audited break-glass login."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from django.core.exceptions import SuspiciousOperation
from django.urls import reverse

from accounts.models import User
from audit.catalogue import EventKind
from audit.models import AuditEvent, Delivery
from tests.accounts.idp_server import identity_provider  # noqa: F401 (a fixture)
from tests.conftest import PASSWORD, make_user, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def sso(settings, identity_provider):  # noqa: F811 (the fixture imported above)
    settings.OIDC_ISSUER = identity_provider.issuer
    settings.OIDC_RP_CLIENT_ID = identity_provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = identity_provider.client_secret
    settings.OIDC_CREATE_USER = True
    return identity_provider


def at_the_provider(start: str, username: str, password: str) -> str:
    """Follow the authorization request at the provider as a browser would, signing in
    there; returns the provider's answer to our callback (path and query)."""
    browser = requests.Session()
    answer = browser.get(start, allow_redirects=True, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', answer.text).group(1)
    after = parse_qs(urlsplit(answer.url).query)["next"][0]
    answer = browser.post(answer.url, data={"csrfmiddlewaretoken": token, "username": username,
                                            "password": password, "next": after},
                          headers={"Referer": answer.url}, allow_redirects=False, timeout=10)
    while answer.is_redirect:
        location = answer.headers["Location"]
        if location.startswith("http://testserver/"):
            return location.removeprefix("http://testserver")
        answer = browser.get(requests.compat.urljoin(answer.url, location),
                             allow_redirects=False, timeout=10)
    raise AssertionError(f"the provider did not answer the callback: {answer.status_code}")


def sign_in_with_sso(client, provider, username: str) -> tuple:
    start = client.get("/accounts/sso/start/?next=/access/")
    assert start.status_code == 302
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    callback = at_the_provider(start["Location"], username, provider.password(username))
    return callback, client.get(callback)


def test_first_sign_in_creates_the_account_by_sub_and_still_asks_for_a_second_factor(client,
                                                                                      sso):
    _, response = sign_in_with_sso(client, sso, "sso-alice")
    assert response.status_code == 302 and response["Location"].startswith(
        "/accounts/two-factor/verify/?next=%2Faccess%2F")
    user = User.objects.get(username="sso-alice")
    assert user.sso_subject and user.email == "sso-alice@idp.example.org"
    assert client.get("/access/").status_code == 302  # signed in, not verified yet
    event = AuditEvent.objects.get(kind=EventKind.SSO_SIGN_IN)
    assert event.actor_id == str(user.pk) and event.data["amr"] == ["pwd"]


def test_a_provider_asserting_mfa_verifies_the_session_unless_that_is_off(client, sso,
                                                                          settings):
    _, response = sign_in_with_sso(client, sso, "sso-mfa")
    assert response.status_code == 302 and response["Location"] == "/access/"
    assert client.get("/access/").status_code == 200
    client.logout()
    settings.OIDC_TRUST_IDP_MFA = False
    _, response = sign_in_with_sso(client, sso, "sso-mfa")
    assert response["Location"].startswith("/accounts/two-factor/verify/")


def test_an_account_is_found_by_sub_never_by_name(client, sso):
    sign_in_with_sso(client, sso, "sso-alice")
    subject = User.objects.get(username="sso-alice").sso_subject
    User.objects.filter(username="sso-alice").update(username="alice-renamed")
    client.logout()
    sign_in_with_sso(client, sso, "sso-alice")
    assert User.objects.filter(sso_subject=subject).count() == 1
    assert not User.objects.filter(username="sso-alice").exists()


def test_an_unknown_identity_where_creation_is_off_lands_on_the_login_page(client, sso,
                                                                           settings):
    settings.OIDC_CREATE_USER = False
    _, response = sign_in_with_sso(client, sso, "sso-stranger")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/").content.decode()
    assert "Single sign-on did not complete: no Breakglass account belongs to this" in page
    failed = AuditEvent.objects.get(kind=EventKind.SSO_FAILED)
    assert "no Breakglass account" in failed.reason
    assert not User.objects.filter(username="sso-stranger").exists()


def test_a_replayed_answer_is_refused_and_audited(client, sso):
    callback, _ = sign_in_with_sso(client, sso, "sso-alice")
    client.logout()
    replay = client.get(callback)
    assert replay.status_code == 302 and replay["Location"] == "/accounts/login/"
    assert "used already or did not start here" in client.get("/accounts/login/").content.decode()
    assert AuditEvent.objects.filter(kind=EventKind.SSO_FAILED).count() == 1


def test_a_token_for_another_application_or_issuer_is_refused(client, sso, settings):
    """A real ID token, signed by the provider, checked as if we were another application
    or expected another issuer."""
    from accounts.sso import SsoBackend, SsoFailure

    settings.OIDC_STORE_ID_TOKEN = True
    sign_in_with_sso(client, sso, "sso-alice")
    id_token = client.session["oidc_id_token"]
    nonce = jwt.decode(id_token, options={"verify_signature": False})["nonce"]
    assert SsoBackend().verify_token(id_token, nonce=nonce)["sub"]  # as issued: accepted
    settings.OIDC_RP_CLIENT_ID = "another-application"
    with pytest.raises(SsoFailure, match="issued for another application"):
        SsoBackend().verify_token(id_token, nonce=nonce)
    settings.OIDC_RP_CLIENT_ID = sso.client_id
    settings.OIDC_ISSUER = sso.issuer + "/"  # the same provider: still accepted
    SsoBackend().verify_token(id_token, nonce=nonce)
    with pytest.raises(SuspiciousOperation, match="Nonce"):
        SsoBackend().verify_token(id_token, nonce="another sign-in's nonce")
    tampered = id_token[:-4] + ("AAAA" if not id_token.endswith("AAAA") else "BBBB")
    with pytest.raises(SuspiciousOperation, match="JWS token verification failed"):
        SsoBackend().verify_token(tampered, nonce=nonce)


def test_a_code_presented_with_another_applications_credentials_is_refused(client, sso,
                                                                           settings):
    start = client.get("/accounts/sso/start/")
    callback = at_the_provider(start["Location"], "sso-alice", sso.password("sso-alice"))
    settings.OIDC_RP_CLIENT_ID = "another-application"
    response = client.get(callback)
    assert response["Location"] == "/accounts/login/"
    reason = AuditEvent.objects.get(kind=EventKind.SSO_FAILED).reason
    assert "the provider refused the sign-in code" in reason
    assert not User.objects.filter(username="sso-alice").exists()


def test_an_error_from_the_provider_is_said_plainly(client, sso):
    response = client.get("/accounts/sso/callback/?error=access_denied&state=x")
    assert response["Location"] == "/accounts/login/"
    page = html.unescape(client.get("/accounts/login/").content.decode())
    assert "Single sign-on did not complete: the provider answered 'access_denied'" in page


def test_with_sso_only_allowed_accounts_use_the_local_login_and_each_use_alerts(client, sso,
                                                                               reviewer):
    make_user("everyday")
    response = client.post("/accounts/login/", {"username": "everyday", "password": PASSWORD})
    wrong = client.post("/accounts/login/", {"username": "everyday", "password": "not it"})
    # The refusal reads like a wrong password: it never confirms the password was right.
    assert "Please enter a correct username and password" in response.content.decode()
    assert _errors(response) == _errors(wrong)
    assert not AuditEvent.objects.filter(kind=EventKind.SIGN_IN).exists()
    assert AuditEvent.objects.filter(kind=EventKind.LOCAL_LOGIN_REFUSED).count() == 1
    make_user("breakglass-admin", may_use_local_login=True)
    response = client.post("/accounts/login/", {"username": "breakglass-admin",
                                                "password": PASSWORD})
    assert response.status_code == 302
    used = AuditEvent.objects.get(kind=EventKind.LOCAL_LOGIN_USED)
    assert Delivery.objects.filter(event=used, recipient=reviewer.email).exists()


def test_without_sso_the_login_page_has_no_sso_button_and_the_routes_are_404(client):
    assert "single sign-on" not in client.get("/accounts/login/").content.decode()
    assert client.get("/accounts/sso/start/").status_code == 404
    assert client.get("/accounts/sso/callback/?code=x&state=y").status_code == 404


def test_a_provider_that_is_down_leaves_the_local_login_working(client, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"  # nothing listens on the discard port
    settings.OIDC_RP_CLIENT_ID = "breakglass"
    response = client.get("/accounts/sso/start/")
    assert response["Location"] == "/accounts/login/"
    make_user("breakglass-admin", may_use_local_login=True)
    signed_in = client.post("/accounts/login/", {"username": "breakglass-admin",
                                                 "password": PASSWORD})
    assert signed_in.status_code == 302


def test_the_groups_claim_gives_and_takes_mapped_roles(client, sso, database, reviewer):
    from breakglass.models import ClaimMapping

    responders = ClaimMapping.objects.create(claim_value="breakglass-responders",
                                             role="group_member", group=database)
    ClaimMapping.objects.create(claim_value="breakglass-responders", role="security_reviewer")
    ClaimMapping.objects.create(claim_value="platform-admins", role="staff")
    sign_in_with_sso(client, sso, "sso-alice")
    alice = User.objects.get(username="sso-alice")
    assert database.members.filter(pk=alice.pk).exists() and alice.is_security_reviewer
    assert not alice.is_staff  # the claim does not name platform-admins
    changed = AuditEvent.objects.get(kind=EventKind.SSO_ROLES_CHANGED)
    assert changed.data["added"] == ["Member of a catalog group prod-db", "Security reviewer"]
    # The mapping changes: at the next sign-in the claim no longer gives membership.
    responders.claim_value = "database-team"
    responders.save()
    client.logout()
    sign_in_with_sso(client, sso, "sso-alice")
    assert not database.members.filter(pk=alice.pk).exists()
    assert alice.is_security_reviewer
    changes = AuditEvent.objects.filter(kind=EventKind.SSO_ROLES_CHANGED).order_by("sequence")
    removed = changes.last()
    assert removed.data["removed"] == ["Member of a catalog group prod-db"]
    assert responders.history.count() == 2


def _errors(response) -> str:
    page = response.content.decode()
    return page[page.index('class="form-error"'):page.index("</div>", page.index(
        'class="form-error"'))]


def test_a_deactivated_account_is_signed_out_of_its_sso_session(client, sso):
    sign_in_with_sso(client, sso, "sso-mfa")
    assert client.get("/access/").status_code == 200
    User.objects.filter(username="sso-mfa").update(is_active=False)
    assert client.get("/access/").status_code == 302


def test_only_a_fresh_authentication_at_the_provider_counts_as_a_step_up(client, sso):
    import time

    from accounts.services import STEP_UP_SESSION_KEY
    from accounts.sso import authenticated_just_now

    sign_in_with_sso(client, sso, "sso-mfa")  # the provider checked the password just now
    assert client.session.get(STEP_UP_SESSION_KEY)
    assert authenticated_just_now({"auth_time": int(time.time()) - 30})
    assert not authenticated_just_now({"auth_time": int(time.time()) - 6 * 60})
    assert not authenticated_just_now({})  # a provider that does not say when: no step-up


def test_failed_callbacks_from_one_address_never_lock_single_sign_on(client, sso):
    for _ in range(6):  # more than AXES_FAILURE_LIMIT answers with codes the provider refuses
        start = client.get("/accounts/sso/start/")
        state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
        client.get(f"/accounts/sso/callback/?code=forged&state={state}")
    _, response = sign_in_with_sso(client, sso, "sso-mfa")
    assert response.status_code == 302 and response["Location"] == "/access/"


def test_no_groups_claim_takes_nothing_away(database, member):
    from breakglass.models import ClaimMapping
    from breakglass.services.claims import apply_claims

    ClaimMapping.objects.create(claim_value="dba", role="group_member", group=database)
    database.members.add(member)
    assert apply_claims(member, {"sub": "x"}) == {"added": [], "removed": []}
    assert database.members.filter(pk=member.pk).exists()
    assert apply_claims(member, {"sub": "x", "groups": []})["removed"] == [
        "Member of a catalog group prod-db"]


def test_a_link_to_the_callback_with_an_error_never_signs_a_responder_out(client, sso):
    """Anyone may send a responder a link (or an image) to the callback with `?error=`: it
    must not end their session in the middle of an incident."""
    sign_in(client, make_user("responder", may_use_local_login=True))
    assert client.get(reverse("breakglass:my-access")).status_code == 200

    answer = client.get(reverse("accounts:sso-callback"),
                        {"error": "access_denied", "state": "forged"})

    assert answer.status_code == 302
    assert client.get(reverse("breakglass:my-access")).status_code == 200
    assert AuditEvent.objects.filter(kind=EventKind.SSO_FAILED).exists()


def test_a_discovery_document_missing_an_endpoint_is_a_plain_refusal(client, sso, monkeypatch):
    from accounts import sso as relying_party

    start = client.get("/accounts/sso/start/")
    callback = at_the_provider(start["Location"], "sso-alice", sso.password("sso-alice"))
    complete = relying_party.discovery()
    monkeypatch.setattr(relying_party, "discovery", lambda **_: {
        key: value for key, value in complete.items() if key != "jwks_uri"})

    answer = client.get(callback)

    assert answer.status_code == 302 and answer["Location"] == "/accounts/login/"
    page = html.unescape(client.get("/accounts/login/").content.decode())
    assert "the provider's discovery document names no jwks_uri" in page


def test_an_expired_unsigned_or_endless_id_token_is_refused(client, sso, settings):
    """Tokens made with the provider's own signing key (the test provider's, which the
    fixture generated): as issued, accepted; expired, without an expiry, or unsigned, not."""
    import time

    from accounts.sso import SsoBackend, SsoFailure

    settings.OIDC_STORE_ID_TOKEN = True
    sign_in_with_sso(client, sso, "sso-alice")
    id_token = client.session["oidc_id_token"]
    kid = jwt.get_unverified_header(id_token)["kid"]
    claims = jwt.decode(id_token, options={"verify_signature": False})
    key = sso.env["IDP_SIGNING_KEY"]

    def token(claims_now: dict, algorithm: str = "RS256") -> str:
        return jwt.encode(claims_now, key if algorithm != "none" else None,
                          algorithm=algorithm, headers={"kid": kid})

    assert SsoBackend().verify_token(token(claims), nonce=claims["nonce"])["sub"]
    expired = {**claims, "exp": int(time.time()) - 60}
    endless = {name: value for name, value in claims.items() if name != "exp"}
    for refused in (token(expired), token(endless), token(claims, "none")):
        with pytest.raises((SuspiciousOperation, jwt.PyJWTError, SsoFailure)):
            SsoBackend().verify_token(refused, nonce=claims["nonce"])
