"""The cryptography of quorum recovery (SPEC §2.5), as pure functions that know no model.

- Field encryption for emergency credentials at rest: SecretBox under FIELD_ENCRYPTION_KEYS.
  The first key encrypts and every key decrypts, so keys rotate without downtime.
- Personal recovery key pairs: an X25519 private key sealed under an Argon2id key derived from a
  passphrase the server never keeps.
- The signed offline bundle: the credentials under a random data key, the data key split with
  Shamir so that any `threshold` holders rebuild it and no fewer, each share sealed to its
  holder's public key, and the whole signed with Ed25519.

Every primitive comes from PyNaCl (libsodium) or PyCryptodome; nothing here is hand-made.
"""

import base64
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.utils
from Crypto.Protocol.SecretSharing import Shamir
from django.conf import settings
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.pwhash import argon2id
from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey

CIPHERTEXT_PREFIX = "enc1"
BUNDLE_FORMAT = "breakglass-recovery-bundle/1"
MIN_PASSPHRASE_LENGTH = 12
MAX_HOLDERS = 3
# Defaults for new enrolments: MODERATE is libsodium's ~0.3 s / 256 MiB, above INTERACTIVE
# because a bundle lets whoever holds it guess passphrases offline. Settings
# RECOVERY_ARGON2_OPSLIMIT / RECOVERY_ARGON2_MEMLIMIT override them (tests lower them). Each
# enrolment records the limits it used, so changing these never strands an old one.
ARGON2_OPSLIMIT = argon2id.OPSLIMIT_MODERATE
ARGON2_MEMLIMIT = argon2id.MEMLIMIT_MODERATE
# PyCryptodome's Shamir shares 16-byte secrets: the 32-byte data key travels as two halves,
# split with the same threshold. A share is one index byte and the two half-shares.
HALF = 16
SHARE_SIZE = 1 + 2 * HALF
CREDENTIAL_FIELDS = ("name", "username", "secret", "notes")
ENROLMENT_FIELDS = ("public_key", "sealed_private_key", "salt", "opslimit", "memlimit")
BUNDLE_FIELDS = ("credentials", "format", "holders", "policy", "signature", "threshold",
                 "verify_key", "version")
HOLDER_FIELDS = ("enrolment", "share", "username")


class CryptoError(Exception):
    """Base of every refusal here. Nothing was decrypted or revealed when it is raised."""


class PassphraseTooWeak(CryptoError, ValueError):
    pass


class WrongPassphrase(CryptoError):
    def __init__(self, username: str | None = None) -> None:
        self.username = username
        super().__init__(f"wrong passphrase for {username}" if username else "wrong passphrase")


class BundleError(CryptoError, ValueError):
    """A bundle (or the inputs to build one) is malformed, tampered with or misused."""


class NotEnoughShares(CryptoError):
    def __init__(self, have: int, need: int) -> None:
        self.have, self.need = have, need
        super().__init__(f"only {have} of the {need} holders needed answered: nothing revealed")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: object, what: str, *, size: int | None = None,
           error: type[CryptoError] = CryptoError) -> bytes:
    """Decode only the canonical encoding, so no two texts (one of them altered) mean the same
    bytes: a lenient decoder ignores stray characters and unused trailing bits."""
    if not isinstance(text, str):
        raise error(f"{what} is not base64 text")
    try:
        data = base64.urlsafe_b64decode(text.encode("ascii"))
    except ValueError:
        raise error(f"{what} is not base64 text") from None
    if _b64(data) != text or (size is not None and len(data) != size):
        raise error(f"{what} is not canonical base64" + (f" of {size} bytes" if size else ""))
    return data


def _grouped(hex_digest: str) -> str:
    return " ".join(hex_digest[start:start + 4] for start in range(0, len(hex_digest), 4))


# --- Field encryption -------------------------------------------------------------------------

def generate_field_key() -> str:
    return _b64(nacl.utils.random(SecretBox.KEY_SIZE))


