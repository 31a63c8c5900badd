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
from backups import sources
from backups.jobs import database_url as stored_database_url
from backups.models import Website
from backups.services import CONTACT_HOLD, Contact, everyone_told


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
        if database_changed:
            from recovery.crypto import encrypt_field

            website.database_url_encrypted = encrypt_field(database_url)
        website.save(update_fields=["files_dir", "database_url_encrypted"])
        event = record(EventKind.WEBSITE_SOURCE_CHANGED, actor=actor, target=website,
                       request=request, data={"previous_files_dir": previous,
                                              "files_dir": files_dir,
                                              "database_changed": database_changed})
        alert(event, users=everyone_told(website), channels=["email", "sms"], template="event")
