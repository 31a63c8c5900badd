"""The owner's whole walk on the emergency page (SPEC §2.6): a step indicator on every page, a
new code from the verify page, coming back to a live session, Start backup only when a fresh
backup is not already there, what to do after the download with a printable hand-over sheet,
the window counting down, and an end that asks first and says what happened."""

import logging
import re
import sqlite3
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit import sms
from audit.outbox import send_due_deliveries
from backups import jobs, services
from backups.models import BackupJob, EmergencyChallenge, EmergencySession, Website
from backups.views import ADDRESS_KEY, CHALLENGE_KEY, SESSION_KEY
from recovery.crypto import encrypt_field
from tests.conftest import example_website, make_user

pytestmark = pytest.mark.django_db

STEPS = ["Identify", "Verify", "Back up", "Hand over"]
PASSWORD = "pa55-SENTINEL-word"


@pytest.fixture
def website(tmp_path, settings):
    settings.BACKUP_ROOT = tmp_path / "archives"
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>Opening hours</h1>")
    database = tmp_path / "site.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE posts (title TEXT)")
    connection.close()
    return example_website(make_user("bob"), files_dir=str(site),
                           database_url_encrypted=encrypt_field(f"sqlite:///{database}"))


def texted_code() -> str:
    send_due_deliveries()
    message = [m for m in sms.outbox if "emergency page" in m.body][-1]
    return re.search(r"\b(\d{8})\b", message.body).group(1)


def ask_for_code(client: Client, address: str = "example.org"):
    sms.outbox.clear()
    return client.post(reverse("emergency:start"), {"address": address})


def open_session(client: Client) -> EmergencySession:
    ask_for_code(client)
    assert client.post(reverse("emergency:verify"), {"code": texted_code()}).status_code == 302
    return EmergencySession.objects.get(pk=client.session[SESSION_KEY])


def back_up(client: Client, capture) -> BackupJob:
    """Start backup, run inline by the test settings' synchronous worker."""
    with capture(execute=True):
        assert client.post(reverse("emergency:start-backup")).status_code == 302
    return BackupJob.objects.filter(status=BackupJob.Status.COMPLETE).latest("finished_at")


def download(client: Client, job: BackupJob) -> bytes:
    response = client.get(reverse("emergency:download", args=[job.pk]))
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def current_step(html: str) -> str:
    """The label of the one step marked current."""
    marked = re.findall(r'<li[^>]*aria-current="step"[^>]*>(.*?)</li>', html, re.S)
    assert len(marked) == 1, marked
    return re.search(r'journey__label">([^<]+)<', marked[0]).group(1)


def text(response) -> str:
    """The page's words: tags and runs of white space removed."""
    words = " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())
    return re.sub(r" ([.,:;)])", r"\1", words)


# --- 1. The step indicator ---------------------------------------------------------------------


def test_the_step_indicator_moves_from_identify_to_hand_over(client, website,
                                                            django_capture_on_commit_callbacks):
    start = client.get(reverse("emergency:start")).content.decode()
    assert current_step(start) == "Identify"
    assert re.findall(r'journey__label">([^<]+)<', start) == STEPS
    assert '<ol class="journey"' in start  # an ordered list, read in order
    ask_for_code(client)
    assert current_step(client.get(reverse("emergency:verify")).content.decode()) == "Verify"
    client.post(reverse("emergency:verify"), {"code": texted_code()})
    assert current_step(client.get(reverse("emergency:session")).content.decode()) == "Back up"
    job = back_up(client, django_capture_on_commit_callbacks)
    assert current_step(client.get(reverse("emergency:session")).content.decode()) == "Hand over"
    sheet = client.get(reverse("emergency:handover", args=[job.pk])).content.decode()
    assert current_step(sheet) == "Hand over"


def test_steps_before_the_current_one_read_as_done(client, website):
    open_session(client)
    page = client.get(reverse("emergency:session")).content.decode()
    assert page.count("(done)") == 2 and "journey__step--done" in page


