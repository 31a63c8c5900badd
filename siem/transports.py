"""The three ways a batch leaves for a SIEM, and what "accepted" means for each: the stream's
cursor moves only after send() returns.

- Syslog over TCP (or TLS) has no application acknowledgement. Each batch goes on a fresh
  connection: the frames are written, the connection's write side is closed (TLS: its
  close_notify sent), and send() waits for the receiver to close its side. A receiver that
  closes with unread data answers with a reset, never a clean end of stream, so a clean
  close means the receiving process read every byte. What it then does with them (queue in
  memory, write to disk) is its own: a disk-assisted queue on the SIEM side closes that gap.
- A file: appended, then fsync()ed.
- HTTP: a 2xx answer to the POST (redirects are refused, not followed).

Every network operation is bounded by the time left before `deadline` (time.monotonic()),
so a sender never writes after its lease has run out."""

import ipaddress
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from siem.messages import octet_counted
from siem.models import SiemStream

LOOPBACK_NAMES = {"localhost"}


class TransportError(Exception):
    pass


def send(stream: SiemStream, messages: list[bytes], *, deadline: float,
         bearer_token: str = "") -> None:
    if stream.kind == SiemStream.Kind.SYSLOG:
        _send_syslog(stream, messages, deadline)
    elif stream.kind == SiemStream.Kind.JSONL_FILE:
        _append_file(stream.address, messages)
    else:
        _post(stream.address, messages, deadline, bearer_token)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError("the send ran out of time (its lease ends)")
    return left


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a syslog address is host:port (e.g. siem.example.org:6514)")
    return host, int(port)


def _send_syslog(stream: SiemStream, messages: list[bytes], deadline: float) -> None:
    host, port = split_address(stream.address)
    payload = b"".join(octet_counted(message) for message in messages)
    try:
        raw = socket.create_connection((host, port), timeout=_left(deadline))
    except OSError as exc:
        raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
    try:
        if stream.tls:
            _send_tls(stream, raw, host, payload, deadline)
        else:
            raw.settimeout(_left(deadline))
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            _wait_for_close(raw, deadline)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"syslog {host}:{port}: {exc}") from exc
    finally:
        raw.close()


def _send_tls(stream: SiemStream, raw: socket.socket, host: str, payload: bytes,
              deadline: float) -> None:
    context = ssl.create_default_context(cafile=stream.tls_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    raw.settimeout(_left(deadline))
    # wrap_socket takes over the connection: closing the wrapper (or what unwrap() gives
    # back) closes it.
    with context.wrap_socket(raw, server_hostname=stream.tls_server_name or host) as wrapped:
        wrapped.sendall(payload)
        try:
            wrapped.settimeout(_left(deadline))
            plain = wrapped.unwrap()  # our close_notify out, and the receiver's back
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return  # the receiver closed the connection without a close_notify of its own
    with plain:
        plain.shutdown(socket.SHUT_WR)
        _wait_for_close(plain, deadline)


def _wait_for_close(connection: socket.socket, deadline: float) -> None:
    while True:
        connection.settimeout(_left(deadline))
        if not connection.recv(4096):
            return


def _append_file(path: str, messages: list[bytes]) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise TransportError(f"cannot open {path}: {exc}") from exc
    try:
        # A line torn by a crash mid-write stands alone, unreadable; its events follow whole
        # in the batch sent again.
        if os.fstat(descriptor).st_size and _last_byte(path) != b"\n":
            os.write(descriptor, b"\n")
        payload = memoryview(b"".join(messages))
        while payload:
            payload = payload[os.write(descriptor, payload):]
        os.fsync(descriptor)
    except OSError as exc:
        raise TransportError(f"cannot append to {path}: {exc}") from exc
    finally:
        os.close(descriptor)


def _last_byte(path: str) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is then an error: the batch was not accepted where it was sent


_opener = urllib.request.build_opener(_NoRedirects)


def _post(url: str, messages: list[bytes], deadline: float, bearer_token: str) -> None:
    headers = {"Content-Type": "application/x-ndjson", "User-Agent": "Breakglass-SIEM/1"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    # The scheme was checked when the stream was saved (https, or http to this machine).
    request = urllib.request.Request(url, data=b"".join(messages), headers=headers,  # noqa: S310
                                     method="POST")
    try:
        with _opener.open(request, timeout=_left(deadline)) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise TransportError(f"{urlsplit(url).netloc} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransportError(f"cannot POST to {urlsplit(url).netloc}: {exc}") from None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
