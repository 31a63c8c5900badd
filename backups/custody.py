"""Who manages a website (QUALITY Q41): a manager named when a website is created, or by
anyone but the manager in office, acts as one only once a second administrator confirms. Until
then the website sends no code (services._why_no_code) and the named manager has none of a
manager's powers (services.may_act_as_manager). What a backup reads changes only through
change_source, audited and told."""

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.alerts import alert
from audit.catalogue import EventKind
from audit.services import record
from backups import site_access, sources
from backups.archive import ArchiveError, remote
from backups.models import Website
from backups.services import CONTACT_HOLD, Contact, everyone_told
from backups.site_access import database_url as stored_database_url
from backups.wordpress import WordPressConfigError


def create_website(website: Website, *, actor, request: HttpRequest | None = None) -> Website:
    """Save a new website. Whoever is named its manager acts as one, and the website sends
    codes, only once a second administrator confirms (confirm_manager); first contacts are
    held for 24 hours like changed ones. The manager and the contacts are told."""
    with transaction.atomic():
        now = timezone.now()
        website.manager_confirmed, website.manager_named_by = False, actor
        website.pending_manager = None
        if website.verification_email or website.verification_mobile:
            website.contacts_changed_at, website.contacts_changed_by = now, actor
            website.contacts_hold_until = now + CONTACT_HOLD
        website.save()
        event = record(EventKind.WEBSITE_CREATED, actor=actor, target=website, request=request,
                       data={"manager": website.manager_id, "manager_confirmed": False,
                             "contacts_hold_until": website.contacts_hold_until.isoformat()
                             if website.contacts_hold_until else None})
        alert(event, users=everyone_told(website), channels=["email", "sms"], template="event")
    return website


def change_manager(website: Website, *, new_manager, actor, proven: bool = False,
                   request: HttpRequest | None = None) -> None:
    """Hand a website to `new_manager`. At once only when the confirmed manager in office does
    it with a fresh code (`proven`, checked by the caller); otherwise the new manager is
    pending until a second administrator confirms, and the manager in office keeps the
    website meanwhile. The manager in office, the new one and the contacts are told."""
    with transaction.atomic():
        website = Website.objects.select_for_update().select_related("manager").get(
            pk=website.pk)
        if new_manager.pk in (website.manager_id, website.pending_manager_id):
            return
        previous = website.manager
        at_once = proven and actor.pk == website.manager_id and website.manager_confirmed
        if at_once:
            website.manager, website.pending_manager = new_manager, None
        else:
            website.pending_manager = new_manager
        website.manager_named_by = actor
        website.save(update_fields=["manager", "pending_manager", "manager_named_by"])
        event = record(EventKind.MANAGER_CHANGED, actor=actor, target=website, request=request,
                       data={"previous_manager": previous.pk, "new_manager": new_manager.pk,
                             "confirmed": at_once})
        contacts = Contact(website.verification_email, website.verification_mobile)
        alert(event, users=[previous, new_manager, contacts], channels=["email", "sms"],
              template="event")


def confirm_manager(website: Website, *, actor, request: HttpRequest | None = None) -> None:
    """A second administrator (neither who named the manager nor the one named) confirms the
    manager named at creation, or hands the website to the pending manager."""
    with transaction.atomic():
        website = Website.objects.select_for_update().select_related("manager").get(
            pk=website.pk)
        if website.manager_confirmed and website.pending_manager_id is None:
            return
        named = website.pending_manager_id or website.manager_id
        if not actor.is_superuser or actor.pk in (website.manager_named_by_id, named):
            raise PermissionError("A second administrator, neither the one who named the "
                                  "manager nor the manager named, must confirm.")
        previous = website.manager
        if website.pending_manager_id:
            website.manager, website.pending_manager = website.pending_manager, None
        website.manager_confirmed = True
        website.save(update_fields=["manager", "pending_manager", "manager_confirmed"])
        event = record(EventKind.MANAGER_CONFIRMED, actor=actor, target=website,
                       request=request, data={"manager": website.manager_id,
                                              "previous_manager": previous.pk})
        alert(event, users=[previous, *everyone_told(website)], channels=["email", "sms"],
              template="event")


def change_source(website: Website, *, files_dir: str, database_url: str, actor,
                  request: HttpRequest | None = None) -> None:
    """Point the website's backup at `files_dir` and, unless `database_url` is empty (keep the
    stored one), at that database. The caller checked the actor's fresh code; the operator's
    policy is checked here (sources.SourceRefused) and again when a job runs. Audited without
    the URL, which may hold a password; the manager and the contacts are told."""
    policy = sources.current_policy()
    if remote.is_ssh_source(files_dir):
        source = policy.check_ssh_source(files_dir)
        if database_url:
            policy.check_remote_database_url(source, database_url)
    else:
        if files_dir:
            policy.check_files_dir(files_dir)
        if database_url:
            policy.check_database_url(database_url)
    with transaction.atomic():
        website = Website.objects.select_for_update().select_related("manager").get(
            pk=website.pk)
        previous = website.files_dir
        database_changed = bool(database_url) and database_url != stored_database_url(website)
        if previous == files_dir and not database_changed:
            return
        website.files_dir = files_dir
        fields = ["files_dir", "database_url_encrypted"]
        # A host key pinned for one server never vouches for another.
        host_key_cleared = bool(website.ssh_host_key) and _server(previous) != _server(files_dir)
        if host_key_cleared:
            website.ssh_host_key, website.ssh_host_key_pinned_at = "", None
            website.ssh_host_key_pinned_by = None
            fields += ["ssh_host_key", "ssh_host_key_pinned_at", "ssh_host_key_pinned_by"]
        if database_changed:
            from recovery.crypto import encrypt_field

            website.database_url_encrypted = encrypt_field(database_url)
            # A URL set by hand replaces what wp-config.php said.
            website.wordpress_settings = website.wordpress_confirmed_at = None
            website.wordpress_confirmed_by = None
            fields += ["wordpress_settings", "wordpress_confirmed_at", "wordpress_confirmed_by"]
        website.save(update_fields=fields)
        event = record(EventKind.WEBSITE_SOURCE_CHANGED, actor=actor, target=website,
                       request=request, data={"previous_files_dir": previous,
                                              "files_dir": files_dir,
                                              "database_changed": database_changed,
                                              "host_key_cleared": host_key_cleared})
        alert(event, users=everyone_told(website), channels=["email", "sms"], template="event")


