"""The rights that release access or secrets (SPEC §2.1), which bring the strict session limits.

Accounts sits below the apps that grant those rights (groups and grants, quorum policies,
websites), so each of them registers from its AppConfig.ready() a builder of the condition
"this user holds the right"; `User.has_break_glass_rights` ORs them in one query."""

from collections.abc import Callable

from django.db.models import Q

RightCondition = Callable[[object], Q]

_releasing_rights: list[RightCondition] = []


def register_releasing_right(condition: RightCondition) -> None:
    """Add `condition(user) -> Q`, where `user` is a pk or an OuterRef. The Q must be made of
    EXISTS subqueries that each use an index, so that the check stays one cheap query."""
    if condition not in _releasing_rights:
        _releasing_rights.append(condition)


def releasing_rights(user) -> list[Q]:
    return [condition(user) for condition in _releasing_rights]
