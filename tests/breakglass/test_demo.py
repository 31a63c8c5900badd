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
