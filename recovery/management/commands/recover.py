"""Offline break-glass (SPEC §2.5): open a recovery bundle with the passphrases of enough of
its holders, on a machine where the database is down or absent."""

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recovery.crypto import (
    CryptoError,
    UnsealedShare,
    WrongPassphrase,
    bundle_fingerprint,
    open_shares,
    signing_key_fingerprint,
    unseal_share,
    verify_bundle,
)


class Command(BaseCommand):
    help = ("Open a recovery bundle offline: verify it, ask enough holders for their "
            "passphrases, print the credentials and append a line to a local log. Needs no "
            "database; on a machine without the server's configuration run it with "
            "ENVIRONMENT=development.")
    # The database may be down or absent: no system checks, no migration check, no ORM.
    requires_system_checks = []
    requires_migrations_checks = False
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("bundle", type=Path, help="The recovery bundle file.")
        parser.add_argument("--log", type=Path, default=Path("recovery.log"),
                            help="Where to append the record of this opening "
                                 "(default: recovery.log in the current folder).")
        parser.add_argument("--expected-key", help="The signing-key fingerprint (or base64 "
                                                   "verify key) printed on the recovery kit.")

    def handle(self, *args, bundle: Path, log: Path, expected_key: str | None, **options):
        self.input = options.get("stdin") or sys.stdin
        try:
            raw = bundle.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read the bundle: {exc}") from None
        try:
            document = verify_bundle(raw, expected_verify_key=expected_key)
        except CryptoError as exc:
            raise CommandError(f"bundle refused, nothing was asked: {exc}") from None
        self.describe(document, raw, expected_key)
        self.append_to_log(log, "")  # fail before anyone types a passphrase
        shares = self.collect_shares(document)
        try:
            credentials = open_shares(document, shares)
        except CryptoError as exc:
            raise CommandError(f"the bundle did not open: {exc}") from None
        self.append_to_log(log, self.log_line(document, raw, shares))
        self.show(credentials)

    def describe(self, document: dict, raw: bytes, expected_key: str | None) -> None:
        holders = [holder["username"] for holder in document["holders"]]
        self.stdout.write(f"Recovery bundle of policy {document['policy']!r}, "
                          f"version {document['version']}")
        self.stdout.write(f"Opens with {document['threshold']} of {len(holders)} holders: "
                          f"{', '.join(holders)}")
        self.stdout.write(f"Bundle fingerprint:      {bundle_fingerprint(raw)}")
        self.stdout.write("Signing-key fingerprint: "
                          f"{signing_key_fingerprint(document['verify_key'])}")
        if expected_key:
            self.stdout.write("The signing key is the one expected.")
        else:
            self.stdout.write("Compare both fingerprints with the printed recovery kit.")

    def collect_shares(self, document: dict) -> list[UnsealedShare]:
        """Ask holder after holder until enough have answered; a wrong passphrase may be
        retried, or another holder may answer instead. End of input gives up."""
        shares: dict[str, UnsealedShare] = {}
        threshold = document["threshold"]
        try:
            while len(shares) < threshold:
                username = self.ask(f"Holder {len(shares) + 1} of {threshold}, username: ")
                if username in shares:
                    self.stderr.write(f"{username} has already answered.")
                    continue
                if username:
                    self.try_passphrase(document, username, shares)
        except (EOFError, KeyboardInterrupt):
            raise CommandError(f"gave up with {len(shares)} of the {threshold} holders "
                               "needed: nothing was revealed") from None
        return list(shares.values())

    def try_passphrase(self, document: dict, username: str, shares: dict) -> None:
        if username not in {holder["username"] for holder in document["holders"]}:
            self.stderr.write(f"{username} is not a holder of this bundle.")
            return
        passphrase = self.ask_secret(f"Passphrase of {username}: ")
        try:
            shares[username] = unseal_share(document, username, passphrase)
        except WrongPassphrase as exc:
            self.stderr.write(f"{exc}: try again, or let another holder answer.")

    def ask(self, prompt: str) -> str:
        return self.read_line(prompt).strip()

    def ask_secret(self, prompt: str) -> str:
        if self.input.isatty():
            return getpass.getpass(prompt)
        return self.read_line(prompt)  # not stripped: spaces may belong to the passphrase

    def read_line(self, prompt: str) -> str:
        self.stdout.write(prompt, ending="")
        self.stdout.flush()
        line = self.input.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def log_line(self, document: dict, raw: bytes, shares: list[UnsealedShare]) -> str:
        return json.dumps({
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event": "recovery bundle opened",
            "policy": document["policy"],
            "version": document["version"],
            "bundle": bundle_fingerprint(raw),
            "participants": [share.username for share in shares],
        }) + "\n"

    def append_to_log(self, log: Path, line: str) -> None:
        try:
            with log.open("a", encoding="utf-8") as file:
                file.write(line)
        except OSError as exc:
            raise CommandError(f"cannot write the recovery log (choose another with --log): "
                               f"{exc}; nothing was revealed") from None

    def show(self, credentials: list[dict]) -> None:
        self.stdout.write("\nEmergency credentials (rotate each one after the emergency):")
        for credential in credentials:
            self.stdout.write(f"\n  {credential['name']}")
            for label in ("username", "secret", "notes"):
                if credential[label]:
                    self.stdout.write(f"    {label + ':':10}{credential[label]}")
