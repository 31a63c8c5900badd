"""Every change the directory makes over SCIM: accounts and directory groups, each locked,
checked, written and audited (actor: the application) in one transaction. The SCIM errors
raised here are the answers the client gets."""

from contextlib import contextmanager
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from scim2_models import ForbiddenException, InvalidValueException, UniquenessException

from accounts.deprovisioning import deprovision
from accounts.models import DirectoryGroup, User
from audit.catalogue import EventKind
from audit.services import record
from scim.models import ScimResource

DEPROVISIONED_REASON = "The directory deactivated this account over SCIM."
DELETED_REASON = "The directory deleted this account over SCIM."


@dataclass
class AccountFields:
    """What SCIM maps onto an account; `attributes` holds the rest, kept as sent."""

    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    is_active: bool | None = None  # None: as it is (a new account starts active)
    external_id: str = ""
    attributes: dict = field(default_factory=dict)


@dataclass
class GroupFields:
    display_name: str
    external_id: str = ""
    member_ids: list[str] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)


def is_protected(user: User) -> bool:
    """Accounts the directory may read but never change: administrators, and the accounts
    kept for signing in locally when the identity provider is down. A compromised or
    mistaken directory must not be able to deactivate or rename them."""
    return user.is_staff or user.is_superuser or user.may_use_local_login


def refuse_protected(user: User) -> None:
    # 403 rather than 409: nothing the client could change in its request would make it
    # succeed, and identity providers report a 403 instead of retrying it.
    if is_protected(user):
        raise ForbiddenException(detail="This account is managed in Breakglass itself; the "
                                        "directory may not change it.")


@transaction.atomic
def create_account(fields: AccountFields, *, actor, request: HttpRequest | None = None) -> User:
    """A new account from the directory: no usable password, no local login, no roles, no
    staff status; the person signs in through single sign-on. A username already taken (in
    any case) is refused: an existing account is never taken over by a create."""
    _check_account_fields(fields)
    if User.objects.filter(username__iexact=fields.username).exists():
        raise UniquenessException(detail=f"The userName {fields.username!r} is taken.")
    user = User(username=fields.username, first_name=fields.first_name,
                last_name=fields.last_name, email=fields.email,
                is_active=fields.is_active is not False, may_use_local_login=False)
    user.set_unusable_password()
    with _refused_if_taken(f"userName {fields.username!r}"):
        user.save()
    now = timezone.now()
    ScimResource.objects.create(user=user, external_id=fields.external_id,
                                attributes=fields.attributes, created_at=now, modified_at=now,
                                provisioned=True)
    record(EventKind.SCIM_USER_CREATED, actor=actor, target=user, request=request,
           data={"username": user.username, "first_name": user.first_name,
                 "last_name": user.last_name, "email": user.email, "active": user.is_active,
                 "external_id": fields.external_id})
    return user


@transaction.atomic
def update_account(user: User, fields: AccountFields, *, actor, published: dict,
                   request: HttpRequest | None = None) -> User:
    """Replace what the directory maps onto an existing account; `published` holds the other
    attributes as SCIM showed them before, to tell what changed. Deactivation goes through
    accounts.deprovisioning (grants and sessions end with it); reactivation only lets the
    person sign in again, it gives back no grant. No change, no event."""
    user = User.objects.select_for_update().get(pk=user.pk)
    refuse_protected(user)
    _check_account_fields(fields)
    if User.objects.filter(username__iexact=fields.username).exclude(pk=user.pk).exists():
        raise UniquenessException(detail=f"The userName {fields.username!r} is taken.")
    kept = _kept(user=user)
    deactivating = fields.is_active is False and user.is_active
    if fields.is_active and not user.is_active and not kept.deactivated_by_directory:
        raise ForbiddenException(detail="This account was deactivated in Breakglass (an abort "
                                        "link or an administrator); only an administrator "
                                        "reactivates it.")
    changes = _account_changes(user, kept, fields)
    attributes_changed = sorted(_changed_keys(published, fields.attributes))
    if changes or attributes_changed:
        columns = sorted(changes.keys() - {"external_id"})
        for name in columns:
            setattr(user, name, changes[name][1])
        if columns:
            with _refused_if_taken(f"userName {fields.username!r}"):
                user.save(update_fields=columns)
        if changes.get("is_active"):
            kept.deactivated_by_directory = False
        _keep(kept, external_id=fields.external_id, attributes=fields.attributes)
        record(EventKind.SCIM_USER_UPDATED, actor=actor, target=user, request=request,
               data={"changes": changes, "attributes_changed": attributes_changed})
    if deactivating:
        kept.deactivated_by_directory = True
        _keep(kept, external_id=fields.external_id, attributes=fields.attributes)
        user = deprovision(user, actor=actor, reason=DEPROVISIONED_REASON, request=request)
    return user