def test_a_downloaded_backup_keeps_hand_over_current_after_a_failed_new_one(
        client, website, settings, django_capture_on_commit_callbacks):
    open_session(client)
    download(client, back_up(client, django_capture_on_commit_callbacks))
    settings.BACKUP_SOURCE_ROOTS = []  # the next backup is refused, so fails at once
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("emergency:start-backup"))
    page = client.get(reverse("emergency:session")).content.decode()
    assert "Failed" in page and current_step(page) == "Hand over"


# --- 2. The verify page and a new code ---------------------------------------------------------


def test_the_verify_page_repeats_the_address_and_the_codes_validity(client, website):
    ask_for_code(client, "https://Example.org/")
    page = text(client.get(reverse("emergency:verify")))
    assert "We sent a code to the contacts of example.org" in page
    assert "if that address is registered for emergency access" in page
    assert "It is valid for 10 minutes." in page
    assert "Send a new code" in page


def test_a_new_code_replaces_the_old_challenge(client, website):
    ask_for_code(client)
    old_code, old_nonce = texted_code(), client.session[CHALLENGE_KEY]
    response = client.post(reverse("emergency:new-code"), follow=True)
    assert response.redirect_chain == [(reverse("emergency:verify"), 302)]
    assert "If example.org is registered for emergency access, a new code is on its way" in text(
        response)
    new_nonce = client.session[CHALLENGE_KEY]
    assert new_nonce != old_nonce
    assert EmergencyChallenge.objects.get(nonce=new_nonce).website == website
    new_code = texted_code()
    assert new_code != old_code
    assert client.post(reverse("emergency:verify"), {"code": old_code}).status_code == 400
    assert client.post(reverse("emergency:verify"), {"code": new_code})["Location"] == reverse(
        "emergency:session")


def test_a_new_code_for_an_unknown_address_answers_the_same(website):
    known, unknown = Client(), Client()
    ask_for_code(known, "example.org")
    ask_for_code(unknown, "no-such-site.example")
    answers = [c.post(reverse("emergency:new-code"), follow=True) for c in (known, unknown)]
    assert [a.redirect_chain for a in answers] == [[(reverse("emergency:verify"), 302)]] * 2
    assert text(answers[0]).replace("example.org", "ADDRESS") == text(answers[1]).replace(
        "no-such-site.example", "ADDRESS")
    assert EmergencyChallenge.objects.count() == 2  # two for example.org, none for the other


def test_new_codes_are_throttled_per_client(client, website, settings):
    settings.EMERGENCY_PAGE_REQUESTS_PER_MINUTE = 2
    ask_for_code(client)
    assert client.post(reverse("emergency:new-code")).status_code == 302
    refused = client.post(reverse("emergency:new-code"))
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert EmergencyChallenge.objects.count() == 2


def test_a_new_code_needs_an_address_asked_for_first(client, website):
    response = client.post(reverse("emergency:new-code"))
    assert response["Location"] == reverse("emergency:start")
    assert not EmergencyChallenge.objects.exists()
    assert client.get(reverse("emergency:new-code")).status_code == 405


def test_the_address_is_forgotten_once_verified(client, website):
    open_session(client)
    assert ADDRESS_KEY not in client.session and CHALLENGE_KEY not in client.session


# --- 3. Coming back ----------------------------------------------------------------------------


def test_coming_back_to_the_emergency_page_resumes_the_live_session(client, website):
    open_session(client)
    response = client.get(reverse("emergency:start"))
    assert response.status_code == 302 and response["Location"] == reverse("emergency:session")


def test_an_expired_session_is_forgotten_and_the_address_asked_for(client, website):
    session = open_session(client)
    session.expires_at = timezone.now() - timedelta(seconds=1)
    session.save(update_fields=["expires_at"])
    response = client.get(reverse("emergency:start"))
    assert response.status_code == 200 and b"Website address" in response.content
    assert SESSION_KEY not in client.session
    session.refresh_from_db()
    assert session.ended_at is not None