def _field_keys() -> list[bytes]:
    keys = [_unb64(key, "a FIELD_ENCRYPTION_KEY", size=SecretBox.KEY_SIZE)
            for key in settings.FIELD_ENCRYPTION_KEYS]
    if not keys:
        raise CryptoError("no FIELD_ENCRYPTION_KEY is configured")
    return keys


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _read_token(token: object) -> tuple[str, bytes]:
    parts = token.split(":") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != CIPHERTEXT_PREFIX:
        raise CryptoError("not an encrypted field")
    return parts[1], _unb64(parts[2], "the encrypted field")


def encrypt_field(plaintext: str) -> str:
    """`enc1:<key id>:<SecretBox nonce and ciphertext>` under the first configured key."""
    key = _field_keys()[0]
    ciphertext = SecretBox(key).encrypt(plaintext.encode("utf-8"))
    return f"{CIPHERTEXT_PREFIX}:{_key_id(key)}:{_b64(bytes(ciphertext))}"


def decrypt_field(token: str) -> str:
    key_id, ciphertext = _read_token(token)
    keys = [key for key in _field_keys() if _key_id(key) == key_id]
    if not keys:
        raise CryptoError(f"encrypted under key {key_id}, which FIELD_ENCRYPTION_KEY lacks")
    for key in keys:  # two keys sharing an id is unlikely, not impossible
        try:
            return SecretBox(key).decrypt(ciphertext).decode("utf-8")
        except (nacl.exceptions.CryptoError, UnicodeDecodeError):
            continue
    raise CryptoError("the encrypted field is damaged or was tampered with")


def needs_reencryption(token: str) -> bool:
    return _read_token(token)[0] != _key_id(_field_keys()[0])


def reencrypt_field(token: str) -> str:
    return encrypt_field(decrypt_field(token))


# --- Personal recovery keys -------------------------------------------------------------------

def argon2_limits() -> tuple[int, int]:
    return (getattr(settings, "RECOVERY_ARGON2_OPSLIMIT", ARGON2_OPSLIMIT),
            getattr(settings, "RECOVERY_ARGON2_MEMLIMIT", ARGON2_MEMLIMIT))


def _normalised(passphrase: str) -> str:
    # The same passphrase typed on macOS (decomposed accents) and elsewhere must derive one key.
    return unicodedata.normalize("NFC", passphrase)


