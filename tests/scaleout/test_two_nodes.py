"""Two nodes on PostgreSQL + Redis + S3: two gunicorn processes and two `qcluster` workers,
each node with its own disk folders, the flows alternated between them.

Break glass on A, revoke on B; a session signed in on one node used on the other; the API's
failure throttle counted across both (Redis); an emergency code asked for on B and typed on
A; a backup started on A while A's worker is also relaying alerts to a slow webhook; A's
whole worker killed mid-backup and mid-relay; B's worker retries the backup and takes the
leased alert over; the archive downloads from B and verifies. Every alert reaches its
receiver once (after the receiver drops a repeat by its X-Breakglass-Delivery key, as the
outbox's at-least-once contract asks), no delivery is lost, and no request answers 5xx."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import TOTPDevice
from audit.models import Delivery
from audit.schedules import sync_periodic_tasks
from backups.archive import verify_archive
from backups.models import BackupJob
from breakglass.models import Grant, Group
from recovery.crypto import encrypt_field
from tests.audit.test_qcluster import database_url, wait_for
from tests.conftest import PASSWORD, add_authenticator, current_totp, example_website, make_user
from tests.ports import free_port
from tests.scaleout.servers import redis_server, s3_server

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SITE_BYTES = 96 * 1024 * 1024  # long enough to be caught mid-backup
GROUPS = 8  # break-glass presses whose webhook alerts keep the relay busy
WEBHOOK_DELAY = 4.0  # seconds the webhook receiver takes to answer: the relay stays busy
LEASE_SECONDS = 60  # the smallest lease the provider timeouts allow (audit.E005)
WEBHOOK_SECRET = "whsec_" + "YS13ZWJob29rLXNlY3JldC1mb3ItdGhlLXR3by1ub2Rlcw=="


class WebhookReceiver(ThreadingHTTPServer):
    """A slow alert consumer: records each delivery key it receives, answers after a delay."""

    def __init__(self):
        self.received: list[str] = []
        self.in_flight = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), _WebhookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


class _WebhookHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        server: WebhookReceiver = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        with server.lock:
            server.in_flight += 1
            server.received.append(self.headers["X-Breakglass-Delivery"])
        try:
            time.sleep(WEBHOOK_DELAY)
            self.send_response(204)
            self.end_headers()
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, *args):
        pass


class Node:
    def __init__(self, name: str, env: dict, folder: Path):
        self.name, self.env, self.folder = name, env, folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web = self.worker = None

    def start_web(self) -> None:
        self.web = self._start("web.log", sys.executable, "-m", "gunicorn", "-c",
                               "deploy/gunicorn.conf.py", "config.wsgi",
                               "--bind", f"127.0.0.1:{self.port}", "--workers", "2")

    def start_worker(self) -> None:
        self.worker = self._start("worker.log", sys.executable, "manage.py", "qcluster")

    def _start(self, log: str, *command: str) -> subprocess.Popen:
        with open(self.folder / log, "ab") as output:  # the child keeps its own descriptor
            return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def kill_worker(self) -> None:
        """SIGKILL to the whole cluster (sentinel, workers, monitor): a node that died."""
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def log(self) -> str:
        return "".join((self.folder / name).read_text(errors="replace")
                       for name in ("web.log", "worker.log") if (self.folder / name).exists())


class Browser:
    """A person's browser: one cookie jar, used against either node."""

    def __init__(self, responses: list):
        self.session = requests.Session()
        self.responses = responses

    def get(self, node: Node, path: str, **kwargs) -> requests.Response:
        response = self.session.get(node.url + path, allow_redirects=False, timeout=60,
                                    **kwargs)
        self.responses.append((node.name, "GET", path, response.status_code))
        return response

    def post(self, node: Node, path: str, data: dict | None = None) -> requests.Response:
        self.get(node, "/accounts/login/") if "csrftoken" not in self.session.cookies else None
        fields = {"csrfmiddlewaretoken": self.session.cookies["csrftoken"], **(data or {})}
        response = self.session.post(node.url + path, data=fields, allow_redirects=False,
                                     timeout=60)
        self.responses.append((node.name, "POST", path, response.status_code))
        return response

    def sign_in(self, node: Node, user, device: TOTPDevice) -> None:
        assert self.post(node, "/accounts/login/", {"username": user.username,
                                                    "password": PASSWORD}).status_code == 302
        device.refresh_from_db()
        code = current_totp(device)
        assert self.post(node, "/accounts/two-factor/verify/", {"code": code}).status_code == 302


