"""An outside fuzzer (schemathesis) against every operation of /api/v1/openapi.json, with all
of its checks: no input makes the API answer 500 or more, and every answer is one the
document describes (status, media type, headers, body schema), valid input is accepted,
invalid input refused, and an unsupported method is a 405 with Allow.

Each generated request is sent twice: as generated, and again with the names and ids in it
replaced by ones that exist, so the fuzzed bodies reach the services behind the lookups.
The default run is short enough for every `make test`; set BREAKGLASS_FUZZ_EXAMPLES (for
example 2000) for a long run."""

import os
import uuid
from datetime import timedelta

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

from api.main import api
from api.models import IdempotencyKey
from breakglass.models import Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from breakglass.services.requests import request_access
from oncall.models import Schedule
from risk.incidents import upsert_incident
from tests.recovery.helpers import enrolled_trio, root_policy

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("BREAKGLASS_FUZZ_EXAMPLES", "25"))
# The default run is the same every time (CI stays reproducible); a long run explores.
REPRODUCIBLE = "BREAKGLASS_FUZZ_EXAMPLES" not in os.environ

# positive_data_acceptance expects schema-valid input to be taken. These operations' services
# also check what no schema can say, against the database or the group's own settings: a
# name that must exist (users in shifts, groups and incidents), a time after the grant's
# activation, a reason the group requires or a comment that is only spaces, a duration
# within the group's maximum. Each refusal is a 400 naming the field (tests/api, and the
# services' own tests), so for these operations, and this check only, 400 is expected too.
SERVICE_CHECKED_OPERATIONS = [
    "breakglass_api_break_glass", "breakglass_api_report_activity", "risk_api_upsert",
    "oncall_api_replace_shifts", "breakglass_api_requests_create_request",
    "breakglass_api_requests_deny",
]
CONFIG = schemathesis.Config.from_dict({"operations": [{
    "include-operation-id": SERVICE_CHECKED_OPERATIONS,
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]}},
}]})
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(), config=CONFIG)
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """The real WSGI handler closes a connection found inside a transaction at the end of each
    request, which on PostgreSQL would break the test's own transaction; Django's test client
    turns this off the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(owner, member, outsider, settings) -> dict:
    """A small organisation the fuzzer's requests can find: a group with an active grant and
    a pending access request, a schedule, a recovery policy with its bundle and its own
    application, an open incident."""
    cache.clear()
    # The fuzzer sends many requests without a token from one address: the failure throttle
    # would soon answer them all 429 (tests/api/test_problems.py tests it).
    settings.API_TOKEN_FAILURE_LIMIT = 10**9
    group = Group.objects.create(name="Production DB", slug="prod-db", requestable=True)
    group.owners.add(owner)
    group.break_glass_users.add(member)
    grant = break_glass(group, actor=member, reason="disk full")
    access_request = request_access(group, actor=outsider, minutes=60, reason="deploy")
    Schedule.objects.create(name="Primary on call", slug="primary-oncall")
    policy = root_policy(enrolled_trio(), secret="hunter2-root")
    upsert_incident(external_id="INC-1", title="Outage", severity="sev1", status="open",
                    url="", groups=["prod-db"], policies=None, actor=None)
    application, token = create_application("fuzzer", list(Scope.values), actor=None)
    policy.application = application
    policy.save(update_fields=["application"])
    return {"token": token, "grant_id": grant.pk, "request_id": access_request.pk,
            "user": member.username, "as_user": owner.username, "group": group.slug,
            "slugs": {"schedules": "primary-oncall", "recovery": policy.slug,
                      "groups": group.slug},
            "at": timezone.now() - timedelta(seconds=5)}


def _with_real_names(case, world: dict) -> None:
    """Point the case at objects that exist, keeping every other generated value; a fresh
    Idempotency-Key, since the request is no longer the one first sent."""
    path = case.operation.path
    for name in case.path_parameters or {}:
        if name in {"grant_id", "request_id"}:
            case.path_parameters[name] = world[name]
        elif name == "slug":
            case.path_parameters[name] = next(
                slug for area, slug in world["slugs"].items() if f"/{area}/" in path)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    for values in (case.query, case.body):
        if isinstance(values, dict):
            values.update({key: world[key] for key in ("user", "group", "as_user")
                           if key in values})
            if "groups" in values:
                values["groups"] = [world["group"]]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=REPRODUCIBLE,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case, world):
    # Hypothesis reuses small values ("0") across examples; a client never sends one key with
    # two requests, and the API would rightly answer 422 (tests/api/test_idempotency.py).
    IdempotencyKey.objects.all().delete()
    _with_the_token(case, world["token"])
    case.call_and_validate()
    # Real names may turn a case generated invalid into a valid one: only the first call, as
    # generated, says what the API does with invalid input.
    negative = case.meta is not None and case.meta.generation.mode.is_negative
    _with_real_names(case, world)
    case.call_and_validate(excluded_checks=[negative_data_rejection] if negative else None)


def _with_the_token(case, token: str) -> None:
    """The application's token in place of the generated one, unless the case is about the
    token itself (left out, or made invalid), which must then be refused with 401."""
    headers = case.headers or {}
    if "Authorization" not in headers:
        return
    data = case.meta.phase.data if case.meta is not None else None
    targets = [(mutation.parameter_location, mutation.parameter)
               for mutation in getattr(data, "mutations", ()) or ()]
    targets.append((getattr(data, "parameter_location", None), getattr(data, "parameter", None)))
    if (ParameterLocation.HEADER, "Authorization") not in targets:
        headers["Authorization"] = f"Bearer {token}"
