"""CI step: the outside SCIM 2.0 compliance suite (scim2-tester) against /scim/v2/ on a running
gunicorn server, over HTTP, with a throwaway database: migrate, create the directory's
application (scope scim:write), serve, run every check, stop. Exits 1 on any failed check.

Usage: .venv/bin/python .ci/scim_compliance.py  (DATABASE_URL may name a PostgreSQL database;
by default a throwaway SQLite file.)"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="breakglass-scim-"))
    env = {**os.environ, "ENVIRONMENT": "test", "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.setdefault("DATABASE_URL", f"sqlite:///{folder / 'scim.sqlite3'}")
    python = sys.executable

    def manage(*arguments: str) -> str:
        return subprocess.run(  # noqa: S603 (our own manage.py)
            [python, "manage.py", *arguments], cwd=ROOT, env=env, check=True,
            capture_output=True, text=True).stdout

    manage("migrate", "--noinput")
    created = manage("create_application", "directory", "--scope", "scim:write")
    token = re.search(r"token \(shown once, store it now\): (\S+)", created).group(1)
    port = free_port()
    log = (folder / "gunicorn.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 (our own app under gunicorn)
        [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--access-logfile", "-"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/scim/v2"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print((folder / "gunicorn.log").read_text()[-3000:])
                    return 1
                time.sleep(0.2)
        with httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                           timeout=30) as http:
            results = check_server(SyncSCIMClient(http))
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    failures = [result for result in results if result.status != Status.SUCCESS]
    for result in failures:
        print(result.status.name, result.resource_type, result.title, result.reason)
    print(f"scim2-tester against {base}: {len(results) - len(failures)} of {len(results)} "
          "checks passed")
    return 1 if failures or len(results) < 100 else 0


if __name__ == "__main__":
    sys.exit(main())
