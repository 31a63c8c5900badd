"""SCIM 2.0 provisioning at /scim/v2/ (RFC 7643, RFC 7644), so the company's identity provider
(Entra ID, Okta, Keycloak...) creates, updates and deprovisions accounts and pushes groups.

scim2-server does the protocol (routing, validation, PATCH, filters, sorting, paging, ETags,
discovery, error bodies); scim/storage.py maps its resources onto our models and every write
goes through scim/services.py, audited with the calling application as the actor:

- a SCIM User is an account: userName is the username, active is_active, name.givenName and
  name.familyName the first and last names, the primary email the email; groups (read-only)
  are the account's directory groups. Other attributes are kept as sent (scim.ScimResource).
- a SCIM Group is a directory group (accounts.DirectoryGroup), never a django.contrib.auth
  group: those are roles, and the directory must not be able to make anyone an administrator
  or a security reviewer. A directory group gives nothing until a catalog group takes its
  members from it.

What SCIM may never do: set a password (not even published), roles, staff or superuser status
or the local login; change or deactivate an administrator's account or one kept for the local
login (403); take over an existing account by creating one with its username (409).

Deactivating an account (active false, by PUT or PATCH) deprovisions it in one transaction:
grants end, sessions end (accounts/deprovisioning.py). DELETE does the same and keeps the
row, because the audit trail and history point at it; SCIM answers 404 for it from then on.

Authentication is an API application's bearer token with the scim:write scope, looked up and
throttled exactly as the JSON API does (api/auth.py); never a session or a cookie.
"""

import json

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from scim2_models import (
    Error,
    ForbiddenException,
    PayloadTooLargeException,
    SCIMException,
    UnauthorizedException,
)
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService

from api.auth import FAILURE_WINDOW_SECONDS, TokenAuth
from api.errors import Problem
from audit.services import AuditWriteError
from breakglass.models import Application, Scope
from scim.storage import DjangoStorage, build_provider

PROVIDER = build_provider()
SERVICE = ScimService(PROVIDER)
# A group of a few thousand members fits; a body larger than this is refused unread.
MAX_BODY_BYTES = 512 * 1024


@csrf_exempt
def endpoint(request: HttpRequest, path: str = "") -> HttpResponse:
    try:
        application = authenticate(request)
        handler = ScimHandler(SERVICE, DjangoStorage(PROVIDER, actor=application,
                                                     request=request))
        response = handler.handle(ScimRequest(
            method=request.method, base_url=base_url(request), path=f"/{path}",
            query=request.GET.dict(), headers=dict(request.headers), body=read_body(request),
            subject=application))
    except SCIMException as error:
        response = SERVICE.error_response(error)
    except AuditWriteError:
        # Fail closed: the change was rolled back with its event.
        response = SERVICE.error_response(scim_error(
            503, "The audit trail cannot be written just now; nothing was changed."))
    return http_response(response)


def authenticate(request: HttpRequest) -> Application:
    """The calling application, by its bearer token; failures are counted per address and
    throttled like the JSON API's."""
    try:
        application = TokenAuth()(request)
    except Problem as refusal:  # 429 (too many failures) or 403 (application disabled)
        raise scim_error(refusal.status, refusal.detail) from None
    if application is None:
        raise UnauthorizedException(detail="A valid bearer token is required.")
    if not application.has_scope(Scope.SCIM_WRITE):
        raise ForbiddenException(detail=f"This token lacks the {Scope.SCIM_WRITE} scope.")
    return application


def read_body(request: HttpRequest) -> bytes:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise PayloadTooLargeException(detail=f"Bodies are limited to {MAX_BODY_BYTES} bytes.")
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLargeException(
            detail=f"Bodies are limited to {MAX_BODY_BYTES} bytes.") from None
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeException(detail=f"Bodies are limited to {MAX_BODY_BYTES} bytes.")
    return body


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("scim:endpoint", kwargs={"path": ""})).rstrip("/")


def scim_error(status: int, detail: str) -> SCIMException:
    """An error with a status no scim2-models exception carries (429, 503)."""
    return SCIMException.from_error(Error(status=status, detail=detail))


def http_response(response: ScimResponse) -> HttpResponse:
    content = b"" if response.body is None else json.dumps(response.body).encode()
    result = HttpResponse(content, status=int(response.status))
    for name, value in response.headers.items():
        result[name] = value
    if result.status_code == 429:
        result["Retry-After"] = str(FAILURE_WINDOW_SECONDS)
    return result
