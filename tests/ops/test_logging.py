"""Log lines a SIEM can read: one JSON object per line, one access line per request with its
id, route, user, status and duration, the request's context on every line written while it
runs, and never a secret from a URL."""

import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from audit.request_log import RequestContextFilter, json_formatter, text_formatter
from tests.accounts.test_lockout import attempt, fail_five_times

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "SENTINEL-8c1f0e-do-not-log"


class CapturedLog:
    """What the console handler of settings.LOGGING would write, in memory."""

    def __init__(self, formatter: logging.Formatter):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.handler.addFilter(RequestContextFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]

    def access_lines(self) -> list[dict]:
        return [line for line in self.lines() if line["logger"] == "breakglass.request"]

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()


def capture(formatter: logging.Formatter):
    log = CapturedLog(formatter)
    root = logging.getLogger()
    level = root.level
    root.addHandler(log.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        root.removeHandler(log.handler)
        root.setLevel(level)


@pytest.fixture
def json_log():
    yield from capture(json_formatter())


@pytest.fixture
def text_log():
    yield from capture(text_formatter())


def test_a_request_writes_one_json_access_line(verified_client, member, database, json_log):
    client = verified_client(member)
    json_log.clear()
    response = client.get(reverse("breakglass:group-detail", args=[database.slug]))
    assert response.status_code == 200
    [line] = json_log.access_lines()
    assert line["request_id"] == response["X-Request-ID"]
    assert line["route"] == "breakglass:group-detail"
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO"
    assert (line["user_id"], line["user"]) == (member.pk, member.username)
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert line["message"].startswith("GET breakglass:group-detail 200 ")


def test_an_anonymous_request_names_no_user(client, json_log):
    response = client.get(reverse("emergency:start"))
    [line] = json_log.access_lines()
    assert line["route"] == "emergency:start"
    assert line["request_id"] == response["X-Request-ID"]
    assert "user_id" not in line and "user" not in line


def test_a_warning_written_inside_the_view_carries_the_request_id(client, member, json_log):
    response = attempt(client, member.username, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 200
    # django-axes warns about the failed sign-in from inside the login view.
    [warning] = [line for line in json_log.lines() if line["logger"].startswith("axes")
                 and line["level"] == "WARNING"]
    assert warning["request_id"] == response["X-Request-ID"]
    assert warning["route"] == "accounts:login"
    [access] = json_log.access_lines()
    assert access["request_id"] == response["X-Request-ID"]


def test_lines_outside_a_request_have_no_request_fields(json_log):
    logging.getLogger("breakglass.test").warning("outside any request")
    [line] = json_log.lines()
    assert line["message"] == "outside any request"
    assert "request_id" not in line and "route" not in line


def test_a_token_in_the_url_never_reaches_the_log(verified_client, member, json_log, text_log):
    client = verified_client(member)
    json_log.clear()
    text_log.clear()
    refused = client.get(reverse("review:abort", args=[SECRET]))
    assert refused.status_code == 400
    assert client.get(f"/emergency/?code={SECRET}").status_code == 200
    assert client.get(f"/emergency/{SECRET}/").status_code == 404
    anonymous = Client().get(reverse("review:abort", args=[SECRET]) + f"?next={SECRET}")
    assert anonymous.status_code == 302
    assert SECRET not in json_log.text
    assert SECRET not in text_log.text
    routes = [line["route"] for line in json_log.access_lines()]
    assert routes == ["review:abort", "emergency:start", None, "review:abort"]
    # Django's own "Bad Request: <path>" names the route instead of the path.
    bad_request = [line for line in json_log.lines() if line["logger"] == "django.request"]
    assert [line["message"] for line in bad_request] == ["Bad Request: review:abort",
                                                        "Not Found: [path hidden]"]
    assert bad_request[0]["request_id"] == refused["X-Request-ID"]
    assert "request" not in bad_request[0]


def test_probes_are_logged_at_debug_and_refusals_as_warnings(client, member, json_log):
    client.get("/livez")
    fail_five_times(client, member.username, REMOTE_ADDR="198.51.100.7")
    lines = json_log.access_lines()
    assert (lines[0]["route"], lines[0]["level"]) == ("livez", "DEBUG")
    assert [line["level"] for line in lines[1:]] == ["INFO"] * 4 + ["WARNING"]
    assert lines[-1]["status"] == 429


def test_an_exception_is_one_line_with_a_field(json_log):
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("breakglass.test").exception("it failed")
    [text] = json_log.text.splitlines()
    line = json.loads(text)
    assert line["message"] == "it failed" and line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback") and "ValueError: broken" in line["exception"]


def test_text_lines_show_the_request_id(client, text_log):
    response = client.get(reverse("emergency:start"))
    [access] = [line for line in text_log.text.splitlines() if "breakglass.request" in line]
    assert f"[{response['X-Request-ID']}] GET emergency:start 200 " in access


# --- The real configuration, in a process of its own ---------------------------------------

SERVE_LIVEZ = """
import django
django.setup()
from django.test import Client
response = Client(HTTP_HOST="localhost").get("/livez")
print(response["X-Request-ID"])
"""


def run_app(environment: str, **variables: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DJANGO_SETTINGS_MODULE", "LOG_FORMAT", "DATABASE_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT=environment,
               LOG_LEVEL="DEBUG", DATABASE_URL="sqlite:///:memory:", **variables)
    if environment == "production":
        env.update(SECRET_KEY="production-like-secret-key-for-the-logging-test-0123456789abc",
                   AUDIT_HMAC_KEY="production-like-audit-key-0123456789abcdef",
                   FIELD_ENCRYPTION_KEY="cHJvZHVjdGlvbi1saWtlLWZpZWxkLWtleS0wMTIzNDU=")
    return subprocess.run([sys.executable, "-c", SERVE_LIVEZ], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_production_writes_json_and_development_text_to_stderr():
    production = run_app("production")
    assert production.returncode == 0, production.stderr[-2000:]
    [line] = [json.loads(text) for text in production.stderr.splitlines()
              if '"breakglass.request"' in text]
    assert line["request_id"] == production.stdout.strip()
    assert (line["route"], line["status"], line["level"]) == ("livez", 200, "DEBUG")

    development = run_app("development")
    assert development.returncode == 0, development.stderr[-2000:]
    [text] = [text for text in development.stderr.splitlines() if "breakglass.request" in text]
    assert f"DEBUG breakglass.request [{development.stdout.strip()}] GET livez 200 " in text
    assert not text.startswith("{")


def test_an_unknown_log_format_is_refused_at_start():
    refused = run_app("development", LOG_FORMAT="xml")
    assert refused.returncode != 0
    assert "LOG_FORMAT must be json or text" in refused.stderr
