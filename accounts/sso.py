"""Single sign-on with the company's identity provider (OpenID Connect, through
mozilla-django-oidc): the endpoints come from OIDC_ISSUER's discovery document; every
sign-in uses PKCE (S256), a state and a nonce kept in the session once; the ID token's
signature (the provider's JWKS), audience, issuer and expiry are checked. People are
found by the provider's stable `sub`, never by name or email, and created on first sign-in
only where OIDC_CREATE_USERS allows.

The second factor still applies, unless the provider asserts one (`amr` holds mfa or hwk)
and OIDC_TRUST_IDP_MFA is on. Every failure ends on the sign-in page in plain words and is
audited (auth.sso_failed). The local password login stays for the day the provider is down
(accounts.views.SignInView)."""

import logging
import time
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from audit.catalogue import EventKind, Outcome
from audit.services import record

logger = logging.getLogger(__name__)

# mozilla-django-oidc's endpoint settings, read from the discovery document.
DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
DISCOVERY_LIFETIME_SECONDS = 3600
MFA_METHODS = {"mfa", "hwk"}
_discovered: dict[str, tuple[float, dict]] = {}


# Called with (user, claims, request) at each single sign-on, in its transaction: higher
# apps register what the claims give (breakglass maps the `groups` claim to roles).
CLAIM_HANDLERS: list = []
# Functions (claims) -> User | None naming the account the directory provisioned for this
# identity before its first single sign-on (scim/apps.py registers one). The account found
# is linked to the identity (its `sso_subject` set), audited; later sign-ins find it by `sub`.
ACCOUNT_LINKERS: list = []


class SsoFailure(Exception):
    """Why a single sign-on did not complete, in words for the person signing in."""


def configured() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def discovery(*, fresh: bool = False) -> dict:
    """The provider's discovery document, fetched once an hour (or now, when `fresh`); it
    must name OIDC_ISSUER."""
    issuer = settings.OIDC_ISSUER.rstrip("/")
    fetched = _discovered.get(issuer)
    if fetched and not fresh and time.monotonic() - fetched[0] < DISCOVERY_LIFETIME_SECONDS:
        return fetched[1]
    response = requests.get(f"{issuer}/.well-known/openid-configuration",
                            timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    document = response.json()
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise SsoFailure("the provider's discovery document names another issuer")
    _discovered[issuer] = (time.monotonic(), document)
    return document


def sso_setting(name: str, *default):
    if name in DISCOVERED:
        key = DISCOVERED[name]
        value = discovery().get(key)
        if not value:
            raise SsoFailure(f"the provider's discovery document names no {key}")
        return value
    return import_from_settings(name, *default)


def authenticated_just_now(claims: dict) -> bool:
    """Whether the provider checked the person within the step-up window (`auth_time`). A
    sign-in that reused the provider's own session proves nothing new: it verifies the
    session but is no step-up."""
    from accounts.services import STEP_UP_WINDOW

    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int | float) or isinstance(auth_time, bool):
        return False
    return 0 <= time.time() - auth_time <= STEP_UP_WINDOW.total_seconds()


def exempt_from_lockout(request, credentials) -> bool:
    """django-axes counts failures per username and address; a provider's callback has no
    username, so one address's failures would lock every colleague behind the same address
    out of single sign-on. The provider itself throttles its own sign-in."""
    return bool(credentials) and "code_verifier" in credentials


def refuse(request: HttpRequest, why: str) -> None:
    """Audit a failed single sign-on and tell the person on the sign-in page."""
    with transaction.atomic():
        record(EventKind.SSO_FAILED, actor=None, request=request, outcome=Outcome.FAILURE,
               reason=why[:1000])
    messages.error(request, f"Single sign-on did not complete: {why}")


def link_account(account, claims: dict, request: HttpRequest | None) -> bool:
    """Tie a provisioned account that has never signed on to this identity, once: False when
    another sign-on linked it meanwhile."""
    with transaction.atomic():
        linked = type(account).objects.filter(pk=account.pk, sso_subject__isnull=True).update(
            sso_subject=claims["sub"])
        if linked:
            record(EventKind.SSO_ACCOUNT_LINKED, actor=account, target=account, request=request,
                   data={"sub": str(claims["sub"])[:255]})
    return bool(linked)


class SsoBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(sso_setting)

    def __init__(self, *args, **kwargs):
        # Django builds every backend for each password sign-in and for each request of a
        # signed-in session: the provider is asked nothing here, so a provider that is down
        # never touches the local login.
        self.UserModel = get_user_model()
        self.claims: dict = {}

    OIDC_RP_SIGN_ALGO = "RS256"
    OIDC_RP_IDP_SIGN_KEY = None
    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_TOKEN_ENDPOINT"))
    OIDC_OP_USER_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_USER_ENDPOINT"))
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_JWKS_ENDPOINT"))
    OIDC_RP_CLIENT_ID = property(lambda self: settings.OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = property(lambda self: settings.OIDC_RP_CLIENT_SECRET)

    def get_user(self, user_id):
        # Each request of a signed-in session: a deactivated account is signed out at once,
        # as Django's own backend does (the library's get_user does not check).
        return ModelBackend.get_user(self, user_id)

    def authenticate(self, request, **kwargs):
        # Only the callback passes a code verifier: password sign-ins pass through.
        if request is None or not configured() or "code_verifier" not in kwargs:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except SsoFailure as failure:
            refuse(request, str(failure))
        except SuspiciousOperation as suspicious:
            refuse(request, f"the provider's answer did not check out ({suspicious})")
        except jwt.PyJWTError as invalid:
            refuse(request, f"the provider's ID token is not valid ({type(invalid).__name__})")
        except requests.RequestException as unreachable:
            status = getattr(unreachable.response, "status_code", None)
            refuse(request, "the provider refused the sign-in code (it may have been used "
                   "already)" if status else "the provider could not be reached")
        return None

    def verify_token(self, token, **kwargs):
        """The library checks the signature, algorithm, expiry and nonce; the audience and
        the issuer are checked here (OIDC Core 3.1.3.7)."""
        payload = super().verify_token(token, **kwargs)
        if not isinstance(payload.get("exp"), int | float):
            # PyJWT checks an expiry only when there is one; an ID token must have one.
            raise SsoFailure("the ID token has no expiry")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SsoFailure("the ID token was issued for another application (audience)")
        if len(audiences) > 1 and payload.get("azp") != settings.OIDC_RP_CLIENT_ID:
            raise SsoFailure("the ID token names another authorized party (azp)")
        if str(payload.get("iss", "")).rstrip("/") != settings.OIDC_ISSUER.rstrip("/"):
            raise SsoFailure("the ID token was issued by another provider (issuer)")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SsoFailure("the provider described another person than its ID token")
        # The ID token's own claims (amr, auth_time) win over the userinfo answer.
        self.claims = {**info, **payload}
        return self.claims

    def verify_claims(self, claims) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        found = self.UserModel.objects.filter(sso_subject=claims["sub"])
        if found.exists():
            return found
        for linker in ACCOUNT_LINKERS:
            account = linker(claims)
            if account is not None and link_account(account, claims, self.request):
                return self.UserModel.objects.filter(pk=account.pk)
        return found

    def get_or_create_user(self, access_token, id_token, payload):
        user = super().get_or_create_user(access_token, id_token, payload)
        if user is None:
            raise SsoFailure("no Breakglass account belongs to this identity, and accounts "
                             "are not created on first sign-in here; ask an administrator")
        if not user.is_active:
            raise SsoFailure("this Breakglass account is deactivated")
        user.sso_claims = self.claims
        for handler in CLAIM_HANDLERS:
            handler(user, self.claims, self.request)
        return user

    def create_user(self, claims):
        username = str(claims.get("preferred_username") or claims["sub"])[:150]
        try:
            with transaction.atomic():
                return self.UserModel.objects.create_user(
                    username, email=str(claims.get("email") or ""),
                    sso_subject=claims["sub"])
        except IntegrityError:
            raise SsoFailure(f"a local account is already called {username!r}; an "
                             "administrator can link it to this identity") from None

    def update_user(self, user, claims):
        return user


class SsoStartView(OIDCAuthenticationRequestView):
    """GET /accounts/sso/start/: off to the provider, with state, nonce and PKCE."""

    get_settings = staticmethod(sso_setting)

    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not configured():
            raise Http404("Single sign-on is not configured.")
        try:
            # Looked up afresh at each start: with a provider that went down since the last
            # look-up, the person gets the plain message here (and the failure is audited),
            # not a browser error page at the provider's address.
            self.OIDC_OP_AUTH_ENDPOINT = discovery(fresh=True)["authorization_endpoint"]
        except (requests.RequestException, ValueError, KeyError, SsoFailure):
            refuse(request, "the provider could not be reached; the local login is for "
                   "break-glass accounts")
            return redirect("accounts:login")
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class SsoCallbackView(OIDCAuthenticationCallbackView):
    """GET /accounts/sso/callback/: the provider's answer. A replayed or foreign state, an
    error from the provider or a failed check lands on the sign-in page, audited."""

    get_settings = staticmethod(sso_setting)

    def get(self, request):
        if not configured():
            raise Http404("Single sign-on is not configured.")
        if request.GET.get("error"):
            # Not handed to the library, which signs the current user out on any error: a
            # link anyone can send must never end a responder's session mid-incident.
            if request.session.get("oidc_states", {}).pop(request.GET.get("state", ""), None):
                request.session.modified = True  # that sign-in is over
            refuse(request, f"the provider answered {request.GET['error'][:100]!r}")
            return self.login_failure()
        if not request.GET.get("code") or not request.GET.get("state"):
            refuse(request, "the provider's answer had no code")
            return self.login_failure()
        if request.GET["state"] not in request.session.get("oidc_states", {}):
            # Each state is kept once, in the session that started the sign-in.
            refuse(request, "this sign-in answer was used already or did not start here; "
                   "start again")
            return self.login_failure()
        try:
            return super().get(request)
        except SuspiciousOperation:
            refuse(request, "this sign-in answer did not check out; start again")
            return self.login_failure()

    def login_failure(self):
        return redirect("accounts:login")

    def login_success(self):
        claims = getattr(self.user, "sso_claims", {})
        response = super().login_success()  # auth.login: a new session key
        if settings.OIDC_TRUST_IDP_MFA and MFA_METHODS & set(claims.get("amr") or []):
            from accounts.services import verified_by

            device, _ = self.user.ssoassertion_set.get_or_create(
                name="Identity provider", defaults={"confirmed": True})
            verified_by(self.request, device, step_up=authenticated_just_now(claims))
            return response
        return redirect(f"{reverse('accounts:verify')}?{urlencode({'next': self.success_url})}")
