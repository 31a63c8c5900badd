"""The emergency backup reads only what the operator allowed in the environment (QUALITY Q40).

Staff holding nothing but the website permissions try to point a website at the server's
secrets through the real admin form, then run its backup: every attempt is refused, at save
time with an error on the field, and at job time on the resolved path, with nothing archived.
"""

import os
import sqlite3
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from audit.catalogue import EventKind
from audit.models import AuditEvent
from backups import jobs, sources
from backups.models import BackupJob, Website
from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_admin(db):
    """Staff with the website rights alone: add, change and view websites."""
    user = make_user("wendy", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="backups", codename__in=[
            "add_website", "change_website", "view_website"]))
    user.authenticator = add_authenticator(user)
    return user


@pytest.fixture
def roots(settings, tmp_path):
    sites = tmp_path / "sites"
    (sites / "shop" / "public").mkdir(parents=True)
    (sites / "shop" / "public" / "index.html").write_text("<h1>Shop</h1>")
    settings.BACKUP_SOURCE_ROOTS = [str(sites)]
    settings.BACKUP_DATABASE_ALLOW = [str(sites), "db.internal:5432"]
    settings.BACKUP_ROOT = tmp_path / "archives"
    return sites


def add_website(client, user, **fields):
    data = {"name": "Shop", "address": "shop.example", "manager": user.pk, "owner_name": "",
            "verification_email": user.email, "verification_mobile": "", "files_dir": "",
            "database_url": "", "manager_code": current_totp(user.authenticator, 1),
            "emergency_enabled": "on", "emergency_minutes": 60, "retention_days": 7}
    return client.post(reverse("admin:backups_website_add"), {**data, **fields})


