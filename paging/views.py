"""The PagerDuty and Opsgenie webhook endpoints. No session and no CSRF token: each checks
the sender's signature or token before reading the body (paging/services.py)."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from paging.models import Source
from paging.services import (
    Receipt,
    Refused,
    find_subscription,
    read_opsgenie_delivery,
    read_pagerduty_delivery,
    receive_event,
    record_refusal,
    throttled,
)
from risk.incidents import IncidentError


@csrf_exempt
def pagerduty(request: HttpRequest, subscription: str) -> JsonResponse:
    signature = request.headers.get("X-PagerDuty-Signature", "")
    return _take(request, Source.PAGERDUTY, subscription,
                 lambda found, body: read_pagerduty_delivery(found, body, signature))


@csrf_exempt
def opsgenie(request: HttpRequest, subscription: str) -> JsonResponse:
    authorization = request.headers.get("Authorization", "")
    return _take(request, Source.OPSGENIE, subscription,
                 lambda found, body: read_opsgenie_delivery(found, body, authorization))


def _take(request: HttpRequest, source: str, slug: str, read) -> JsonResponse:
    if request.method != "POST":
        response = JsonResponse({"detail": "Only POST is allowed here."}, status=405)
        response["Allow"] = "POST"
        return response
    if throttled(request):
        return JsonResponse({"detail": "Too many refused deliveries from this address; "
                                       "wait a minute."}, status=429)
    subscription = None
    try:
        body = _body(request)
        subscription = find_subscription(source, slug)
        receipt = receive_event(subscription, read(subscription, body), request=request)
    except Refused as refused:
        record_refusal(source, refused.reason, request=request, slug=slug,
                       subscription=subscription)
        return JsonResponse({"detail": refused.detail}, status=refused.status)
    except IncidentError as invalid:
        record_refusal(source, "invalid", request=request, slug=slug, subscription=subscription,
                       data={"field": invalid.field})
        return JsonResponse({"detail": f"{invalid.field}: {invalid}"}, status=400)
    # 202 for an event Breakglass does not act on, its copies included.
    return JsonResponse(_answer(receipt), status=200 if receipt.event.handled else 202)


def _body(request: HttpRequest) -> bytes:
    limit = settings.PAGING_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Refused("bad content length", 400, "The Content-Length is not a number.") from None
    too_large = Refused("too large", 413, f"The body is over {limit} bytes.")
    if declared > limit:
        raise too_large
    body = request.body
    if len(body) > limit:
        raise too_large
    return body


def _answer(receipt: Receipt) -> dict:
    answer = {"result": receipt.result, "event_type": receipt.event.event_type}
    if receipt.change is not None:
        incident = receipt.change.incident
        answer.update(incident=incident.external_id, status=incident.status,
                      severity=incident.severity, changed=receipt.change.changed,
                      grants_ended=receipt.change.grants_ended)
    return answer
