"""MariaDB dump throughput: `write_archive` of a database alone against the dump tool itself,
on one WordPress-like database (long posts, many postmeta rows) served by a throwaway mariadbd
on 127.0.0.1 (tests/connectors/mariadb_server.py).

Target: ours within 0.8x of the bare dump tool (baseline A: `mariadb-dump ... > file`, no
compression), read as A's time / ours. Baseline B, `mariadb-dump ... | gzip -6 > file`
(the archive's own level for files), is printed beside it: ours compresses the dump at level 1
while it is made, and the output column shows the size this costs. All three run the dump with
the same options (`backups.archive.mysql.DUMP_OPTIONS`, --single-transaction among them) and the
password in an option file; all are timed up to an fsync of their output, as ours makes its
archive durable. Runs alternate; best and median are shown.

    .venv/bin/python bench/mysql_dump.py                  # about 300 MB of rows
    .venv/bin/python bench/mysql_dump.py --size-mb 50     # quick
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
MB = 1_000_000
RATIO_TARGET = 0.8
DATABASE = "wordpress"
USER = "wp_bench"
PASSWORD = "bench pa$$word"
BUFFER_POOL = 128 * 1024 * 1024  # MariaDB's default; the test server starts with 16 MB
STATEMENT_BYTES = 4 * MB  # per multi-row INSERT, under the default max_allowed_packet
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
TABLES = [
    """CREATE TABLE wp_posts (
         ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         post_author bigint unsigned NOT NULL DEFAULT 0,
         post_date datetime NOT NULL,
         post_content longtext NOT NULL,
         post_title text NOT NULL,
         post_excerpt text NOT NULL,
         post_status varchar(20) NOT NULL DEFAULT 'publish',
         post_name varchar(200) NOT NULL,
         post_modified datetime NOT NULL,
         guid varchar(255) NOT NULL,
         post_type varchar(20) NOT NULL DEFAULT 'post',
         comment_count bigint NOT NULL DEFAULT 0,
         KEY type_status_date (post_type, post_status, post_date, ID)
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE wp_postmeta (
         meta_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         post_id bigint unsigned NOT NULL DEFAULT 0,
         meta_key varchar(255) DEFAULT NULL,
         meta_value longtext,
         KEY post_id (post_id),
         KEY meta_key (meta_key(191))
       ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]
POST_COLUMNS = ("post_author, post_date, post_content, post_title, post_excerpt, post_name, "
                "post_modified, guid, post_type")
CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from backups.archive import write_archive
start = time.perf_counter()
result = write_archive(website="bench.example", files_dir=None, database_url=sys.argv[2],
                       destination=Path(sys.argv[3]))
seconds = time.perf_counter() - start
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "size": result.size, "hwm_mb": hwm_kb / 1024,
                  "dump_size": result.manifest["database"]["size"]}))
"""


# --- The database ----------------------------------------------------------------------------


def fill(server, megabytes: int, rng: random.Random) -> int:
    """Posts of 2-20 KB of prose and markup, each with ten postmeta rows (about 1.5 KB in
    all), inserted a few MB at a time; returns the number of posts."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from backup_throughput import text_corpus

    corpus = text_corpus(rng).decode()
    posts, budget = 0, megabytes * MB
    while budget > 0:
        rows, size = [], 0
        while size < STATEMENT_BYTES and size < budget:
            rows.append(post_row(posts + len(rows) + 1, corpus, rng))
            size += len(rows[-1][2]) + 2000
        insert_posts(server, rows)
        insert_meta(server, range(posts + 1, posts + len(rows) + 1), rng)
        posts, budget = posts + len(rows), budget - size
    return posts


def post_row(number: int, corpus: str, rng: random.Random) -> tuple:
    start = rng.randrange(len(corpus) - 20_000)
    content = corpus[start:start + rng.randint(2_000, 20_000)]
    title = corpus[start:start + rng.randint(20, 80)].strip()
    date = f"20{rng.randint(12, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 08:00:00"
    return (1, date, content, title, content[:300], f"post-{number}", date,
            f"https://example.org/?p={number}", rng.choice(["post", "page", "attachment"]))


def insert_posts(server, rows: list[tuple]) -> None:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    server.execute(f"INSERT INTO wp_posts ({POST_COLUMNS}) VALUES {values}",
                   [value for row in rows for value in row], database=DATABASE)


def insert_meta(server, post_ids: range, rng: random.Random) -> None:
    rows = []
    for post in post_ids:
        attachment = (f'a:5:{{s:5:"width";i:{rng.randint(300, 4000)};s:6:"height";'
                      f'i:{rng.randint(200, 3000)};s:4:"file";s:24:"2019/05/photo-{post}.jpg";'
                      's:5:"sizes";a:3:{s:9:"thumbnail";a:4:{s:4:"file";s:30:"photo-150x150.jpg";'
                      's:5:"width";i:150;s:6:"height";i:150;s:9:"mime-type";s:10:"image/jpeg";}'
                      '}s:10:"image_meta";a:0:{}}')
        rows += [(post, "_edit_lock", f"{rng.randint(1_500_000_000, 1_700_000_000)}:1"),
                 (post, "_edit_last", "1"), (post, "_thumbnail_id", str(post + 7)),
                 (post, "_wp_attached_file", f"2019/05/photo-{post}.jpg"),
                 (post, "_wp_attachment_metadata", attachment * 2),
                 (post, "_yoast_wpseo_metadesc", "Fresh bread and cakes, every morning " * 4),
                 (post, "_yoast_wpseo_focuskw", "bakery"), (post, "views", str(post * 13)),
                 (post, "_wp_page_template", "default"), (post, "_encloseme", "1")]
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    server.execute(f"INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES {values}",
                   [value for row in rows for value in row], database=DATABASE)


