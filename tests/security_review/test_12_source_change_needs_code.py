"""What an emergency backup reads (the files directory, the database URL) changes only with the
acting administrator's fresh one-time code, like the contacts."""

import pytest

from backups.models import Website
from tests.conftest import example_website
from tests.security_review.website_cast import administrator, change_website, fresh_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def site_dirs(backup_sources):
    for name in ("site", "other"):
        (backup_sources / name).mkdir()
    return backup_sources


@pytest.fixture
def website(site_dirs):
    return example_website(administrator("bob"), verification_mobile="",
                           files_dir=str(site_dirs / "site"))


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


def test_reverting_to_an_older_files_directory_from_the_history_is_refused(
        verified_client, website, site_dirs):
    """The history page's revert form compares with the old version, not the row: posting the
    older files directory there would need no code. It is refused outright."""
    from django.urls import reverse

    from tests.security_review.website_cast import website_form

    ada = administrator("ada")
    client = verified_client(ada)
    original = website.history.earliest("history_date")
    done = change_website(client, website, files_dir=str(site_dirs / "other"),
                          manager_code=fresh_code(ada))
    assert done.status_code == 302
    versions = website.history.count()
    revert = reverse("admin:backups_website_simple_history", args=[website.pk,
                                                                   original.history_id])
    website.refresh_from_db()
    response = client.post(revert, website_form(website, files_dir=str(site_dirs / "site")))
    assert response.status_code == 403
    assert Website.objects.get(pk=website.pk).files_dir == str(site_dirs / "other")
    assert website.history.count() == versions
    assert client.get(revert).status_code == 200  # the old version can still be read


def test_a_form_on_a_stale_copy_still_asks_a_code_for_the_source(rf, website, site_dirs):
    """What needs a code is decided against the row in the database, whatever copy the form
    was built on (an older version, another tab)."""
    from backups.admin import WebsiteForm
    from tests.security_review.website_cast import website_form

    ada = administrator("ada")
    stale = Website.objects.get(pk=website.pk)
    Website.objects.filter(pk=website.pk).update(files_dir=str(site_dirs / "other"))
    request = rf.post("/")
    request.user = ada
    form = WebsiteForm(website_form(stale), instance=stale, request=request)
    assert not form.is_valid()
    assert "fresh one-time code" in str(form.errors["manager_code"])


def test_a_source_change_is_audited_and_told_without_the_url(verified_client, website,
                                                             site_dirs):
    from audit.catalogue import EventKind
    from audit.models import AuditEvent, Delivery

    manager = website.manager
    manager.mobile = "+15555550101"
    manager.save(update_fields=["mobile"])
    website.verification_mobile = "+15555550100"
    website.save(update_fields=["verification_mobile"])
    ada = administrator("ada")
    database_url = f"sqlite:///{site_dirs}/site.sqlite3"
    done = change_website(verified_client(ada), website, files_dir=str(site_dirs / "other"),
                          database_url=database_url, manager_code=fresh_code(ada))
    assert done.status_code == 302
    event = AuditEvent.objects.get(kind=EventKind.WEBSITE_SOURCE_CHANGED)
    assert event.data == {"previous_files_dir": str(site_dirs / "site"),
                          "files_dir": str(site_dirs / "other"), "database_changed": True,
                          "host_key_cleared": False}
    assert "sqlite" not in str(event.data) and event.actor_id == str(ada.pk)
    told = set(Delivery.objects.filter(event=event).values_list("channel", "recipient"))
    assert {("email", "bob@example.com"), ("sms", "+15555550101"),
            ("email", "owner@example.org"), ("sms", "+15555550100")} <= told


def test_setting_the_same_source_again_records_nothing(website):
    from audit.models import AuditEvent, Delivery
    from backups.custody import change_source

    versions = website.history.count()
    change_source(website, files_dir=website.files_dir, database_url="",
                  actor=administrator("ada"))
    assert not AuditEvent.objects.filter(kind="website.source_changed").exists()
    assert not Delivery.objects.exists() and website.history.count() == versions
