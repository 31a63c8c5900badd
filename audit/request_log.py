"""Log lines a SIEM can read: one JSON object per line (or plain text on a developer's
terminal), an access line per request, and the request's context on every line written while
it runs.

Nothing here writes a URL: emergency and abort links carry secrets in their paths and query
strings, so a request is named by its route (`review:abort`), never by its path. The only
user details logged are the primary key and the username."""

import logging
import time
from contextvars import ContextVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

logger = logging.getLogger("breakglass.request")

# Load balancers, orchestrators and Prometheus poll these on every node, and a page
# brings its static files: their successful answers are logged at DEBUG, failures as any other.
QUIET_ROUTES = frozenset({"healthz", "livez", "readyz", "metrics", "static"})
# Refusals worth a SIEM rule: sign-in required, forbidden, throttled.
REFUSAL_STATUSES = frozenset({401, 403, 429})
HIDDEN_PATH = "[path hidden]"


class RequestContext:
    """What every log line written during one request says about it."""

    def __init__(self, request: HttpRequest):
        self.request = request
        self.user_id: int | None = None
        self.username = ""

    def note_user(self) -> None:
        """Remember the signed-in user, once authentication middleware has run. A request
        that signs someone out keeps the user it started with."""
        user = getattr(self.request, "user", None)
        if user is not None and user.is_authenticated:
            self.user_id, self.username = user.pk, user.get_username()

    @property
    def route(self) -> str | None:
        if self.request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
            return "static"
        match = getattr(self.request, "resolver_match", None)
        return match.view_name if match is not None else None

    def fields(self) -> dict:
        fields = {"request_id": getattr(self.request, "request_id", ""),
                  "method": self.request.method[:16], "route": self.route}
        if self.user_id is not None:
            fields.update(user_id=self.user_id, user=self.username)
        return fields


_current: ContextVar[RequestContext | None] = ContextVar("breakglass_request", default=None)


class RequestContextFilter(logging.Filter):
    """Adds the current request's context to every record a handler writes, from any logger,
    and hides the path Django's own request loggers put in their messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        context = _current.get()
        if context is None and isinstance(request, HttpRequest):
            # django.request logs 4xx responses after the middleware chain has returned.
            context = getattr(request, "log_context", None)
        if context is not None:
            for key, value in context.fields().items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        if isinstance(request, HttpRequest):
            hide_paths(record, request)
        return True


def hide_paths(record: logging.LogRecord, request: HttpRequest) -> None:
    """django.request and django.security pass the request's path as a message argument
    ("Not Found: %s"), escaped for the log; put the route name (or a placeholder) there."""
    if not isinstance(record.args, tuple):
        return
    paths = {request.path, request.get_full_path(), request.path_info}
    paths |= {path.encode("unicode_escape").decode("ascii") for path in paths}
    match = getattr(request, "resolver_match", None)
    shown = match.view_name if match is not None else HIDDEN_PATH
    record.args = tuple(shown if isinstance(arg, str) and arg in paths else arg
                        for arg in record.args)


class RequestLogMiddleware:
    """One access line per request (logger `breakglass.request`) and the request's context on
    every log line written while it is handled. Sits right after RequestIdMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = RequestContext(request)
        request.log_context = context
        token = _current.set(context)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            # A streaming response (a backup download) is returned before its body is sent:
            # its duration is the time to the first byte, not to the last.
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            context.note_user()
            log_access(context, response.status_code, duration_ms)
        finally:
            _current.reset(token)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Session and authentication middleware have run by now: lines the view writes
        # carry the user.
        request.log_context.note_user()


def access_level(route: str | None, status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status in REFUSAL_STATUSES:
        return logging.WARNING
    if route in QUIET_ROUTES and status < 400:
        return logging.DEBUG
    return logging.INFO


def log_access(context: RequestContext, status: int, duration_ms: float) -> None:
    route = context.route
    level = access_level(route, status)
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s %s %sms", context.request.method[:16], route or "-", status,
                   duration_ms, extra={"status": status, "duration_ms": duration_ms})


def json_formatter() -> logging.Formatter:
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message, whatever
    the record carries (request context, extra fields) and any exception as one field."""
    return JsonFormatter(
        "{levelname}{name}{message}", style="{", timestamp=True,
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception",
                       "stack_info": "stack"},
        # Django's request loggers attach the HttpRequest itself, whose text is its URL.
        reserved_attrs=[*RESERVED_ATTRS, "request", "server_time"],
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
                             defaults={"request_id": "-"})
