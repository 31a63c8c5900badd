"""What a click in Slack does: Approve, Deny (a modal asks why) and "Not us" call the same
services as the pages, as the Breakglass user the Slack user is, with the interaction's
request (marked `audit_via = "slack"`). A refusal is the service's own message, shown to the
clicker only; an outcome redraws the message for everyone.

Nothing here needs a fresh second factor: the pages ask none for these three actions. An
action that one day needs it must refuse here and link to its page."""

import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.models import User
from audit.catalogue import EventKind, Outcome
from audit.services import record
from breakglass.models import AccessRequest, Grant
from breakglass.services import grants
from breakglass.services import requests as access_requests
from breakglass.services.errors import GrantError, NotAllowed
from chatops import blocks, services, slack
from chatops.services import SlackUser, as_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Click:
    slack_user: SlackUser
    channel: str
    message_ts: str
    trigger_id: str
    object_id: int


def handle(payload: dict, request: HttpRequest) -> HttpResponse:
    kind = payload.get("type")
    if kind == "block_actions":
        return block_actions(payload, request)
    view = as_dict(payload.get("view"))
    if kind == "view_submission" and view.get("callback_id") == blocks.DENY_MODAL:
        return deny_submitted(payload, view, request)
    return HttpResponse()  # other interactions (a link button, a closed modal): nothing to do


def block_actions(payload: dict, request: HttpRequest) -> HttpResponse:
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else {}
    handler = HANDLERS.get(str(action.get("action_id"))) if isinstance(action, dict) else None
    object_id = _id(action.get("value")) if handler else None
    if object_id is None:
        return HttpResponse()
    container = as_dict(payload.get("container"))
    channel = container.get("channel_id") or as_dict(payload.get("channel")).get("id") or ""
    click = Click(SlackUser.from_payload(payload), str(channel), str(
        container.get("message_ts") or ""), str(payload.get("trigger_id") or ""), object_id)
    if not (click.slack_user.user_id and click.slack_user.team_id):
        return HttpResponse("No user.", status=400, content_type="text/plain")
    actor = identify(click, request)
    if actor is not None:
        handler(click, actor, request)
    return HttpResponse()


def _id(value) -> int | None:
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None


def identify(click: Click, request: HttpRequest) -> User | None:
    """The Breakglass user behind the click, or None after telling them how to link."""
    try:
        actor = services.user_for(click.slack_user)
    except slack.SlackUnavailable as exc:
        logger.warning("Slack could not say who clicked: %s", exc)
        reply(click, "Breakglass could not ask Slack who you are: try again, or use the page.")
        return None
    if actor is None:
        services.refuse_interaction("a Slack user linked to no one", request=request,
                                    slack_user=click.slack_user)
        link = blocks.site_link("chatops:link", services.link_token(click.slack_user))
        tell(click, *blocks.link_offer(link))
    return actor


def reply(click: Click, message: str, link: str = "") -> None:
    tell(click, *blocks.refusal(message, link))


def tell(click: Click, message: list, text: str) -> None:
    try:
        slack.tell_privately(click.channel, click.slack_user.user_id, message, text)
    except slack.SlackUnavailable as exc:
        logger.warning("could not answer a Slack click: %s", exc)


def redraw(channel: str, ts: str, message: tuple[list, str]) -> None:
    """Show the outcome on the message itself; the change is made and audited either way."""
    if not (channel and ts):
        return
    try:
        slack.update_message(channel, ts, *message)
    except slack.SlackUnavailable as exc:
        logger.warning("could not update the Slack message: %s", exc)


def _request(actor: User, pk: int) -> AccessRequest | None:
    """As the request page finds it: only requests the actor may see."""
    return (access_requests.visible_requests(actor).select_related("group", "requester")
            .filter(pk=pk).first())


# --- The buttons ------------------------------------------------------------------------------

def approve(click: Click, actor: User, request: HttpRequest) -> None:
    access_request = _request(actor, click.object_id)
    if access_request is None:
        return reply(click, "No such request.")
    try:
        access_requests.approve_request(access_request, actor=actor, request=request)
    except GrantError as error:
        return reply(click, str(error))
    access_request.refresh_from_db()
    redraw(click.channel, click.message_ts, blocks.request_message(access_request))


def deny(click: Click, actor: User, request: HttpRequest) -> None:
    """The reason is required: a modal asks for it, and its submission denies."""
    access_request = _request(actor, click.object_id)
    if access_request is None:
        return reply(click, "No such request.")
    metadata = json.dumps({"request": access_request.pk, "channel": click.channel,
                           "ts": click.message_ts})
    try:
        slack.open_modal(click.trigger_id, blocks.deny_modal(access_request, metadata))
    except slack.SlackUnavailable as exc:
        logger.warning("could not open the Deny modal: %s", exc)
        reply(click, "Slack did not open the form: deny on the page instead.",
              blocks.site_link("breakglass:request-detail", access_request.pk))


def not_us(click: Click, actor: User, request: HttpRequest) -> None:
    """End a break-glass grant and lock its holder (the alert's abort link, as a button)."""
    grant = Grant.objects.select_related("user", "group").filter(pk=click.object_id).first()
    if grant is None:
        return reply(click, "No such grant.")
    if not grant.gives_access() and not grant.user.is_active:
        return reply(click, f"Already done: this access has ended and "
                            f"{grant.user.get_username()} is locked.")
    try:
        ended = grants.abort_grant(grant, actor=actor, request=request)
    except NotAllowed as refused:
        # As the abort link's page does: a refused abort leaves a trace.
        with transaction.atomic():
            record(EventKind.ABORT_REFUSED, actor=actor, target=grant, request=request,
                   outcome=Outcome.DENIED, reason=str(refused))
        return reply(click, str(refused))
    grant = Grant.objects.select_related("user", "group").get(pk=grant.pk)
    redraw(click.channel, click.message_ts,
           blocks.grant_message(grant, outcome=blocks.aborted_outcome(grant, actor, ended)))


HANDLERS = {blocks.APPROVE: approve, blocks.DENY: deny, blocks.NOT_US: not_us}


def deny_submitted(payload: dict, view: dict, request: HttpRequest) -> HttpResponse:
    """The Deny modal's submission: deny with the reason, or show why not in the modal."""
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
        values = view["state"]["values"][blocks.REASON_BLOCK][blocks.REASON_INPUT]
        reason, pk = values.get("value") or "", _id(metadata.get("request"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return modal_error("This form is not valid: click Deny again.")
    slack_user = SlackUser.from_payload(payload)
    if not (slack_user.user_id and slack_user.team_id):
        return HttpResponse("No user.", status=400, content_type="text/plain")
    try:
        actor = services.user_for(slack_user)
    except slack.SlackUnavailable:
        return modal_error("Breakglass could not ask Slack who you are: try again.")
    if actor is None:
        services.refuse_interaction("a Slack user linked to no one", request=request,
                                    slack_user=slack_user)
        return modal_error("Breakglass does not know who you are: click Deny again for a link.")
    access_request = _request(actor, pk) if pk else None
    if access_request is None:
        return modal_error("No such request.")
    try:
        access_requests.deny_request(access_request, actor=actor, comment=str(reason),
                                     request=request)
    except GrantError as error:
        return modal_error(str(error))
    access_request.refresh_from_db()
    redraw(str(metadata.get("channel") or ""), str(metadata.get("ts") or ""),
           blocks.request_message(access_request))
    return HttpResponse()  # an empty 200 closes the modal


def modal_error(message: str) -> JsonResponse:
    return JsonResponse({"response_action": "errors", "errors": {blocks.REASON_BLOCK: message}})
