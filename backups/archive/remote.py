"""Websites on another server, reached over SSH (paramiko): `ssh://user@host[:port]/path`.

Key-based only, and only to a host whose key the manager pinned (shown as an OpenSSH SHA256
fingerprint): a server presenting another key stops the backup with HostKeyChanged. The files
come as a remote `tar` stream (GNU tar: name order, data for hard links, symlinks as links)
that is read member by member into our own archive writer, so every manifest hash is computed
on this side; nothing of the remote tar reaches the archive unchecked. A MariaDB/MySQL
database is dumped on the remote server over the same connection, its option file (with the
password) fed on the dump's standard input, so it never touches the remote disk or a command
line."""

import base64
import binascii
import io
import shlex
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import paramiko

from . import mysql
from .dumps import CompressedDump
from .layout import CHUNK, ArchiveError

SSH_PORT = 22
CONNECT_TIMEOUT = 15  # seconds, for the TCP connection, the banner and authentication
READ_TIMEOUT = 120  # a connection silent this long is taken for dropped
KEEPALIVE_SECONDS = 15
KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
# GNU tar: members in name order (a stable manifest), the data of every hard link (never a
# link member), POSIX headers (long names, exact sizes and times).
TAR_COMMAND = "tar --create --file=- --format=posix --sort=name --hard-dereference --directory={} ."
# `realpath` resolves the configured folder as the server sees it, so the allow-list is
# checked on where the files really are.
REALPATH_COMMAND = "realpath -e -- {}"
SIZE_COMMAND = "du --summarize --bytes --apparent-size -- {}"
FIND_DUMP = "command -v mariadb-dump || command -v mysqldump || true"  # none: no output
# A small file's first bytes, only if it is a regular file and not a symlink (exit 3 if not).
READ_FILE_COMMAND = "if [ -f {0} ] && [ ! -L {0} ]; then head -c {1} -- {0}; else exit 3; fi"
Keepalive = Callable[[], None]


class HostKeyChanged(ArchiveError):
    """The server presented a host key other than the pinned one: maybe a reinstall, maybe
    someone in the middle. Only the manager, after checking, may pin the new one."""


class RemoteFailed(ArchiveError):
    """The remote server could not be reached, refused us, or a command on it failed."""


@dataclass(frozen=True)
class SshSource:
    user: str
    host: str
    port: int
    path: str

    @property
    def shown(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.path}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def is_ssh_source(files_dir: str) -> bool:
    return files_dir.startswith("ssh://")


def parse_ssh_source(url: str) -> SshSource:
    """ssh://user@host[:port]/absolute/path (IPv6 hosts in brackets)."""
    parts = urlsplit(url)
    if parts.scheme != "ssh":
        raise ArchiveError("a remote files directory is ssh://user@host:port/path")
    try:
        port = parts.port or SSH_PORT
    except ValueError:
        raise ArchiveError("the SSH source has an invalid port") from None
    user, host, path = unquote(parts.username or ""), parts.hostname or "", unquote(parts.path)
    if parts.password is not None:
        raise ArchiveError("an SSH source takes no password: it signs in with its key")
    if not user or not host:
        raise ArchiveError("an SSH source names its user and host: ssh://user@host:port/path")
    if parts.query or parts.fragment:
        raise ArchiveError("an SSH source takes no parameters")
    if not path.startswith("/") or any(c in path for c in "\0\n\r"):
        raise ArchiveError("an SSH source names an absolute folder: ssh://user@host:port/path")
    if ".." in PurePosixPath(path).parts:
        raise ArchiveError(f"{path} contains '..': name the folder itself")
    return SshSource(user=user, host=host, port=port, path=path.rstrip("/") or "/")


# --- Keys ------------------------------------------------------------------------------------


