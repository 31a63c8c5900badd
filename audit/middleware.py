import re
import uuid

from django.conf import settings
from django.shortcuts import render

from audit.services import AuditWriteError

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id (a trusted proxy's X-Request-ID, else a fresh one) that audit
    events carry and the response echoes, so a report can be matched to its log lines."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        trusted = settings.TRUSTED_PROXY_COUNT > 0 and _REQUEST_ID.match(incoming)
        request.request_id = incoming if trusted else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class AuditFailureMiddleware:
    """Fail closed, visibly: a change whose audit event could not be written was rolled back,
    and the person is told so instead of seeing a generic error."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, AuditWriteError):
            return render(request, "audit_unavailable.html", status=503)
        return None
