"""A failed backup tells the website's owner in a plain sentence; the reason, which may name
server paths, goes to the manager and the audit trail only."""

import pytest
from django.core import mail
from django.utils import timezone

from audit import sms
from audit.catalogue import EventKind
from audit.models import AuditEvent
from audit.outbox import send_due_deliveries
from backups import jobs
from backups.models import BackupJob
from tests.conftest import example_website, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def website(backup_sources, settings):
    settings.BACKUP_ROOT = backup_sources / "archives"
    return example_website(make_user("bob"),
                           files_dir=str(backup_sources / "srv" / "missing-site"))


def test_the_owner_hears_a_plain_sentence_and_the_manager_the_reason(website, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    path = website.files_dir
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    sms.outbox.clear()
    assert jobs.run_backup(job.pk) == "failed"
    send_due_deliveries()

    event = AuditEvent.objects.get(kind=EventKind.BACKUP_FAILED)
    assert path in event.reason
    to_owner = [message for message in mail.outbox if message.to == ["owner@example.org"]]
    to_manager = [message for message in mail.outbox if message.to == [website.manager.email]]
    texts = [message for message in sms.outbox if message.to == "+15555550100"]
    assert to_owner and to_manager and texts
    for message in to_owner:
        assert path not in message.body + message.subject
        assert "could not be made" in message.body
        for html, _ in message.alternatives:
            assert path not in html
    for text in texts:
        assert path not in text.body
    assert any(path in message.body for message in to_manager)
