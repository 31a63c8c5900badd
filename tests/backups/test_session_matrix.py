"""An emergency session is no sign-in (SPEC §2.6 (3)): with one open, every URL of the app is
tried with GET and POST; only the emergency pages answer, and only for its own website."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from audit import sms
from audit.outbox import send_due_deliveries
from backups import jobs
from backups.models import BackupJob, Website
from tests.conftest import make_user
from tests.test_url_access import PROBES, PUBLIC, TOKEN, classify

pytestmark = pytest.mark.django_db

EMERGENCY = {"emergency:start", "emergency:verify", "emergency:new-code", "emergency:session",
             "emergency:start-backup", "emergency:download", "emergency:handover",
             "emergency:end"}


@pytest.fixture
def emergency_client(client, tmp_path):
    Website.objects.create(name="Example", address="example.org", manager=make_user("bob"),
                           verification_mobile="+15555550100", files_dir=str(tmp_path),
                           emergency_enabled=True)
    sms.outbox.clear()
    client.post(reverse("emergency:start"), {"address": "example.org"})
    send_due_deliveries()
    code = re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1)
    assert client.post(reverse("emergency:verify"), {"code": code}).status_code == 302
    return client


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(("name", "url"), [(n, u) for n, u in PROBES if n not in EMERGENCY])
def test_the_session_reaches_no_other_page(emergency_client, name, url, method):
    response = getattr(emergency_client, method)(url)
    login = (reverse("accounts:login"), reverse("admin:login"))
    if classify(name) == TOKEN:
        assert response.status_code in {401, 404, 405}, (name, response.status_code)
    elif classify(name) == PUBLIC:
        # The sign-in page, health (503 here: no scheduler runs), the API schema, and the
        # single sign-on routes and /metrics (404 while not configured): nothing of a website.
        absent = name.startswith("accounts:sso-") or name == "metrics"
        # Slack's, PagerDuty's and Opsgenie's doors: absent until set up (Slack) or refused
        # without the vendor's signature or token; an emergency session carries neither.
        signed = name in {"chatops:interactions", "paging:pagerduty", "paging:opsgenie"}
        allowed = ({200, 302, 405, 503} | ({404} if absent or signed else set())
                   | ({401} if signed else set()))
        assert response.status_code in allowed, (name, response.status_code)
    else:
        assert response.status_code == 302 and response["Location"].startswith(login), (
            name, response.status_code)


def test_the_session_sees_no_other_websites_backup(emergency_client, tmp_path, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    (tmp_path / "other").mkdir()
    other = Website.objects.create(name="Other", address="other.org",
                                   manager=make_user("olga"), files_dir=str(tmp_path / "other"))
    foreign = BackupJob.objects.create(website=other, created_at=timezone.now())
    assert jobs.run_backup(foreign.pk) == "complete"
    response = emergency_client.get(reverse("emergency:download", args=[foreign.pk]))
    assert response.status_code == 404