def test_a_session_a_defender_ended_is_forgotten_too(client, website):
    session = open_session(client)
    services.end_emergency_sessions(website, actor=None, reason="the manager ended it")
    assert client.get(reverse("emergency:start")).status_code == 200
    assert SESSION_KEY not in client.session
    session.refresh_from_db()
    assert session.ended_at is not None


# --- 4. Start backup only when useful ----------------------------------------------------------


def start_buttons(client: Client) -> list[str]:
    page = client.get(reverse("emergency:session")).content.decode()
    form = re.search(rf'<form[^>]*action="{reverse("emergency:start-backup")}".*?</form>',
                     page, re.S)
    return re.findall(r"<button[^>]*>([^<]+)</button>", form.group(0)) if form else []


def test_no_backup_yet_offers_start_backup(client, website):
    open_session(client)
    assert start_buttons(client) == ["Start backup"]


def test_a_fresh_backup_hides_start_backup(client, website, django_capture_on_commit_callbacks):
    session = open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    assert job.finished_at >= session.started_at
    assert start_buttons(client) == []
    assert b"Download backup" in client.get(reverse("emergency:session")).content


def test_an_older_backup_offers_a_fresh_one(client, website):
    older = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(older.pk) == "complete"
    open_session(client)
    assert start_buttons(client) == ["Make a fresh backup"]
    page = client.get(reverse("emergency:session")).content.decode()
    assert 'class="button button--block">Make a fresh backup' in page  # secondary, not primary
    assert "made before this emergency access began" in page


def test_a_failed_backup_offers_to_try_again(client, website, settings,
                                             django_capture_on_commit_callbacks):
    open_session(client)
    settings.BACKUP_SOURCE_ROOTS = []
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("emergency:start-backup"))
    assert BackupJob.objects.get().status == BackupJob.Status.FAILED
    assert start_buttons(client) == ["Try again"]


def test_a_running_backup_offers_no_start(client, website, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)  # no worker picks it up
    open_session(client)
    client.post(reverse("emergency:start-backup"))
    assert start_buttons(client) == []


# --- 5. What next, and the hand-over sheet -----------------------------------------------------


def test_what_next_appears_once_this_session_downloaded_the_backup(
        client, website, django_capture_on_commit_callbacks):
    open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    before = text(client.get(reverse("emergency:session")))
    assert "What next" not in before
    download(client, job)
    page = client.get(reverse("emergency:session"))
    assert ("Give the file and its SHA-256 to the new manager. They check and restore it with "
            "restore_backup.") in text(page)
    assert reverse("emergency:handover", args=[job.pk]).encode() in page.content


def test_another_sessions_download_shows_no_what_next(website, django_capture_on_commit_callbacks):
    first, second = Client(), Client()
    open_session(first)
    job = back_up(first, django_capture_on_commit_callbacks)
    open_session(second)
    download(first, job)
    assert "What next" in text(first.get(reverse("emergency:session")))
    assert "What next" not in text(second.get(reverse("emergency:session")))


def test_the_hand_over_sheet_lists_the_file_and_the_commands(client, website, caplog,
                                                             django_capture_on_commit_callbacks):
    session = open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    name = f"example.org-backup-{job.pk}.tar.gz"
    downloaded = client.get(reverse("emergency:download", args=[job.pk]))
    b"".join(downloaded.streaming_content)  # the test client closes the file once read
    assert downloaded["Content-Disposition"].endswith(f'filename="{name}"')
    with caplog.at_level(logging.INFO, logger="breakglass.emergency"):
        sheet = client.get(reverse("emergency:handover", args=[job.pk]))
    assert sheet.status_code == 200
    words = text(sheet)
    for expected in [
        "Website example.org", f"File {name}", f"({job.size} bytes)",
        f"Made {job.finished_at:%Y-%m-%d %H:%M:%S} UTC", "Database SQLite",
        f"SHA-256 {job.sha256}",
        f"sha256sum {name}",
        f"python manage.py verify_backup {name}",
        f"python manage.py restore_backup {name} --files-to /path/to/new/site "
        "--database-url sqlite:////path/to/new/database.sqlite3",
        "The database must be new and empty; the target folder must be empty.",
        "0 restored", "2 archive not valid or unsafe", "3 target not empty or unusable",
        "4 database not restored",
    ]:
        assert expected in words, expected
    assert f"emergency session {session.pk}: GET /emergency/session/handover/{job.pk}/" in (
        caplog.text)


