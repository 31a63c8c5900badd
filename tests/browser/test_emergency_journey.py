"""The owner's whole walk on a 390 px wide phone, to the new manager's restore: address, code
(and a new one), backup, download, what next, the hand-over sheet, the end. Then the hand-over
sheet's commands are run as the new manager would, and every file and every database row must
come back exactly: once for a website with an SQLite database, once with PostgreSQL."""

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audit import sms
from backups.models import EmergencySession
from recovery.crypto import encrypt_field
from tests.browser.conftest import PHONE
from tests.conftest import example_website, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "index.html": "<h1>Café Olga</h1>\n".encode(),
    "menu/drinks.md": b"# Drinks\n\nTea, coffee.\n",
    "menu/space in name ü.txt": "Grüße\n".encode(),
    "images/logo.bin": bytes(range(256)) * 64,
    "empty.txt": b"",
}


@pytest.fixture
def site(tmp_path, settings, backup_sources) -> Path:
    settings.BACKUP_ROOT = tmp_path / "archives"
    top = tmp_path / "site"
    for relative, content in FILES.items():
        (top / relative).parent.mkdir(parents=True, exist_ok=True)
        (top / relative).write_bytes(content)
    return top


def checksums(top: Path) -> dict[str, str]:
    """SHA-256 of every file under `top`, by its path relative to `top`."""
    return {str(path.relative_to(top)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in top.rglob("*") if path.is_file()}


def assert_fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def current_step(page) -> str:
    return page.locator('.journey [aria-current="step"] .journey__label').inner_text()


def newest_code() -> str:
    texted = [m for m in sms.outbox if "emergency page" in m.body]
    return re.search(r"\b(\d{8})\b", texted[-1].body).group(1)


def verify_through_the_pages(page, base: str) -> None:
    """Steps 1 and 2, a new code asked for on the way."""
    sms.outbox.clear()
    page.goto(f"{base}/emergency/")
    assert current_step(page) == "Identify"
    assert_fits(page)
    page.get_by_label("Website address").fill("example.org")
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url(re.compile(r"/emergency/verify/$"))
    assert current_step(page) == "Verify"
    assert page.get_by_text("We sent a code to the contacts of example.org").is_visible()
    assert_fits(page)
    first = newest_code()
    page.get_by_role("button", name="Send a new code").click()
    page.get_by_text("a new code is on its way").wait_for()
    assert newest_code() != first
    assert_fits(page)
    page.get_by_label("Code").fill(newest_code())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/emergency/session/$"))


def walk_to_the_hand_over_sheet(browser, base: str, tmp_path: Path) -> tuple[Path, str]:
    """The owner's walk on the phone; returns the downloaded archive and the sheet's text."""
    context = browser.new_context(viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    verify_through_the_pages(page, base)
    assert current_step(page) == "Back up"
    timer = page.locator(".emergency-timer")
    expect(timer).to_have_text(re.compile(r"^\d+:\d\d$"))  # the script took over
    assert int(timer.inner_text().split(":")[0]) in (59, 60)
    assert_fits(page)

    page.get_by_role("button", name="Start backup").click()
    page.get_by_role("link", name="Download backup").wait_for()
    assert current_step(page) == "Hand over"
    assert page.locator('form[action$="/emergency/session/backup/"]').count() == 0  # fresh
    assert page.get_by_text("What next").count() == 0
    assert_fits(page)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download backup").click()
    archive = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(archive)

    page.reload()
    assert page.get_by_role("heading", name="What next").is_visible()
    assert_fits(page)
    page.get_by_role("link", name="Open the hand-over sheet").click()
    page.wait_for_url(re.compile(r"/emergency/session/handover/\d+/$"))
    assert current_step(page) == "Hand over"
    assert page.get_by_role("button", name="Print").is_visible()  # shown by the script
    assert_fits(page)
    sheet = page.locator("main").inner_text()
    page.emulate_media(media="print")
    assert not page.locator(".site-header").is_visible()
    assert not page.get_by_role("button", name="Print").is_visible()
    page.emulate_media(media="screen")

    page.get_by_role("link", name="Back to the backup").click()
    page.get_by_role("link", name="End emergency access").click()
    page.wait_for_url(re.compile(r"/emergency/session/end/$"))
    assert page.get_by_text("You have not downloaded").count() == 0
    assert_fits(page)
    page.get_by_role("button", name="Yes, end emergency access").click()
    page.get_by_text("Emergency access for example.org has ended. The download link no longer "
                     "works. Its manager has been told.").wait_for()
    assert_fits(page)
    context.close()
    return archive, sheet


def run_the_sheets_commands(archive: Path, sheet: str, files_to: Path,
                            database_url: str) -> None:
    """What the new manager does with the sheet: compare the SHA-256, verify, restore."""
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert re.search(rf"SHA-256\s+{sha256}\s", sheet)
    assert f"python manage.py verify_backup {archive.name}" in sheet
    assert f"python manage.py restore_backup {archive.name} --files-to /path/to/new/site" in sheet
    environment = {"ENVIRONMENT": "development", "PATH": "/usr/bin:/bin"}
    for command in (["verify_backup", str(archive)],
                    ["restore_backup", str(archive), "--files-to", str(files_to),
                     "--database-url", database_url]):
        run = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env=environment)
        assert run.returncode == 0, run.stdout + run.stderr


def sqlite_rows(path: Path) -> dict[str, list[tuple]]:
    with closing(sqlite3.connect(path)) as connection:
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        # Table names from the database's own catalogue.
        return {table: connection.execute(
            f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()  # noqa: S608
                for table in tables}


def test_an_sqlite_site_walks_from_the_phone_to_a_restored_copy(live_server, browser, tmp_path,
                                                                site):
    database = tmp_path / "site.sqlite3"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, body BLOB)")
        connection.executemany("INSERT INTO posts VALUES (?, ?, ?)",
                               [(n, f"Post {n} ü", bytes([n % 256]) * n) for n in range(1, 201)])
        connection.execute("CREATE TABLE hours (day TEXT, opens TEXT)")
        connection.executemany("INSERT INTO hours VALUES (?, ?)",
                               [("Monday", "08:00"), ("Sunday", None)])
        connection.commit()
    example_website(make_user("bob"), files_dir=str(site),
                    database_url_encrypted=encrypt_field(f"sqlite:///{database}"))

    archive, sheet = walk_to_the_hand_over_sheet(browser, live_server.url, tmp_path)

    assert "--database-url sqlite:////path/to/new/database.sqlite3" in sheet
    restored = tmp_path / "new.sqlite3"
    run_the_sheets_commands(archive, sheet, tmp_path / "restored", f"sqlite:///{restored}")
    assert checksums(tmp_path / "restored") == checksums(site)
    assert set(checksums(site)) == set(FILES)
    assert sqlite_rows(restored) == sqlite_rows(database)
    assert len(sqlite_rows(restored)["posts"]) == 200


@pytest.mark.postgres
def test_a_postgresql_site_walks_from_the_phone_to_a_restored_copy(live_server, browser,
                                                                  tmp_path, site, settings):
    import psycopg
    from django.db import connection

    server = {"user": connection.settings_dict["USER"] or "",
              "password": connection.settings_dict["PASSWORD"] or "",
              "host": connection.settings_dict["HOST"] or "localhost",
              "port": str(connection.settings_dict["PORT"] or 5432)}
    settings.BACKUP_DATABASE_ALLOW = [str(tmp_path), f"{server['host']}:{server['port']}"]

    def url(name: str) -> str:
        return (f"postgresql://{quote(server['user'], safe='')}:"
                f"{quote(server['password'], safe='')}@{server['host']}:{server['port']}/{name}")

    def rows(name: str) -> dict[str, list[tuple]]:
        with psycopg.connect(dbname=name, **server) as database:
            tables = [table for (table,) in database.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "ORDER BY table_name")]
            return {table: database.execute(
                f'SELECT * FROM "{table}" ORDER BY 1').fetchall()  # noqa: S608 (catalogue names)
                    for table in tables}

    source, target = (f"journey_{role}_{os.getpid()}" for role in ("source", "target"))
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{source}"')
        cursor.execute(f'CREATE DATABASE "{target}"')
    try:
        with psycopg.connect(dbname=source, **server) as database:
            database.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, paid numeric)")
            database.execute("INSERT INTO orders SELECT n, 'order ü ' || n, n * 1.5 "
                             "FROM generate_series(1, 300) AS n")
            database.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
            database.execute("INSERT INTO notes (body) VALUES ('first'), (NULL)")
        example_website(make_user("bob"), files_dir=str(site),
                        database_url_encrypted=encrypt_field(url(source)))

        archive, sheet = walk_to_the_hand_over_sheet(browser, live_server.url, tmp_path)

        assert "--database-url postgres://USER:PASSWORD@HOST:5432/NEW_DATABASE" in sheet
        assert f"{server['user']}:{server['password']}@" not in sheet and source not in sheet
        run_the_sheets_commands(archive, sheet, tmp_path / "restored", url(target))
        assert checksums(tmp_path / "restored") == checksums(site)
        assert rows(target) == rows(source)
        assert len(rows(target)["orders"]) == 300
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
            cursor.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_the_window_counts_down_and_the_page_ends_itself(live_server, browser, site):
    example_website(make_user("bob"), files_dir=str(site))
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(30_000)
    verify_through_the_pages(page, live_server.url)
    session = EmergencySession.objects.get()
    session.expires_at = timezone.now() + timedelta(seconds=4)
    session.save(update_fields=["expires_at"])
    page.reload()
    assert re.fullmatch(r"0:0[0-4]", page.locator(".emergency-timer").inner_text())
    page.get_by_text("This emergency access has ended.").wait_for()
    page.get_by_role("heading", name="Emergency access ended").wait_for()
    assert page.get_by_text("This emergency access is over").is_visible()
    assert_fits(page)
    context.close()
