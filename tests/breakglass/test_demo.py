import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import SECURITY_REVIEWERS_GROUP, User

pytestmark = pytest.mark.django_db


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_seed_demo_refuses_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG off"):
        seed()


def test_seed_demo_creates_the_cast_and_prints_sign_ins(settings):
    settings.DEBUG = True
    output = seed()
    assert set(User.objects.values_list("username", flat=True)) == {
        "admin", "alice", "bob", "carol", "dave", "erin"
    }
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="erin").groups.filter(name=SECURITY_REVIEWERS_GROUP).exists()
    assert "password: demo-breakglass" in output
    printed = re.findall(r"backup codes: (.*)", output)
    assert len(printed) == 6
    assert all(len(re.findall(r"\b[2-9a-z]{5}-[2-9a-z]{5}\b", line)) == 3 for line in printed)


def test_seed_demo_is_idempotent_and_a_printed_code_signs_in(settings, client):
    settings.DEBUG = True
    seed()
    output = seed(force=True)
    assert User.objects.count() == 6
    code = re.search(r"dave .*backup codes: (\S+)", output).group(1)
    client.post(reverse("accounts:login"), {"username": "dave", "password": "demo-breakglass"})
    response = client.post(reverse("accounts:verify"), {"code": code})
    assert response.status_code == 302
    assert client.get(reverse("accounts:security")).status_code == 200


def test_the_demo_holds_opals_pattern_carol_on_call_and_staging_for_owners(settings):
    from breakglass.access import decide
    from breakglass.models import Group
    from breakglass.services.requests import request_access

    settings.DEBUG = True
    seed()
    seed(force=True)  # a second run keeps one covering shift
    carol, dave = User.objects.get(username="carol"), User.objects.get(username="dave")
    assert decide(carol, Group.objects.get(slug="primary-oncall")).via == "on_call"
    assert carol.shifts.count() == 1
    target = Group.objects.get(slug="breakglass-prod-database")
    # Under the demo's open SEV1 the rule (critical × SEV1) wants a step-up code; without an
    # incident (SEV4) it wants two owners, so on-call auto-approval no longer applies.
    from django.utils import timezone

    request = request_access(target, actor=carol, minutes=60, reason="r",
                                             incident="INC-2041", stepped_up_at=timezone.now())
    assert request.status == "approved" and request.grant.incident == "INC-2041"
    assert decide(carol, Group.objects.get(slug="prod-database")).via == "nested"
    staging = Group.objects.get(slug="staging")
    assert request_access(staging, actor=dave, minutes=60,
                                          reason="r").status == "pending"
