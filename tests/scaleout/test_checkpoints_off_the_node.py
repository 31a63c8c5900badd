"""Audit checkpoints outside the node: one object per checkpoint in the shared bucket (never
overwritten), a syslog line to a real rsyslogd, and `verify_audit --checkpoint` catching a
deleted tail against either."""

import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.catalogue import EventKind
from audit.services import record, write_checkpoint
from tests.audit.helpers import raw, triggers_lifted
from tests.scaleout.servers import rsyslog_server

pytestmark = pytest.mark.django_db


def verify(*arguments: str) -> str:
    out = StringIO()
    call_command("verify_audit", *arguments, stdout=out)
    return out.getvalue()


def events(count: int) -> None:
    for number in range(count):
        record(EventKind.SIGN_IN_FAILED, actor=None, reason=f"event {number}")


def delete_the_tail_and_rewind_the_head(keep: int) -> None:
    with triggers_lifted():
        raw("DELETE FROM audit_auditevent WHERE sequence > %s", [keep])
        raw("UPDATE audit_chainhead SET sequence = %s, mac = "
            "(SELECT mac FROM audit_auditevent WHERE sequence = %s)", [keep, keep])


def test_checkpoints_are_objects_in_the_bucket_and_catch_a_deleted_tail(bucket, s3):
    events(10)
    write_checkpoint()
    events(5)
    write_checkpoint()
    stored = s3.keys(bucket, "checkpoints/")
    assert len(stored) == 2 and all(key.startswith("checkpoints/audit-checkpoint-")
                                    for key in stored)
    bodies = [json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())
              for key in stored]
    assert [body["sequence"] for body in bodies] == [10, 15]
    assert "intact: 15 events, 2 checkpoints agree" in verify("--checkpoint")

    delete_the_tail_and_rewind_the_head(12)
    assert "intact: 12 events" in verify()  # the database alone cannot tell
    with pytest.raises(CommandError, match="events after it were deleted"):
        verify("--checkpoint")


def test_each_checkpoint_also_goes_to_syslog(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    with rsyslog_server() as (address, received):
        settings.CHECKPOINT_SYSLOG = address
        events(7)
        write_checkpoint()
        deadline = time.monotonic() + 10
        while "audit-checkpoint" not in received.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [line for line in received.read_text().splitlines()
                 if "audit-checkpoint" in line]
    assert len(lines) == 1 and "breakglass:" in lines[0] and '"sequence": 7' in lines[0]
    copy = tmp_path / "from-syslog.log"
    copy.write_text(received.read_text() if received.exists() else "\n".join(lines))
    delete_the_tail_and_rewind_the_head(5)
    with pytest.raises(CommandError, match="events after it were deleted"):
        verify("--checkpoint", str(copy))  # the syslog copy alone tells


def test_an_unreachable_syslog_does_not_stop_the_checkpoint(settings, tmp_path):
    settings.CHECKPOINT_DIR = tmp_path
    settings.CHECKPOINT_SYSLOG = "tcp://127.0.0.1:9"  # nothing listens: refused at once
    events(3)
    checkpoint = write_checkpoint()
    assert checkpoint.verified and list(tmp_path.glob("audit-checkpoint-*.json"))