def _passphrase_box(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> SecretBox:
    key = argon2id.kdf(SecretBox.KEY_SIZE, _normalised(passphrase).encode("utf-8"), salt,
                       opslimit=opslimit, memlimit=memlimit)
    return SecretBox(key)


def enrol(passphrase: str) -> dict:
    """A new key pair whose private half only `passphrase` opens. JSON-safe fields, ready for
    RecoveryEnrolment; the passphrase itself is not in them and is kept nowhere."""
    if len(_normalised(passphrase)) < MIN_PASSPHRASE_LENGTH:
        raise PassphraseTooWeak(
            f"a recovery passphrase needs at least {MIN_PASSPHRASE_LENGTH} characters")
    opslimit, memlimit = argon2_limits()
    salt = nacl.utils.random(argon2id.SALTBYTES)
    private_key = PrivateKey.generate()
    sealed = _passphrase_box(passphrase, salt, opslimit, memlimit).encrypt(bytes(private_key))
    return {"public_key": _b64(bytes(private_key.public_key)),
            "sealed_private_key": _b64(bytes(sealed)), "salt": _b64(salt),
            "opslimit": opslimit, "memlimit": memlimit}


def _read_enrolment(enrolment: object, error: type[CryptoError] = CryptoError) -> tuple:
    if not isinstance(enrolment, dict) or sorted(enrolment) != sorted(ENROLMENT_FIELDS):
        raise error(f"an enrolment has exactly the fields {', '.join(ENROLMENT_FIELDS)}")
    opslimit, memlimit = enrolment["opslimit"], enrolment["memlimit"]
    if not (type(opslimit) is int and argon2id.OPSLIMIT_MIN <= opslimit <= argon2id.OPSLIMIT_MAX
            and type(memlimit) is int
            and argon2id.MEMLIMIT_MIN <= memlimit <= argon2id.MEMLIMIT_MAX):
        raise error("an enrolment's Argon2id limits are out of range")
    return (_unb64(enrolment["public_key"], "a public key", size=PublicKey.SIZE, error=error),
            _unb64(enrolment["sealed_private_key"], "a sealed private key",
                   size=SecretBox.NONCE_SIZE + PrivateKey.SIZE + SecretBox.MACBYTES, error=error),
            _unb64(enrolment["salt"], "a salt", size=argon2id.SALTBYTES, error=error),
            opslimit, memlimit)


def unlock_private_key(enrolment: dict, passphrase: str) -> PrivateKey:
    public_key, sealed, salt, opslimit, memlimit = _read_enrolment(enrolment)
    try:
        seed = _passphrase_box(passphrase, salt, opslimit, memlimit).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase() from None
    private_key = PrivateKey(seed)
    if bytes(private_key.public_key) != public_key:
        raise CryptoError("the enrolment's sealed key does not match its public key")
    return private_key


# --- Signing keys and fingerprints --------------------------------------------------------------

def new_signing_key() -> SigningKey:
    return SigningKey.generate()


def signing_key_to_seed(signing_key: SigningKey) -> str:
    """The 32-byte seed as text; store it only through encrypt_field()."""
    return _b64(bytes(signing_key))


def signing_key_from_seed(seed: str) -> SigningKey:
    return SigningKey(_unb64(seed, "a signing seed", size=32))


def new_signing_seed() -> str:
    """A fresh signing key's seed, encrypted for storage on its policy."""
    return encrypt_field(signing_key_to_seed(new_signing_key()))


def verify_key_text(signing_key: SigningKey) -> str:
    return _b64(bytes(signing_key.verify_key))


def bundle_fingerprint(raw: bytes) -> str:
    return _grouped(hashlib.sha256(raw).hexdigest())


def signing_key_fingerprint(verify_key: VerifyKey | str) -> str:
    """For the printed recovery kit: SHA-256 of the Ed25519 verify key, in groups of four."""
    if isinstance(verify_key, str):
        verify_key = VerifyKey(_unb64(verify_key, "a verify key", size=32))
    return _grouped(hashlib.sha256(bytes(verify_key)).hexdigest())


def _is_expected_key(verify_key: str, expected: str) -> bool:
    compact = "".join(expected.split()).lower()
    if re.fullmatch(r"[0-9a-f]{64}", compact):
        return compact == signing_key_fingerprint(verify_key).replace(" ", "")
    return expected.strip() == verify_key


# --- Bundle structure ---------------------------------------------------------------------------

def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


def _document_bytes(document: dict) -> bytes:
    # One fixed serialisation, so the fingerprint on the printed kit names the signed content.
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode("ascii")


def _check_header(document: object) -> None:
    if not isinstance(document, dict) or sorted(document) != sorted(BUNDLE_FIELDS):
        raise BundleError("not a recovery bundle: its fields are not the expected ones")
    if document["format"] != BUNDLE_FORMAT:
        raise BundleError(f"unsupported bundle format {document['format']!r}")
    if not isinstance(document["policy"], str) or not document["policy"]:
        raise BundleError("a bundle names its policy")
    if type(document["version"]) is not int or document["version"] < 1:
        raise BundleError("a bundle's version is a positive whole number")
    _unb64(document["credentials"], "the credentials", error=BundleError)
    _unb64(document["verify_key"], "the verify key", size=32, error=BundleError)
    _unb64(document["signature"], "the signature", size=64, error=BundleError)


def _check_roster(holders: list[dict], threshold: object) -> None:
    """Who holds a share and how many must answer; checked when building and when reading."""
    if not 1 <= len(holders) <= MAX_HOLDERS:
        raise BundleError(f"a bundle has 1 to {MAX_HOLDERS} holders")
    if type(threshold) is not int or not 1 <= threshold <= len(holders):
        raise BundleError(f"the threshold must be 1 to {len(holders)}, the number of holders")
    for holder in holders:
        if not isinstance(holder["username"], str) or not holder["username"]:
            raise BundleError("a holder has a username")
        _read_enrolment(holder["enrolment"], error=BundleError)
    if len({holder["username"] for holder in holders}) != len(holders):
        raise BundleError("the holders must be distinct users")
    # One person enrolled under two names would hold two shares.
    if len({holder["enrolment"]["public_key"] for holder in holders}) != len(holders):
        raise BundleError("the holders must have distinct recovery keys")


def _check_holders(holders: object, threshold: object) -> None:
    if not isinstance(holders, list) or not all(
            isinstance(holder, dict) and sorted(holder) == sorted(HOLDER_FIELDS)
            for holder in holders):
        raise BundleError(f"each holder has exactly the fields {', '.join(HOLDER_FIELDS)}")
    for holder in holders:
        _unb64(holder["share"], "a sealed share", error=BundleError)
    _check_roster(holders, threshold)


def _check_signature(document: dict) -> None:
    body = {name: value for name, value in document.items() if name != "signature"}
    verify_key = VerifyKey(_unb64(document["verify_key"], "the verify key", size=32))
    try:
        verify_key.verify(_canonical(body), _unb64(document["signature"], "the signature"))
    except nacl.exceptions.BadSignatureError:
        raise BundleError("the signature does not match: the bundle was altered") from None


def _check_document(document: dict) -> None:
    _check_header(document)
    _check_holders(document["holders"], document["threshold"])
    _check_signature(document)


def _holder(bundle: dict, username: str) -> dict:
    for holder in bundle["holders"]:
        if holder["username"] == username:
            return holder
    names = ", ".join(holder["username"] for holder in bundle["holders"])
    raise BundleError(f"{username} is not a holder of this bundle (holders: {names})")


# --- Building and opening bundles ---------------------------------------------------------------

def _credential_fields(credential: object) -> dict:
    if (not isinstance(credential, dict) or sorted(credential) != sorted(CREDENTIAL_FIELDS)
            or not all(isinstance(value, str) for value in credential.values())):
        raise BundleError("a credential has exactly the text fields "
                          + ", ".join(CREDENTIAL_FIELDS))
    return dict(credential)


def _split_data_key(data_key: bytes, threshold: int, count: int) -> list[bytes]:
    first = Shamir.split(threshold, count, data_key[:HALF])
    second = Shamir.split(threshold, count, data_key[HALF:])
    return [bytes([index]) + half + other for (index, half), (_, other) in zip(first, second,
                                                                               strict=True)]


def _join_data_key(shares: list[bytes]) -> bytes:
    first = [(share[0], share[1:1 + HALF]) for share in shares]
    second = [(share[0], share[1 + HALF:]) for share in shares]
    return Shamir.combine(first) + Shamir.combine(second)


def build_bundle(*, policy: str, version: int, threshold: int, holders: list[tuple[str, dict]],
                 credentials: list[dict], signing_key: SigningKey) -> bytes:
    """The signed offline bundle: UTF-8 JSON that any `threshold` of `holders` can open.

    `holders` are (username, enrolment fields as enrol() returns them): the sealed private key
    travels in the bundle so it opens with every server down. Raises BundleError (a ValueError)
    rather than return a bundle that verify_bundle() would refuse."""
    plaintext = _canonical([_credential_fields(credential) for credential in credentials])
    data_key = nacl.utils.random(SecretBox.KEY_SIZE)
    holder_fields = [{"username": username, "enrolment": enrolment} for username, enrolment
                     in holders]
    _check_roster(holder_fields, threshold)
    shares = _split_data_key(data_key, threshold, len(holders))
    for holder, share in zip(holder_fields, shares, strict=True):
        public_key = PublicKey(_unb64(holder["enrolment"]["public_key"], "a public key"))
        holder["share"] = _b64(SealedBox(public_key).encrypt(share))
        holder["enrolment"] = dict(holder["enrolment"])
    body = {"format": BUNDLE_FORMAT, "policy": policy, "version": version,
            "threshold": threshold, "holders": holder_fields,
            "credentials": _b64(bytes(SecretBox(data_key).encrypt(plaintext))),
            "verify_key": verify_key_text(signing_key)}
    document = {**body, "signature": _b64(signing_key.sign(_canonical(body)).signature)}
    _check_document(document)
    return _document_bytes(document)


def verify_bundle(raw: bytes, *, expected_verify_key: str | None = None) -> dict:
    """The bundle's document, once its form and signature (and, when given, its signing key:
    a fingerprint or the base64 verify key from the printed kit) are proven."""
    if not isinstance(raw, bytes | bytearray):
        raise BundleError("a bundle is read as bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise BundleError("not a recovery bundle: not complete JSON (truncated or damaged)") \
            from None
    _check_document(document)
    if _document_bytes(document) != raw:
        raise BundleError("the bundle's bytes are not as signed: reformatted or altered")
    if expected_verify_key is not None and not _is_expected_key(document["verify_key"],
                                                                  expected_verify_key):
        actual = signing_key_fingerprint(document["verify_key"])
        raise BundleError(f"signed by another key (fingerprint {actual}) than the one expected")
    return document


@dataclass(frozen=True)
class UnsealedShare:
    """One holder's share, opened with their passphrase. repr hides the share itself."""

    username: str
    share: bytes = field(repr=False)


def unseal_share(bundle: dict, username: str, passphrase: str) -> UnsealedShare:
    _check_document(bundle)
    holder = _holder(bundle, username)
    try:
        private_key = unlock_private_key(holder["enrolment"], passphrase)
    except WrongPassphrase:
        raise WrongPassphrase(username) from None
    try:
        share = SealedBox(private_key).decrypt(_unb64(holder["share"], "a sealed share"))
    except nacl.exceptions.CryptoError:
        raise BundleError(f"the share of {username} does not open with their key") from None
    if len(share) != SHARE_SIZE:
        raise BundleError(f"the share of {username} is malformed")
    return UnsealedShare(username, share)


def _check_participants(bundle: dict, usernames: list[str]) -> None:
    for username in usernames:
        _holder(bundle, username)
    repeated = sorted({username for username in usernames if usernames.count(username) > 1})
    if repeated:
        raise BundleError(f"each holder answers once: {', '.join(repeated)} answered twice")


def open_shares(bundle: dict, shares: list[UnsealedShare]) -> list[dict]:
    """All the credentials, or an exception and nothing: they are one ciphertext."""
    _check_document(bundle)
    _check_participants(bundle, [share.username for share in shares])
    if len(shares) < bundle["threshold"]:
        raise NotEnoughShares(len(shares), bundle["threshold"])
    # PyCryptodome's combine wants exactly `threshold` shares, no more.
    data_key = _join_data_key([share.share for share in shares[:bundle["threshold"]]])
    try:
        plaintext = SecretBox(data_key).decrypt(_unb64(bundle["credentials"], "credentials"))
    except nacl.exceptions.CryptoError:
        raise BundleError("these shares do not open this bundle (shares of another one?)") \
            from None
    return json.loads(plaintext)


def open_bundle(bundle: dict, answers: list[tuple[str, str]]) -> list[dict]:
    """The credentials of a verified bundle, given (username, passphrase) of enough holders.

    Unknown or repeated holders raise BundleError before any passphrase is tried; a wrong
    passphrase raises WrongPassphrase naming its holder; too few raise NotEnoughShares."""
    _check_document(bundle)
    _check_participants(bundle, [username for username, _ in answers])
    shares = [unseal_share(bundle, username, passphrase) for username, passphrase in answers]
    return open_shares(bundle, shares)
