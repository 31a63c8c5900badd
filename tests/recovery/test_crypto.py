"""recovery.crypto: field encryption with key rotation, passphrase-sealed recovery keys, and the
signed Shamir bundle that any `threshold` holders can open and no fewer (QUALITY Q10)."""

import base64
import json
import os
import subprocess
import sys
import unicodedata
from itertools import combinations, permutations
from pathlib import Path

import pytest
from Crypto.Protocol.SecretSharing import Shamir
from nacl.exceptions import CryptoError as DecryptionFailed
from nacl.pwhash import argon2id
from nacl.secret import SecretBox

from recovery.crypto import (
    BundleError,
    CryptoError,
    NotEnoughShares,
    PassphraseTooWeak,
    WrongPassphrase,
    argon2_limits,
    build_bundle,
    bundle_fingerprint,
    decrypt_field,
    encrypt_field,
    enrol,
    generate_field_key,
    needs_reencryption,
    new_signing_key,
    open_bundle,
    open_shares,
    reencrypt_field,
    signing_key_fingerprint,
    signing_key_from_seed,
    signing_key_to_seed,
    unlock_private_key,
    unseal_share,
    verify_bundle,
    verify_key_text,
)

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASES = {
    "alice": "alice-SENTINEL-passphrase-1",
    "bob": "bob-SENTINEL-passphrase-22",
    "carol": "carol-SENTINEL-passphrase-333",
}
SECRET = "SENTINEL-root-password-7f3a9c"
CREDENTIALS = [
    {"name": "Database root", "username": "postgres", "secret": SECRET, "notes": "Port 5432"},
    {"name": "Cloud console", "username": "root@example.org", "secret": "cl0ud-pässword",
     "notes": ""},
]


def issue_bundle(threshold: int, usernames=("alice", "bob", "carol"), *, signing_key=None,
                 version: int = 1) -> bytes:
    return build_bundle(
        policy="db-root", version=version, threshold=threshold,
        holders=[(username, enrol(PASSPHRASES[username])) for username in usernames],
        credentials=CREDENTIALS, signing_key=signing_key or new_signing_key(),
    )


def flipped(raw: bytes, position: int, mask: int = 0x01) -> bytes:
    return raw[:position] + bytes([raw[position] ^ mask]) + raw[position + 1:]


# --- Field encryption -----------------------------------------------------------------------

def test_a_field_round_trips_and_each_encryption_differs():
    first, second = encrypt_field(SECRET), encrypt_field(SECRET)
    assert first != second
    assert SECRET not in first
    assert decrypt_field(first) == decrypt_field(second) == SECRET
    assert decrypt_field(encrypt_field("")) == ""
    assert decrypt_field(encrypt_field("naïve ✓ 🔑")) == "naïve ✓ 🔑"


def test_rotation_keeps_old_tokens_readable_until_the_old_key_is_dropped(settings):
    old_key, new_key = generate_field_key(), generate_field_key()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    old_token = encrypt_field(SECRET)
    assert not needs_reencryption(old_token)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert decrypt_field(old_token) == SECRET
    assert needs_reencryption(old_token)
    new_token = encrypt_field("fresh")
    assert not needs_reencryption(new_token)
    assert new_token.split(":")[1] != old_token.split(":")[1]
    rotated = reencrypt_field(old_token)
    assert not needs_reencryption(rotated)

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert decrypt_field(rotated) == SECRET
    with pytest.raises(CryptoError, match="lacks"):
        decrypt_field(old_token)


def test_a_tampered_or_truncated_field_is_refused():
    token = encrypt_field(SECRET)
    prefix, key_id, body = token.split(":")
    for position in range(len(body)):
        replacement = "A" if body[position] != "A" else "B"
        altered = f"{prefix}:{key_id}:{body[:position]}{replacement}{body[position + 1:]}"
        with pytest.raises(CryptoError):
            decrypt_field(altered)
    for length in range(len(token)):
        with pytest.raises(CryptoError):
            decrypt_field(token[:length])


@pytest.mark.parametrize("token", [
    "", "plain text", "enc1:deadbeef", "enc2:{id}:{body}", "enc1:{id}:{body}:extra",
    "enc1:{id}:not base64!", "enc1:00000000:{body}",
])
def test_anything_but_a_whole_token_under_a_known_key_is_refused(token):
    _, key_id, body = encrypt_field(SECRET).split(":")
    with pytest.raises(CryptoError):
        decrypt_field(token.format(id=key_id, body=body))


