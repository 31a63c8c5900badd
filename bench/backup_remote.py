"""Remote backup over SSH against the system's own `ssh host tar cz > file`, on one generated
WordPress-like tree served by a throwaway sshd on 127.0.0.1 (tests/backups/sshd_server.py):

1. Throughput: `RemoteSite` + `write_archive` (the remote GNU tar stream read member by member,
   hashed and gzipped at level 6 here) against `ssh -i KEY ... "tar -C DIR -cz ." > file` (gzip
   level 6, run by the server). Target: ours >= 0.8x the baseline's MB/s. Runs alternate; best
   and median are shown. Both are timed up to an fsync of their output, as ours makes its
   archive durable; ours is timed in its child from the connection to the rename.
2. Peak memory of a child process doing only the backup, on a tree of a quarter of the size
   and on the full tree. Target: < 100 MB, and flat (at most 10 MB more on the full tree).

Client and server run on the same machine here, so the baseline's gzip (on the server side)
and our compression (on the client side) share the same cores.

    .venv/bin/python bench/backup_remote.py                  # a 1 GiB tree
    .venv/bin/python bench/backup_remote.py --size-mb 200    # quick
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
MIB = 1 << 20
RATIO_TARGET = 0.8
PEAK_TARGET_MB = 100
GROWTH_LIMIT_MB = 10
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
GENERATE = """
import random, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backup_remote import make_tree
print(make_tree(Path(sys.argv[2]), int(sys.argv[3]), random.Random(int(sys.argv[3]))))
"""
# Only the backup: the tree is made in a process of its own, so that this child's ru_maxrss
# cannot inherit a large peak from the process that started it.
CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backups.archive import write_archive
from backups.archive.remote import RemoteSite, SshCredentials, parse_ssh_source
url, key, host_key, destination = sys.argv[2:6]
credentials = SshCredentials(private_key=Path(key).read_text(), passphrase="", host_key=host_key)
start = time.perf_counter()
with RemoteSite(parse_ssh_source(url), credentials) as site:
    cipher = site.client.get_transport().remote_cipher
    result = write_archive(website="bench.example", files_dir=site.real_folder(),
                           database_url=None, destination=Path(destination), remote=site)
seconds = time.perf_counter() - start
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "size": result.size, "files": result.files,
                  "cipher": cipher, "hwm_mb": hwm_kb / 1024,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


# --- The tree --------------------------------------------------------------------------------


def make_tree(top: Path, megabytes: int, rng: random.Random) -> int:
    """About `megabytes` MiB shaped like a WordPress site: 60 % uploads (random bytes: photos
    with three thumbnails each, a few videos), 25 % small text (PHP, JS, CSS, cached HTML),
    15 % large text (SQL dumps, logs). Returns the number of files."""
    from backup_throughput import text_corpus

    corpus = text_corpus(rng)
    writer = _TreeWriter(top, rng, corpus)
    budget = megabytes * MIB
    writer.code(budget * 25 // 100)
    writer.large_text(budget * 15 // 100)
    writer.uploads(budget * 60 // 100)
    return writer.count


class _TreeWriter:
    def __init__(self, top: Path, rng: random.Random, corpus: bytes):
        self.top, self.rng, self.corpus, self.count = top, rng, corpus, 0

    def write(self, relative: str, data: bytes) -> None:
        path = self.top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.count += 1

    def text(self, size: int) -> bytes:
        start = self.rng.randrange(len(self.corpus) - size)
        return self.corpus[start:start + size]

    def code(self, budget: int) -> None:
        kinds = ["php", "php", "php", "js", "css", "html"]
        while budget > 0:
            size = min(int(2 ** self.rng.uniform(10, 16)), budget)
            folder = f"wp-content/plugins/plugin-{self.count // 400}/includes-{self.count // 60}"
            self.write(f"{folder}/file-{self.count}.{self.rng.choice(kinds)}", self.text(size))
            budget -= size

    def large_text(self, budget: int) -> None:
        for index, share in enumerate((40, 30, 20, 10)):
            size, lines = budget * share // 100, []
            while size > 0:
                line = (f"INSERT INTO `wp_posts` VALUES ({len(lines) + 1},1,'2024-05-01 08:00:00',"
                        f"'{self.text(self.rng.randint(200, 4000)).decode()}');\n").encode()
                lines.append(line)
                size -= len(line)
            name = f"wp-content/backup-db/site-{index}.sql" if index < 2 else \
                f"wp-content/debug-{index}.log"
            self.write(name, b"".join(lines))

    def uploads(self, budget: int) -> None:
        for index in range(3):  # a few videos: 5 % of the uploads
            self.write(f"wp-content/uploads/2023/0{index + 1}/video-{index}.mp4",
                       self.rng.randbytes(budget * 5 // 300))
        budget -= budget * 5 // 100
        while budget > 0:
            month = f"wp-content/uploads/{2015 + self.count % 10}/{self.count % 12 + 1:02d}"
            sizes = [int(2 ** self.rng.uniform(17.5, 21.5)), self.rng.randint(5, 15) * 1024,
                     self.rng.randint(15, 40) * 1024, self.rng.randint(80, 250) * 1024]
            image = f"{month}/photo-{self.count}"
            for suffix, size in zip(("", "-150x150", "-300x200", "-1024x683"), sizes,
                                    strict=True):
                self.write(f"{image}{suffix}.jpg", self.rng.randbytes(min(size, max(budget, 1))))
                budget -= size


# --- The server ------------------------------------------------------------------------------


def sshd_executable() -> str | None:
    found = shutil.which("sshd", path=SEARCH_PATH)
    if not found or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        return None
    return os.path.abspath(found)


def known_hosts(server, folder: Path) -> Path:
    path = folder / "known_hosts"
    path.write_text(f"[127.0.0.1]:{server.port} {server.host_key_line}\n")
    return path


# --- The runs --------------------------------------------------------------------------------


def run_baseline(server, known: Path, top: Path, destination: Path) -> dict:
    os.sync()  # neither run pays for the other's dirty pages
    command = ["ssh", "-F", "/dev/null", "-i", str(server.client_key), "-o", "IdentitiesOnly=yes",
               "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={known}", "-p", str(server.port),
               f"{server.user}@127.0.0.1", f"tar -C {top} -cz ."]
    start = time.perf_counter()
    with open(destination, "wb") as output:
        subprocess.run(command, stdout=output, check=True)
        os.fsync(output.fileno())
    seconds = time.perf_counter() - start
    size = destination.stat().st_size
    destination.unlink()
    return {"seconds": seconds, "size": size}


def run_ours(server, top: Path, destination: Path) -> dict:
    os.sync()
    output = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), server.url(top), str(server.client_key),
         server.host_key_line, str(destination)], check=True, capture_output=True,
        text=True).stdout
    destination.unlink()
    return json.loads(output)


def generate(top: Path, megabytes: int) -> int:
    output = subprocess.run([sys.executable, "-c", GENERATE, str(BENCH), str(top),
                             str(megabytes)], check=True, capture_output=True, text=True)
    return int(output.stdout)


# --- Report ----------------------------------------------------------------------------------


def throughput_table(megabytes: int, files: int, baseline: list[dict], ours: list[dict]) -> float:
    tree = megabytes * MIB
    print(f"\n{megabytes} MiB tree, {files:,} files; {len(ours)} runs each, alternating "
          f"(cipher {ours[0]['cipher']} for ours)")
    print(f"{'':<34} {'best s':>8} {'median s':>9} {'MiB/s':>7} {'.tar.gz MiB':>12}")
    best = {}
    for label, runs in (("ssh + remote tar -cz (baseline)", baseline),
                        ("RemoteSite + write_archive (ours)", ours)):
        seconds = [run["seconds"] for run in runs]
        best[label] = min(seconds)
        print(f"{label:<34} {min(seconds):>8.2f} {statistics.median(seconds):>9.2f} "
              f"{tree / MIB / min(seconds):>7.1f} {runs[0]['size'] / MIB:>12.1f}")
    ratio = best["ssh + remote tar -cz (baseline)"] / best["RemoteSite + write_archive (ours)"]
    medians = (statistics.median(run["seconds"] for run in baseline)
               / statistics.median(run["seconds"] for run in ours))
    print(f"ratio ours/baseline throughput: {ratio:.2f} (best), {medians:.2f} (median)")
    return ratio


def memory_table(rows: list[tuple[int, dict]]) -> float:
    print("\nPeak memory of the child doing only the backup (max over its runs)")
    print(f"{'tree':>9} {'VmHWM MB':>9} {'ru_maxrss MB':>13}")
    for megabytes, peak in rows:
        print(f"{megabytes:>5} MiB {peak['hwm_mb']:>9.1f} {peak['maxrss_mb']:>13.1f}")
    return rows[-1][1]["hwm_mb"] - rows[0][1]["hwm_mb"]


def verdict(ratio: float, rows: list[tuple[int, dict]], growth: float) -> None:
    peak = max(max(row["hwm_mb"], row["maxrss_mb"]) for _, row in rows)
    print(f"peak growth from {rows[0][0]} MiB to {rows[-1][0]} MiB: {growth:+.1f} MB")
    print("(over ssh the baseline's gzip runs in the server's tar, here on this same machine)")
    print(f"{'PASS' if ratio >= RATIO_TARGET else 'FAIL'}: throughput ratio {ratio:.2f} "
          f"(target >= {RATIO_TARGET})")
    print(f"{'PASS' if peak < PEAK_TARGET_MB else 'FAIL'}: peak memory {peak:.1f} MB "
          f"(target < {PEAK_TARGET_MB} MB)")
    print(f"{'PASS' if growth <= GROWTH_LIMIT_MB else 'FAIL'}: memory flat in size, "
          f"{growth:+.1f} MB (target <= {GROWTH_LIMIT_MB} MB)")


def peak(runs: list[dict]) -> dict:
    return {key: max(run[key] for run in runs) for key in ("hwm_mb", "maxrss_mb")}


def measure(server, scratch: Path, megabytes: int, repeats: int) -> None:
    known = known_hosts(server, scratch)
    small_mb = max(megabytes // 4, 1)
    print(f"generating {small_mb} MiB and {megabytes} MiB trees ...", flush=True)
    small, full = scratch / "small", scratch / "full"
    generate(small, small_mb)
    files = generate(full, megabytes)
    small_runs = [run_ours(server, small, scratch / "small.tar.gz")]
    baseline, ours = [], []
    for repeat in range(repeats):
        print(f"run {repeat + 1} of {repeats} ...", flush=True)
        baseline.append(run_baseline(server, known, full, scratch / "baseline.tar.gz"))
        ours.append(run_ours(server, full, scratch / "ours.tar.gz"))
        if ours[-1]["files"] != files:
            print(f"warning: ours archived {ours[-1]['files']} of {files} files")
    ratio = throughput_table(megabytes, files, baseline, ours)
    rows = [(small_mb, peak(small_runs)), (megabytes, peak(ours))]
    verdict(ratio, rows, memory_table(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="tree size in MiB (1024)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (3)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the scratch folder goes (needs about 2.5x the size)")
    options = parser.parse_args()
    executable = sshd_executable()
    if executable is None:
        print("skipped: needs sshd, ssh and ssh-keygen (apt-get install openssh-server)")
        return 0
    free = shutil.disk_usage(options.folder).free
    if free < 2.5 * options.size_mb * MIB:
        print(f"skipped: {options.folder} has {free / MIB:,.0f} MiB free, needs "
              f"{2.5 * options.size_mb:,.0f} MiB")
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.backups.sshd_server import SshServer

    scratch = Path(tempfile.mkdtemp(prefix="backup-remote-bench-", dir=options.folder))
    server = SshServer(Path(tempfile.mkdtemp(prefix="bench-sshd-")), executable)
    try:
        server.start()
        measure(server, scratch, options.size_mb, options.repeats)
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
