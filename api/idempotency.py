"""The Idempotency-Key header on POST (IETF draft-ietf-httpapi-idempotency-key-header).

A client that may retry a POST sends a key of its choice. The first request with it claims
the key (a committed row, "in progress"), runs the operation, then stores its answer; for 24
hours the same application, key and request (method, path and body) get that answer again,
marked `Idempotent-Replayed: true`, without the operation running again. The same key on
another request is a 422; while the first request still runs, a 409.

Only a success is kept: an answer of 4xx or 5xx changed nothing (or failed), so the key is
released and a corrected retry may use it. The operation commits in its own service before
its answer is stored: a process that dies in between leaves the key "in progress", answered
409 until it expires, rather than ever running the operation twice."""

import hashlib
import re
from collections.abc import Callable
from functools import wraps

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja.decorators import decorate_view

from api.errors import Problem, field_error
from api.models import KEY_LIFETIME, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, 1 to 255 characters; a Structured Field string's quotes are taken off.
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


def idempotent(view: Callable) -> Callable:
    """Decorates a POST operation (below its @router.post): the header is honoured once the
    token and the input are valid, and the answer settled once ninja has rendered it."""

    @wraps(view)
    def claiming(request: HttpRequest, *args, **kwargs):
        key = key_from(request)
        if key is not None:
            outcome = claim(request.auth, key, fingerprint(request))
            if isinstance(outcome, HttpResponse):
                return outcome
            request.idempotency_claim = outcome
        return view(request, *args, **kwargs)

    claiming.idempotent = True
    return decorate_view(_settling)(claiming)


def _settling(run: Callable) -> Callable:
    @wraps(run)
    def settled(request: HttpRequest, *args, **kwargs):
        try:
            response = run(request, *args, **kwargs)
        except BaseException:
            _release(request)
            raise
        claimed = getattr(request, "idempotency_claim", None)
        if claimed is not None:
            if 200 <= response.status_code < 300:
                store(claimed, response)
            else:
                _release(request)
        return response

    return settled


def key_from(request: HttpRequest) -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        message = f"1 to {MAX_KEY_LENGTH} printable ASCII characters"
        raise Problem("invalid-input", f"{HEADER}: {message}",
                      errors=[field_error(HEADER, message, "header")])
    return key


def fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.get_full_path().encode(), request.body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def claim(application, key: str, request_fingerprint: str) -> IdempotencyKey | HttpResponse:
    """The committed claim on `key`, or the answer to give instead of running again."""
    now = timezone.now()
    mine = IdempotencyKey.objects.filter(application=application, key=key)
    mine.filter(created_at__lte=now - KEY_LIFETIME).delete()
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(application=application, key=key,
                                                 fingerprint=request_fingerprint,
                                                 created_at=now)
    except IntegrityError:
        earlier = mine.first()
    if earlier is not None and earlier.fingerprint != request_fingerprint:
        raise Problem("idempotency-key-reused", f"The key {key!r} was sent with another "
                      "request (method, path or body) in the last 24 hours; use a new key.")
    if earlier is None or earlier.state == IdempotencyKey.State.IN_PROGRESS:
        raise Problem("idempotency-key-in-use", f"A request with the key {key!r} is still "
                      "running; retry when it has answered.")
    return replay(earlier)


def replay(earlier: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(earlier.response_body, status=earlier.response_status,
                            content_type=earlier.response_content_type)
    response[REPLAYED_HEADER] = "true"
    return response


def store(claimed: IdempotencyKey, response: HttpResponse) -> None:
    IdempotencyKey.objects.filter(pk=claimed.pk).update(
        state=IdempotencyKey.State.COMPLETED, response_status=response.status_code,
        response_content_type=response.get("Content-Type", "")[:100],
        response_body=response.content.decode())


def _release(request: HttpRequest) -> None:
    claimed = getattr(request, "idempotency_claim", None)
    if claimed is not None:
        IdempotencyKey.objects.filter(pk=claimed.pk).delete()
        request.idempotency_claim = None

