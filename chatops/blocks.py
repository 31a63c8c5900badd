"""Block Kit for Breakglass's Slack messages: an access request with Approve / Deny, a break
glass with "Not us", the Deny modal and the offer to link an account. Each message is drawn
from the object's state, so redrawing it after a click shows the outcome."""

from datetime import datetime

from django.conf import settings
from django.urls import reverse

from audit.reasons import MAX_REASON_LENGTH
from breakglass.models import AccessRequest, Grant
from risk.durations import minutes_words

APPROVE = "request.approve"
DENY = "request.deny"
NOT_US = "grant.not_us"
DENY_MODAL = "request.deny"
REASON_BLOCK = REASON_INPUT = "reason"
MAX_TEXT = 2900  # a section's text may hold 3,000 characters


def escaped(text: str) -> str:
    """User text as Slack shows it literally: only &, < and > are special in mrkdwn."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def site_link(name: str, *args) -> str:
    return settings.SITE_URL.rstrip("/") + reverse(name, args=args)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def button(label: str, action_id: str, value: str, style: str = "", confirm=None) -> dict:
    element = {"type": "button", "text": {"type": "plain_text", "text": label},
               "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def utc(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


# --- Access requests --------------------------------------------------------------------------

def request_message(access_request: AccessRequest) -> tuple[list, str]:
    """(blocks, fallback text) for a request as it stands: buttons while it waits."""
    who, group = access_request.requester.get_username(), access_request.group.name
    asks = "more time on" if access_request.kind == AccessRequest.Kind.EXTENSION else "access to"
    text = f"{who} asks for {asks} {group} for {minutes_words(access_request.minutes)}"
    lines = [f"*{escaped(who)}* asks for {asks} *{escaped(group)}* for "
             f"{minutes_words(access_request.minutes)}."]
    if access_request.reason:
        lines.append(f"Reason: {escaped(access_request.reason)}")
    if access_request.incident:
        lines.append(f"Incident: {escaped(access_request.incident)}")
    link = site_link("breakglass:request-detail", access_request.pk)
    blocks = [section("\n".join(lines)),
              context(f"{escaped(request_status(access_request))} · <{link}|Open the request>")]
    if access_request.effective_status() == AccessRequest.Status.PENDING:
        value = str(access_request.pk)
        blocks.append({"type": "actions", "block_id": "request", "elements": [
            button("Approve", APPROVE, value, "primary"),
            button("Deny", DENY, value, "danger"),
        ]})
    return blocks, text


def request_status(access_request: AccessRequest) -> str:
    """"Waiting for 2 approvals", "Approved by alice (1 of 2)", "Denied by bob: reason"."""
    status = access_request.effective_status()
    approvers = [approval.approver.get_username() for approval in
                 access_request.approvals.select_related("approver").order_by("created_at")]
    needed = access_request.approvals_required
    if status == AccessRequest.Status.DENIED:
        by = access_request.decided_by.get_username() if access_request.decided_by else "system"
        return f"Denied by {by}: {access_request.comment}"
    if status == AccessRequest.Status.APPROVED:
        if access_request.auto_rule:
            return f"Approved at once: {access_request.auto_rule}"
        until = utc(Grant.objects.get(pk=access_request.grant_id).expires_at)
        return f"Approved by {' and '.join(approvers)} ({len(approvers)} of {needed}): " \
               f"access until {until}"
    if status != AccessRequest.Status.PENDING:
        return f"This request is {status}."
    if approvers:
        return f"Approved by {' and '.join(approvers)} ({len(approvers)} of {needed})"
    return f"Waiting for {needed} approval{'s' if needed != 1 else ''}; " \
           f"open until {utc(access_request.expires_at)}"


def deny_modal(access_request: AccessRequest, metadata: str) -> dict:
    """The modal asking an owner why they deny; `metadata` carries the request and the message
    to redraw back to us with the submission."""
    who = access_request.requester.get_username()
    return {
        "type": "modal", "callback_id": DENY_MODAL, "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Deny the request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"*{escaped(who)}* asked for access to "
                    f"*{escaped(access_request.group.name)}*. {escaped(who)} is told why."),
            {"type": "input", "block_id": REASON_BLOCK,
             "label": {"type": "plain_text", "text": "Why?"},
             "element": {"type": "plain_text_input", "action_id": REASON_INPUT,
                         "multiline": True, "max_length": MAX_REASON_LENGTH}},
        ],
    }


# --- Break glass ------------------------------------------------------------------------------

def grant_message(grant: Grant, *, outcome: str = "") -> tuple[list, str]:
    """(blocks, fallback text) for a break-glass use: "Not us" until someone answers it."""
    holder, group = grant.user.get_username(), grant.group.name
    drill = " (a drill)" if grant.is_drill else ""
    text = f"Break glass{drill}: {holder} opened {group} until {utc(grant.expires_at)}"
    lines = [f":rotating_light: *Break glass{drill}*: *{escaped(holder)}* opened "
             f"*{escaped(group)}* until {utc(grant.expires_at)}."]
    if grant.reason:
        lines.append(f"Reason: {escaped(grant.reason)}")
    if grant.incident:
        lines.append(f"Incident: {escaped(grant.incident)}")
    link = site_link("breakglass:grant-timeline", grant.pk)
    blocks = [section("\n".join(lines)), context(f"<{link}|What happened since>")]
    if outcome:
        blocks.append(section(escaped(outcome)))
    else:
        blocks.append({"type": "actions", "block_id": "grant", "elements": [button(
            "Not us — revoke and lock", NOT_US, str(grant.pk), "danger", confirm={
                "title": {"type": "plain_text", "text": "Not us?"},
                "text": {"type": "mrkdwn", "text": f"This ends the access at once and locks "
                                                   f"{escaped(holder)}'s account until an "
                                                   f"administrator reopens it after review."},
                "confirm": {"type": "plain_text", "text": "Revoke and lock"},
                "deny": {"type": "plain_text", "text": "Cancel"},
                "style": "danger"})]})
    return blocks, text


def aborted_outcome(grant: Grant, actor, ended: bool) -> str:
    holder = grant.user.get_username()
    if ended:
        return f"Not us — access ended and {holder} locked by {actor.get_username()}"
    return f"Not us — {holder} locked by {actor.get_username()} (the access had already ended)"


# --- Replies to one person --------------------------------------------------------------------

def refusal(message: str, link: str = "") -> tuple[list, str]:
    text = f"{message} {link}".strip()
    blocks = [section(escaped(message))]
    if link:
        blocks.append(context(f"<{link}|Open Breakglass>"))
    return blocks, text


def link_offer(link: str) -> tuple[list, str]:
    text = ("Breakglass does not know who you are in Slack yet. Link your Slack account "
            f"(the link works for 10 minutes, for you only): {link}")
    return [section("Breakglass does not know who you are in Slack yet."),
            section(f"<{link}|Link your Slack account> (the link works for 10 minutes and only "
                    "for you: do not share it), then click again.")], text
