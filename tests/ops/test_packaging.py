"""What an operator installs: the wheel carries every file the app reads; an installed copy
reads BREAKGLASS_ENV_FILE and refuses to start without VAR_DIR; the systemd units' own command
lines start a web server and a worker that work and stop cleanly on SIGTERM; and
deploy/gunicorn.conf.py lets a download outlive gunicorn's timeout.

The units are run as written, with the install's folders (/opt/breakglass/venv and
/opt/breakglass/deploy, /var/lib/breakglass, /etc/breakglass/env) mapped onto this virtual
environment, this checkout's deploy/ and a throwaway folder, and an environment as clean as
systemd's. `.ci/package_check` makes the real install from scratch (pip install, production
settings, check --deploy)."""

import http.client
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV = Path(sys.executable).parent.parent


@dataclass
class Layout:
    """The throwaway stand-ins for the install's folders."""

    var: Path
    env_file: Path

    def install_paths(self) -> dict[str, str]:
        return {"/opt/breakglass/venv": str(VENV), "/opt/breakglass/deploy": str(DEPLOY),
                "/var/lib/breakglass": str(self.var), "/etc/breakglass/env": str(self.env_file)}


def service_section(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith(("#", ";")) and section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def on_this_machine(value: str, layout: Layout) -> str:
    for installed, here in layout.install_paths().items():
        value = value.replace(installed, here)
    assert "/opt/breakglass" not in value, f"an install path the test cannot map: {value}"
    return value


def unit_command(unit: dict[str, list[str]], layout: Layout) -> list[str]:
    (exec_start,) = unit["ExecStart"]
    return shlex.split(on_this_machine(exec_start, layout))


def unit_environment(unit: dict[str, list[str]], layout: Layout, **extra: str) -> dict[str, str]:
    """What systemd gives the service: a bare environment plus the unit's Environment= lines
    (nothing of this test run's settings, database or DJANGO_SETTINGS_MODULE)."""
    environment = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(layout.var)}
    for line in unit.get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            environment[key] = on_this_machine(value, layout)
    return {**environment, **extra}


def stop_timeout(unit: dict[str, list[str]]) -> float:
    (value,) = unit["TimeoutStopSec"]
    return float(value.removesuffix("s"))


def start(unit: dict[str, list[str]], layout: Layout, **extra: str) -> subprocess.Popen:
    (directory,) = unit["WorkingDirectory"]
    return subprocess.Popen(
        unit_command(unit, layout), cwd=on_this_machine(directory, layout),
        env=unit_environment(unit, layout, **extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_with_sigterm(process: subprocess.Popen, unit: dict[str, list[str]]) -> tuple[float, str]:
    """SIGTERM to the main process only (KillMode=mixed); the seconds it took and its output."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=stop_timeout(unit))
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"still running {stop_timeout(unit)} s after SIGTERM:\n{output[-3000:]}")
    return time.monotonic() - started, output


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body), or (0, "") while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    """/var/lib/breakglass and /etc/breakglass/env of a test install, migrated by the install's
    own `breakglass` command (SQLite under VAR_DIR, the default)."""
    root = tmp_path_factory.mktemp("install")
    layout = Layout(var=root / "var", env_file=root / "etc-env")
    layout.var.mkdir()
    layout.env_file.write_text("ENVIRONMENT=test\nQ_WORKERS=1\n")
    worker = service_section("breakglass-worker.service")
    breakglass = unit_command(worker, layout)[0]
    migrated = subprocess.run(
        [breakglass, "migrate", "--noinput"], cwd=layout.var, capture_output=True, text=True,
        env=unit_environment(worker, layout), timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]
    return layout


@dataclass
class Wheel:
    path: Path
    source: Path
    packages: list[str]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Wheel:
    """The project's wheel, built from a copy of its packages (so that no build/ folder is left
    in the checkout, and no stale one slips deleted files in)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    packages = [path.name for path in ROOT.iterdir()
                if (path / "__init__.py").exists() and f"{path.name}*" in includes]
    assert len(packages) == len(includes)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in packages:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         str(source), "-w", str(root)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = root.glob("breakglass-*.whl")
    return Wheel(path, source, packages)


def test_the_wheel_carries_every_file_the_packages_hold(wheel):
    """Templates, static files, migrations and any data file the app may read."""
    shipped = set(zipfile.ZipFile(wheel.path).namelist())
    expected = {path.relative_to(wheel.source).as_posix() for package in wheel.packages
                for path in (wheel.source / package).rglob("*") if path.is_file()}
    assert {"config/templates/base.html", "config/static/css/breakglass.css",
            "audit/migrations/0001_initial.py"} <= expected
    assert expected - shipped == set()
    assert "[console_scripts]\nbreakglass = config.cli:main" in zipfile.ZipFile(wheel.path).read(
        "breakglass-0.1.0.dist-info/entry_points.txt").decode()


WHERE_FROM = """
from django.conf import settings
from django.template.loader import get_template
print(settings.VAR_DIR)
print(get_template("accounts/login.html").origin.name)
"""


def run_installed_copy(site: Path, tmp_path: Path, **environment: str):
    """`breakglass shell` of the unpacked wheel (the code comes from `site`, the libraries from
    this virtual environment), from a folder that is not the checkout."""
    return subprocess.run(
        [sys.executable, "-c", "from config.cli import main; main()", "shell", "-c", WHERE_FROM],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(site),
             **environment})


