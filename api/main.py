"""The one NinjaAPI, mounted at /api/v1/ by config/urls.py: each app's router under its
prefix, every operation behind the bearer-token check.

The OpenAPI document says what every operation may answer: its success, and each problem
(api/errors.py) as `application/problem+json`, with the headers a client relies on
(WWW-Authenticate on 401, Retry-After on 429, Idempotency-Key on every POST)."""

from functools import wraps

from django.http import HttpResponseNotAllowed
from ninja import NinjaAPI, Swagger

from api.auth import TokenAuth
from api.errors import KINDS, PROBLEM_MEDIA_TYPE, add_exception_handlers, problem_response
from api.idempotency import HEADER, KEY_PATTERN, MAX_KEY_LENGTH, REPLAYED_HEADER
from api.views import outside_the_operations
from breakglass.api import router as breakglass_router
from breakglass.api_requests import groups_router, requests_router
from oncall.api import router as schedules_router
from recovery.api import router as recovery_router
from risk.api import router as incidents_router

DESCRIPTION = """Check access, break glass, revoke grants, handle access requests, read groups
and export the audit trail.

* **Errors** are RFC 9457 problem details (`application/problem+json`): `type` is a relative
  URI `/api/v1/problems/<kind>` that never changes for a kind, `title` its fixed text,
  `detail` the sentence about this request. Invalid input is a 400 whose `errors` list names
  each field (`{"field": "reason", "in": "body", "message": ...}`).
* **Retries**: send `Idempotency-Key` on a POST; the same key with the same request within 24
  hours answers the first answer again (`Idempotent-Replayed: true`) without acting twice.
* **Lists** are cursor pages: `?after=<next of the previous page>&limit=1..1000` answers
  `{"items": [...], "next": <cursor or null>}`."""

# Problems every operation may answer, and those only writes (409) or POSTs (422) may.
COMMON_PROBLEMS = (400, 401, 403, 404, 429)
WRITE_PROBLEMS = (409,)
POST_PROBLEMS = (422,)
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference",
                 "description": "/api/v1/problems/<kind>, stable per kind."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "in", "message"],
            "properties": {"field": {"type": "string"}, "in": {"type": "string"},
                           "message": {"type": "string"}}}},
    },
}
RESPONSE_HEADERS = {
    401: {"WWW-Authenticate": "Bearer realm=\"breakglass\", with error=\"invalid_token\" "
                              "when a token was sent but is not valid (RFC 6750)."},
    429: {"Retry-After": "Seconds to wait before trying again."},
}
IDEMPOTENCY_PARAMETER = {
    "in": "header", "name": HEADER, "required": False,
    "description": "Any unique value of yours (a UUID): a retry with the same key and the "
                   "same request within 24 hours answers the first answer again, marked "
                   f"`{REPLAYED_HEADER}: true`, without acting twice.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
               "pattern": KEY_PATTERN},
}


class BreakglassAPI(NinjaAPI):
    def _get_urls(self):
        patterns = super()._get_urls()
        for pattern in patterns:
            if pattern.name == "api-root":  # ninja's own answers 404 in HTML
                pattern.callback = outside_the_operations
            pattern.callback = _problem_for_wrong_method(pattern.callback)
        return patterns

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                _document_problems(method.upper(), operation)
        return schema


def _document_problems(method: str, operation: dict) -> None:
    statuses = COMMON_PROBLEMS + (WRITE_PROBLEMS if method in {"POST", "PUT"} else ()) + (
        POST_PROBLEMS if method == "POST" else ())
    responses = operation.setdefault("responses", {})
    for status in statuses:
        kind_titles = [title for code, title in KINDS.values() if code == status]
        response = responses.setdefault(status, {"description": "; ".join(kind_titles)})
        response["content"] = {PROBLEM_MEDIA_TYPE: {
            "schema": {"$ref": "#/components/schemas/Problem"}}}
        if status in RESPONSE_HEADERS:
            response["headers"] = {name: {"required": True, "description": text,
                                          "schema": {"type": "string"}}
                                   for name, text in RESPONSE_HEADERS[status].items()}
    if method == "POST":
        operation.setdefault("parameters", []).append(IDEMPOTENCY_PARAMETER)
        for status, response in responses.items():
            if 200 <= int(status) < 300:
                response["headers"] = {REPLAYED_HEADER: {
                    "required": False, "schema": {"type": "string", "enum": ["true"]},
                    "description": "Present on an answer given again for an "
                                   "Idempotency-Key."}}


def _problem_for_wrong_method(view):
    """ninja answers a method a path does not take with a plain-text 405; this API answers it
    as a problem, keeping the Allow header."""

    @wraps(view)
    def answered(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            return problem_response("method-not-allowed", f"{request.method} is not allowed "
                                    f"here; use {response['Allow']}.",
                                    headers={"Allow": response["Allow"]})
        return response

    return answered


api = BreakglassAPI(
    title="Breakglass API", version="1", urls_namespace="api", auth=TokenAuth(),
    docs_url="/docs", openapi_url="/openapi.json",
    # Swagger UI from ninja's own static files; no call to the online validator either.
    docs=Swagger(settings={"validatorUrl": None}),
    description=DESCRIPTION,
)
add_exception_handlers(api)

api.add_router("", breakglass_router)
api.add_router("/requests", requests_router)
api.add_router("/groups", groups_router)
api.add_router("/schedules", schedules_router)
api.add_router("/recovery", recovery_router)
api.add_router("/incidents", incidents_router)
