"""The recovery part of the JSON API, mounted under /api/v1/recovery by api/main.py:
the offline bundle, for the one application each policy authorizes."""

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from ninja import Router

from api.auth import require
from api.errors import Problem
from api.types import Text
from audit.catalogue import EventKind, Outcome
from audit.services import record
from breakglass.models import Scope
from recovery import services
from recovery.models import RecoveryPolicy

router = Router(tags=["recovery"])


@router.get("/{slug}/bundle", url_name="recovery_bundle",
            summary="The policy's signed offline recovery bundle (its own application only)",
            response={200: dict})
def recovery_bundle(request: HttpRequest, slug: Text):
    application = require(request, Scope.RECOVERY_BUNDLE)
    policy = RecoveryPolicy.objects.filter(slug=slug).first()
    if policy is None:
        raise Problem("not-found", f"No recovery policy with slug {slug!r}.")
    if policy.application_id != application.pk:
        with transaction.atomic():
            record(EventKind.BUNDLE_FETCHED, actor=application, target=policy,
                   outcome=Outcome.DENIED, request=request,
                   reason="not the policy's authorized application")
        raise Problem("forbidden", "Only the policy's authorized application fetches its bundle.")
    if not policy.enabled:
        with transaction.atomic():
            record(EventKind.BUNDLE_FETCHED, actor=application, target=policy,
                   outcome=Outcome.DENIED, request=request, reason="the policy is disabled")
        raise Problem("forbidden", "This recovery policy is disabled: it hands out nothing.")
    bundle = services.current_bundle(policy)
    if bundle is None:
        raise Problem("conflict", "No bundle yet: every authorized user must enrol first.")
    if not services.bundle_is_current(policy, bundle):
        # Never hand out shares of people the policy no longer names.
        raise Problem("conflict", "The bundle is out of date with the policy's users; it is "
                             "re-issued once every authorized user has enrolled.")
    with transaction.atomic():
        record(EventKind.BUNDLE_FETCHED, actor=application, target=policy, request=request,
               data={"version": bundle.version, "fingerprint": bundle.fingerprint})
    response = HttpResponse(services.bundle_bytes(bundle), content_type="application/json")
    response["Content-Disposition"] = (
        f'attachment; filename="recovery-{policy.slug}-v{bundle.version}.json"')
    response["Cache-Control"] = "no-store"
    return response