def test_an_installed_copy_reads_its_env_file_and_needs_var_dir(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel.path).extractall(site)
    env_file = tmp_path / "env"
    env_file.write_text(f"ENVIRONMENT=test\nVAR_DIR={tmp_path / 'data'}\n")

    ran = run_installed_copy(site, tmp_path, BREAKGLASS_ENV_FILE=str(env_file))
    assert ran.returncode == 0, ran.stderr[-3000:]
    var_dir, template = ran.stdout.splitlines()[-2:]
    assert var_dir == str(tmp_path / "data")
    assert template == str(site / "config" / "templates" / "accounts" / "login.html")

    for refused in ({"ENVIRONMENT": "test"}, {"ENVIRONMENT": "test", "VAR_DIR": "data"}):
        ran = run_installed_copy(site, tmp_path, **refused)
        assert ran.returncode != 0
        assert "VAR_DIR must name an absolute folder" in ran.stderr
    ran = run_installed_copy(site, tmp_path, BREAKGLASS_ENV_FILE=str(tmp_path / "missing"))
    assert ran.returncode != 0
    assert "BREAKGLASS_ENV_FILE: cannot read the file" in ran.stderr


def test_the_units_are_valid_systemd_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        reason = "systemd-analyze is not installed"
        if os.environ.get("BREAKGLASS_REQUIRE_SYSTEMD"):
            pytest.fail(f"BREAKGLASS_REQUIRE_SYSTEMD is set but {reason}")
        print(f"skipped: {reason}")
        pytest.skip(reason)
    layout = Layout(var=tmp_path / "var", env_file=tmp_path / "env")
    units = tmp_path / "units"
    units.mkdir()
    for name in ("breakglass-web.service", "breakglass-worker.service"):
        (units / name).write_text(on_this_machine((DEPLOY / name).read_text(), layout))
    verified = subprocess.run([analyze, "verify", *sorted(map(str, units.iterdir()))],
                              capture_output=True, text=True, timeout=60)
    # Unknown or misspelt keys are only warned about: any output at all fails.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_the_web_unit_serves_the_app_and_stops_cleanly_on_sigterm(layout):
    unit = service_section("breakglass-web.service")
    port = free_port()
    server = start(unit, layout, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1")
    try:
        assert wait_for(lambda: get(port, "/livez")[0] == 200 or server.poll() is not None, 60)
        assert server.poll() is None, server.communicate()[0][-3000:]
        status, page = get(port, "/accounts/login/")
        assert status == 200 and 'name="username"' in page, page[:500]
        assert get(port, "/static/css/breakglass.css")[0] == 200
    finally:
        seconds, output = stop_with_sigterm(server, unit)
    assert server.returncode == 0, output[-3000:]
    assert seconds < stop_timeout(unit)
    assert "Shutting down: Master" in output


def scheduler_heartbeats(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute(
            "SELECT COUNT(*) FROM audit_heartbeat WHERE name = 'scheduler'").fetchone()[0]


def test_the_worker_unit_beats_the_heartbeat_and_stops_on_sigterm(layout):
    unit = service_section("breakglass-worker.service")
    database = layout.var / "breakglass.sqlite3"
    assert scheduler_heartbeats(database) == 0
    worker = start(unit, layout)
    try:
        assert wait_for(lambda: scheduler_heartbeats(database) == 1 or worker.poll() is not None,
                        30)
        assert worker.poll() is None, worker.communicate()[0][-3000:]
    finally:
        seconds, output = stop_with_sigterm(worker, unit)
    assert worker.returncode == 0, output[-3000:]
    assert seconds < stop_timeout(unit)
    assert "stopped" in output.lower()


SLOW_DOWNLOAD = '''
import time

CHUNKS, CHUNK = 20, b"x" * 4096


def application(environ, start_response):
    if environ["PATH_INFO"] == "/ready":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ready"]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(CHUNKS * len(CHUNK)))])

    def body():
        for _ in range(CHUNKS):
            time.sleep(0.25)
            yield CHUNK

    return body()
'''


def download(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/backup.tar")
        return len(connection.getresponse().read())
    finally:
        connection.close()


def serve_slow_download(tmp_path: Path, *options: str) -> tuple[int | Exception, str]:
    """Download 80 KiB that take 5 s to stream from gunicorn under deploy/gunicorn.conf.py with
    a 2-second timeout: the number of bytes received (or the error), and gunicorn's log."""
    (tmp_path / "slow_download.py").write_text(SLOW_DOWNLOAD)
    port = free_port()
    environment = {"PATH": os.environ["PATH"], "GUNICORN_TIMEOUT": "2", "GUNICORN_WORKERS": "1",
                   "GUNICORN_BIND": f"127.0.0.1:{port}"}
    server = subprocess.Popen(
        [str(VENV / "bin" / "gunicorn"), "-c", str(DEPLOY / "gunicorn.conf.py"), *options,
         "slow_download:application"], cwd=tmp_path, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: get(port, "/ready")[0] == 200 or server.poll() is not None, 30)
        try:
            received: int | Exception = download(port)
        except (http.client.HTTPException, ConnectionError) as error:
            received = error
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    return received, output


def test_a_download_longer_than_gunicorns_timeout_completes(tmp_path):
    received, log = serve_slow_download(tmp_path)
    assert "Using worker: gthread" in log
    assert received == 20 * 4096, log[-3000:]
    assert "WORKER TIMEOUT" not in log


def test_the_sync_worker_would_cut_that_download(tmp_path):
    """The same download under the sync worker: killed mid-way, so the setting matters.
    (With more than one thread gunicorn would quietly pick gthread again.)"""
    received, log = serve_slow_download(tmp_path, "--worker-class", "sync", "--threads", "1")
    assert "Using worker: sync" in log
    assert isinstance(received, Exception), received
    assert "WORKER TIMEOUT" in log
