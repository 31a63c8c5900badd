"""Throwaway Redis and S3 servers on 127.0.0.1 for the several-nodes tests: Debian's
redis-server, and moto's standalone `moto_server`, which speaks the S3 API over HTTP (a real
server the code talks to through boto3, not a mock of our code). Each is missing → the test
skips with the reason; BREAKGLASS_REQUIRE_REDIS / BREAKGLASS_REQUIRE_S3 turn that into a
failure (CI)."""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ports import free_port

S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION = "test-access-key", "test-secret-key", "us-east-1"


def _missing(part: str, reason: str) -> None:
    variable = f"BREAKGLASS_REQUIRE_{part}"
    if os.environ.get(variable):
        pytest.fail(f"{variable} is set but {reason}")
    pytest.skip(reason)


def _wait(ready, process: subprocess.Popen, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {seconds} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def redis_server():
    """A redis-server on a free port, persisting nothing; yields its redis:// URL."""
    binary = shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/bin:/usr/sbin")
    if binary is None:
        _missing("REDIS", "needs redis-server (apt-get install redis-server; always run in CI)")
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="breakglass-redis-") as folder:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", folder,
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"redis://127.0.0.1:{port}/0"

        def ready() -> bool:
            try:
                return redis.Redis.from_url(url, socket_timeout=1).ping()
            except redis.RedisError:
                return False

        try:
            _wait(ready, process, "redis-server")
            yield url
        finally:
            _stop(process)


def _moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


class S3Server:
    def __init__(self, url: str):
        self.url = url

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=S3_REGION,
                            aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=S3_SECRET_KEY)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def storages(self, bucket: str) -> dict:
        """STORAGES entries as config/settings.py builds them from S3_* for this server."""
        options = {"bucket_name": bucket, "endpoint_url": self.url, "region_name": S3_REGION,
                   "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY,
                   "default_acl": None, "file_overwrite": False, "querystring_auth": True}
        backend = "storages.backends.s3.S3Storage"
        return {"backups": {"BACKEND": backend, "OPTIONS": {**options, "location": "backups"}},
                "checkpoints": {"BACKEND": backend,
                                "OPTIONS": {**options, "location": "checkpoints"}}}

    def environment(self, bucket: str) -> dict[str, str]:
        """The same as environment variables, for a server process."""
        return {"S3_BUCKET": bucket, "S3_ENDPOINT_URL": self.url, "S3_REGION": S3_REGION,
                "S3_ACCESS_KEY_ID": S3_ACCESS_KEY, "S3_SECRET_ACCESS_KEY": S3_SECRET_KEY}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def incomplete_uploads(self, bucket: str) -> list[str]:
        answer = self.client().list_multipart_uploads(Bucket=bucket)
        return sorted(upload["Key"] for upload in answer.get("Uploads", []))


@contextmanager
def s3_server():
    """moto_server on a free port, holding its buckets in memory; yields an S3Server."""
    binary = _moto_server()
    if binary is None:
        _missing("S3", "needs moto_server (pip install 'moto[server]'; always run in CI)")
    port = free_port()
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/moto-api/")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    try:
        _wait(ready, process, "moto_server")
        yield S3Server(url)
    finally:
        _stop(process)


@contextmanager
def rsyslog_server():
    """Debian's rsyslogd receiving syslog over UDP on a free port into a file; yields
    (udp://127.0.0.1:port, the file)."""
    binary = shutil.which("rsyslogd", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        _missing("RSYSLOG", "needs rsyslogd (apt-get install rsyslog; always run in CI)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="breakglass-rsyslog-") as folder:
        received = Path(folder) / "received.log"
        config = Path(folder) / "rsyslog.conf"
        config.write_text(
            f'global(workDirectory="{folder}")\n'
            'module(load="imudp")\n'
            f'input(type="imudp" address="127.0.0.1" port="{port}")\n'
            f'*.* action(type="omfile" file="{received}")\n')
        process = subprocess.Popen(
            [binary, "-n", "-f", str(config), "-i", str(Path(folder) / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def ready() -> bool:  # a probe message sent until one arrives
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.sendto(b"<14>fixture: listening-probe", ("127.0.0.1", port))
            time.sleep(0.1)
            return received.exists() and b"listening-probe" in received.read_bytes()

        try:
            _wait(ready, process, "rsyslogd")
            yield f"udp://127.0.0.1:{port}", received
        finally:
            _stop(process)
