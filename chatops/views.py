"""Slack's door in: the interaction endpoint (public, signed by Slack) and the account-link
pages (signed-in, verified users)."""

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.client_ip import client_ip
from chatops import interactions, services, slack
from chatops.services import LinkRefused, SlackUser

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# A flood of forged calls must not fill the audit trail: one address leaves at most this many
# refusal events a minute (the calls themselves are all refused).
REFUSALS_AUDITED_PER_MINUTE = 10


@csrf_exempt
@require_POST
def interactions_endpoint(request: HttpRequest) -> HttpResponse:
    """Slack's Interactivity Request URL: the signature is checked on the raw body before
    anything in it is read."""
    if not slack.configured():
        return HttpResponse("Slack is not set up here.", status=404, content_type="text/plain")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = MAX_BODY_BYTES + 1
    if length > MAX_BODY_BYTES:
        return HttpResponse("Too large.", status=413, content_type="text/plain")
    request.audit_via = "slack"
    problem = slack.signature_problem(request.body,
                                      request.headers.get("X-Slack-Request-Timestamp"),
                                      request.headers.get("X-Slack-Signature"))
    if problem:
        _refuse(request, problem)
        return HttpResponse("Not signed by Slack.", status=401, content_type="text/plain")
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return HttpResponse("No payload.", status=400, content_type="text/plain")
    team = SlackUser.from_payload(payload).team_id
    if settings.SLACK_TEAM_ID and team != settings.SLACK_TEAM_ID:
        _refuse(request, "another Slack workspace", {"team": team})
        return HttpResponse("Not this workspace.", status=403, content_type="text/plain")
    return interactions.handle(payload, request)


def _refuse(request: HttpRequest, why: str, data: dict | None = None) -> None:
    key = f"slack-refusals:{client_ip(request)}"
    cache.add(key, 0, 60)
    count = cache.incr(key)
    if count > REFUSALS_AUDITED_PER_MINUTE:
        return
    if count == REFUSALS_AUDITED_PER_MINUTE:
        data = {**(data or {}), "throttled": "further refusals from this address this minute "
                                             "are not recorded"}
    services.refuse_interaction(why, request=request, data=data)


@never_cache
@require_http_methods(["GET", "POST"])
def link(request: HttpRequest, token: str) -> HttpResponse:
    """The link Slack showed one Slack user: a confirmation page, then a POST links them."""
    try:
        slack_user = services.read_link_token(token)
        if request.method == "POST":
            services.link_slack_account(slack_user, actor=request.user, request=request)
            messages.success(request, f"Slack account {slack_user.name or slack_user.user_id} "
                                      "linked: its clicks in Slack now act as you.")
            return redirect("accounts:security")
    except LinkRefused as refused:
        return render(request, "chatops/link_refused.html", {"why": str(refused)},
                      status=refused.status)
    return render(request, "chatops/link_confirm.html", {"slack_user": slack_user})


@never_cache
@require_POST
def unlink(request: HttpRequest) -> HttpResponse:
    if services.unlink_slack_account(actor=request.user, request=request):
        messages.success(request, "Slack account unlinked.")
    return redirect("accounts:security")