def set_ssh_key(website: Website, *, private_key: str, passphrase: str, actor,
                request: HttpRequest | None = None) -> str:
    """The key the backup signs in to the website's server with, stored encrypted (never in
    the history); returns its public fingerprint, which is what the audit trail keeps. The
    caller checked the actor's fresh code. ArchiveError when the key cannot be read."""
    from recovery.crypto import encrypt_field

    fingerprint = remote.load_private_key(private_key, passphrase).fingerprint
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        website.ssh_private_key_encrypted = encrypt_field(private_key)
        website.ssh_passphrase_encrypted = encrypt_field(passphrase) if passphrase else ""
        website.save(update_fields=["ssh_private_key_encrypted", "ssh_passphrase_encrypted"])
        _source_event(website, actor, request, {"ssh_key": fingerprint})
    return fingerprint


def pin_host_key(website: Website, *, shown_fingerprint: str, actor,
                 request: HttpRequest | None = None) -> str:
    """Pins the key the website's server presents now, but only if it is the one the manager
    was shown (`shown_fingerprint`): a key swapped between the page and the save is refused.
    The caller checked the actor's fresh code. Returns the pinned fingerprint."""
    source = sources.current_policy().check_ssh_source(website.files_dir)
    key = remote.fetch_host_key(source.host, source.port)
    if key.fingerprint != shown_fingerprint:
        raise remote.HostKeyChanged(
            f"{source.address} now presents {key.fingerprint}, not the {shown_fingerprint} "
            "you were shown: nothing was pinned. Check the server, then pin again.")
    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        previous = website.ssh_host_key
        website.ssh_host_key = remote.host_key_line(key)
        website.ssh_host_key_pinned_at, website.ssh_host_key_pinned_by = timezone.now(), actor
        website.save(update_fields=["ssh_host_key", "ssh_host_key_pinned_at",
                                    "ssh_host_key_pinned_by"])
        _source_event(website, actor, request, {
            "host_key_pinned": key.fingerprint,
            "previous_host_key": remote.parse_host_key(previous).fingerprint if previous
            else None})
    return key.fingerprint


def confirm_wordpress(website: Website, *, shown: dict, actor,
                      request: HttpRequest | None = None) -> dict:
    """The manager confirms the database wp-config.php names (`shown`, its summary as the page
    showed it): read again now, it must still say the same, and the operator's policy must
    allow that database. From then on each backup reads wp-config.php again (a rotated
    password is followed; another database stops the backup). The caller checked the actor's
    fresh code. Returns the confirmed summary."""
    policy = sources.current_policy()
    config = site_access.find_wordpress(website, policy)
    if config is None:
        raise WordPressConfigError("There is no wp-config.php at the top of the files "
                                   "directory any more.")
    summary = config.summary()
    if summary != shown:
        raise site_access.WordPressChanged("wp-config.php changed since the page was shown: "
                                           "read what it says now, then confirm again.")
    url = config.database_url()
    if remote.is_ssh_source(website.files_dir):
        policy.check_remote_database_url(policy.check_ssh_source(website.files_dir), url)
    else:
        policy.check_database_url(url)
    from recovery.crypto import encrypt_field

    with transaction.atomic():
        website = Website.objects.select_for_update().get(pk=website.pk)
        website.database_url_encrypted = encrypt_field(url)
        website.wordpress_settings = summary
        website.wordpress_confirmed_at, website.wordpress_confirmed_by = timezone.now(), actor
        website.save(update_fields=["database_url_encrypted", "wordpress_settings",
                                    "wordpress_confirmed_at", "wordpress_confirmed_by"])
        _source_event(website, actor, request, {"wordpress_confirmed": summary})
    return summary


def _source_event(website: Website, actor, request, data: dict) -> None:
    event = record(EventKind.WEBSITE_SOURCE_CHANGED, actor=actor, target=website,
                   request=request, data={"files_dir": website.files_dir, **data})
    alert(event, users=everyone_told(website), channels=["email", "sms"], template="event")


def _server(files_dir: str) -> str | None:
    """The server a files directory is on: host:port over SSH, None for this one."""
    if not remote.is_ssh_source(files_dir):
        return None
    try:
        return remote.parse_ssh_source(files_dir).address
    except ArchiveError:
        return files_dir