def database_url(server) -> str:
    from tests.connectors.mariadb_server import quote_identifier

    server.execute(f"SET GLOBAL innodb_buffer_pool_size = {BUFFER_POOL}")
    server.execute(f"CREATE DATABASE {quote_identifier(DATABASE)} CHARACTER SET utf8mb4")
    for statement in TABLES:
        server.execute(statement, database=DATABASE)
    url = server.create_account(USER, PASSWORD, f"GRANT ALL PRIVILEGES ON "
                                f"{quote_identifier(DATABASE)}.* TO {{account}}")
    return f"{url}/{DATABASE}"


# --- The runs --------------------------------------------------------------------------------


def dump_command(url: str, option_file: Path) -> list[str]:
    from backups.archive import mysql

    server = mysql.parse_mysql_url(url)
    option_file.write_text(server.option_file())
    option_file.chmod(0o600)
    return mysql.dump_command(shutil.which("mariadb-dump") or "mysqldump", server,
                              option_file=str(option_file))


def run_bare(command: list[str], destination: Path) -> dict:
    os.sync()  # no run pays for another's dirty pages
    start = time.perf_counter()
    with open(destination, "wb") as output:
        subprocess.run(command, stdout=output, check=True)
        os.fsync(output.fileno())
    return finished(start, destination)


def run_gzip(command: list[str], destination: Path) -> dict:
    os.sync()
    start = time.perf_counter()
    with open(destination, "wb") as output:
        dump = subprocess.Popen(command, stdout=subprocess.PIPE)
        gzip = subprocess.run(["gzip", "-6"], stdin=dump.stdout, stdout=output, check=True)
        dump.stdout.close()
        if dump.wait() or gzip.returncode:
            raise RuntimeError("the dump | gzip pipeline failed")
        os.fsync(output.fileno())
    return finished(start, destination)


def finished(start: float, destination: Path) -> dict:
    seconds = time.perf_counter() - start
    size = destination.stat().st_size
    destination.unlink()
    return {"seconds": seconds, "size": size}


def run_ours(url: str, destination: Path) -> dict:
    os.sync()
    output = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), url, str(destination)],
                            check=True, capture_output=True, text=True).stdout
    destination.unlink()
    return json.loads(output)


# --- Report ----------------------------------------------------------------------------------


def report(megabytes: int, posts: int, runs: dict[str, list[dict]]) -> None:
    dump_size = runs["bare"][0]["size"]
    print(f"\nDatabase of {megabytes} MB asked, {posts:,} posts with 10 postmeta rows each; "
          f"dump {dump_size / MB:,.1f} MB; {len(runs['ours'])} runs each, alternating")
    print(f"{'':<40} {'best s':>7} {'median s':>9} {'dump MB/s':>10} {'output MB':>10}")
    labels = {"bare": "A: mariadb-dump > file", "gzip": "B: mariadb-dump | gzip -6 > file",
              "ours": "ours: write_archive (.tar.gz)"}
    best, median = {}, {}
    for key, label in labels.items():
        seconds = [run["seconds"] for run in runs[key]]
        best[key], median[key] = min(seconds), statistics.median(seconds)
        print(f"{label:<40} {best[key]:>7.2f} {median[key]:>9.2f} "
              f"{dump_size / MB / best[key]:>10.1f} {runs[key][0]['size'] / MB:>10.1f}")
    for key in ("bare", "gzip"):
        print(f"ratio ours vs {labels[key][:1]} (throughput, {labels[key][3:]}): "
              f"{best[key] / best['ours']:.2f} best, {median[key] / median['ours']:.2f} median")
    print(f"peak memory of ours: {max(run['hwm_mb'] for run in runs['ours']):.1f} MB (VmHWM)")
    ratio = best["bare"] / best["ours"]
    print(f"{'PASS' if ratio >= RATIO_TARGET else 'FAIL'}: ours {ratio:.2f}x the bare dump tool "
          f"(A), target >= {RATIO_TARGET}; against a gzip -6 of the dump (B): "
          f"{best['gzip'] / best['ours']:.2f}x")


def measure(server, scratch: Path, megabytes: int, repeats: int) -> None:
    url = database_url(server)
    print(f"filling about {megabytes} MB of rows ...", flush=True)
    started = time.perf_counter()
    posts = fill(server, megabytes, random.Random(megabytes))
    print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)
    command = dump_command(url, scratch / "client.cnf")
    print("dump command: " + " ".join(command))
    runs: dict[str, list[dict]] = {"bare": [], "gzip": [], "ours": []}
    for repeat in range(repeats):
        print(f"run {repeat + 1} of {repeats} ...", flush=True)
        runs["bare"].append(run_bare(command, scratch / "dump.sql"))
        runs["gzip"].append(run_gzip(command, scratch / "dump.sql.gz"))
        runs["ours"].append(run_ours(url, scratch / "ours.tar.gz"))
    report(megabytes, posts, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300, help="rows to insert, in MB (300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (3)")
    options = parser.parse_args()
    server_binary = shutil.which("mariadbd", path=SEARCH_PATH)
    install = shutil.which("mariadb-install-db", path=SEARCH_PATH)
    if not server_binary or not install or not shutil.which("mariadb-dump"):
        print("skipped: needs mariadbd, mariadb-install-db and mariadb-dump "
              "(apt-get install mariadb-server mariadb-client)")
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.connectors.mariadb_server import MariaDBServer

    # Under /tmp: a Unix socket path must stay short.
    directory = Path(tempfile.mkdtemp(prefix="bench-mariadb-"))
    server = MariaDBServer(directory, {"server": server_binary, "install": install})
    try:
        server.install()
        measure(server, directory, options.size_mb, options.repeats)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