def ready(node: Node) -> bool:
    try:
        return requests.get(node.url + "/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def servers():
    with redis_server() as redis_url, s3_server() as s3:
        yield redis_url, s3


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


@pytest.fixture
def cast(tmp_path, settings):
    """The people and things of the walk, in the shared database."""
    # Passwords hashed as the nodes' own settings check them (the tests' MD5 they do not).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    member, owner = make_user("mark"), make_user("olivia")
    devices = {user.username: add_authenticator(user) for user in (member, owner)}
    groups = []
    for number in range(GROUPS):
        group = Group.objects.create(name=f"Database {number}", slug=f"db-{number}")
        group.break_glass_users.add(member)
        group.owners.add(owner)
        groups.append(group)
    sites = tmp_path / "sites"
    (sites / "site").mkdir(parents=True)
    with open(sites / "site" / "media.bin", "wb") as media:
        for _ in range(SITE_BYTES // (4 * 1024 * 1024)):
            media.write(os.urandom(4 * 1024 * 1024))
    (sites / "site" / "index.html").write_text("<h1>Café</h1>")
    website = example_website(owner, files_dir=str(sites / "site"),
                              database_url_encrypted=encrypt_field(
                                  f"sqlite:///{make_site_database(sites)}"))
    return {"member": member, "owner": owner, "devices": devices, "groups": groups,
            "website": website, "sites": sites}


def make_site_database(sites: Path) -> Path:
    import sqlite3

    path = sites / "site.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE posts (title TEXT)")
        connection.execute("INSERT INTO posts VALUES ('Opening hours')")
    connection.close()
    return path


@pytest.fixture
def nodes(servers, webhook, cast, tmp_path):
    redis_url, s3 = servers
    s3.create_bucket("breakglass-nodes")
    sync_periodic_tasks()
    Schedule.objects.update(next_run=timezone.now())
    base = {key: value for key, value in os.environ.items()
            if key not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL"}}
    base.update(
        DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test", DATABASE_URL=database_url(),
        REDIS_URL=redis_url, **s3.environment("breakglass-nodes"), S3_UPLOAD_PART_MIB="5",
        BACKUP_SOURCE_ROOTS=str(cast["sites"]), BACKUP_DATABASE_ALLOW=str(cast["sites"]),
        SMS_BACKEND="console", EMAIL_URL="consolemail://", LOG_FORMAT="json",
        ALERT_WEBHOOK_URL=webhook.url, ALERT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ALERT_LEASE_SECONDS=str(LEASE_SECONDS), BACKUP_STALE_SECONDS="10", Q_WORKERS="2",
        ALLOWED_HOSTS="127.0.0.1", API_TOKEN_FAILURE_LIMIT="6", PYTHONUNBUFFERED="1")
    made = []
    for name in ("A", "B"):
        folder = tmp_path / f"node-{name}"
        folder.mkdir()
        # Each node its own disk: nothing may pass between them but PostgreSQL, Redis, S3.
        env = {**base, "BACKUP_ROOT": str(folder / "spool"),
               "CHECKPOINT_DIR": str(folder / "checkpoints"), "VAR_DIR": str(folder / "var")}
        made.append(Node(name, env, folder))
    try:
        for node in made:
            node.start_web()
        assert wait_for(lambda: all(ready(node) for node in made), 60), requests.get(
            made[0].url + "/readyz", timeout=5).text
        yield made, s3
    finally:
        for node in made:
            node.stop()


def texted_code(nodes: list[Node]) -> str:
    """The emergency code, from the SMS a worker printed (SMS_BACKEND=console)."""
    codes = []

    def arrived() -> bool:
        texts = re.findall(r"SMS to [^\n]*:\n(.*?)\n-{40}", "".join(node.log() for node in nodes),
                           re.DOTALL)
        codes[:] = [re.search(r"\b(\d{8})\b", text).group(1) for text in texts
                    if "emergency page" in text]
        return bool(codes)

    assert wait_for(arrived, 60), nodes[0].log()[-3000:]
    return codes[-1]


def keys(deliveries) -> set[str]:
    return {delivery.idempotency_key for delivery in deliveries}


def test_two_nodes_share_everything_and_survive_a_dead_worker(nodes, cast, webhook):
    (a, b), s3 = nodes
    responses: list = []
    member, owner = cast["member"], cast["owner"]
    a.start_worker()

    # Break glass on A, revoke on B; the session made on A works on B.
    mark = Browser(responses)
    mark.sign_in(a, member, cast["devices"]["mark"])
    first = cast["groups"][0]
    assert mark.post(a, f"/catalog/{first.slug}/break-glass/",
                     {"reason": "primary is down"}).status_code == 302
    grant = Grant.objects.get(group=first)
    assert grant.status == "active"
    assert mark.get(b, "/access/").status_code == 200
    olivia = Browser(responses)
    olivia.sign_in(b, owner, cast["devices"]["olivia"])
    assert olivia.post(b, f"/access/grants/{grant.pk}/end/",
                       {"reason": "the primary is back"}).status_code == 302
    grant.refresh_from_db()
    assert grant.status == "revoked"

    # The API's failure throttle is one count for both nodes (Redis), not one per process.
    stranger = Browser(responses)
    answers = [stranger.get(node, "/api/v1/grants", headers={
        "Authorization": "Bearer bg_nothing_wrongtoken"}).status_code
               for node in (a, b) * 4]
    assert answers[:6] == [401] * 6 and set(answers[6:]) == {429}, answers

    # The emergency: the code asked for on B, typed on A.
    owner_browser = Browser(responses)
    assert owner_browser.post(b, "/emergency/", {"address": "example.org"}).status_code in (
        200, 302)
    code = texted_code([a, b])
    assert owner_browser.post(a, "/emergency/verify/", {"code": code}).status_code == 302

    # A's worker gets a queue of slow webhook alerts, then the backup.
    for group, node in zip(cast["groups"][1:], (a, b) * GROUPS, strict=False):
        assert mark.post(node, f"/catalog/{group.slug}/break-glass/",
                         {"reason": "load balancer down"}).status_code == 302
    assert owner_browser.post(a, "/emergency/session/backup/").status_code == 302
    job = BackupJob.objects.get(website=cast["website"])

    def mid_backup_and_mid_relay() -> bool:
        job.refresh_from_db()
        return (job.status == "running" and job.done_bytes > 0 and webhook.in_flight > 0
                and Delivery.objects.filter(status="sending").exists())

    assert wait_for(mid_backup_and_mid_relay, 120), (
        job.status, job.done_bytes, webhook.in_flight, len(webhook.received),
        list(Delivery.objects.values_list("channel", "status")), a.log()[-3000:])
    leased = keys(Delivery.objects.filter(status="sending"))
    a.kill_worker()
    killed_at = time.monotonic()
    b.start_worker()

    # B's worker retries the backup and takes the dead relay's leased alert over.
    assert wait_for(lambda: BackupJob.objects.get(pk=job.pk).status == "complete",
                    240), (BackupJob.objects.get(pk=job.pk).error, b.log()[-3000:])
    job.refresh_from_db()
    assert job.attempts == 2
    assert wait_for(lambda: not Delivery.objects.exclude(status="sent").exists(),
                    LEASE_SECONDS + 120), list(Delivery.objects.exclude(
                        status="sent").values_list("channel", "status", "error"))
    assert time.monotonic() - killed_at < LEASE_SECONDS + 180

    # The archive: in the bucket only, downloaded from B, verified.
    assert s3.keys("breakglass-nodes", "backups/") == [f"backups/{job.archive_name}"]
    assert s3.incomplete_uploads("breakglass-nodes") == [] or wait_for(
        lambda: s3.incomplete_uploads("breakglass-nodes") == [], 90)
    download = owner_browser.get(b, f"/emergency/session/download/{job.pk}/", stream=True)
    assert download.status_code == 200
    body = b"".join(download.iter_content(1024 * 1024))
    assert len(body) == job.size and hashlib.sha256(body).hexdigest() == job.sha256
    archive = cast["sites"].parent / "download.tar.gz"
    archive.write_bytes(body)
    report = verify_archive(archive)
    assert report.ok and report.database, report.problems

    # Every webhook alert arrived; a repeat only of the alert the dead relay held.
    webhook_keys = keys(Delivery.objects.filter(channel="webhook"))
    received = Counter(webhook.received)
    assert set(received) == webhook_keys
    repeats = {key for key, count in received.items() if count > 1}
    assert repeats <= leased and all(count <= 2 for count in received.values()), received
    # Every e-mail printed once across both workers (none was in flight at the kill).
    logs = a.log() + b.log()
    email_keys = keys(Delivery.objects.filter(channel="email"))
    printed = Counter(re.findall(r"X-Breakglass-Delivery: (\S+)", logs))
    assert {key for key in printed if key in email_keys} == email_keys
    assert all(printed[key] == 1 or key in leased for key in email_keys)

    # No request answered 5xx: what the test saw, and what each node logged.
    assert [entry for entry in responses if entry[3] >= 500] == []
    statuses = [json.loads(line).get("status") for line in logs.splitlines()
                if line.startswith("{") and '"status"' in line]
    assert statuses and not [status for status in statuses if status and status >= 500]
    assert timezone.now() - grant.ended_at < timedelta(minutes=30)
