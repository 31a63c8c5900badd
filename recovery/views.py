"""Thin adapters over recovery/services.py. Every page is for a policy's authorized users
(anyone else gets 404 for its policies and attempts); the kit page also for administrators."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from recovery import services
from recovery.forms import ConfirmForm, EnrolForm, StartAttemptForm
from recovery.models import RecoveryAttempt, RecoveryEnrolment, RecoveryPolicy


def _my_policy(request, slug: str) -> RecoveryPolicy:
    policy = services.policies_of(request.user).filter(slug=slug).first()
    if policy is None:
        raise Http404("No such policy.")
    return policy


def _my_attempt(request, attempt_id: int) -> RecoveryAttempt:
    attempt = (RecoveryAttempt.objects.select_related("policy", "initiator")
               .filter(pk=attempt_id).first())
    if attempt is None or not attempt.policy.is_authorized(request.user):
        raise Http404("No such attempt.")
    return attempt


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    policies = list(services.policies_of(request.user).prefetch_related("attempts"))
    for policy in policies:
        policy.open_attempt = policy.attempts.filter(
            status=RecoveryAttempt.Status.OPEN, expires_at__gt=timezone.now()).first()
        policy.start_form = StartAttemptForm(policy)
    context = {"policies": policies,
               "enrolled": RecoveryEnrolment.objects.filter(user=request.user).first()}
    return render(request, "recovery/overview.html", context)


@sensitive_post_parameters("passphrase", "again", "code")
@never_cache
def enrol(request: HttpRequest) -> HttpResponse:
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.check_fresh_code(request.user, form.cleaned_data["code"], request=request)
            services.enrol(request.user, form.cleaned_data["passphrase"], request=request)
        except services.RecoveryError as error:
            form.add_error("passphrase" if isinstance(error, services.InvalidInput) else "code",
                           str(error))
        else:
            messages.success(request, "Recovery passphrase set. Your shares were sealed again.")
            return redirect("recovery:overview")
    status = 400 if form.errors else 200
    return render(request, "recovery/enrol.html", {"form": form}, status=status)


@require_POST
def start(request: HttpRequest, slug: str) -> HttpResponse:
    policy = _my_policy(request, slug)
    form = StartAttemptForm(policy, request.POST)
    if form.is_valid():
        try:
            attempt = services.start_attempt(policy, actor=request.user,
                                             request=request, **form.cleaned_data)
        except services.RecoveryError as error:
            messages.error(request, str(error))
            return redirect("recovery:overview")
        return redirect("recovery:attempt", attempt_id=attempt.pk)
    messages.error(request, "Give a reason and a fresh one-time code"
                   + (", and choose the incident." if "incident" in form.errors else "."))
    return redirect("recovery:overview")


@never_cache
@require_GET
def attempt(request: HttpRequest, attempt_id: int) -> HttpResponse:
    return _render_attempt(request, _my_attempt(request, attempt_id))


def _render_attempt(request, attempt: RecoveryAttempt, *, form=None, error: str = "",
                    status: int = 200, credentials=None) -> HttpResponse:
    now = timezone.now()
    confirmations = list(attempt.confirmations.select_related("user"))
    context = {
        "attempt": attempt,
        "effective_status": attempt.effective_status(now),
        "status_label": RecoveryAttempt.Status(attempt.effective_status(now)).label,
        "confirmations": confirmations,
        "confirmed": any(item.user_id == request.user.pk for item in confirmations),
        "form": form or ConfirmForm(),
        "credentials": credentials,
        "may_reveal": services.may_reveal(attempt, request.user, now),
        "error": error,
    }
    response = render(request, "recovery/attempt.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def confirm(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _my_attempt(request, attempt_id)
    form = ConfirmForm(request.POST)
    if not form.is_valid():
        return _render_attempt(request, attempt, form=form, status=400)
    try:
        services.confirm(attempt, actor=request.user, code=form.cleaned_data["code"],
                         request=request)
    except services.RecoveryError as error:
        attempt.refresh_from_db()
        return _render_attempt(request, attempt, form=ConfirmForm(), error=str(error),
                               status=error.status)
    return redirect("recovery:attempt", attempt_id=attempt.pk)


@require_POST
@never_cache
def reveal(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """Credentials are shown in answer to a POST (a state change: audited, rotation due),
    never to a GET another site could trigger with a link."""
    attempt = _my_attempt(request, attempt_id)
    try:
        credentials = services.reveal(attempt, actor=request.user, request=request)
    except services.RecoveryError as error:
        return _render_attempt(request, attempt, error=str(error), status=error.status)
    return _render_attempt(request, attempt, credentials=credentials)


@require_POST
def cancel(request: HttpRequest, attempt_id: int) -> HttpResponse:
    attempt = _my_attempt(request, attempt_id)
    try:
        services.cancel(attempt, actor=request.user, request=request)
    except services.RecoveryError as error:
        return _render_attempt(request, attempt, error=str(error), status=error.status)
    messages.success(request, "Attempt cancelled.")
    return redirect("recovery:overview")


@require_GET
def kit(request: HttpRequest, slug: str) -> HttpResponse:
    policy = RecoveryPolicy.objects.filter(slug=slug).first()
    if policy is None or not (policy.is_authorized(request.user) or request.user.is_superuser):
        raise Http404("No such policy.")
    if not request.user.is_active:
        raise PermissionDenied
    bundle = services.current_bundle(policy)
    context = {"policy": policy, "bundle": bundle,
               "holders": services.holders(policy),
               "signing_fingerprint": services.signing_fingerprint(policy)}
    return render(request, "recovery/kit.html", context)
