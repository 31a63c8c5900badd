"""The test identity provider (tests/idp/, django-oauth-toolkit in OIDC mode) as a real
server on 127.0.0.1, started once per session: its own database and RSA signing key, the
relying party registered with redirect URIs for the test client and for live servers."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

IDP = Path(__file__).resolve().parents[1] / "idp"
CLIENT_ID = "breakglass-tests"
CLIENT_SECRET = "relying-party-secret-for-tests"
CALLBACK = "/accounts/sso/callback/"
PASSWORDS = {"sso-alice": "alice-at-the-idp", "sso-mfa": "mfa-at-the-idp",
             "sso-stranger": "stranger-at-the-idp"}


@dataclass(frozen=True)
class IdentityProvider:
    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def password(self, username: str) -> str:
        return PASSWORDS[username]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def identity_provider():
    folder = Path(tempfile.mkdtemp(prefix="breakglass-idp-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "idp.settings",
           "IDP_DATABASE": str(folder / "idp.sqlite3"), "IDP_SIGNING_KEY": _signing_key()}
    env.pop("DATABASE_URL", None)

    def manage(*arguments: str) -> None:
        subprocess.run([sys.executable, "manage.py", *arguments], cwd=IDP, env=env,
                       check=True, capture_output=True)

    manage("migrate", "--noinput")
    manage("seed_idp", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
           "--redirect-uri", f"http://testserver{CALLBACK}",
           "--redirect-uri", f"http://localhost{CALLBACK}")
    port = _free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (open for the server's whole life)
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload",
                               f"127.0.0.1:{port}"], cwd=IDP, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}/o"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(  # noqa: S310 (our own test server)
                        f"{issuer}/.well-known/openid-configuration", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the test identity provider did not start: "
                                       + (folder / "server.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        yield IdentityProvider(issuer)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
