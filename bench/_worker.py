"""Set-up for the benchmarks that run a real `manage.py qcluster`: Django with the real
settings on a database the worker can share (a SQLite file in a scratch folder unless
DATABASE_URL names one), migrated, and a context manager that runs the worker."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(tempfile.mkdtemp())

os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH / 'bench.sqlite3'}")
os.environ.update(ENVIRONMENT="development", EMAIL_URL="dummymail://", LOG_LEVEL="WARNING",
                  CHECKPOINT_DIR=str(SCRATCH), DJANGO_SETTINGS_MODULE="config.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)


@contextmanager
def running_worker(start_seconds: float = 3):
    worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(start_seconds)  # the cluster starts its workers
        yield worker
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)