def load_private_key(text: str, passphrase: str = "") -> paramiko.PKey:
    """An OpenSSH or PEM private key (Ed25519, ECDSA or RSA), decrypted with `passphrase` when
    it is encrypted."""
    needs_passphrase = False
    for key_class in KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase or None)
        except paramiko.PasswordRequiredException:
            needs_passphrase = True
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    if needs_passphrase:
        raise ArchiveError("the private key is encrypted: give its passphrase")
    raise ArchiveError("the private key cannot be read (an OpenSSH or PEM Ed25519, ECDSA or "
                       "RSA key is expected), or its passphrase is wrong")


def parse_host_key(line: str) -> paramiko.PKey:
    """`ssh-ed25519 AAAA…` as in known_hosts or a .pub file (a comment after it is allowed)."""
    try:
        key_type, data = line.split()[:2]
        return paramiko.PKey.from_type_string(key_type, _decode_base64(data))
    except (ValueError, paramiko.SSHException, paramiko.ssh_exception.UnknownKeyType):
        raise ArchiveError("the pinned host key cannot be read") from None


def host_key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def fetch_host_key(host: str, port: int) -> paramiko.PKey:
    """The key the server presents now: shown to the manager as a fingerprint to pin. No
    authentication happens."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as connection:
            transport = paramiko.Transport(connection)
            try:
                transport.banner_timeout = CONNECT_TIMEOUT
                transport.start_client(timeout=CONNECT_TIMEOUT)
                return transport.get_remote_server_key()
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise RemoteFailed(f"{host}:{port} could not be reached over SSH: "
                           f"{_reason(exc)}") from None


def _decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


# --- A connection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SshCredentials:
    private_key: str = field(repr=False)
    passphrase: str = field(repr=False)
    host_key: str  # the pinned key, `type base64`


class RemoteSite:
    """One SSH connection to a website's server, used for the whole backup."""

    def __init__(self, source: SshSource, credentials: SshCredentials):
        self.source = source
        if not credentials.host_key:
            raise HostKeyChanged(f"no host key is pinned for {source.address}: the manager "
                                 "pins it on the website's page first")
        pinned = parse_host_key(credentials.host_key)
        key = load_private_key(credentials.private_key, credentials.passphrase)
        self.client = paramiko.SSHClient()
        name = source.host if source.port == SSH_PORT else f"[{source.host}]:{source.port}"
        self.client.get_host_keys().add(name, pinned.get_name(), pinned)
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect(
                source.host, port=source.port, username=source.user, pkey=key,
                allow_agent=False, look_for_keys=False, timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT)
        except paramiko.BadHostKeyException as exc:
            self.client.close()
            raise HostKeyChanged(
                f"the host key of {source.address} changed: it is now {exc.key.fingerprint}, "
                f"pinned is {pinned.fingerprint}. The backup stopped; the manager must check "
                "the server and pin its key again") from None
        except paramiko.SSHException as exc:
            self.client.close()
            if "not found in known_hosts" in str(exc):  # a key of another type
                raise HostKeyChanged(f"{source.address} no longer offers the pinned "
                                     f"{pinned.get_name()} host key") from None
            raise RemoteFailed(f"{source.address} refused the SSH sign-in as "
                               f"{source.user}: {_reason(exc)}") from None
        except (OSError, EOFError) as exc:
            self.client.close()
            raise RemoteFailed(f"{source.address} could not be reached over SSH: "
                               f"{_reason(exc)}") from None
        self.client.get_transport().set_keepalive(KEEPALIVE_SECONDS)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def run(self, command: str, *, stdin: bytes = b"") -> str:
        """A short command's output; RemoteFailed with its stderr when it fails."""
        with self.command(command, stdin=stdin) as (stdout, finish):
            output = stdout.read()
            finish()
        return output.decode(errors="replace")

    @contextmanager
    def command(self, command: str, *, stdin: bytes = b"") -> Iterator[tuple[BinaryIO,
                                                                                Callable]]:
        """A remote command's stdout as a file, and `finish(allowed=(0,))`, which waits for
        its end and returns its status and stderr lines, or raises RemoteFailed for a status
        not allowed or a connection that ended first."""
        try:
            channel = self.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            channel.settimeout(READ_TIMEOUT)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteFailed(f"the connection to {self.source.address} failed: "
                               f"{_reason(exc)}") from None
        errors = _Drain(channel)
        stdout = channel.makefile("rb", CHUNK)

        def finish(allowed: tuple[int, ...] = (0,)) -> tuple[int, list[str]]:
            status = channel.recv_exit_status()
            lines = errors.lines()
            if status == -1:  # no status: the connection ended before the command did
                raise RemoteFailed(f"the connection to {self.source.address} dropped")
            if status not in allowed:
                program = command.split()[0]
                reason = next((line for line in reversed(lines) if line.strip()), "?")
                raise RemoteFailed(f"{program} on {self.source.address} failed (exit "
                                   f"{status}): {reason}")
            return status, lines

        try:
            yield stdout, finish
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise RemoteFailed(f"the connection to {self.source.address} dropped: "
                               f"{_reason(exc)}") from None
        finally:
            with suppress(Exception):
                channel.close()

    # --- what the backup asks of the server --------------------------------------------------

    def real_folder(self) -> str:
        path = self.run(REALPATH_COMMAND.format(shlex.quote(self.source.path))).strip()
        if not path.startswith("/"):
            raise RemoteFailed(f"{self.source.path} on {self.source.address} is not a folder")
        return path

    def read_file(self, path: str, limit: int) -> bytes | None:
        """At most `limit` bytes of the regular file `path` on the server; None when there is
        no such file (or it is a symlink)."""
        quoted = shlex.quote(path)
        with self.command(READ_FILE_COMMAND.format(quoted, limit)) as (stdout, finish):
            data = stdout.read(limit)
            status, _ = finish(allowed=(0, 3))
        return None if status == 3 else data

    def tree_size(self, folder: str) -> int:
        with suppress(RemoteFailed, ValueError, IndexError):
            return int(self.run(SIZE_COMMAND.format(shlex.quote(folder))).split()[0])
        return 0  # an estimate only: the progress bar waits for the real sizes

    def files(self, folder: str):
        """The remote tar stream of `folder` (see TAR_COMMAND) and its finish()."""
        return self.command(TAR_COMMAND.format(shlex.quote(folder)))

    def dump_mysql(self, database_url: str, sink: CompressedDump,
                   keepalive: Keepalive) -> None:
        """Dumps the database on the server, feeding the output into `sink` as it comes."""
        server = mysql.parse_mysql_url(database_url)
        program = self.run(FIND_DUMP).strip().splitlines()
        if not program:
            raise RemoteFailed(f"neither mariadb-dump nor mysqldump is installed on "
                               f"{self.source.address} (apt-get install mariadb-client)")
        command = shlex.join(mysql.dump_command(program[0], server,
                                                option_file="/dev/stdin"))
        with self.command(command, stdin=server.option_file().encode()) as (stdout, finish):
            while chunk := stdout.read(CHUNK):
                sink.write(chunk)
                keepalive()
            try:
                finish()
            except RemoteFailed as exc:
                raise RemoteFailed(server.masked(str(exc))) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class _Drain:
    """Reads a channel's stderr in a thread, so a chatty command never stalls on it."""

    def __init__(self, channel: paramiko.Channel):
        self.channel, self.buffer = channel, bytearray()
        self.thread = threading.Thread(target=self._read, name="ssh-stderr", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.channel.recv_stderr(CHUNK)
            except TimeoutError:  # a long, quiet command: wait on, unless the channel ended
                if self.channel.closed:
                    return
                continue
            except Exception:  # the connection dropped: the stdout side reports it
                return
            if not data:
                return
            if len(self.buffer) < CHUNK:  # enough to explain; the rest is dropped
                self.buffer += data

    def lines(self) -> list[str]:
        self.thread.join(timeout=READ_TIMEOUT)
        return self.buffer.decode(errors="replace").splitlines()
