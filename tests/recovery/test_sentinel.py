"""Issue 6's sentinel: after a whole recovery (enrolment, configuration, bundle fetch, an
attempt broken and revealed, reminders, a rotation), the credential secret and the passphrases
appear nowhere: not in a database dump (history and task arguments included), the logs, or the
alerts. The encrypted fields hold them only as ciphertext."""

import logging

import pytest
from django.core import mail
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from audit.outbox import send_due_deliveries
from recovery import crypto, services
from recovery.models import EmergencyCredential, RecoveryPolicy
from tests.audit.test_no_secrets_leak import database_dump
from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = pytest.mark.django_db

SECRET = "Sentinel-root-9vX4-never-in-clear"
PASSPHRASES = {"alice": "Sentinel passphrase of alice 5Kq", "bob": "Sentinel passphrase of bob 7Wm"}
NEW_SECRET = "Sentinel-rotated-3Jd-never-in-clear"


def task_arguments() -> str:
    payloads = [repr(SignedPackage.loads(queued.payload)) for queued in OrmQ.objects.all()]
    schedules = [f"{item.args} {item.kwargs}" for item in Schedule.objects.all()]
    return "\n".join(payloads + schedules)


def test_the_secret_and_passphrases_appear_nowhere_in_clear(client, caplog, settings):
    caplog.set_level(logging.DEBUG)
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        add_authenticator(user)
        services.enrol(user, PASSPHRASES[user.username])
    policy = RecoveryPolicy.objects.create(
        name="Root", slug="root", first_user=alice, second_user=bob, required=2, enabled=True,
        signing_seed=crypto.new_signing_seed())
    credential = EmergencyCredential(policy=policy, name="Cloud root")
    services.set_credential(credential, username="root", secret=SECRET, notes=SECRET)
    credential.save()
    services.issue_bundle(policy)
    token = services.generate_token(policy, actor=alice)
    fetched = client.get("/api/v1/recovery/root/bundle", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert fetched.status_code == 200 and SECRET.encode() not in fetched.content

    attempt = services.start_attempt(policy, actor=alice, reason="outage",
                                     code=current_totp(alice.totpdevice_set.get()))
    services.confirm(attempt, actor=bob, code=current_totp(bob.totpdevice_set.get()))
    assert services.reveal(attempt, actor=bob)[0]["secret"] == SECRET  # it was there to see
    services.send_rotation_reminders()
    services.record_rotation(EmergencyCredential.objects.get(), actor=alice, secret=NEW_SECRET)
    send_due_deliveries()

    dump = database_dump()
    places = {"database dump": dump, "logs": caplog.text, "task arguments": task_arguments(),
              "alerts": "\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox)}
    for place, text in places.items():
        for sentinel in (SECRET, NEW_SECRET, *PASSPHRASES.values()):
            assert text.count(sentinel) == 0, f"{sentinel!r} found in the {place}"
    # The ciphertext is there, and it is what holds the secret.
    stored = EmergencyCredential.objects.get()
    assert stored.secret_encrypted in dump
    assert crypto.decrypt_field(stored.secret_encrypted) == NEW_SECRET
