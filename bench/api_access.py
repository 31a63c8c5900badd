"""Issue-4 benchmarks against gunicorn and the same database, ratios from one run:

1. GET /api/v1/access throughput (groups nested 5 deep, 10,000 groups) against a minimal
   Django view doing one indexed query. Target >= 0.7.
2. Break-glass activation (POST /api/v1/break-glass) mean latency against a minimal view doing
   one insert in a transaction. Target <= 2.0.
3. /catalog/ query count for 10 and 1,000 groups (must be equal), and its latency.

Both baselines are served by the same gunicorn, through the same middleware. Load comes from
`wrk` when installed (apt-get install wrk), else from a Python client.

    .venv/bin/python bench/api_access.py                       # SQLite file, scratch folder
    DATABASE_URL=postgres://... .venv/bin/python bench/api_access.py   # a scratch database!
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
scratch = Path(tempfile.mkdtemp())
os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
os.environ.update(DJANGO_SETTINGS_MODULE="bench.web_settings", CHECKPOINT_DIR=str(scratch),
                  API_TOKEN_FAILURE_LIMIT="1000000")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

GROUPS = 10_000
DEPTH = 5
ACTIVATIONS = 500
# Requests sent to each endpoint before timing: a worker's first calls import views, fill
# caches and prepare statements, which is start-up cost, not the cost of an activation.
WARMUP = 30


def populate() -> tuple[str, str]:
    from accounts.models import User
    from breakglass.models import Group, Scope
    from breakglass.services.applications import create_application

    call_command("migrate", verbosity=0)
    Group.objects.bulk_create(
        [Group(name=f"Group {n}", slug=f"group-{n}") for n in range(GROUPS)], batch_size=2000)
    chain = list(Group.objects.filter(slug__in=[f"group-{n}" for n in range(DEPTH + 1)])
                 .order_by("pk"))
    for parent, child in zip(chain[1:], chain[:-1], strict=True):
        parent.contains.add(child)  # group-5 contains ... contains group-0
    user = User.objects.create_user("bench-user", email="bench@example.org")
    chain[-1].members.add(user)
    owner = User.objects.create_user("bench-owner", email="owner@example.org")
    target = Group.objects.create(name="Activation target", slug="activation-target")
    target.owners.add(owner)
    holders = [User(username=f"holder-{n}") for n in range(WARMUP + ACTIVATIONS)]
    User.objects.bulk_create(holders)
    target.break_glass_users.add(*User.objects.filter(username__startswith="holder-"))
    _, token = create_application("bench", list(Scope.values), actor=None)
    return token, chain[0].slug


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wrk_rate(url: str, headers: dict, seconds: int = 6) -> float:
    command = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    check = http.client.HTTPConnection(url.split("/")[2])
    check.request("GET", "/" + url.split("/", 3)[3], headers=headers)
    answer = check.getresponse()
    answer.read()
    assert answer.status == 200, (url, answer.status)  # wrk does not count 3xx as errors
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("Requests/sec:"))
    non_2xx = [line for line in output.splitlines() if "Non-2xx" in line]
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx[0]}")
    return float(line.split()[1])


def python_rate(port: int, path: str, headers: dict, seconds: int = 6) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
        count += 1
    return count / seconds


MEDIANS: dict[str, float] = {}


def mean_latency(port: int, method: str, path: str, bodies, headers: dict) -> float:
    """Mean latency of one request per body, after the first WARMUP bodies (not timed). The
    median is kept too (MEDIANS), to tell a slower path from a noisier machine."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for body in bodies:
        start = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        assert response.status == 201, (path, response.status)
    MEDIANS[path] = statistics.median(times[WARMUP:])
    return statistics.mean(times[WARMUP:])


def catalog_queries(groups: int) -> int:
    from django.test import Client

    from accounts.models import User
    from breakglass.models import Group

    user = User.objects.get(username="bench-user")
    client = Client()
    client.force_login(user)
    session = client.session
    from accounts.models import TOTPDevice

    device = TOTPDevice.objects.get_or_create(user=user, name="bench", confirmed=True)[0]
    session["otp_device_id"] = device.persistent_id
    session.save()
    extra = groups - Group.objects.filter(slug__startswith="catalog-").count()
    Group.objects.bulk_create([Group(name=f"Catalog {n}", slug=f"catalog-{groups}-{n}")
                               for n in range(max(extra, 0))])
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/catalog/", HTTP_HOST="127.0.0.1").status_code == 200
    return len(queries)


def main() -> int:
    token, deep_slug = populate()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-w", "2", "-b",
         f"127.0.0.1:{port}", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)
        auth = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
        base = f"http://127.0.0.1:{port}"
        use_wrk = shutil.which("wrk") is not None
        access = f"/api/v1/access?user=bench-user&group={deep_slug}"
        baseline = f"/bench/one-query?group={deep_slug}"
        if use_wrk:
            baseline_rate = wrk_rate(base + baseline, {"Host": "127.0.0.1"})
            access_rate = wrk_rate(base + access, auth)
        else:
            baseline_rate = python_rate(port, baseline, {"Host": "127.0.0.1"})
            access_rate = python_rate(port, access, auth)
        insert_latency = mean_latency(port, "POST", "/bench/one-insert",
                                      [b""] * (WARMUP + ACTIVATIONS), {"Host": "127.0.0.1"})
        bodies = [json.dumps({"user": f"holder-{n}", "group": "activation-target",
                              "reason": "benchmark"}).encode()
                  for n in range(WARMUP + ACTIVATIONS)]
        activation_latency = mean_latency(
            port, "POST", "/api/v1/break-glass", bodies,
            {**auth, "Content-Type": "application/json"})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    small, large = catalog_queries(10), catalog_queries(1000)
    access_ratio = access_rate / baseline_rate
    activation_ratio = activation_latency / insert_latency
    print(f"database: {connection.vendor}; load: {'wrk' if use_wrk else 'python client'}")
    print(f"access check (nested {DEPTH} deep, {GROUPS:,} groups): {access_rate:,.0f} req/s; "
          f"one-query view {baseline_rate:,.0f} req/s -> ratio {access_ratio:.2f} "
          f"(target >= 0.7)")
    print(f"activation: {activation_latency * 1000:.1f} ms; one-insert view "
          f"{insert_latency * 1000:.1f} ms -> ratio {activation_ratio:.2f} (target <= 2.0)")
    activation_median = MEDIANS["/api/v1/break-glass"] / MEDIANS["/bench/one-insert"]
    print(f"activation medians: {MEDIANS['/api/v1/break-glass'] * 1000:.1f} ms vs "
          f"{MEDIANS['/bench/one-insert'] * 1000:.1f} ms -> ratio {activation_median:.2f} "
          "(for reading the mean: a much lower median means outliers from the machine)")
    print(f"catalog queries: {small} with 10 groups, {large} with 1,000 "
          f"({'constant' if small == large else 'NOT constant'})")
    return 0 if access_ratio >= 0.7 and activation_ratio <= 2 and small == large else 1


if __name__ == "__main__":
    sys.exit(main())
