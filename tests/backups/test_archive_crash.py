"""Crash safety of the backup archive (QUALITY Q33): a worker killed at any moment, or a disk
that fills up, never leaves a file under the archive's final name unless it is complete and
verifies; what it leaves is under a temporary name, and `clean_partials` removes it, but never
the temporaries of a backup still running."""

import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from backups.archive import clean_partials, verify_archive
from backups.archive.layout import PARTIAL_NAME

ROOT = Path(__file__).resolve().parents[2]
KILLS = 50
# A worker process: the archive engine alone, as the django-q2 worker runs it.
WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backups.archive import write_archive
write_archive(website="example.org", files_dir=Path(sys.argv[2]), database_url=sys.argv[3],
              destination=Path(sys.argv[4]))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str]:
    """A site that takes about half a second to back up: text-like pages, incompressible
    media and an SQLite database."""
    top = tmp_path_factory.mktemp("crash") / "site"
    rng = random.Random(33)
    words = [bytes(rng.choices(b"etaoinshrdlu", k=rng.randint(2, 9))) for _ in range(3000)]
    corpus = b" ".join(rng.choices(words, k=250_000))
    for n in range(160):
        page = top / f"pages/{n % 8}/page-{n}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(len(corpus) - 65536)
        page.write_bytes(corpus[start:start + 65536])
    (top / "media").mkdir()
    for n in range(4):
        (top / "media" / f"video-{n}.mp4").write_bytes(rng.randbytes(2_000_000))
    database = top.parent / "site.sqlite3"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO pages (body) VALUES (?)",
                               [(corpus[n * 500:n * 500 + 500].decode(),) for n in range(8000)])
        connection.commit()
    return top, f"sqlite:///{database}"


def start_worker(site: tuple[Path, str], destination: Path, **options) -> subprocess.Popen:
    options.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(site[0]), site[1],
                             str(destination)], text=True, **options)


def leftovers(folder: Path, destination: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path != destination)


def test_a_worker_killed_at_any_moment_leaves_no_partial_archive_under_its_final_name(
        site, tmp_path):
    started = time.monotonic()
    assert start_worker(site, tmp_path / "timing.tar.gz").wait() == 0
    duration = time.monotonic() - started
    assert verify_archive(tmp_path / "timing.tar.gz").ok
    seed = random.randrange(1 << 32)
    rng, outcomes = random.Random(seed), Counter()
    for attempt in range(KILLS):
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        destination = folder / "example.org.tar.gz"
        # One moment in each fiftieth of 1.25 runs: all phases, and a few after the rename.
        delay = duration * 1.25 * (attempt + rng.random()) / KILLS
        worker = start_worker(site, destination)
        time.sleep(delay)
        worker.kill()
        worker.wait()

        left = leftovers(folder, destination)
        context = f"seed {seed}, attempt {attempt}, killed after {delay:.3f} s: {left}"
        assert all(PARTIAL_NAME.search(name) for name in left), context
        if destination.exists():
            report = verify_archive(destination)
            assert report.ok, f"{context}: {report.problems}"
        outcomes["complete" if destination.exists() else "partial" if left else "early"] += 1
        removed = clean_partials(folder, older_than=timedelta(0))
        assert [path.name for path in removed] == left, context
        assert leftovers(folder, destination) == [], context
    assert outcomes["partial"] >= KILLS // 2 and outcomes["complete"] >= 1, (seed, outcomes)


def test_clean_partials_spares_a_running_backup_and_then_the_recent_leftovers(site, tmp_path):
    destination = tmp_path / "example.org.tar.gz"
    worker = start_worker(site, destination)
    try:
        deadline = time.monotonic() + 30
        while not any(path.stat().st_size for path in tmp_path.iterdir()):
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.005)
        in_progress = leftovers(tmp_path, destination)

        assert clean_partials(tmp_path, older_than=timedelta(0)) == []
        assert set(in_progress) <= set(leftovers(tmp_path, destination))
    finally:
        worker.kill()
        worker.wait()
    left = [tmp_path / name for name in leftovers(tmp_path, destination)]
    assert left and not destination.exists()

    assert clean_partials(tmp_path, older_than=timedelta(hours=1)) == []
    for path in left:
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert clean_partials(tmp_path, older_than=timedelta(hours=1)) == sorted(left)
    assert list(tmp_path.iterdir()) == []


def limit_file_size_to_one_megabyte() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a dead process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_fails_the_backup_and_leaves_nothing(site, tmp_path):
    with start_worker(site, tmp_path / "example.org.tar.gz", stderr=subprocess.PIPE,
                      preexec_fn=limit_file_size_to_one_megabyte) as worker:
        failure = worker.stderr.read()

    assert worker.returncode == 1
    assert "OSError: [Errno 27] File too large" in failure
    assert list(tmp_path.iterdir()) == []
