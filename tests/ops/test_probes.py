"""/livez and /readyz for load balancers and orchestrators: alive without the database,
ready only with the database reachable and every migration applied."""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit import views
from tests.connectors.postgres_server import SUPERUSER_PASSWORD, throwaway_postgres
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
METRICS_TOKEN = "probe-test-metrics-token-0123456789abcdef"


def test_livez_answers_without_touching_the_database(client):
    # No django_db mark: pytest-django refuses every database access in this test, so a
    # single query anywhere in the middleware or the view would fail it.
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_with_the_database_up_and_migrated(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/livez", "/readyz"])
def test_probes_are_get_or_head_only_and_never_cached(client, url):
    assert client.post(url).status_code == 405
    assert client.head(url).status_code == 200
    assert "no-cache" in client.get(url)["Cache-Control"]


@pytest.mark.django_db
def test_probes_answer_plain_http_but_metrics_is_sent_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


@pytest.mark.django_db(transaction=True)
def test_readyz_is_not_ready_while_a_migration_is_unapplied(client, monkeypatch):
    # Django's own admin app: its last migration only changes field choices, so undoing and
    # redoing it is cheap on every database and depends on nothing of ours.
    monkeypatch.setattr(views._MigrationState, "all_applied", False)
    executor = MigrationExecutor(connection)
    [leaf] = executor.loader.graph.leaf_nodes("admin")
    [parent] = [node for node in executor.loader.graph.node_map[leaf].parents
                if node.key[0] == "admin"]
    executor.migrate([parent.key])
    try:
        response = client.get("/readyz")
    finally:
        MigrationExecutor(connection).migrate([leaf])
    assert response.status_code == 503
    assert response.json() == {"status": "not ready",
                               "problems": [f"migrations not applied (1): admin.{leaf[1]}"]}
    assert client.get("/readyz").status_code == 200


# --- The real thing: gunicorn on PostgreSQL, and PostgreSQL stopped under it ----------------

@pytest.fixture
def postgres():
    with throwaway_postgres("probes") as server:
        yield server


def app_environment(database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENVIRONMENT="test",
               DATABASE_URL=database_url, METRICS_TOKEN=METRICS_TOKEN)
    return env


@pytest.fixture
def web_node(postgres, tmp_path):
    """`gunicorn config.wsgi` on a migrated database of the throwaway server: its base URL."""
    with postgres.admin() as admin:
        admin.execute("CREATE DATABASE breakglass")
    env = app_environment(f"postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:"
                          f"{postgres.port}/breakglass")
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    port, log = free_port(), tmp_path / "gunicorn.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--timeout", "60", "--graceful-timeout", "5"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_listening(server, base, log)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_listening(server: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"gunicorn exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            get(f"{base}/livez")
            return
        time.sleep(0.2)
    pytest.fail(f"gunicorn did not answer in 60 s:\n{log.read_text()[-3000:]}")


def get(url: str, **headers) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (a local server)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_livez_answers_200_with_the_database_stopped_and_readyz_503(postgres, web_node):
    metrics = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert get(f"{web_node}/livez") == (200, json.dumps({"status": "ok"}))
    assert get(f"{web_node}/readyz") == (200, json.dumps({"status": "ready"}))
    status, body = get(f"{web_node}/metrics", **metrics)
    assert status == 200 and "breakglass_active_grants" in body

    postgres.stop()
    assert get(f"{web_node}/livez") == (200, json.dumps({"status": "ok"}))
    status, body = get(f"{web_node}/readyz")
    assert (status, json.loads(body)) == (503, {"status": "not ready",
                                                "problems": ["database unreachable"]})
    status, body = get(f"{web_node}/healthz")
    assert status == 503 and json.loads(body)["problems"] == ["database unreachable"]
    assert get(f"{web_node}/metrics", **metrics) == (503, "database unreachable\n")
    assert get(f"{web_node}/livez")[0] == 200

    postgres.start()  # the node recovers on its own: no restart, no stale connection kept
    assert get(f"{web_node}/readyz") == (200, json.dumps({"status": "ready"}))