@transaction.atomic
def delete_account(user: User, *, actor, request: HttpRequest | None = None) -> None:
    """The directory deleted the account: deprovisioned, never removed (the audit trail and
    history point at it); SCIM no longer shows it."""
    user = User.objects.select_for_update().get(pk=user.pk)
    refuse_protected(user)
    kept = _kept(user=user)
    kept.deleted_at = timezone.now()
    kept.deactivated_by_directory = True
    _keep(kept, external_id=kept.external_id, attributes=kept.attributes)
    deprovision(user, actor=actor, reason=DELETED_REASON, request=request, deleted=True)


@transaction.atomic
def create_group(fields: GroupFields, *, actor,
                 request: HttpRequest | None = None) -> DirectoryGroup:
    """A new directory group. It gives nothing until a catalog group takes its members from
    it."""
    _check_group_fields(fields)
    if DirectoryGroup.objects.filter(display_name__iexact=fields.display_name).exists():
        raise UniquenessException(detail=f"The displayName {fields.display_name!r} is taken.")
    members = _members(fields.member_ids)
    _refuse_protected_members(set(members))
    with _refused_if_taken(f"displayName {fields.display_name!r}"):
        group = DirectoryGroup.objects.create(display_name=fields.display_name,
                                              external_id=fields.external_id)
    group.members.set(members)
    now = timezone.now()
    ScimResource.objects.create(directory_group=group, attributes=fields.attributes,
                                created_at=now, modified_at=now)
    record(EventKind.SCIM_GROUP_CREATED, actor=actor, target=group, request=request,
           data={"display_name": group.display_name, "external_id": group.external_id,
                 "members": sorted(member.username for member in members)})
    return group


@transaction.atomic
def update_group(group: DirectoryGroup, fields: GroupFields, *, actor, published: dict,
                 request: HttpRequest | None = None) -> DirectoryGroup:
    """Replace a directory group's name, members and other attributes (`published`: the
    others as SCIM showed them before). Whoever leaves the group loses what it gave them at
    their next access check. No change, no event."""
    group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
    _check_group_fields(fields)
    if DirectoryGroup.objects.filter(display_name__iexact=fields.display_name).exclude(
            pk=group.pk).exists():
        raise UniquenessException(detail=f"The displayName {fields.display_name!r} is taken.")
    members = set(_members(fields.member_ids))
    current = set(group.members.all())
    _refuse_protected_members(members ^ current)
    kept = _kept(directory_group=group)
    changes = {name: [getattr(group, name), value]
               for name, value in (("display_name", fields.display_name),
                                   ("external_id", fields.external_id))
               if getattr(group, name) != value}
    attributes_changed = sorted(_changed_keys(published, fields.attributes))
    if not (changes or attributes_changed or members != current):
        return group
    if changes:
        group.display_name, group.external_id = fields.display_name, fields.external_id
        with _refused_if_taken(f"displayName {fields.display_name!r}"):
            group.save(update_fields=sorted(changes))
    if members != current:
        group.members.remove(*(current - members))
        group.members.add(*(members - current))
    _keep(kept, external_id="", attributes=fields.attributes)
    record(EventKind.SCIM_GROUP_UPDATED, actor=actor, target=group, request=request,
           data={"changes": changes, "attributes_changed": attributes_changed,
                 "added": sorted(user.username for user in members - current),
                 "removed": sorted(user.username for user in current - members)})
    return group


@transaction.atomic
def delete_group(group: DirectoryGroup, *, actor, request: HttpRequest | None = None) -> None:
    """Delete a directory group. One a catalog group takes its members from is emptied and
    hidden from SCIM instead (the catalog group keeps pointing at it, now giving nobody
    anything), so its former members lose that access either way."""
    group = DirectoryGroup.objects.select_for_update().get(pk=group.pk)
    members = sorted(group.members.values_list("username", flat=True))
    used_by = sorted(group.catalog_groups.values_list("slug", flat=True))
    record(EventKind.SCIM_GROUP_DELETED, actor=actor, target=group, request=request,
           data={"display_name": group.display_name, "external_id": group.external_id,
                 "members": members, "kept_for_catalog_groups": used_by})
    if not used_by:
        group.delete()
        return
    group.members.clear()
    # Its name is free again for the directory: the hidden group keeps a name of its own.
    group.display_name = f"{group.display_name[:200]} (deleted, #{group.pk})"
    group.save(update_fields=["display_name"])
    kept = _kept(directory_group=group)
    kept.deleted_at = timezone.now()
    _keep(kept, external_id="", attributes=kept.attributes)


