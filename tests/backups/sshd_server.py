"""A throwaway OpenSSH server for the remote-backup tests: `sshd -D` with a test config on a free
port of 127.0.0.1, a generated Ed25519 host key, and one authorized client key (the key the
website's backups sign in with), for the user the tests run as.

Without sshd the tests skip; with BREAKGLASS_REQUIRE_SSHD set (CI) they fail instead."""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.ports import free_port

STARTUP_TIMEOUT_SECONDS = 15
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class SshServer:
    def __init__(self, directory: Path, executable: str):
        self.directory, self.executable = directory, executable
        self.port = free_port()
        self.user = getpass.getuser()
        self.process: subprocess.Popen | None = None
        self.extra_config: list[str] = []  # sshd_config lines a test adds before a (re)start
        self.client_key = directory / "client_key"
        _keygen(self.client_key)
        (directory / "authorized_keys").write_text(
            (directory / "client_key.pub").read_text())
        self.new_host_key()

    @property
    def host_key_line(self) -> str:
        """`ssh-ed25519 AAAA…`, as the manager pins it."""
        return " ".join((self.directory / "host_key.pub").read_text().split()[:2])

    @property
    def private_key(self) -> str:
        return self.client_key.read_text()

    def url(self, path: Path | str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def new_host_key(self) -> None:
        """A fresh host key (a reinstalled server, or someone in the middle): restart after."""
        for name in ("host_key", "host_key.pub"):
            (self.directory / name).unlink(missing_ok=True)
        _keygen(self.directory / "host_key")

    def start(self) -> None:
        config = self.directory / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.directory / 'host_key'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            f"PidFile {self.directory / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "UsePAM no",
            # The throwaway folder is pytest's, not the user's home: its modes are not checked.
            "StrictModes no", f"AllowUsers {self.user}", "MaxStartups 50", "LogLevel ERROR",
            "Subsystem sftp internal-sftp", *self.extra_config, ""]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        with open(self.directory / "sshd.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._accepts_connections():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"sshd did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def drop_connections(self) -> int:
        """Kills every session sshd serves (the listener stays): a connection lost halfway."""
        killed = 0
        for child in _children(self.process.pid if self.process else -1):
            try:
                os.kill(child, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def _accepts_connections(self) -> bool:
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", self.port))
                return probe.recv(4).startswith(b"SSH-")
            except OSError:
                return False


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "breakglass-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=30)


def _executable() -> str:
    found = shutil.which("sshd", path=SEARCH_PATH)
    if not found or not shutil.which("ssh-keygen"):
        reason = "needs sshd and ssh-keygen: apt-get install openssh-server"
        if os.environ.get("BREAKGLASS_REQUIRE_SSHD"):
            pytest.fail(f"BREAKGLASS_REQUIRE_SSHD is set but {reason}")
        pytest.skip(reason)
    return os.path.abspath(found)  # sshd must be started by its absolute path


@pytest.fixture
def own_ssh_server(tmp_path_factory):
    """An sshd of one test alone, for tests that change its host key or kill its sessions."""
    directory = Path(tempfile.mkdtemp(prefix="breakglass-sshd-"))
    server = SshServer(directory, _executable())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_server():
    executable = _executable()
    directory = Path(tempfile.mkdtemp(prefix="breakglass-sshd-"))
    server = SshServer(directory, executable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
