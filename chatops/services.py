"""Who a Slack user is in Breakglass, and linking the two accounts.

A Slack user is the Breakglass user they linked (SlackLink), or else the one active user
whose email address matches the address Slack says they confirmed. Linking proves both sides:
Slack shows a signed link to that Slack user only, and it is confirmed by a POST from a
signed-in, verified Breakglass session."""

from dataclasses import dataclass

from django.core import signing
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit.catalogue import EventKind, Outcome
from audit.services import Anonymous, record
from chatops import slack
from chatops.models import SlackLink

LINK_SALT = "breakglass.slack-link.v1"
LINK_MAX_AGE_SECONDS = 10 * 60


class LinkRefused(Exception):
    status = 400


@dataclass(frozen=True)
class SlackUser:
    team_id: str
    user_id: str
    name: str = ""

    @classmethod
    def from_payload(cls, payload: dict) -> "SlackUser":
        user, team = as_dict(payload.get("user")), as_dict(payload.get("team"))
        team = team.get("id") or user.get("team_id") or ""
        return cls(str(team)[:32], str(user.get("id", ""))[:32],
                   str(user.get("username") or user.get("name") or "")[:150])

    def label(self) -> str:
        return f"slack {self.name or self.user_id} ({self.team_id})"


def as_dict(value) -> dict:
    """A payload's object, or {} where Slack sent something else (or nothing)."""
    return value if isinstance(value, dict) else {}


def user_for(slack_user: SlackUser) -> User | None:
    """The active Breakglass user this Slack user is, or None (link, then confirmed email).
    Raises slack.SlackUnavailable when Slack cannot be asked for the email."""
    link = (SlackLink.objects.select_related("user")
            .filter(team_id=slack_user.team_id, slack_user_id=slack_user.user_id).first())
    if link is not None:
        return link.user if link.user.is_active else None
    email = slack.confirmed_email(slack_user.user_id)
    if not email:
        return None
    matches = list(User.objects.filter(email__iexact=email, is_active=True)[:2])
    return matches[0] if len(matches) == 1 else None


def link_token(slack_user: SlackUser) -> str:
    return signing.dumps({"t": slack_user.team_id, "u": slack_user.user_id,
                          "n": slack_user.name}, salt=LINK_SALT, compress=True)


def read_link_token(token: str) -> SlackUser:
    try:
        payload = signing.loads(token, salt=LINK_SALT, max_age=LINK_MAX_AGE_SECONDS)
    except signing.SignatureExpired as expired:
        raise LinkRefused("This link has expired (links work for 10 minutes): click a button "
                          "in Slack again for a new one.") from expired
    except signing.BadSignature as forged:
        raise LinkRefused("This link is not valid.") from forged
    if not (isinstance(payload, dict) and all(isinstance(payload.get(key), str) and payload[key]
                                              for key in ("t", "u"))):
        raise LinkRefused("This link is not valid.")
    return SlackUser(payload["t"], payload["u"], str(payload.get("n", "")))


def link_slack_account(slack_user: SlackUser, *, actor: User,
                       request: HttpRequest | None = None) -> SlackLink:
    """Make `slack_user` act as `actor` in Slack from now on (replacing the actor's earlier
    link). A Slack user already linked to someone else is refused: they unlink first."""
    with transaction.atomic():
        taken = (SlackLink.objects.select_for_update()
                 .filter(team_id=slack_user.team_id, slack_user_id=slack_user.user_id).first())
        if taken is not None and taken.user_id == actor.pk:
            return taken
        if taken is not None:
            raise LinkRefused("This Slack account is linked to another Breakglass user: they "
                              "unlink it from their account page first.")
        previous = SlackLink.objects.select_for_update().filter(user=actor).first()
        data = {"action": "linked", "team": slack_user.team_id, "slack_user": slack_user.user_id,
                **({"replaced": previous.slack_user_id} if previous else {})}
        if previous is not None:
            previous.delete()
        try:
            link = SlackLink.objects.create(
                user=actor, team_id=slack_user.team_id, slack_user_id=slack_user.user_id,
                slack_name=slack_user.name, linked_at=timezone.now())
        except IntegrityError as clash:
            raise LinkRefused("This Slack account was just linked to someone else.") from clash
        record(EventKind.SLACK_ACCOUNT_LINKED, actor=actor, target=actor, request=request,
               data=data)
    return link


@transaction.atomic
def unlink_slack_account(*, actor: User, request: HttpRequest | None = None) -> bool:
    """Forget the actor's Slack link; False when there was none."""
    link = SlackLink.objects.select_for_update().filter(user=actor).first()
    if link is None:
        return False
    link.delete()
    record(EventKind.SLACK_ACCOUNT_LINKED, actor=actor, target=actor, request=request,
           data={"action": "unlinked", "team": link.team_id, "slack_user": link.slack_user_id})
    return True


def refuse_interaction(why: str, *, request: HttpRequest, slack_user: SlackUser | None = None,
                       data: dict | None = None) -> None:
    """Audit a refused interaction in its own transaction (nothing else is written)."""
    actor = Anonymous(slack_user.label() if slack_user else "slack")
    with transaction.atomic():
        record(EventKind.SLACK_INTERACTION_REFUSED, actor=actor, outcome=Outcome.DENIED,
               reason=why, request=request, data=data or {})
