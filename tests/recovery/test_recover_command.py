"""`manage.py recover`: offline break-glass with no database. It refuses a damaged bundle before
asking anyone anything, lets holders retry or step aside, reveals the credentials only once
enough have answered, and leaves a local log line with no secret in it."""

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from recovery.crypto import (
    build_bundle,
    bundle_fingerprint,
    enrol,
    new_signing_key,
    signing_key_fingerprint,
)

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASES = {
    "alice": "alice-SENTINEL-passphrase-1",
    "bob": "bob SENTINEL passphrase 22 ",  # the trailing space belongs to it
    "carol": "carol-SENTINEL-passphrase-333",
}
SECRET = "SENTINEL-root-password-7f3a9c"
SIGNING_KEY = new_signing_key()


@pytest.fixture
def bundle_file(tmp_path) -> Path:
    """A 2-of-3 bundle, as the authorized application would have downloaded it."""
    path = tmp_path / "db-root-v4.json"
    path.write_bytes(build_bundle(
        policy="db-root", version=4, threshold=2,
        holders=[(username, enrol(passphrase)) for username, passphrase in PASSPHRASES.items()],
        credentials=[{"name": "Database root", "username": "postgres", "secret": SECRET,
                      "notes": "Rotate after use."}],
        signing_key=SIGNING_KEY,
    ))
    return path


def typed(*lines: str) -> io.StringIO:
    return io.StringIO("".join(f"{line}\n" for line in lines))


@dataclass
class Run:
    stdout: str
    stderr: str
    refusal: str = ""  # the CommandError's message, when the command stopped


def recover(bundle: Path, stdin: io.StringIO, **options) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    options.setdefault("log", bundle.parent / "recovery.log")
    try:
        call_command("recover", str(bundle), stdin=stdin, stdout=stdout, stderr=stderr,
                     **options)
    except CommandError as refusal:
        return Run(stdout.getvalue(), stderr.getvalue(), str(refusal))
    return Run(stdout.getvalue(), stderr.getvalue())


def log_entries(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in (bundle.parent / "recovery.log").read_text().splitlines()]


def test_two_holders_open_the_bundle_and_the_opening_is_logged(bundle_file):
    run = recover(bundle_file, typed("alice", PASSPHRASES["alice"], "bob", PASSPHRASES["bob"]))
    raw = bundle_file.read_bytes()
    assert (run.refusal, run.stderr) == ("", "")
    assert "policy 'db-root', version 4" in run.stdout
    assert "Opens with 2 of 3 holders: alice, bob, carol" in run.stdout
    assert bundle_fingerprint(raw) in run.stdout
    assert signing_key_fingerprint(SIGNING_KEY.verify_key) in run.stdout
    assert "Compare both fingerprints with the printed recovery kit." in run.stdout
    assert f"secret:   {SECRET}" in run.stdout
    assert run.stdout.index("Holder 2 of 2") < run.stdout.index(SECRET)
    [entry] = log_entries(bundle_file)
    assert entry["participants"] == ["alice", "bob"]
    assert (entry["policy"], entry["version"]) == ("db-root", 4)
    assert entry["bundle"] == bundle_fingerprint(raw)
    assert entry["at"].endswith("Z")


def test_a_wrong_passphrase_is_reported_and_may_be_retried(bundle_file):
    run = recover(bundle_file, typed("alice", "not-alice-passphrase", "alice", PASSPHRASES["alice"],
                                     "carol", PASSPHRASES["carol"]))
    assert "wrong passphrase for alice" in run.stderr
    assert SECRET in run.stdout
    assert log_entries(bundle_file)[0]["participants"] == ["alice", "carol"]


def test_a_holder_who_forgot_may_step_aside_for_another(bundle_file):
    run = recover(bundle_file, typed("alice", "not-alice-passphrase", "bob", PASSPHRASES["bob"],
                                     "carol", PASSPHRASES["carol"]))
    assert "wrong passphrase for alice" in run.stderr
    assert SECRET in run.stdout
    assert log_entries(bundle_file)[0]["participants"] == ["bob", "carol"]


def test_strangers_and_repeated_holders_are_asked_again(bundle_file):
    run = recover(bundle_file, typed("mallory", "alice", PASSPHRASES["alice"], "alice", "",
                                     "carol", PASSPHRASES["carol"]))
    assert "mallory is not a holder of this bundle." in run.stderr
    assert "alice has already answered." in run.stderr
    assert "Passphrase of mallory" not in run.stdout
    assert SECRET in run.stdout


def test_one_holder_alone_reveals_nothing_and_logs_nothing(bundle_file):
    run = recover(bundle_file, typed("alice", PASSPHRASES["alice"]))
    assert run.refusal == "gave up with 1 of the 2 holders needed: nothing was revealed"
    assert SECRET not in run.stdout
    assert log_entries(bundle_file) == []


