"""Every error under /api/ is an RFC 9457 problem detail, `application/problem+json`:

    {"type": "/api/v1/problems/invalid-input", "title": "Invalid input", "status": 400,
     "detail": "reason: String should have at least 1 character",
     "errors": [{"field": "reason", "in": "body", "message": "..."}]}

`type` is a relative URI of ours, stable per kind of problem (KINDS); `title` is that kind's
fixed text, `detail` the sentence about this request. Invalid input of any kind (a body or
parameter the schema refuses, or a value a service refuses) is a 400 whose `errors` name each
field as the client wrote it; an unexpected failure is a logged 500 that tells the client
nothing more."""

import json
import logging
from functools import partial

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from breakglass.services.errors import GrantError
from oncall.services import ScheduleError
from risk.incidents import IncidentError
from risk.rules import RiskRefused

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/api/v1/problems/"
REALM = 'Bearer realm="breakglass"'

# kind → (status, title). A kind's URI and title never change; new kinds may be added.
KINDS: dict[str, tuple[int, str]] = {
    "invalid-input": (400, "Invalid input"),
    "unauthenticated": (401, "Authentication required"),
    "forbidden": (403, "Not allowed"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflicts with the current state"),
    "idempotency-key-in-use": (409, "A request with this idempotency key is still running"),
    "idempotency-key-reused": (422, "This idempotency key was used for another request"),
    "too-many-requests": (429, "Too many requests"),
    "server-error": (500, "Internal server error"),
}
KIND_BY_STATUS = {400: "invalid-input", 401: "unauthenticated", 403: "forbidden",
                  404: "not-found", 405: "method-not-allowed", 409: "conflict",
                  429: "too-many-requests"}


class Problem(Exception):
    """Raised by an API operation to answer with a problem of `kind`."""

    def __init__(self, kind: str, detail: str, *, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.kind, self.detail = kind, detail
        self.errors, self.headers = errors, headers or {}

    @property
    def status(self) -> int:
        return KINDS[self.kind][0]


def field_error(field: str, message: str, location: str = "body") -> dict:
    return {"field": field, "in": location, "message": message}


def problem_response(kind: str, detail: str, *, errors: list[dict] | None = None,
                     headers: dict[str, str] | None = None) -> HttpResponse:
    status, title = KINDS[kind]
    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status,
            "detail": detail}
    if errors:
        body["errors"] = errors
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def add_exception_handlers(api: NinjaAPI) -> None:
    handlers = {
        Exception: server_error, Problem: problem, ValidationError: invalid_input,
        AuthenticationError: unauthenticated, HttpError: http_error, Http404: not_found,
        GrantError: service_refusal, IncidentError: service_refusal,
        ScheduleError: service_refusal, RiskRefused: service_refusal,
    }
    for exception, handler in handlers.items():
        api.add_exception_handler(exception, partial(handler, api=api))


def problem(request: HttpRequest, exc: Problem, *, api: NinjaAPI) -> HttpResponse:
    return problem_response(exc.kind, exc.detail, errors=exc.errors, headers=exc.headers)


def invalid_input(request: HttpRequest, exc: ValidationError, *, api: NinjaAPI) -> HttpResponse:
    """ninja's validation errors, told in the client's terms: `loc` becomes the field's name
    as it appears in the body (`shifts[2].user`), the query, the path or a header."""
    errors = [_client_error(error) for error in exc.errors] or [
        field_error("body", "invalid")]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem_response("invalid-input", f"{first['field']}: {first['message']}{more}",
                            errors=errors)


def _client_error(error: dict) -> dict:
    location, *names = [str(part) for part in error.get("loc") or ("body",)]
    # ninja puts the operation's argument name (`body`, `query`) after the source.
    if names and names[0] in {"body", "query", "path"} and len(names) > 1:
        names = names[1:]
    field = ""
    for name in names:
        field += f"[{name}]" if name.isdigit() else (f".{name}" if field else name)
    message = str(error.get("msg") or "invalid").removeprefix("Value error, ")
    return field_error(field or location, message, location)


def server_error(request: HttpRequest, exc: Exception, *, api: NinjaAPI) -> HttpResponse:
    """An unexpected failure is logged with its traceback and answered like every other error;
    a client never sees Django's HTML error page or the exception's text. What Django itself
    answers with 4xx (a refusal, a body over the upload limit) keeps its status."""
    if isinstance(exc, PermissionDenied):
        return problem_response("forbidden", "Not allowed.")
    if isinstance(exc, SuspiciousOperation):  # RequestDataTooBig, a bad host, …
        return problem_response("invalid-input", "Bad request.")
    logger.exception("API error on %s %s", request.method, request.path[:200])
    return problem_response("server-error", "Internal server error.")


def unauthenticated(request: HttpRequest, exc: AuthenticationError, *,
                    api: NinjaAPI) -> HttpResponse:
    """RFC 6750 §3: every 401 names the scheme; a token that was sent but is not valid is an
    `invalid_token`, a request without one gets no error code."""
    challenge = REALM
    if request.headers.get("Authorization", "").strip():
        challenge += ', error="invalid_token"'
    return problem_response("unauthenticated", "A valid bearer token is required.",
                            headers={"WWW-Authenticate": challenge})


def http_error(request: HttpRequest, exc: HttpError, *, api: NinjaAPI) -> HttpResponse:
    kind = KIND_BY_STATUS.get(exc.status_code, "invalid-input")
    return problem_response(kind, str(exc))


def not_found(request: HttpRequest, exc: Http404, *, api: NinjaAPI) -> HttpResponse:
    return problem_response("not-found", "Not found.")


def service_refusal(request: HttpRequest, exc: Exception, *, api: NinjaAPI) -> HttpResponse:
    """A service said no: its `status` picks the kind, its `field` (if any) names the input."""
    kind = KIND_BY_STATUS.get(getattr(exc, "status", 400), "invalid-input")
    field = getattr(exc, "field", "")
    errors = [field_error(field, str(exc))] if field else None
    return problem_response(kind, f"{field}: {exc}" if field else str(exc), errors=errors)
