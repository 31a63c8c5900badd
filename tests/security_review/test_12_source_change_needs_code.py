"""What an emergency backup reads (the files directory, the database URL) changes only with the
acting administrator's fresh one-time code, like the contacts."""

import pytest

from backups.models import Website
from tests.security_review.website_cast import administrator, change_website, fresh_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def site_dirs(backup_sources):
    for name in ("site", "other"):
        (backup_sources / name).mkdir()
    return backup_sources


@pytest.fixture
def website(site_dirs):
    return Website.objects.create(
        name="Example", address="example.org", manager=administrator("bob"),
        verification_email="owner@example.org", files_dir=str(site_dirs / "site"),
        emergency_enabled=True)


def test_changing_the_files_directory_needs_a_fresh_code(verified_client, website, site_dirs):
    ada = administrator("ada")
    client = verified_client(ada)
    refused = change_website(client, website, files_dir=str(site_dirs / "other"))
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    website.refresh_from_db()
    assert website.files_dir == str(site_dirs / "site")
    done = change_website(client, website, files_dir=str(site_dirs / "other"),
                          manager_code=fresh_code(ada))
    assert done.status_code == 302
    website.refresh_from_db()
    assert website.files_dir == str(site_dirs / "other")


def test_changing_the_database_needs_a_fresh_code(verified_client, website, site_dirs):
    ada = administrator("ada")
    client = verified_client(ada)
    database_url = f"sqlite:///{site_dirs}/site.sqlite3"
    refused = change_website(client, website, database_url=database_url)
    assert refused.status_code == 200 and b"fresh one-time code" in refused.content
    website.refresh_from_db()
    assert website.database_url_encrypted == ""
    done = change_website(client, website, database_url=database_url,
                          manager_code=fresh_code(ada))
    assert done.status_code == 302, done.content[-3000:]
    website.refresh_from_db()
    assert website.database_url_encrypted != ""


def test_other_settings_need_no_code(verified_client, website):
    response = change_website(verified_client(administrator("ada")), website,
                              name="Example shop", retention_days=14)
    assert response.status_code == 302
    website.refresh_from_db()
    assert (website.name, website.retention_days) == ("Example shop", 14)
