"""The test identity provider (tests/idp/, django-oauth-toolkit in OIDC mode) as a real
server on 127.0.0.1, started once per session: its own database and RSA signing key, the
relying party registered with redirect URIs for the test client and for live servers. A test
may take it down for a while (`with identity_provider.down():`): the server process ends and
comes back on the same port with the same database and key, as after a real outage."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.ports import free_port

IDP = Path(__file__).resolve().parents[1] / "idp"
CLIENT_ID = "breakglass-tests"
CLIENT_SECRET = "relying-party-secret-for-tests"
CALLBACK = "/accounts/sso/callback/"
PASSWORDS = {"sso-alice": "alice-at-the-idp", "sso-mfa": "mfa-at-the-idp",
             "sso-stranger": "stranger-at-the-idp"}
START_SECONDS = 30


class IdentityProvider:
    """The provider's server process on a fixed port: `stop()` ends it, `start()` runs it
    again and returns once it answers its discovery document."""

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env = folder, env
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/o"
        self._server: subprocess.Popen | None = None
        # Appended to across restarts: one log for the whole session.
        self._log = open(folder / "server.log", "ab")  # noqa: SIM115

    def password(self, username: str) -> str:
        return PASSWORDS[username]

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=IDP, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the test identity provider did not start: "
                                   + (self.folder / "server.log").read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.terminate()
        self._server.wait(timeout=10)
        self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The provider is unreachable inside the block and running again after it, whatever
        the block raised: later tests of the session still need it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 (our own test server)
                    f"{self.issuer}/.well-known/openid-configuration", timeout=2):
                return True
        except OSError:
            return False


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
    provider = IdentityProvider(folder, env)
    try:
        provider.start()
        yield provider
    finally:
        provider.close()
        shutil.rmtree(folder, ignore_errors=True)
