"""The manager sets up a website on another server in the admin, against a real sshd and
mariadbd: the SSH key is stored encrypted, the host key is pinned only as shown on the page,
the database wp-config.php names is confirmed once; from then on each backup follows a rotated
password but stops at another database. Every step needs the manager's fresh code and is
audited without a secret."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from backups import jobs
from backups.archive import remote
from backups.models import BackupJob, Website
from recovery.crypto import decrypt_field
from tests.backups.wordpress_site import SITE_PASSWORD, WP_CONFIG
from tests.conftest import example_website
from tests.connectors.mariadb_server import account, quote_string
from tests.security_review.website_cast import (
    administrator,
    change_website,
    fresh_code,
    website_form,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def allowed(settings, ssh_server, mariadb_server, tmp_path):
    settings.BACKUP_REMOTE_SOURCES = [f"ssh://127.0.0.1:{ssh_server.port}{tmp_path}"]
    settings.BACKUP_DATABASE_ALLOW = [str(tmp_path), f"127.0.0.1:{mariadb_server.port}"]
    settings.BACKUP_ROOT = tmp_path / "archives"


@pytest.fixture
def manager(db):
    return administrator("bob")


@pytest.fixture
def client_of(verified_client, manager):
    return verified_client(manager)


@pytest.fixture
def website(manager, ssh_server, wordpress):
    return example_website(manager, files_dir=ssh_server.url(wordpress.files))


def change_page(client, website) -> str:
    return client.get(reverse("admin:backups_website_change", args=[website.pk])
                      ).content.decode()


def hidden(page: str, name: str) -> str:
    value = re.search(rf'name="{name}" value="([^"]*)"', page).group(1)
    return value.replace("&quot;", '"').replace("&amp;", "&").replace("&#x27;", "'")


def set_key_and_pin(client, manager, website, ssh_server) -> None:
    assert change_website(client, website, ssh_private_key=ssh_server.private_key,
                          manager_code=fresh_code(manager)).status_code == 302
    page = change_page(client, website)
    pinned = change_website(client, website, pin_host_key="on",
                            shown_host_key=hidden(page, "shown_host_key"),
                            manager_code=fresh_code(manager))
    assert pinned.status_code == 302, form_errors(pinned)


def last_source_event() -> AuditEvent:
    return AuditEvent.objects.filter(kind=EventKind.WEBSITE_SOURCE_CHANGED).order_by("pk").last()


def form_errors(response) -> list[str]:
    return re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)


def test_the_ssh_key_is_stored_encrypted_and_audited_by_its_fingerprint_only(
        client_of, manager, website, ssh_server, allowed):
    refused = change_website(client_of, website, ssh_private_key=ssh_server.private_key)
    assert b"fresh one-time code" in refused.content

    done = change_website(client_of, website, ssh_private_key=ssh_server.private_key,
                          manager_code=fresh_code(manager))

    assert done.status_code == 302
    website.refresh_from_db()
    assert decrypt_field(website.ssh_private_key_encrypted) == ssh_server.private_key
    assert "PRIVATE KEY" not in website.ssh_private_key_encrypted
    event = last_source_event()
    public = remote.load_private_key(ssh_server.private_key).fingerprint
    assert event.data["ssh_key"] == public
    assert "PRIVATE" not in str(AuditEvent.objects.values_list("data", flat=True))
    assert not hasattr(website.history.first(), "ssh_private_key_encrypted")


def test_a_key_that_cannot_be_read_is_a_form_error(client_of, manager, website, allowed):
    response = change_website(client_of, website, ssh_private_key="not a key",
                              manager_code=fresh_code(manager))

    assert response.status_code == 200
    assert b"the private key cannot be read" in response.content


def test_the_host_key_is_pinned_as_shown_on_the_page(client_of, manager, website, ssh_server,
                                                     allowed):
    presented = remote.fetch_host_key("127.0.0.1", ssh_server.port).fingerprint
    page = change_page(client_of, website)
    assert f"Pin the host key {presented} that 127.0.0.1:{ssh_server.port} presents now" in page

    set_key_and_pin(client_of, manager, website, ssh_server)

    website.refresh_from_db()
    assert website.ssh_host_key == ssh_server.host_key_line
    assert website.ssh_host_key_pinned_by == manager
    event = last_source_event()
    assert (event.data["host_key_pinned"], event.data["previous_host_key"]) == (presented, None)
    assert "Pin the host key" not in change_page(client_of, website)  # pinned: not offered


def test_a_host_key_that_changed_after_the_page_was_shown_is_not_pinned(
        client_of, manager, own_ssh_server, wordpress, settings, tmp_path, mariadb_server):
    settings.BACKUP_REMOTE_SOURCES = [f"ssh://127.0.0.1:{own_ssh_server.port}{tmp_path}"]
    website = example_website(manager, files_dir=own_ssh_server.url(wordpress.files))
    shown = hidden(change_page(client_of, website), "shown_host_key")
    own_ssh_server.new_host_key()
    own_ssh_server.restart()

    response = client_of.post(
        reverse("admin:backups_website_change", args=[website.pk]),
        website_form(website, pin_host_key="on", shown_host_key=shown,
                     manager_code=fresh_code(manager)), follow=True)

    assert "Host key not pinned:" in response.content.decode()
    assert f"not the {shown} you were shown: nothing was pinned" in response.content.decode()
    website.refresh_from_db()
    assert website.ssh_host_key == ""


def test_wordpress_is_confirmed_once_and_each_backup_follows_wp_config(
        client_of, manager, website, ssh_server, wordpress, mariadb_server, allowed):
    set_key_and_pin(client_of, manager, website, ssh_server)
    page = change_page(client_of, website)
    assert (f"WordPress found: database {wordpress.database} as {wordpress.user} on "
            f"127.0.0.1:{mariadb_server.port} with a password, tables prefixed wp_") in page
    assert SITE_PASSWORD not in page

    done = change_website(client_of, website, use_wordpress="on",
                          shown_wordpress=hidden(page, "shown_wordpress"),
                          manager_code=fresh_code(manager))

    assert done.status_code == 302, form_errors(done)
    website.refresh_from_db()
    assert website.wordpress_settings["name"] == wordpress.database
    assert decrypt_field(website.database_url_encrypted).startswith(
        f"mysql://{wordpress.user}:")
    event = last_source_event()
    assert event.data["wordpress_confirmed"]["password_set"] is True
    assert SITE_PASSWORD not in str(event.data)
    assert run_a_backup(website).status == BackupJob.Status.COMPLETE

    # The host rotates the password: wp-config.php and the account change together.
    rotate_password(wordpress, mariadb_server, "rotated by the host")
    assert run_a_backup(website).status == BackupJob.Status.COMPLETE

    # Another database in wp-config.php: the backup stops until the manager confirms it.
    config = wordpress.files / "wp-config.php"
    config.write_text(config.read_text().replace(f"'{wordpress.database}'", "'another_db'"))
    stopped = run_a_backup(website)
    assert stopped.status == BackupJob.Status.FAILED
    server = f"127.0.0.1:{mariadb_server.port}"
    assert stopped.error == (
        f"wp-config.php now names the database another_db as {wordpress.user} on {server}, "
        f"not {wordpress.database} as {wordpress.user} on {server} that the manager "
        "confirmed; the manager confirms it again.")
    assert stopped.attempts == 1


def test_moving_the_files_to_another_server_unpins_the_host_key(
        client_of, manager, website, ssh_server, wordpress, allowed, settings, tmp_path):
    set_key_and_pin(client_of, manager, website, ssh_server)
    settings.BACKUP_REMOTE_SOURCES.append(f"ssh://localhost:{ssh_server.port}{tmp_path}")

    done = change_website(client_of, website,
                          files_dir=f"ssh://{ssh_server.user}@localhost:{ssh_server.port}"
                                    f"{wordpress.files}",
                          manager_code=fresh_code(manager))

    assert done.status_code == 302
    website.refresh_from_db()
    assert website.ssh_host_key == ""
    assert last_source_event().data[
        "host_key_cleared"] is True


def test_a_local_wordpress_site_is_confirmed_from_its_files_directory(
        client_of, manager, wordpress, allowed):
    website = example_website(manager, files_dir=str(wordpress.files))
    page = change_page(client_of, website)
    assert "WordPress found: database" in page

    confirmed = client_of.post(
        reverse("admin:backups_website_change", args=[website.pk]),
        website_form(website, use_wordpress="on", shown_wordpress=hidden(page, "shown_wordpress"),
                     manager_code=fresh_code(manager)), follow=True)
    assert "WordPress&#x27;s database settings confirmed" in confirmed.content.decode(), (
        re.findall(r'class="(?:error|messagelist)[^"]*"[^>]*>(.*?)</ul>',
                   confirmed.content.decode(), re.S))

    website.refresh_from_db()
    assert website.wordpress_confirmed_by == manager
    job = run_a_backup(website)
    assert job.status == BackupJob.Status.COMPLETE, job.error


def test_an_unreadable_wp_config_is_explained_on_the_page(client_of, manager, wordpress,
                                                          allowed):
    (wordpress.files / "wp-config.php").write_text(WP_CONFIG.format(
        name="getenv('DB')", user="'u'", password="'p'", host="'localhost'"))
    website = example_website(manager, files_dir=str(wordpress.files))

    page = change_page(client_of, website)

    assert "wp-config.php: DB_NAME is not a plain string in wp-config.php" in page
    assert 'name="use_wordpress"' in page and "disabled" in re.search(
        r'<input[^>]*name="use_wordpress"[^>]*>', page).group(0)


def run_a_backup(website: Website) -> BackupJob:
    BackupJob.objects.filter(website=website).update(status=BackupJob.Status.DELETED)
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    jobs.run_backup(job.pk)
    job.refresh_from_db()
    return job


def rotate_password(site, server, password: str) -> None:
    server.execute(f"ALTER USER {account(site.user)} IDENTIFIED BY {quote_string(password)}")
    config = site.files / "wp-config.php"
    escaped = SITE_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    config.write_text(config.read_text().replace(f"'{escaped}'", f"'{password}'"))