# --- Checks and the side table ---------------------------------------------------------------

def _check_account_fields(fields: AccountFields) -> None:
    for name in ("username", "first_name", "last_name", "email"):
        _check_column(User, name, getattr(fields, name))
    _check_length("externalId", fields.external_id)
    _check_text(fields.attributes)


def _check_group_fields(fields: GroupFields) -> None:
    _check_column(DirectoryGroup, "display_name", fields.display_name)
    _check_column(DirectoryGroup, "external_id", fields.external_id)
    _check_text(fields.attributes)


def _check_column(model, name: str, value: str) -> None:
    """The model field's own validation (length, username characters, email syntax), so a
    value the database would refuse is a 400, never a 500."""
    _check_text(value)
    try:
        model._meta.get_field(name).clean(value, None)
    except ValidationError as error:
        raise InvalidValueException(detail=f"{name}: {' '.join(error.messages)}") from None


def _check_length(name: str, value: str, limit: int = 255) -> None:
    _check_text(value)
    if len(value) > limit:
        raise InvalidValueException(detail=f"{name}: at most {limit} characters.")


def _check_text(value) -> None:
    """PostgreSQL stores no NUL character, in text or in JSON."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidValueException(detail="Values may not contain NUL characters.")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    if isinstance(value, list):
        for item in value:
            _check_text(item)


def _refuse_protected_members(changed: set[User]) -> None:
    """A directory group can give standing access (a catalog group may take its members from
    it): the directory may neither add an administrator or local-login account to one nor
    take one out."""
    for user in sorted(changed, key=lambda user: user.pk):
        refuse_protected(user)


def _members(member_ids: list[str]) -> list[User]:
    """The accounts named as members; an unknown or malformed id is refused, never skipped,
    so the directory learns that its group is not what it thinks."""
    ids = set()
    for value in member_ids:
        if not (str(value).isascii() and str(value).isdigit()) or len(str(value)) > 18:
            raise InvalidValueException(detail=f"No user has the id {value!r}.")
        ids.add(int(value))
    users = list(User.objects.filter(pk__in=ids).exclude(scim_resource__deleted_at__isnull=False))
    missing = ids - {user.pk for user in users}
    if missing:
        raise InvalidValueException(detail=f"No user has the id {min(missing)!r}.")
    return users


@contextmanager
def _refused_if_taken(what: str):
    """The unique index is the last word: a name taken by a request running beside this one
    (the check above saw neither) is a 409 as well, never a 500."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise UniquenessException(detail=f"The {what} is taken.") from None


def _kept(**owner) -> ScimResource:
    """The side-table row of an account or group, locked, or a new one not yet saved (an
    account created in Breakglass has none until the directory first writes to it)."""
    kept = ScimResource.objects.select_for_update().filter(**owner).first()
    if kept is not None:
        return kept
    user = owner.get("user")
    created = user.date_joined if user is not None else timezone.now()
    return ScimResource(**owner, created_at=created, modified_at=created)


def _keep(kept: ScimResource, *, external_id: str, attributes: dict) -> None:
    kept.external_id, kept.attributes, kept.modified_at = external_id, attributes, timezone.now()
    kept.save()


def _account_changes(user: User, kept: ScimResource, fields: AccountFields) -> dict:
    """{name: [before, after]} for the account's columns and external id; deactivation is
    left to deprovisioning, which records it."""
    wanted = {"username": fields.username, "first_name": fields.first_name,
              "last_name": fields.last_name, "email": fields.email}
    if fields.is_active and not user.is_active:
        wanted["is_active"] = True
    changes = {name: [getattr(user, name), value] for name, value in wanted.items()
               if getattr(user, name) != value}
    if kept.external_id != fields.external_id:
        changes["external_id"] = [kept.external_id, fields.external_id]
    return changes


def _changed_keys(before: dict, after: dict) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
