"""The identity provider's `groups` claim, applied at each single sign-on through the mapping
table (breakglass.models.ClaimMapping): roles and catalog memberships the claim names are
given, mapped ones it no longer names are taken away, in the sign-in's transaction, audited
as one event. Roles nobody mapped are never touched."""

from django.contrib.auth.models import Group as AuthGroup
from django.db import transaction

from accounts.models import SECURITY_REVIEWERS_GROUP, User
from audit.catalogue import EventKind
from audit.services import record
from breakglass.models import ClaimMapping, Group


@transaction.atomic
def apply_claims(user: User, claims: dict, request=None) -> dict[str, list[str]]:
    """Returns what changed: {"added": [...], "removed": [...]} in words."""
    mappings = list(ClaimMapping.objects.select_related("group"))
    if not mappings or not isinstance(claims.get("groups"), list):
        # A provider that sent no groups claim said nothing about groups: nothing is taken.
        return {"added": [], "removed": []}
    named = {str(value) for value in claims.get("groups") or [] if isinstance(value, str)}
    wanted: dict[tuple[str, int | None], bool] = {}
    for mapping in mappings:
        key = (mapping.role, mapping.group_id)
        wanted[key] = wanted.get(key, False) or mapping.claim_value in named
    groups = {mapping.group_id: mapping.group for mapping in mappings if mapping.group_id}
    added, removed = [], []
    for (role, group_id), give in wanted.items():
        label = _label(role, groups.get(group_id))
        if _holds(user, role, groups.get(group_id)) == give:
            continue
        _set(user, role, groups.get(group_id), give)
        (added if give else removed).append(label)
    if added or removed:
        record(EventKind.SSO_ROLES_CHANGED, actor=user, target=user, request=request,
               data={"added": added, "removed": removed, "groups_claim": sorted(named)[:50]})
    return {"added": added, "removed": removed}


def _label(role: str, group: Group | None) -> str:
    words = ClaimMapping.Role(role).label
    return f"{words} {group.slug}" if group is not None else words


def _holds(user: User, role: str, group: Group | None) -> bool:
    if role == ClaimMapping.Role.STAFF:
        return user.is_staff
    if role == ClaimMapping.Role.SECURITY_REVIEWER:
        return user.groups.filter(name=SECURITY_REVIEWERS_GROUP).exists()
    relation = group.members if role == ClaimMapping.Role.GROUP_MEMBER else group.owners
    return relation.filter(pk=user.pk).exists()


def _set(user: User, role: str, group: Group | None, give: bool) -> None:
    if role == ClaimMapping.Role.STAFF:
        user.is_staff = give
        user.save(update_fields=["is_staff"])
    elif role == ClaimMapping.Role.SECURITY_REVIEWER:
        reviewers, _ = AuthGroup.objects.get_or_create(name=SECURITY_REVIEWERS_GROUP)
        (user.groups.add if give else user.groups.remove)(reviewers)
    else:
        relation = group.members if role == ClaimMapping.Role.GROUP_MEMBER else group.owners
        (relation.add if give else relation.remove)(user)
