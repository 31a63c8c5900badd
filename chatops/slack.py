"""The one place that talks to Slack (slack-sdk): request signatures, the Web API calls
Breakglass makes, and what their failures mean for the alert relay."""

import logging
import time

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from audit.outbox import DeliveryError, max_provider_timeout

logger = logging.getLogger(__name__)

# Slack's own replay window for signed requests.
SIGNATURE_WINDOW_SECONDS = 5 * 60
# Slack shows an error to the clicker after 3 s; calls made while answering a click are short.
CLICK_TIMEOUT_SECONDS = 2
# Slack's errors that a later try may not repeat; any other refusal is final.
RETRYABLE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                    "request_timeout"}


class SlackUnavailable(Exception):
    """A Web API call failed; the message says how, never with the token."""


def configured() -> bool:
    return bool(settings.SLACK_BOT_TOKEN and settings.SLACK_SIGNING_SECRET)


def signature_problem(body: bytes, timestamp: str | None, signature: str | None) -> str:
    """Why a request does not come from Slack ("" when it does): a missing, stale or wrong
    signature (v0 HMAC-SHA256 of "v0:timestamp:body" with the signing secret)."""
    if not timestamp or not signature:
        return "missing signature"
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "bad timestamp"
    if age > SIGNATURE_WINDOW_SECONDS:
        return "stale timestamp"
    verifier = SignatureVerifier(settings.SLACK_SIGNING_SECRET)
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return "bad signature"
    return ""


def client(timeout: float) -> WebClient:
    # No SDK retries: the relay retries with backoff, and a click must answer in time.
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL,
                     timeout=int(timeout), retry_handlers=[])


def relay_timeout() -> float:
    return min(10, max_provider_timeout())


def post_message(channel: str, blocks: list, text: str) -> str:
    """Post an alert for the relay: returns "<channel>:<ts>" (the message's address for later
    updates), or raises DeliveryError, retryable when Slack may accept it later."""
    response = _relay_call("chat_postMessage", channel=channel, blocks=blocks, text=text)
    return f"{response['channel']}:{response['ts']}"


def update_posted(channel: str, ts: str, blocks: list, text: str) -> str:
    """Redraw a posted message for the relay (as post_message)."""
    _relay_call("chat_update", channel=channel, ts=ts, blocks=blocks, text=text)
    return f"{channel}:{ts}"


def _relay_call(method: str, **arguments) -> dict:
    try:
        return getattr(client(relay_timeout()), method)(**arguments).data
    except SlackApiError as exc:
        raise _delivery_error(exc) from exc
    except OSError as exc:  # refused connections, DNS failures and timeouts
        raise DeliveryError(f"slack unreachable: {type(exc).__name__}") from exc


def _delivery_error(exc: SlackApiError) -> DeliveryError:
    status = exc.response.status_code
    error = _error_code(exc)
    if status == 429:
        headers = {name.lower(): value for name, value in exc.response.headers.items()}
        return DeliveryError(f"slack rate limit (Retry-After {headers.get('retry-after', '?')} s)")
    retryable = status >= 500 or error in RETRYABLE_ERRORS
    return DeliveryError(f"slack answered {status} {error}".strip(), retryable=retryable)


def _error_code(exc: SlackApiError) -> str:
    """Slack's error code ("channel_not_found"); an HTML error page becomes a short excerpt."""
    data = exc.response.data
    return str(data.get("error", ""))[:80] if isinstance(data, dict) else ""


def _call(method: str, **arguments) -> dict:
    try:
        return getattr(client(CLICK_TIMEOUT_SECONDS), method)(**arguments).data
    except SlackApiError as exc:
        raise SlackUnavailable(f"{method}: {exc.response.status_code} {_error_code(exc)}") from exc
    except OSError as exc:
        raise SlackUnavailable(f"{method}: {type(exc).__name__}") from exc


def update_message(channel: str, ts: str, blocks: list, text: str) -> None:
    _call("chat_update", channel=channel, ts=ts, blocks=blocks, text=text)


def tell_privately(channel: str, slack_user_id: str, blocks: list, text: str) -> None:
    """A message only `slack_user_id` sees, in the channel they clicked in."""
    _call("chat_postEphemeral", channel=channel, user=slack_user_id, blocks=blocks, text=text)


def open_modal(trigger_id: str, view: dict) -> None:
    _call("views_open", trigger_id=trigger_id, view=view)


def confirmed_email(slack_user_id: str) -> str:
    """The Slack user's email address when Slack says they confirmed it, else "" (users.info,
    scope users:read.email)."""
    try:
        user = client(CLICK_TIMEOUT_SECONDS).users_info(user=slack_user_id).get("user") or {}
    except SlackApiError as exc:
        if exc.response.status_code >= 500 or exc.response.status_code == 429:
            raise SlackUnavailable(f"users.info: {exc.response.status_code}") from exc
        # Slack's answer is final (user_not_found, missing_scope): no email to go by.
        logger.warning("users.info refused: %s", _error_code(exc))
        return ""
    except OSError as exc:
        raise SlackUnavailable(f"users.info: {type(exc).__name__}") from exc
    if user.get("is_email_confirmed") is not True or user.get("deleted"):
        return ""
    email = (user.get("profile") or {}).get("email") or ""
    return email.strip() if isinstance(email, str) else ""
