"""PostgreSQL with real threads (QUALITY Q3, Q5, Q34)."""

import re

import pytest

from audit import sms
from audit.outbox import send_due_deliveries
from backups import jobs, services
from backups.models import BackupJob, EmergencyChallenge, EmergencySession
from tests.audit.test_concurrency import run_in_threads
from tests.conftest import example_website, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def website(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>hello</h1>")
    return example_website(make_user("bob"), files_dir=str(tmp_path / "site"))


def test_20_parallel_submissions_of_one_correct_code_open_one_session(website):
    sms.outbox.clear()
    nonce = services.send_code("example.org")
    send_due_deliveries()
    code = re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1)
    opened = []
    errors = run_in_threads(20, lambda _: opened.append(services.verify_code(nonce, code)))
    assert len(opened) == 1
    assert len(errors) == 19
    assert all(isinstance(error, services.VerificationFailed) for error in errors)
    assert EmergencySession.objects.count() == 1


def test_100_parallel_sends_give_at_most_3_codes(website):
    sms.outbox.clear()
    nonces = []
    errors = run_in_threads(100, lambda _: nonces.append(services.send_code("example.org")))
    assert errors == [] and len(nonces) == 100  # the same neutral answer for all
    assert EmergencyChallenge.objects.count() == 3
    send_due_deliveries()
    assert len([m for m in sms.outbox if "emergency page" in m.body]) == 3


def test_30_parallel_backup_requests_make_one_job(website, settings, tmp_path, monkeypatch):
    settings.BACKUP_ROOT = tmp_path / "archives"
    # No worker picks the job up meanwhile (in tests tasks would run inline and finish it).
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    sms.outbox.clear()
    nonce = services.send_code("example.org")
    send_due_deliveries()
    code = re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1)
    session = services.verify_code(nonce, code)
    started = []
    errors = run_in_threads(30, lambda _: started.append(jobs.start_backup(session)))
    assert errors == []
    assert len({job.pk for job, _ in started}) == 1
    assert BackupJob.objects.count() == 1