def settings_in_a_fresh_process(**environment: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           if name not in {"DJANGO_SETTINGS_MODULE", "FIELD_ENCRYPTION_KEY"}}
    env.update(SECRET_KEY="production-secret-key-" + "x9Y!" * 10, AUDIT_HMAC_KEY="h" * 40,
               **environment)
    return subprocess.run(
        [sys.executable, "-c", "from config import settings; "
                               "print(','.join(settings.FIELD_ENCRYPTION_KEYS))"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("value", [
    "", "not-a-key", "c2hvcnQta2V5LTE2Ynl0ZQ==", "ZGV2ZWxvcG1lbnQtZmllbGQta2V5LW5ldmVyLXByb2Q=",
])
def test_production_refuses_a_missing_malformed_or_development_field_key(value):
    result = settings_in_a_fresh_process(ENVIRONMENT="production", FIELD_ENCRYPTION_KEY=value)
    assert result.returncode != 0
    assert "ImproperlyConfigured: FIELD_ENCRYPTION_KEY" in result.stderr
    assert "urlsafe_b64encode(os.urandom(32))" in result.stderr


def test_production_takes_several_keys_and_development_has_its_own():
    keys = [generate_field_key(), generate_field_key()]
    production = settings_in_a_fresh_process(ENVIRONMENT="production",
                                             FIELD_ENCRYPTION_KEY=" , ".join(keys))
    assert production.stdout.strip() == ",".join(keys), production.stderr
    development = settings_in_a_fresh_process(ENVIRONMENT="development", FIELD_ENCRYPTION_KEY="")
    assert development.stdout.strip() == "ZGV2ZWxvcG1lbnQtZmllbGQta2V5LW5ldmVyLXByb2Q="


# --- Personal recovery keys -----------------------------------------------------------------

def test_an_enrolment_opens_with_its_passphrase_only():
    enrolment = json.loads(json.dumps(enrol(PASSPHRASES["alice"])))
    private_key = unlock_private_key(enrolment, PASSPHRASES["alice"])
    assert base64.urlsafe_b64encode(bytes(private_key.public_key)).decode() == (
        enrolment["public_key"])
    with pytest.raises(WrongPassphrase):
        unlock_private_key(enrolment, PASSPHRASES["bob"])
    assert PASSPHRASES["alice"] not in json.dumps(enrolment)


def test_a_passphrase_needs_twelve_characters():
    with pytest.raises(PassphraseTooWeak):
        enrol("elevenchars")
    assert isinstance(PassphraseTooWeak("x"), ValueError)
    assert unlock_private_key(enrol("twelve chars"), "twelve chars")


def test_the_same_passphrase_opens_however_its_accents_were_typed():
    composed = "café-crème-brûlée"
    enrolment = enrol(unicodedata.normalize("NFD", composed))
    assert unlock_private_key(enrolment, unicodedata.normalize("NFC", composed))


def test_an_enrolment_keeps_opening_after_the_argon2_limits_change(settings):
    enrolment = enrol(PASSPHRASES["bob"])
    assert (enrolment["opslimit"], enrolment["memlimit"]) == (1, argon2id.MEMLIMIT_MIN)
    settings.RECOVERY_ARGON2_OPSLIMIT = 2
    settings.RECOVERY_ARGON2_MEMLIMIT = argon2id.MEMLIMIT_MIN * 2
    assert enrol(PASSPHRASES["bob"])["opslimit"] == 2
    assert unlock_private_key(enrolment, PASSPHRASES["bob"])


def test_production_argon2_limits_are_at_least_interactive(settings):
    del settings.RECOVERY_ARGON2_OPSLIMIT
    del settings.RECOVERY_ARGON2_MEMLIMIT
    opslimit, memlimit = argon2_limits()
    assert opslimit >= argon2id.OPSLIMIT_INTERACTIVE
    assert memlimit >= argon2id.MEMLIMIT_INTERACTIVE


# --- Opening bundles: every subset of holders -------------------------------------------------

def answer_orders(usernames: tuple[str, ...]):
    for size in range(len(usernames) + 1):
        for subset in combinations(usernames, size):
            yield from permutations(subset)


@pytest.mark.parametrize(("threshold", "usernames"), [
    (1, ("alice",)), (2, ("alice", "bob", "carol")), (3, ("alice", "bob", "carol")),
    (1, ("alice", "bob", "carol")), (2, ("alice", "bob")),
])
def test_exactly_the_subsets_with_enough_holders_open_the_bundle(threshold, usernames):
    bundle = verify_bundle(issue_bundle(threshold, usernames))
    for answerers in answer_orders(usernames):
        answers = [(username, PASSPHRASES[username]) for username in answerers]
        if len(answerers) >= threshold:
            assert open_bundle(bundle, answers) == CREDENTIALS, answerers
        else:
            with pytest.raises(NotEnoughShares):
                open_bundle(bundle, answers)


def test_a_wrong_passphrase_fails_naming_its_holder_and_reveals_nothing():
    bundle = verify_bundle(issue_bundle(2))
    answers = [("alice", PASSPHRASES["alice"]), ("bob", PASSPHRASES["carol"]),
               ("carol", PASSPHRASES["carol"])]
    with pytest.raises(WrongPassphrase, match="bob") as refusal:
        open_bundle(bundle, answers)
    assert refusal.value.username == "bob"
    assert PASSPHRASES["carol"] not in str(refusal.value)


@pytest.mark.parametrize(("answerers", "message"), [
    (("alice", "mallory"), "mallory is not a holder"),
    (("alice", "alice"), "alice answered twice"),
])
def test_strangers_and_repeated_holders_are_refused(answerers, message):
    bundle = verify_bundle(issue_bundle(2))
    answers = [(username, PASSPHRASES.get(username, "x" * 12)) for username in answerers]
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle, answers)


def test_one_share_alone_says_nothing_of_the_data_key():
    # Guards the Shamir split itself, not just the count of answers: with a threshold of 2 a
    # single share, read as if one were enough, does not open the credentials.
    bundle = verify_bundle(issue_bundle(2))
    share = unseal_share(bundle, "alice", PASSPHRASES["alice"]).share
    guess = Shamir.combine([(share[0], share[1:17])]) + Shamir.combine([(share[0], share[17:])])
    with pytest.raises(DecryptionFailed):
        SecretBox(guess).decrypt(base64.urlsafe_b64decode(bundle["credentials"]))
    assert open_bundle(bundle, [("alice", PASSPHRASES["alice"]), ("bob", PASSPHRASES["bob"])])


def test_shares_of_one_bundle_do_not_open_another():
    older, newer = verify_bundle(issue_bundle(2)), verify_bundle(issue_bundle(2, version=2))
    shares = [unseal_share(older, name, PASSPHRASES[name]) for name in ("alice", "bob")]
    assert open_shares(older, shares) == CREDENTIALS
    with pytest.raises(BundleError, match="do not open this bundle"):
        open_shares(newer, shares)


def test_an_unsealed_share_does_not_show_itself():
    bundle = verify_bundle(issue_bundle(1, ("alice",)))
    share = unseal_share(bundle, "alice", PASSPHRASES["alice"])
    assert repr(share) == "UnsealedShare(username='alice')"


# --- Verifying bundles ----------------------------------------------------------------------

def test_a_bundle_is_one_stable_json_document():
    raw = issue_bundle(2)
    document = json.loads(raw)
    assert list(document) == sorted(document)
    assert raw == (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()
    assert document["format"] == "breakglass-recovery-bundle/1"
    assert (document["policy"], document["version"], document["threshold"]) == ("db-root", 1, 2)
    assert [holder["username"] for holder in document["holders"]] == ["alice", "bob", "carol"]
    assert verify_bundle(raw) == document


def test_every_flipped_byte_is_refused():
    raw = issue_bundle(2)
    for position in range(len(raw)):
        with pytest.raises(BundleError):
            verify_bundle(flipped(raw, position))
    with pytest.raises(BundleError, match="not complete JSON"):
        verify_bundle(flipped(raw, len(raw) // 2, mask=0x80))


def test_every_truncation_is_refused():
    raw = issue_bundle(2)
    for length in range(len(raw)):
        with pytest.raises(BundleError):
            verify_bundle(raw[:length])


def test_the_same_signature_spelled_another_way_is_refused():
    # Base64's last character before "==" carries four unused bits; a lenient decoder reads
    # the altered text as the same signature, and the bundle would verify with other bytes.
    document = json.loads(issue_bundle(2))
    signature = document["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = alphabet[alphabet.index(signature[-3]) ^ 0x01]
    document["signature"] = signature[:-3] + respelled + "=="
    assert base64.urlsafe_b64decode(document["signature"]) == base64.urlsafe_b64decode(signature)
    with pytest.raises(BundleError, match="signature"):
        verify_bundle((json.dumps(document, sort_keys=True, indent=2) + "\n").encode())


def test_an_edited_threshold_is_refused_even_when_well_formed():
    document = json.loads(issue_bundle(3))
    document["threshold"] = 1
    edited = (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(edited)
    with pytest.raises(BundleError, match="signature does not match"):
        open_bundle(document, [("alice", PASSPHRASES["alice"])])


def test_a_reformatted_bundle_is_refused_so_the_kit_fingerprint_stays_true():
    raw = issue_bundle(2)
    with pytest.raises(BundleError, match="reformatted"):
        verify_bundle(json.dumps(json.loads(raw)).encode())


def test_a_bundle_signed_by_another_key_is_refused_when_the_kit_key_is_given():
    kit_key, forger_key = new_signing_key(), new_signing_key()
    genuine, forged = issue_bundle(3, signing_key=kit_key), issue_bundle(1, signing_key=forger_key)
    fingerprint = signing_key_fingerprint(kit_key.verify_key)
    assert verify_bundle(genuine, expected_verify_key=fingerprint)
    assert verify_bundle(genuine, expected_verify_key=fingerprint.replace(" ", "").upper())
    assert verify_bundle(genuine, expected_verify_key=verify_key_text(kit_key))
    assert verify_bundle(forged)  # well signed, by someone: only the kit says by whom
    for expected in (fingerprint, verify_key_text(kit_key)):
        with pytest.raises(BundleError, match="signed by another key"):
            verify_bundle(forged, expected_verify_key=expected)


def test_a_signing_key_survives_its_seed():
    signing_key = new_signing_key()
    restored = signing_key_from_seed(signing_key_to_seed(signing_key))
    assert verify_key_text(restored) == verify_key_text(signing_key)
    raw = issue_bundle(1, ("alice",), signing_key=restored)
    assert verify_bundle(raw, expected_verify_key=signing_key_fingerprint(signing_key.verify_key))


def test_fingerprints_are_sha256_in_groups_of_four():
    raw = issue_bundle(1, ("alice",))
    fingerprint = bundle_fingerprint(raw)
    assert len(fingerprint.split(" ")) == 16
    assert all(len(group) == 4 for group in fingerprint.split(" "))
    assert fingerprint != bundle_fingerprint(raw + b" ")
    signing_key = new_signing_key()
    assert (signing_key_fingerprint(signing_key.verify_key)
            == signing_key_fingerprint(verify_key_text(signing_key)))


@pytest.mark.parametrize(("threshold", "holders", "message"), [
    (1, [], "1 to 3 holders"),
    (1, ["alice", "bob", "carol", "dave"], "1 to 3 holders"),
    (0, ["alice", "bob"], "threshold must be 1 to 2"),
    (3, ["alice", "bob"], "threshold must be 1 to 2"),
    (2, ["alice", "alice"], "distinct users"),
])
def test_a_bundle_is_not_built_for_an_impossible_quorum(threshold, holders, message):
    with pytest.raises(BundleError, match=message):
        build_bundle(policy="db-root", version=1, threshold=threshold,
                     holders=[(name, enrol(PASSPHRASES.get(name, "x" * 12))) for name in holders],
                     credentials=CREDENTIALS, signing_key=new_signing_key())


def test_one_person_cannot_hold_two_shares_under_two_names():
    enrolment = enrol(PASSPHRASES["alice"])
    with pytest.raises(BundleError, match="distinct recovery keys"):
        build_bundle(policy="db-root", version=1, threshold=2,
                     holders=[("alice", enrolment), ("alias", enrolment)],
                     credentials=CREDENTIALS, signing_key=new_signing_key())


def test_no_secret_or_passphrase_is_in_a_bundle_or_an_enrolment():
    raw = issue_bundle(2)
    enrolments = json.dumps([enrol(passphrase) for passphrase in PASSPHRASES.values()])
    for sentinel in [SECRET, "SENTINEL", *PASSPHRASES.values()]:
        assert sentinel.encode() not in raw
        assert sentinel not in enrolments
