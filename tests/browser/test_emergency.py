"""Issue 7's walk-through on a 390 px wide phone: the owner of example.org asks for a code,
reads it from the SMS, verifies, starts a backup, sees it ready and downloads it; the archive
verifies and holds the demo site's files and database."""

import re
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from audit import sms
from demo.organisation import seed_demo
from tests.browser.conftest import PHONE
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def test_the_owner_backs_up_example_org_from_a_phone(live_server, browser, tmp_path, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    # What development allows by default: the demo website's own folder.
    settings.BACKUP_SOURCE_ROOTS = settings.BACKUP_DATABASE_ALLOW = [str(settings.DEMO_SITES_DIR)]
    seed_demo(PASSWORD)
    sms.outbox.clear()
    context = browser.new_context(viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/emergency/")
    page.get_by_label("Website address").fill("example.org")
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url(re.compile(r"/emergency/verify/$"))
    texted = [m for m in sms.outbox if "emergency page" in m.body]
    code = re.search(r"\b(\d{8})\b", texted[-1].body).group(1)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/emergency/session/$"))
    page.get_by_role("button", name="Start backup").click()
    page.get_by_role("link", name="Download backup").wait_for()
    assert page.get_by_text("SHA-256").is_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download backup").click()
    archive = tmp_path / "example.org.tar.gz"
    download_info.value.save_as(archive)
    context.close()

    check = subprocess.run([sys.executable, "manage.py", "verify_backup", str(archive)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={"ENVIRONMENT": "development", "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0, check.stdout + check.stderr
    out = tmp_path / "restored"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    site = Path(settings.DEMO_SITES_DIR) / "example.org" / "files"
    originals = [path for path in site.rglob("*") if path.is_file()]
    assert originals
    for original in originals:
        copy = out / "files" / original.relative_to(site)
        assert copy.read_bytes() == original.read_bytes()
    restored = sqlite3.connect(out / "database" / "database.sqlite3")
    assert restored.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 2
    restored.close()
