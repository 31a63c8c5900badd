"""Who may break glass in a group: the owners choose, every change audited."""

from django.db import transaction
from django.http import HttpRequest

from accounts.models import User
from audit.catalogue import EventKind
from audit.services import record
from breakglass.models import Group
from breakglass.services.errors import NotAllowed


def may_manage(actor: User, group: Group) -> bool:
    """The group's owners change its settings and who may break glass in it."""
    return group.owners.filter(pk=actor.pk, is_active=True).exists()


@transaction.atomic
def set_break_glass_users(group: Group, users: list[User], *, actor: User,
                          request: HttpRequest | None = None) -> None:
    """An owner replaces the group's break-glass users (from the group page)."""
    group = Group.objects.select_for_update().get(pk=group.pk)
    if not may_manage(actor, group):
        raise NotAllowed("Only the group's owners manage its break-glass users.")
    before = break_glass_usernames(group)
    group.break_glass_users.set(users)
    record_break_glass_users_change(group, before, actor=actor, request=request)


def break_glass_usernames(group: Group) -> set[str]:
    return set(group.break_glass_users.values_list("username", flat=True))


def record_break_glass_users_change(group: Group, before: set[str], *, actor: User,
                                    request: HttpRequest | None = None) -> None:
    """Audit a change of who may break glass, wherever it was made (the group page, the
    admin's group form); nothing when the list is unchanged."""
    after = break_glass_usernames(group)
    if before != after:
        record(EventKind.BREAK_GLASS_USERS_CHANGED, actor=actor, target=group, request=request,
               data={"added": sorted(after - before), "removed": sorted(before - after)})