def archives(settings) -> list[Path]:
    root = Path(settings.BACKUP_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def own_database_url() -> str:
    if connection.vendor == "postgresql":
        own = connection.settings_dict
        return (f"postgres://{own['USER']}:{own['PASSWORD']}@{own['HOST'] or 'localhost'}:"
                f"{own['PORT'] or 5432}/{own['NAME']}")
    from django.conf import settings

    return f"sqlite:///{Path(settings.VAR_DIR) / 'breakglass.sqlite3'}"


@pytest.mark.parametrize("field, value", [
    ("files_dir", "/etc"),
    ("files_dir", "{root}/../outside"),
    ("files_dir", "{root}2"),
    ("database_url", "own"),
    ("database_url", "sqlite:///{root}/../outside/site.sqlite3"),
    ("database_url", "postgres://u:p@db.internal:5432/shop?host=evil.example"),
    ("database_url", "postgres://u:p@db.internal/shop?port=6543"),
])
def test_staff_with_website_rights_cannot_point_a_website_outside_the_roots(
        verified_client, web_admin, roots, settings, field, value):
    outside = roots.parent / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root:$6$secret")
    sqlite3.connect(outside / "site.sqlite3").close()
    (roots.parent / "sites2").mkdir()
    value = own_database_url() if value == "own" else value.format(root=roots)
    response = add_website(verified_client(web_admin), web_admin, **{field: value})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors, errors
    assert not Website.objects.exists()


def test_with_no_roots_configured_the_form_says_what_to_set(verified_client, web_admin,
                                                             settings, tmp_path):
    settings.BACKUP_SOURCE_ROOTS, settings.BACKUP_DATABASE_ALLOW = [], []
    response = add_website(verified_client(web_admin), web_admin, files_dir=str(tmp_path),
                           database_url=f"sqlite:///{tmp_path}/site.sqlite3")
    errors = response.context["adminform"].form.errors
    assert "BACKUP_SOURCE_ROOTS" in str(errors["files_dir"])
    assert "BACKUP_DATABASE_ALLOW" in str(errors["database_url"])
    assert not Website.objects.exists()


def test_a_folder_inside_the_roots_is_accepted_and_backed_up(verified_client, web_admin, roots,
                                                            settings):
    response = add_website(verified_client(web_admin), web_admin,
                           files_dir=str(roots / "shop" / "public"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    website = Website.objects.get()
    job = BackupJob.objects.create(website=website, created_at=timezone.now())
    assert jobs.run_backup(job.pk) == "complete"
    assert len(archives(settings)) == 1


@pytest.mark.parametrize("target", ["/etc", "var"])
def test_a_symlink_repointed_after_saving_fails_the_job_and_archives_nothing(
        verified_client, web_admin, roots, settings, target):
    current = roots / "shop" / "current"
    current.symlink_to(roots / "shop" / "public")
    response = add_website(verified_client(web_admin), web_admin, files_dir=str(current))
    assert response.status_code == 302, response.context["adminform"].form.errors
    current.unlink()  # the site's own account repoints it
    current.symlink_to(settings.VAR_DIR if target == "var" else target)
    website = Website.objects.get()
    job = BackupJob.objects.create(website=website, created_at=timezone.now(), attempts=2)
    assert jobs.run_backup(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == BackupJob.Status.FAILED
    assert "outside the allowed" in job.error or "Breakglass's own" in job.error
    assert archives(settings) == []
    failed = AuditEvent.objects.get(kind=EventKind.BACKUP_FAILED)
    assert str(current) in failed.reason or "outside" in failed.reason


def test_a_folder_swapped_after_the_check_is_caught_on_the_open_descriptor(roots, monkeypatch,
                                                                          settings):
    """The race between the path check and the open: the folder that is actually opened is
    checked again through its descriptor."""
    public = roots / "shop" / "public"
    elsewhere = roots.parent / "elsewhere" / "public"
    elsewhere.mkdir(parents=True)
    (elsewhere / "shadow").write_text("root:$6$secret")
    policy = sources.current_policy()
    checked = policy.check_files_dir(str(public))
    real_open = os.open

    def swap_then_open(path, flags, *args, **kwargs):
        if Path(path) == checked:  # a folder on the way becomes a symlink out of the root
            os.rename(roots / "shop", roots / "moved")
            os.symlink(elsewhere.parent, roots / "shop")
        return real_open(path, flags, *args, **kwargs)

    from backups.archive import ArchiveError, write_archive

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(ArchiveError, match="outside the allowed"):
        write_archive(website="shop.example", files_dir=checked, database_url=None,
                      destination=Path(settings.BACKUP_ROOT) / "x.tar.gz", guard=policy)
    monkeypatch.undo()
    assert archives(settings) == []


# --- The checks themselves -------------------------------------------------------------------


def policy_with(settings, roots: list[str], allow: list[str] | None = None):
    settings.BACKUP_SOURCE_ROOTS = roots
    settings.BACKUP_DATABASE_ALLOW = allow or []
    return sources.current_policy()


def test_a_prefix_of_a_root_is_not_inside_it(settings, tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites2").mkdir()
    policy = policy_with(settings, [str(tmp_path / "sites")])
    assert policy.check_files_dir(str(tmp_path / "sites")) == tmp_path / "sites"
    with pytest.raises(sources.SourceRefused, match="outside the allowed"):
        policy.check_files_dir(str(tmp_path / "sites2"))


def test_relative_paths_and_dot_dot_are_refused(settings, tmp_path):
    (tmp_path / "sites" / "a").mkdir(parents=True)
    policy = policy_with(settings, [str(tmp_path / "sites")])
    with pytest.raises(sources.SourceRefused, match="absolute"):
        policy.check_files_dir("sites/a")
    with pytest.raises(sources.SourceRefused, match=r"\.\."):
        policy.check_files_dir(str(tmp_path / "sites" / "a" / ".." / "a"))


@pytest.mark.parametrize("forbidden", ["VAR_DIR", "BACKUP_ROOT", "CHECKPOINT_DIR", "BASE_DIR"])
def test_breakglass_own_folders_are_refused_inside_or_around_whatever_the_roots(
        settings, forbidden):
    own = Path(getattr(settings, forbidden))
    own.mkdir(parents=True, exist_ok=True)
    policy = policy_with(settings, ["/"])
    with pytest.raises(sources.SourceRefused, match="Breakglass's own"):
        policy.check_files_dir(str(own))
    with pytest.raises(sources.SourceRefused, match="Breakglass's own"):
        policy.check_files_dir(str(own.parent))  # a folder that contains it


def test_a_folder_named_in_any_setting_is_refused(settings, tmp_path):
    secret = tmp_path / "keys"
    secret.mkdir()
    settings.SOME_KEY_FOLDER = {"nested": [str(secret)]}
    policy = policy_with(settings, [str(tmp_path)])
    with pytest.raises(sources.SourceRefused, match="Breakglass's own"):
        policy.check_files_dir(str(tmp_path))


def test_a_hard_link_to_breakglass_own_file_is_skipped_in_the_walk(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    (settings.VAR_DIR / "breakglass.sqlite3").write_text("sessions")
    site = tmp_path / "sites" / "shop"
    site.mkdir(parents=True)
    (site / "index.html").write_text("hello")
    os.link(settings.VAR_DIR / "breakglass.sqlite3", site / "data.bin")
    policy = policy_with(settings, [str(tmp_path / "sites")])
    from backups.archive import write_archive

    result = write_archive(website="shop.example", files_dir=policy.check_files_dir(str(site)),
                           database_url=None, destination=tmp_path / "out.tar.gz", guard=policy)
    assert result.files == 1
    assert result.manifest["skipped"] == [
        {"path": "files/data.bin", "reason": "Breakglass's own file, never archived"}]


def test_database_urls_are_checked_on_their_effective_target(settings, tmp_path):
    (tmp_path / "sites").mkdir()
    sqlite3.connect(tmp_path / "sites" / "shop.sqlite3").close()
    policy = policy_with(settings, [], [str(tmp_path / "sites"), "db.internal:5432", "db2"])
    policy.check_database_url(f"sqlite:///{tmp_path}/sites/shop.sqlite3")
    policy.check_database_url("postgres://u:p@db.internal/shop")
    policy.check_database_url("postgres://u:p@db2:7000/shop")
    policy.check_database_url("postgres://u:p@other/shop?host=db.internal&port=5432")
    for refused in ["postgres://u:p@db.internal:5433/shop",
                    "postgres://u:p@db.internal/shop?host=other",
                    "postgres://u:p@db.internal/shop?host=db.internal,other",
                    "postgres://u:p@/shop",
                    "mysql://u:p@db.internal/shop",
                    f"sqlite:///{tmp_path}/elsewhere.sqlite3",
                    f"sqlite:///{tmp_path}/sites/../elsewhere.sqlite3"]:
        with pytest.raises(sources.SourceRefused):
            policy.check_database_url(refused)


def test_breakglass_own_database_is_refused_even_when_its_host_is_allowed(settings,
                                                                         monkeypatch):
    monkeypatch.setitem(settings.DATABASES, "extra", {
        "ENGINE": "django.db.backends.postgresql", "NAME": "breakglass", "HOST": "db.internal",
        "PORT": "5432"})
    policy = policy_with(settings, [], ["db.internal"])
    policy.check_database_url("postgres://u:p@db.internal/shop")
    with pytest.raises(sources.SourceRefused, match="Breakglass's own"):
        policy.check_database_url("postgres://u:p@db.internal/breakglass")
    with pytest.raises(sources.SourceRefused, match="Breakglass's own"):
        policy.check_database_url("postgres://u:p@x/breakglass?host=db.internal")


def test_a_unix_socket_never_counts_as_an_allowed_server(settings):
    """Over a Unix socket the server may trust the connecting OS user (peer authentication):
    pg_dump runs as Breakglass's own account, so a socket would sign in as Breakglass on a
    server whose loopback address the operator allowed for websites' own credentials."""
    policy = policy_with(settings, [], ["127.0.0.1:5432", "localhost"])
    policy.check_database_url("postgres://site:pw@127.0.0.1:5432/shop")
    for socket in ["postgres://breakglass@/shop?host=/var/run/postgresql",
                   "postgres://breakglass@localhost/shop?host=/tmp",
                   "postgres://breakglass@%2Fvar%2Frun%2Fpostgresql/shop",
                   "postgres://breakglass@127.0.0.1/shop?host=@abstract"]:
        with pytest.raises(sources.SourceRefused, match="socket"):
            policy.check_database_url(socket)


def test_an_sqlite_file_swapped_after_the_check_is_caught_on_what_was_opened(settings,
                                                                            tmp_path):
    from backups.archive import ArchiveError, write_archive

    (tmp_path / "sites").mkdir()
    (tmp_path / "out").mkdir()
    outside, site_database = tmp_path / "outside.sqlite3", tmp_path / "sites" / "shop.sqlite3"
    for path in (outside, site_database):
        with sqlite3.connect(path) as database:
            database.execute("CREATE TABLE secrets (value TEXT)")
        database.close()
    policy = policy_with(settings, [], [str(tmp_path / "sites")])
    url = f"sqlite:///{site_database}"
    policy.check_database_url(url)
    site_database.unlink()  # the site's account swaps it after the check
    site_database.symlink_to(outside)
    with pytest.raises(ArchiveError, match="not an allowed database"):
        write_archive(website="shop.example", files_dir=None, database_url=url,
                      destination=tmp_path / "out" / "shop.tar.gz", guard=policy)
    assert list((tmp_path / "out").iterdir()) == []


CREDENTIAL_FILES = ("PGPASSFILE", "PGSERVICEFILE", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT",
                    "PGSSLCRL", "KRB5CCNAME")


@pytest.fixture
def service_home(tmp_path, monkeypatch):
    """Breakglass's own libpq credentials, where libpq looks for them: under $HOME."""
    home = tmp_path / "home"
    (home / ".postgresql").mkdir(parents=True)
    (home / ".pgpass").write_text("db.example:5432:*:breakglass:own-secret\n")
    (home / ".pgpass").chmod(0o600)
    (home / ".pg_service.conf").write_text("[own]\nhost=db.example\nuser=breakglass\n")
    for name in ("postgresql.crt", "postgresql.key", "root.crt", "root.crl"):
        (home / ".postgresql" / name).write_text("own credential\n")
    (home / "krb5cc").write_text("own ticket\n")
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{home / 'krb5cc'}")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_pg_dump_cannot_reach_breakglass_own_libpq_credentials(service_home):
    from backups.archive.dumps import libpq_environment

    environment, password = libpq_environment("postgres://site@db.example/shop")
    assert password == ""
    assert environment["HOME"] != str(service_home)
    assert not Path(environment["HOME"]).exists()
    for name in CREDENTIAL_FILES:
        assert not Path(environment[name]).exists(), name
    assert not any(str(service_home) in value for value in environment.values())


def test_a_database_url_may_still_name_its_own_certificates(service_home, tmp_path):
    from backups.archive.dumps import libpq_environment

    ca = tmp_path / "site-ca.crt"
    environment, _ = libpq_environment(
        f"postgres://site:pw@db.example/shop?sslmode=verify-full&sslrootcert={ca}")
    assert environment["PGSSLROOTCERT"] == str(ca)
    assert not Path(environment["PGSSLCERT"]).exists()