def test_the_hand_over_sheet_prints_without_inline_script_or_style(
        client, website, django_capture_on_commit_callbacks):
    open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    page = client.get(reverse("emergency:handover", args=[job.pk])).content.decode()
    assert re.search(r"<button[^>]*data-print[^>]*hidden[^>]*>Print</button>", page)
    assert '<script src="/static/js/emergency.js" defer></script>' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "style=" not in page
    assert "<style" not in page


@pytest.mark.parametrize(("url", "label", "flag"), [
    (f"postgres://shop:{PASSWORD}@db.example:5432/shop", "PostgreSQL",
     " --database-url postgres://USER:PASSWORD@HOST:5432/NEW_DATABASE"),
    (f"postgresql://shop:{PASSWORD}@db.example/shop", "PostgreSQL",
     " --database-url postgres://USER:PASSWORD@HOST:5432/NEW_DATABASE"),
    (f"pgsql://shop:{PASSWORD}@db.example/shop", "PostgreSQL",
     " --database-url postgres://USER:PASSWORD@HOST:5432/NEW_DATABASE"),
    (f"mysql://shop:{PASSWORD}@db.example:3306/shop", "MariaDB/MySQL",
     " --database-url mysql://USER:PASSWORD@HOST:3306/NEW_DATABASE"),
    (f"mariadb://shop:{PASSWORD}@db.example/shop", "MariaDB/MySQL",
     " --database-url mysql://USER:PASSWORD@HOST:3306/NEW_DATABASE"),
    ("", "none", ""),
])
def test_the_restore_command_follows_the_database_kind_and_never_shows_its_url(
        client, website, django_capture_on_commit_callbacks, url, label, flag):
    open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    # The kind comes from the website's database URL as its manager set it.
    website.database_url_encrypted = encrypt_field(url) if url else ""
    website.save(update_fields=["database_url_encrypted"])
    sheet = client.get(reverse("emergency:handover", args=[job.pk]))
    words = text(sheet)
    name = f"example.org-backup-{job.pk}.tar.gz"
    command = f"python manage.py restore_backup {name} --files-to /path/to/new/site{flag} "
    assert command in f"{words} " and f"Database {label}" in words
    assert PASSWORD not in sheet.content.decode() and "db.example" not in words
    if not url:
        assert "--database-url" not in words and "The target folder must be empty." in words


def test_a_confirmed_wordpress_site_restores_into_mariadb(client, website,
                                                         django_capture_on_commit_callbacks):
    open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    website.wordpress_settings = {"name": "shop_wp", "user": "shop_user", "host": "db.example",
                                  "port": 3307}
    website.save(update_fields=["wordpress_settings"])
    words = text(client.get(reverse("emergency:handover", args=[job.pk])))
    assert "Database MariaDB/MySQL" in words
    assert "--database-url mysql://USER:PASSWORD@HOST:3306/NEW_DATABASE" in words
    assert "--database-url-env NEW_DATABASE_URL" in words
    assert not {"shop_wp", "shop_user", "db.example"} & set(words.split())


