"""An outside fuzzer (schemathesis) against every operation of /api/v1/openapi.json: no input
may make the API answer 500 or more.

Each generated request is sent twice: as generated, and again with the names and ids in it
replaced by ones that exist, so the fuzzed bodies reach the services behind the lookups.
The default run is short enough for every `make test`; set BREAKGLASS_FUZZ_EXAMPLES (for
example 2000) for a long run."""

import os
from datetime import timedelta

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.main import api
from breakglass.models import Group, Scope
from breakglass.services.applications import create_application
from breakglass.services.break_glass import break_glass
from oncall.models import Schedule
from risk.incidents import upsert_incident
from tests.recovery.helpers import enrolled_trio, root_policy

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("BREAKGLASS_FUZZ_EXAMPLES", "25"))
# The default run is the same every time (CI stays reproducible); a long run explores.
REPRODUCIBLE = "BREAKGLASS_FUZZ_EXAMPLES" not in os.environ

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
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
def world(owner, member) -> dict:
    """A small organisation the fuzzer's requests can find: a group with an active grant, a
    schedule, a recovery policy with its bundle and its own application, an open incident."""
    cache.clear()
    group = Group.objects.create(name="Production DB", slug="prod-db")
    group.owners.add(owner)
    group.break_glass_users.add(member)
    grant = break_glass(group, actor=member, reason="disk full")
    Schedule.objects.create(name="Primary on call", slug="primary-oncall")
    policy = root_policy(enrolled_trio(), secret="hunter2-root")
    upsert_incident(external_id="INC-1", title="Outage", severity="sev1", status="open",
                    url="", groups=["prod-db"], policies=None, actor=None)
    application, token = create_application("fuzzer", list(Scope.values), actor=None)
    policy.application = application
    policy.save(update_fields=["application"])
    return {"token": token, "grant_id": grant.pk, "user": member.username,
            "group": group.slug, "slugs": {"schedules": "primary-oncall",
                                           "recovery": policy.slug},
            "at": timezone.now() - timedelta(seconds=5)}


def _with_real_names(case, world: dict) -> None:
    """Point the case at objects that exist, keeping every other generated value."""
    path = case.operation.path
    for name in case.path_parameters or {}:
        if name == "grant_id":
            case.path_parameters[name] = world["grant_id"]
        elif name == "slug":
            case.path_parameters[name] = next(
                slug for area, slug in world["slugs"].items() if f"/{area}/" in path)
    for values in (case.query, case.body):
        if isinstance(values, dict):
            values.update({key: world[key] for key in ("user", "group") if key in values})
            if "groups" in values:
                values["groups"] = [world["group"]]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=REPRODUCIBLE,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail(case, world):
    headers = {"Authorization": f"Bearer {world['token']}"}
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
    _with_real_names(case, world)
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
