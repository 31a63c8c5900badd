"""The seed's row, end to end on a 390 px phone: the owner of a WordPress site whose files and
MariaDB database live on another server (sshd and mariadbd on 127.0.0.1) proves control of
the contact the manager preset, backs the site up from /emergency/, downloads it; then the new
manager runs `restore_backup` and gets every file back byte for byte and every row into a
fresh MariaDB database."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from audit import sms
from recovery.crypto import encrypt_field
from tests.backups.conftest import fresh_database, wordpress  # noqa: F401 (fixtures)
from tests.backups.sshd_server import ssh_server  # noqa: F401 (a fixture)
from tests.backups.test_mysql_backup import url_of
from tests.backups.wordpress_site import database_fingerprint, file_checksums
from tests.browser.conftest import PHONE
from tests.conftest import example_website, make_user
from tests.connectors.mariadb_server import mariadb_server  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def test_a_wordpress_site_behind_ssh_is_backed_up_from_a_phone_and_restored(
        live_server, browser, tmp_path, settings, request):
    # The servers and the site come from the backup tests' fixtures, imported above.
    sshd, mariadb, site, new_database = (
        request.getfixturevalue(name)
        for name in ("ssh_server", "mariadb_server", "wordpress", "fresh_database"))
    settings.BACKUP_ROOT = tmp_path / "archives"
    settings.BACKUP_REMOTE_SOURCES = [f"ssh://127.0.0.1:{sshd.port}{tmp_path}"]
    settings.BACKUP_DATABASE_ALLOW = [f"127.0.0.1:{mariadb.port}"]
    example_website(make_user("bob"),
                    files_dir=sshd.url(site.files),
                    database_url_encrypted=encrypt_field(site.database_url),
                    ssh_private_key_encrypted=encrypt_field(sshd.private_key),
                    ssh_host_key=sshd.host_key_line)
    original = database_fingerprint(mariadb, site.database)
    sms.outbox.clear()
    context = browser.new_context(viewport=PHONE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)

    page.goto(f"{live_server.url}/emergency/")
    page.get_by_label("Website address").fill("example.org")
    page.get_by_role("button", name="Send code").click()
    page.wait_for_url(re.compile(r"/emergency/verify/$"))
    code = re.search(r"\b(\d{8})\b", sms.outbox[-1].body).group(1)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(re.compile(r"/emergency/session/$"))
    page.get_by_role("button", name="Start backup").click()
    page.get_by_role("link", name="Download backup").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shown_sha256 = page.locator("code").filter(has_text=re.compile(r"^[0-9a-f]{64}$")).first
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download backup").click()
    archive = tmp_path / "bakkerij.tar.gz"
    download_info.value.save_as(archive)
    sha256 = shown_sha256.inner_text().strip()
    context.close()

    restore = subprocess.run(
        [sys.executable, "manage.py", "restore_backup", str(archive), "--files-to",
         str(tmp_path / "new-site"), "--database-url", url_of(site, new_database)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"ENVIRONMENT": "development", "PATH": "/usr/bin:/bin"})

    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert sha256 in restore.stdout
    assert file_checksums(tmp_path / "new-site") == file_checksums(site.files)
    assert database_fingerprint(mariadb, new_database) == original