def test_a_wrong_passphrase_then_silence_reveals_nothing(bundle_file):
    run = recover(bundle_file, typed("alice", PASSPHRASES["bob"]))
    assert run.refusal.startswith("gave up with 0 of the 2")
    assert "wrong passphrase for alice" in run.stderr
    assert SECRET not in run.stdout


def damage(raw: bytes, where: str) -> bytes:
    document = json.loads(raw)
    targets = {
        "ciphertext": document["credentials"][10:20],
        "share": document["holders"][1]["share"][10:20],
        "header": '"threshold": 2',
        "signature": document["signature"][:10],
    }
    position = raw.index(targets[where].encode()) + len(targets[where]) - 1
    return raw[:position] + bytes([raw[position] ^ 0x01]) + raw[position + 1:]


@pytest.mark.parametrize("where", ["ciphertext", "share", "header", "signature", "truncated"])
def test_a_damaged_bundle_is_refused_before_anyone_is_asked(bundle_file, where):
    raw = bundle_file.read_bytes()
    bundle_file.write_bytes(raw[:len(raw) // 2] if where == "truncated" else damage(raw, where))
    answers = typed("alice", PASSPHRASES["alice"], "bob", PASSPHRASES["bob"])
    run = recover(bundle_file, answers)
    assert run.refusal.startswith("bundle refused, nothing was asked")
    assert answers.tell() == 0
    assert "username" not in run.stdout
    assert not (bundle_file.parent / "recovery.log").exists()


def test_a_bundle_signed_by_another_key_is_refused_when_the_kit_key_is_given(bundle_file):
    answers = typed("alice", PASSPHRASES["alice"], "bob", PASSPHRASES["bob"])
    other = signing_key_fingerprint(new_signing_key().verify_key)
    run = recover(bundle_file, answers, expected_key=other)
    assert "signed by another key" in run.refusal
    assert answers.tell() == 0

    run = recover(bundle_file, answers,
                  expected_key=signing_key_fingerprint(SIGNING_KEY.verify_key))
    assert "The signing key is the one expected." in run.stdout
    assert SECRET in run.stdout


def test_an_unwritable_log_stops_the_command_before_anyone_is_asked(bundle_file, tmp_path):
    answers = typed("alice", PASSPHRASES["alice"], "bob", PASSPHRASES["bob"])
    run = recover(bundle_file, answers, log=tmp_path / "missing-folder" / "recovery.log")
    assert run.refusal.startswith("cannot write the recovery log")
    assert answers.tell() == 0
    assert SECRET not in run.stdout


def test_a_missing_bundle_file_is_a_clear_error(tmp_path):
    run = recover(tmp_path / "nowhere.json", typed())
    assert run.refusal.startswith("cannot read the bundle")


def test_no_passphrase_reaches_the_output_or_the_log_and_the_secret_only_the_end(bundle_file):
    run = recover(bundle_file, typed("alice", "not-alice-passphrase", "alice", PASSPHRASES["alice"],
                                     "bob", PASSPHRASES["bob"]))
    log = (bundle_file.parent / "recovery.log").read_text()
    for passphrase in [*PASSPHRASES.values(), "not-alice-passphrase"]:
        assert passphrase.strip() not in run.stdout + run.stderr + log
    assert SECRET not in run.stderr + log
    assert run.stdout.count(SECRET) == 1
    assert run.stdout.rindex("Holder 2 of 2") < run.stdout.index(SECRET)
    assert "SENTINEL" not in run.stdout.replace(SECRET, "")


def run_in_a_fresh_process(bundle: Path, stdin: str) -> subprocess.CompletedProcess:
    # No server configuration at all, and a database that does not exist: what an operator has
    # on a spare laptop when everything else is down.
    env = {name: value for name, value in os.environ.items()
           if name not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY", "FIELD_ENCRYPTION_KEY"}}
    env.update(ENVIRONMENT="development",
               DATABASE_URL="postgres://nobody:nothing@127.0.0.1:9/no_such_database")
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "recover", str(bundle)],
                          input=stdin, cwd=bundle.parent, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_real_process_opens_the_bundle_without_a_database(bundle_file):
    result = run_in_a_fresh_process(
        bundle_file, f"carol\n{PASSPHRASES['carol']}\nbob\n{PASSPHRASES['bob']}\n")
    assert result.returncode == 0, result.stderr
    assert f"secret:   {SECRET}" in result.stdout
    assert log_entries(bundle_file)[0]["participants"] == ["carol", "bob"]
    for passphrase in PASSPHRASES.values():
        assert passphrase.strip() not in result.stdout + result.stderr


def test_a_real_process_refuses_a_damaged_bundle_with_a_failing_exit_code(bundle_file):
    bundle_file.write_bytes(damage(bundle_file.read_bytes(), "share"))
    result = run_in_a_fresh_process(bundle_file, f"alice\n{PASSPHRASES['alice']}\n")
    assert result.returncode == 1
    assert "bundle refused, nothing was asked" in result.stderr
    assert "username" not in result.stdout
