"""JSON lines streams: appended to a file, and POSTed to a real HTTP receiver (http.server in
a thread), each line verifiable with the audit key."""

import http.server
import threading

import orjson
import pytest
from django.core.management.base import CommandError
from django.db import connection

from siem import services
from siem.models import SiemStream
from tests.ports import free_port
from tests.siem.conftest import (
    AWKWARD,
    head,
    make_stream,
    send_until_caught_up,
    verify_copy,
    write_awkward_events,
    write_events,
)

pytestmark = pytest.mark.django_db
TOKEN = "siem-bearer-sentinel-8d1f0c"


def test_json_lines_appended_to_a_file_verify(admin_user, tmp_path):
    path = tmp_path / "trail.jsonl"
    make_stream(SiemStream.Kind.JSONL_FILE, str(path), actor=admin_user)
    write_awkward_events(admin_user)
    write_events(1200, actor=admin_user)
    assert send_until_caught_up() == head()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [orjson.loads(line)["sequence"] for line in lines] == list(range(1, head() + 1))
    refused = orjson.loads(lines[2])
    assert (refused["kind"], refused["reason"]) == ("auth.second_factor_change_refused", AWKWARD)
    assert refused["recorded_at"].endswith("Z")
    assert f"{head()} events (#1 to #{head()}), 0 repeated" in verify_copy(
        path, "--format", "jsonl", "--through", str(head()))


def test_a_line_torn_by_a_crash_stands_alone_and_the_copy_still_verifies(admin_user,
                                                                       tmp_path):
    path = tmp_path / "trail.jsonl"
    make_stream(SiemStream.Kind.JSONL_FILE, str(path), actor=admin_user)
    write_events(10, actor=admin_user)
    send_until_caught_up()
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[3][:40])  # a batch cut short
    write_events(5, actor=admin_user)
    send_until_caught_up()
    assert "16 events (#1 to #16), 0 repeated, 1 other lines skipped" in verify_copy(
        path, "--format", "jsonl")
    original = path.read_text()
    path.write_text(original.replace('"n":7', '"n":8', 1))  # the readable copy
    with pytest.raises(CommandError, match=r"event 9\).*readable fields differ"):
        verify_copy(path, "--format", "jsonl")
    path.write_text(original.replace('"n":7', '"n":8', 2))  # readable and sealed alike
    with pytest.raises(CommandError, match=r"event 9\).*edited or forged"):
        verify_copy(path, "--format", "jsonl")


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", free_port()), ReceiverHandler)
        self.requests: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []  # statuses to give first; 200 after them

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ingest"


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_batches_are_posted_as_ndjson_with_the_bearer_token(admin_user, receiver, settings):
    settings.SIEM_BATCH_SIZE = 100
    stream = SiemStream(name="http", kind=SiemStream.Kind.JSONL_HTTP, address=receiver.url)
    services.save_stream(stream, actor=admin_user, bearer_token=TOKEN)
    write_events(250, actor=admin_user)
    assert send_until_caught_up() == 251
    assert len(receiver.requests) == 3
    headers = receiver.requests[0][0]
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    received = b"".join(body for _, body in receiver.requests).decode().splitlines()
    assert [orjson.loads(line)["sequence"] for line in received] == list(range(1, 252))


def test_the_bearer_token_is_stored_encrypted_and_never_audited(admin_user, receiver):
    stream = SiemStream(name="http", kind=SiemStream.Kind.JSONL_HTTP, address=receiver.url)
    services.save_stream(stream, actor=admin_user, bearer_token=TOKEN)
    with connection.cursor() as cursor:
        for table in ("siem_siemstream", "siem_historicalsiemstream", "audit_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
            assert TOKEN not in repr(cursor.fetchall())
    assert stream.bearer_token_encrypted.startswith("enc1:")


def test_an_http_error_or_redirect_leaves_the_cursor_and_backs_off(admin_user, receiver,
                                                                   tmp_path):
    stream = make_stream(SiemStream.Kind.JSONL_HTTP, receiver.url, actor=admin_user)
    receiver.answers = [503, 302]
    write_events(20, actor=admin_user)
    assert services.send_due_streams() == 0
    stream.refresh_from_db()
    assert (stream.sent_through, stream.failures) == (0, 1)
    assert "HTTP 503" in stream.last_error
    assert services.send_now(stream)[0] == 0
    stream.refresh_from_db()
    assert "HTTP 302" in stream.last_error and stream.failures == 2
    assert services.send_now(stream) == (21, "")
    copy = tmp_path / "received.jsonl"
    copy.write_bytes(b"".join(body for _, body in receiver.requests))
    # The first two batches were refused, though they reached the receiver: repeats.
    assert "21 events (#1 to #21), 42 repeated" in verify_copy(copy, "--format", "jsonl")


def test_a_repeat_that_differs_from_the_first_copy_is_reported(admin_user, tmp_path):
    """A trail rewritten with the key (by someone holding it) and sent again cannot pass for
    an at-least-once repeat: the SIEM already holds the first version."""
    from audit import chain
    from audit.services import audit_key

    path = tmp_path / "trail.jsonl"
    make_stream(SiemStream.Kind.JSONL_FILE, str(path), actor=admin_user)
    write_events(10, actor=admin_user)
    send_until_caught_up()
    entry = orjson.loads(path.read_text().splitlines()[4])
    entry["sealed"][11] = entry["data"] = {"n": 99, "note": "rewritten"}
    entry["mac"] = chain.seal(audit_key(), entry["previous_mac"], tuple(entry["sealed"]))
    with path.open("ab") as copy:
        copy.write(orjson.dumps(entry) + b"\n")
    with pytest.raises(CommandError, match=r"event 5\).*differs from the copy .* earlier"):
        verify_copy(path, "--format", "jsonl")


def test_sd_param_values_escape_quote_backslash_and_bracket():
    from siem.messages import escape_sd_value

    assert escape_sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