def test_the_hand_over_sheet_is_only_for_this_sessions_complete_backups(
        client, website, settings, tmp_path, django_capture_on_commit_callbacks):
    open_session(client)
    job = back_up(client, django_capture_on_commit_callbacks)
    (tmp_path / "other").mkdir()
    other = Website.objects.create(name="Other", address="other.org", manager=website.manager,
                                   files_dir=str(tmp_path / "other"))
    foreign = BackupJob.objects.create(website=other, created_at=timezone.now())
    assert jobs.run_backup(foreign.pk) == "complete"
    assert client.get(reverse("emergency:handover", args=[foreign.pk])).status_code == 404
    assert client.get(reverse("emergency:handover", args=[999_999])).status_code == 404

    settings.BACKUP_SOURCE_ROOTS = []
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("emergency:start-backup"))
    failed = BackupJob.objects.get(status=BackupJob.Status.FAILED)
    assert client.get(reverse("emergency:handover", args=[failed.pk])).status_code == 404

    BackupJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=8))
    assert jobs.delete_expired_archives() == 1
    assert client.get(reverse("emergency:handover", args=[job.pk])).status_code == 404

    stranger = Client().get(reverse("emergency:handover", args=[foreign.pk]))
    assert stranger.status_code == 403 and b"Emergency access ended" in stranger.content


# --- 6. The window counts down -----------------------------------------------------------------


def test_the_session_page_carries_the_window_for_the_countdown(client, website):
    session = open_session(client)
    page = client.get(reverse("emergency:session")).content.decode()
    expires = session.expires_at.isoformat(timespec="seconds")
    assert f'data-expires-at="{expires}"' in page and "data-server-now=" in page
    # Without JavaScript the server's words stay: "ends in 59 min 59 s (HH:MM UTC)".
    assert re.search(r"ends in <strong><time[^>]*>(59|60) min \d+ s</time></strong> \(\d\d:\d\d "
                     r"UTC\)", page)
    assert '<script src="/static/js/emergency.js" defer></script>' in page
    assert re.search(r"<p[^>]*data-window-ended hidden>", page)


def test_the_progress_page_still_refreshes_itself(client, website, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda job_id: None)
    open_session(client)
    client.post(reverse("emergency:start-backup"))
    assert b'<meta http-equiv="refresh" content="3">' in client.get(
        reverse("emergency:session")).content


# --- 7. Ending asks first, then says what happened ---------------------------------------------


def test_ending_asks_first_then_says_it_ended(client, website):
    session = open_session(client)
    session_page = client.get(reverse("emergency:session")).content.decode()
    assert f'href="{reverse("emergency:end")}"' in session_page
    confirm = client.get(reverse("emergency:end"))
    assert confirm.status_code == 200
    assert re.search(rf'<form method="post" action="{reverse("emergency:end")}">',
                     confirm.content.decode())
    assert "Yes, end emergency access" in text(confirm)
    session.refresh_from_db()
    assert session.ended_at is None  # asking changes nothing

    ended = client.post(reverse("emergency:end"))
    assert ended.status_code == 200
    assert ("Emergency access for example.org has ended. The download link no longer works. "
            "Its manager has been told.") in text(ended)
    session.refresh_from_db()
    assert session.ended_at is not None
    assert client.get(reverse("emergency:session")).status_code == 403


def test_ending_an_expired_session_shows_the_generic_page(client, website):
    session = open_session(client)
    session.expires_at = timezone.now() - timedelta(seconds=1)
    session.save(update_fields=["expires_at"])
    assert client.get(reverse("emergency:end")).status_code == 403
    ended = client.post(reverse("emergency:end"))
    assert "example.org" not in text(ended) and "This emergency access is over" in text(ended)


def test_the_confirmation_warns_when_nothing_was_downloaded(client, website,
                                                            django_capture_on_commit_callbacks):
    open_session(client)
    assert "There is no backup to download yet." in text(client.get(reverse("emergency:end")))
    job = back_up(client, django_capture_on_commit_callbacks)
    assert "You have not downloaded the backup yet." in text(client.get(reverse("emergency:end")))
    download(client, job)
    confirm = text(client.get(reverse("emergency:end")))
    assert "not downloaded" not in confirm and "no backup" not in confirm
