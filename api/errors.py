"""Every error the JSON API answers is JSON, `{"detail": ...}`: invalid input is a 400 naming
the field, a missing token a 401, and an unexpected failure a logged 500 that tells the client
nothing more. ninja's own handlers answer HttpError and Http404 in the same shape."""

import logging
from functools import partial

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from breakglass.services.errors import GrantError

logger = logging.getLogger(__name__)


def add_exception_handlers(api: NinjaAPI) -> None:
    api.add_exception_handler(ValidationError, partial(invalid_input, api=api))
    api.add_exception_handler(Exception, partial(server_error, api=api))
    api.add_exception_handler(AuthenticationError, partial(unauthenticated, api=api))
    api.add_exception_handler(GrantError, partial(grant_error, api=api))


def invalid_input(request: HttpRequest, exc: ValidationError, *, api: NinjaAPI) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = first.get("loc") or ["body"]
    field = str(location[-1])
    message = f"{field}: {first.get('msg', 'invalid')}"
    return api.create_response(request, {"detail": message, "errors": exc.errors}, status=400)


def server_error(request: HttpRequest, exc: Exception, *, api: NinjaAPI) -> HttpResponse:
    """An unexpected failure is logged with its traceback and answered in JSON like every
    other error; a client never sees Django's HTML error page or the exception's text. What
    Django itself answers with 4xx (a refusal, a body over the upload limit) keeps its status."""
    if isinstance(exc, PermissionDenied):
        return api.create_response(request, {"detail": "Not allowed."}, status=403)
    if isinstance(exc, SuspiciousOperation):  # RequestDataTooBig, a bad host, …
        return api.create_response(request, {"detail": "Bad request."}, status=400)
    logger.exception("API error on %s %s", request.method, request.path[:200])
    return api.create_response(request, {"detail": "Internal server error."}, status=500)


def unauthenticated(request: HttpRequest, exc: AuthenticationError, *,
                    api: NinjaAPI) -> HttpResponse:
    return api.create_response(request, {"detail": "A valid bearer token is required."},
                               status=401)


def grant_error(request: HttpRequest, exc: GrantError, *,
                api: NinjaAPI) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)
