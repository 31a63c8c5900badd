"""Backup throughput and memory (SPEC §6, QUALITY Q35), ratios from one run on one tree:

1. `write_archive` wall time against `tar -czf` (gzip level 6 both) on the same generated tree:
   ratio = tar time / our time, target >= 0.7.
2. Peak RSS of a child process running `write_archive`: target < 150 MB at every size, and flat
   (at most 10 MB more on the largest tree than on the smallest).

The tree looks like a website: many small text-like files (pages, scripts, styles), a few large
text files (logs, SQL) and incompressible media (random bytes), generated from a fixed seed in a
scratch folder that is removed afterwards.

    .venv/bin/python bench/backup_throughput.py                  # 100 MB and 1 GB trees
    .venv/bin/python bench/backup_throughput.py --sizes 100 --folder /var/tmp
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
RATIO_TARGET = 0.7
PEAK_TARGET_MB = 150
GROWTH_LIMIT_MB = 10
CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backups.archive import write_archive
if sys.argv[2] != "--baseline":
    start = time.perf_counter()
    result = write_archive(website="bench.example", files_dir=Path(sys.argv[2]),
                           database_url=None, destination=Path(sys.argv[3]))
    seconds, size = time.perf_counter() - start, result.size
else:
    seconds = size = 0
# VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "size": size, "peak_mb": peak_kb / 1024}))
"""


def text_corpus(rng: random.Random, size: int = 8 * MB) -> bytes:
    """Pseudo-prose and markup with a Zipf-like vocabulary: gzip -6 shrinks it to about 35 %,
    like real pages and logs."""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocabulary = ["".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(1, 9)))
                  for _ in range(20_000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    tags = ["<p>", "</p>", "<div class=\"item\">", "</div>", "\n", ". ", ", ", "{", "}", ";\n"]
    words = rng.choices(vocabulary + tags, weights=weights + [40] * len(tags), k=size // 5)
    return " ".join(words).encode()[:size]


def make_tree(top: Path, megabytes: int, rng: random.Random) -> int:
    """Writes about `megabytes` MB: 45 % small text files (1-64 KB, 100 per folder), 25 % a
    few large text files, 30 % incompressible media. Returns the number of files."""
    corpus = text_corpus(rng)
    budget = {"small": megabytes * MB * 45 // 100, "large": megabytes * MB * 25 // 100,
              "media": megabytes * MB * 30 // 100}
    count = 0

    def write(relative: str, data: bytes) -> None:
        nonlocal count
        path = top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        count += 1

    def text(size: int) -> bytes:
        start = rng.randrange(len(corpus) - min(size, len(corpus) - 1))
        return corpus[start:start + size]

    while budget["small"] > 0:
        size = min(int(2 ** rng.uniform(10, 16)), budget["small"])
        write(f"pages/section-{count // 2000}/folder-{count // 100}/page-{count}.html", text(size))
        budget["small"] -= size
    for index in range(4):
        chunks = [text(256 * 1024) for _ in range(budget["large"] // 4 // (256 * 1024))]
        write(f"logs/access-{index}.log", b"".join(chunks))
    while budget["media"] > 0:
        size = min(int(2 ** rng.uniform(16, 23)), budget["media"])
        write(f"media/{count % 7}/image-{count}.jpg", rng.randbytes(size))
        budget["media"] -= size
    return count


def run_tar(top: Path, destination: Path) -> float:
    os.sync()  # neither run pays for the other's dirty pages
    start = time.perf_counter()
    subprocess.run(["tar", "-czf", str(destination), "-C", str(top), "."], check=True)
    return time.perf_counter() - start


def run_ours(top: Path | None, destination: Path) -> dict:
    os.sync()
    arguments = [str(top), str(destination)] if top else ["--baseline"]
    output = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), *arguments],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def measure(scratch: Path, megabytes: int, repeats: int) -> dict:
    top = scratch / f"site-{megabytes}"
    files = make_tree(top, megabytes, random.Random(megabytes))
    tar_times, ours = [], []
    try:
        for repeat in range(repeats):
            tar_times.append(run_tar(top, scratch / "tar.tar.gz"))
            tar_size = (scratch / "tar.tar.gz").stat().st_size
            (scratch / "tar.tar.gz").unlink()
            ours.append(run_ours(top, scratch / f"ours-{repeat}.tar.gz"))
            (scratch / f"ours-{repeat}.tar.gz").unlink()
    finally:
        shutil.rmtree(top)
    fastest = min(ours, key=lambda run: run["seconds"])
    return {"megabytes": megabytes, "files": files, "tar": min(tar_times),
            "ours": fastest["seconds"], "tar_size": tar_size, "our_size": fastest["size"],
            "peak_mb": max(run["peak_mb"] for run in ours)}


def report(results: list[dict], baseline_mb: float) -> int:
    failures = []
    print(f"\nBackup throughput ({os.cpu_count()} cores), best of each; "
          f"a bare interpreter importing the module peaks at {baseline_mb:.0f} MB")
    print(f"{'tree':>8} {'files':>7} {'tar -czf':>9} {'ours':>8} {'ratio':>6} "
          f"{'tar.gz MB':>10} {'ours MB':>8} {'peak RSS':>9}")
    for row in results:
        ratio = row["tar"] / row["ours"]
        print(f"{row['megabytes']:>5} MB {row['files']:>7} {row['tar']:>8.2f}s "
              f"{row['ours']:>7.2f}s {ratio:>6.2f} {row['tar_size'] / MB:>10.1f} "
              f"{row['our_size'] / MB:>8.1f} {row['peak_mb']:>6.1f} MB")
        if ratio < RATIO_TARGET:
            failures.append(f"{row['megabytes']} MB: ratio {ratio:.2f} < {RATIO_TARGET}")
        if row["peak_mb"] >= PEAK_TARGET_MB:
            failures.append(f"{row['megabytes']} MB: peak {row['peak_mb']:.0f} MB")
    growth = results[-1]["peak_mb"] - results[0]["peak_mb"]
    print(f"peak RSS growth from the smallest to the largest tree: {growth:+.1f} MB")
    if growth > GROWTH_LIMIT_MB:
        failures.append(f"memory grows with the tree: {growth:+.1f} MB")
    print(f"targets: ratio >= {RATIO_TARGET}, peak < {PEAK_TARGET_MB} MB, growth <= "
          f"{GROWTH_LIMIT_MB} MB: " + ("met" if not failures else "MISSED: " + "; ".join(failures)))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="tree sizes in MB (default 100,1000)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the scratch folder goes (needs about 2.2x the largest size)")
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    sizes = sorted(int(size) for size in options.sizes.split(","))
    free = shutil.disk_usage(options.folder).free
    if free < 2.2 * max(sizes) * MB:
        print(f"{options.folder} has {free / MB:,.0f} MB free; needs {2.2 * max(sizes):,.0f} MB")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="backup-bench-", dir=options.folder))
    try:
        results = []
        for megabytes in sizes:
            print(f"{megabytes} MB tree: generating and measuring ...", flush=True)
            results.append(measure(scratch, megabytes, options.repeats))
        return report(results, run_ours(None, scratch)["peak_mb"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
