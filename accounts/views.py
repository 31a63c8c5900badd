import segno
from django.contrib import messages
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services, sso
from accounts.forms import (
    AuthenticatorCodeForm,
    ChangeProofForm,
    CodeForm,
    ReplaceAuthenticatorForm,
    SignInForm,
)
from accounts.models import BackupCodeDevice, TOTPDevice
from audit.alerts import alert_security_reviewers
from audit.catalogue import EventKind, Outcome
from audit.services import record


def home(request: HttpRequest) -> HttpResponse:
    return redirect("breakglass:catalog")


class SignInView(LoginView):
    """The local login: password, then a second factor. With single sign-on configured it is
    the break-glass login for the day the provider is down: only accounts marked "may use
    the local login" may use it, and each use is audited and alerts the reviewers at once."""

    template_name = "accounts/login.html"
    form_class = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        if not sso.configured():
            return super().form_valid(form)
        user = form.get_user()
        if not user.may_use_local_login:
            with transaction.atomic():
                record(EventKind.LOCAL_LOGIN_REFUSED, actor=user, target=user,
                       request=self.request, outcome=Outcome.DENIED)
            # The same words as a wrong password: the refusal must not confirm that the
            # password was right.
            form.add_error(None, form.error_messages["invalid_login"] % {
                "username": form.username_field.verbose_name})
            return self.form_invalid(form)
        response = super().form_valid(form)
        with transaction.atomic():
            event = record(EventKind.LOCAL_LOGIN_USED, actor=user, target=user,
                           request=self.request,
                           reason="The local login was used while single sign-on is on.")
            alert_security_reviewers(event)
        return response

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "sso": sso.configured()}


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("home")


def _complete_verification(request: HttpRequest, device) -> None:
    services.verified_by(request, device)


def _render_backup_codes(request: HttpRequest, codes: list[str], next_url: str) -> HttpResponse:
    response = render(
        request, "accounts/backup_codes.html", {"codes": codes, "next_url": next_url}
    )
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrol (or replace) the authenticator app. Only a user who has never enrolled may do this
    with a password alone; everyone else must first verify with a current second factor, then
    prove the password and a fresh factor again on this form (services.check_change_proof)."""
    user = request.user
    replacing = services.has_confirmed_device(user)
    if replacing and not user.is_verified():
        return redirect(f"{reverse('accounts:verify')}?next={reverse('accounts:two-factor')}")
    device = services.start_totp_enrolment(user)
    form_class = ReplaceAuthenticatorForm if replacing else AuthenticatorCodeForm
    form = form_class(request.POST or None)
    status = 400 if form.is_bound else 200
    if form.is_bound and form.is_valid():
        try:
            confirmed = _confirm_authenticator(request, device, form)
        except ChangeRefused as refused:
            form.add_error(refused.field, str(refused))
            status = refused.status
        else:
            if confirmed is not None:
                return confirmed
            form.add_error(
                "code",
                "That code did not match. Check that your phone's clock is right and enter "
                "the newest code.",
            )
    qr = segno.make(device.config_url, error="m")
    secret = device.config_url.split("secret=")[1].split("&")[0]
    context = {
        "form": form,
        "qr_data_uri": qr.svg_data_uri(scale=5, border=2, dark="#111", light="#fff"),
        "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
        "next_url": _next_url(request),
        "replacing": replacing,
    }
    return render(request, "accounts/two_factor.html", context, status=status)


class ChangeRefused(Exception):
    """A second-factor change the form must show as an error on `field`."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field, self.status = field, status


def _prove_fresh_factor(request: HttpRequest, form) -> None:
    """A current code typed on the change form counts as a fresh second factor."""
    code = form.cleaned_data.get("current_code")
    if not code:
        return
    try:
        device = services.verify_second_factor(request.user, code, request=request)
    except services.SecondFactorThrottled as throttled:
        raise ChangeRefused(_throttled_message(throttled), field="current_code",
                            status=429) from None
    if device is None:
        raise ChangeRefused("That code is not right, or the backup code was already used.",
                            field="current_code")
    services.note_step_up(request)


def _confirm_authenticator(request: HttpRequest, device, form) -> HttpResponse | None:
    user = request.user
    proof = {}
    if isinstance(form, ChangeProofForm):
        _prove_fresh_factor(request, form)
        proof = {"password": form.cleaned_data["password"],
                 "stepped_up_at": services.stepped_up_at(request)}
    try:
        confirmed = services.confirm_totp_device(
            device, form.cleaned_data["code"], actor=user, request=request, **proof)
    except services.SecondFactorChangeRefused as refused:
        raise ChangeRefused(str(refused)) from None
    if not confirmed:
        return None
    needs_backup_codes = not BackupCodeDevice.objects.filter(
        user=user, codes__used_at=None
    ).exists()
    _complete_verification(request, device)
    messages.success(request, "Your authenticator app is set up.")
    if needs_backup_codes:
        codes = services.issue_backup_codes(user, actor=user, request=request)
        return _render_backup_codes(request, codes, _next_url(request))
    return redirect(_next_url(request))


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    user = request.user
    if user.is_verified():
        return redirect(_next_url(request))
    if not services.has_confirmed_device(user):
        return redirect(f"{reverse('accounts:two-factor')}?next={_next_url(request)}")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            device = services.verify_second_factor(
                user, form.cleaned_data["code"], request=request
            )
        except services.SecondFactorThrottled as throttled:
            form.add_error("code", _throttled_message(throttled))
            status = 429
        else:
            if device is not None:
                _complete_verification(request, device)
                return redirect(_next_url(request))
            form.add_error(
                "code", "That code is not right, or the backup code was already used."
            )
            status = 400
    has_totp = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    backup = BackupCodeDevice.objects.filter(user=user, confirmed=True).first()
    context = {
        "form": form,
        "next_url": _next_url(request),
        "has_totp": has_totp,
        "has_passkey": services.passkeys_of(user).exists(),
        "backup_codes_left": backup.unused_count() if backup else 0,
    }
    return render(request, "accounts/verify.html", context, status=status)


def _throttled_message(throttled: services.SecondFactorThrottled) -> str:
    if throttled.locked_until is None:
        return "Too many wrong codes. Wait a moment, then try again."
    return (
        "Too many wrong codes in a row. Try again after "
        f"{throttled.locked_until:%H:%M:%S} UTC."
    )


@never_cache
def security(request: HttpRequest) -> HttpResponse:
    return _render_security(request)


def _render_security(request: HttpRequest, form: ChangeProofForm | None = None,
                     status: int = 200, *, passkey_form: ChangeProofForm | None = None):
    user = request.user
    backup = BackupCodeDevice.objects.filter(user=user, confirmed=True).first()
    context = {
        "totp_devices": TOTPDevice.objects.filter(user=user, confirmed=True),
        "backup_codes_left": backup.unused_count() if backup else 0,
        "proof_form": form or ChangeProofForm(),
        "passkeys": services.passkeys_of(user),
        "passkey_form": passkey_form or ChangeProofForm(prefix="passkey"),
        "slack_link": getattr(user, "slack_link", None),
    }
    return render(request, "accounts/security.html", context, status=status)


@never_cache
@require_POST
def add_passkey(request: HttpRequest) -> HttpResponse:
    """Step one of adding a passkey: the password and a fresh factor, as for any change to
    one's second factors. Step two, the browser ceremony, runs on the page this returns and is
    refused without this proof (accounts/passkeys.py)."""
    form = ChangeProofForm(request.POST, prefix="passkey")
    if not form.is_valid():
        return _render_security(request, passkey_form=form, status=400)
    try:
        _prove_passkey_change(request, form, change="passkey")
    except ChangeRefused as refused:
        form.add_error(refused.field, str(refused))
        return _render_security(request, passkey_form=form, status=refused.status)
    services.allow_passkey_registration(request)
    return render(request, "accounts/passkey_add.html")


@never_cache
@require_POST
def remove_passkey(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(services.passkeys_of(request.user), pk=pk)
    form = ChangeProofForm(request.POST, prefix="passkey")
    if not form.is_valid():
        return _render_security(request, passkey_form=form, status=400)
    try:
        _prove_passkey_change(request, form, change="passkey removal")
        services.remove_passkey(credential, actor=request.user, request=request)
    except services.SecondFactorChangeRefused as refused:
        form.add_error(None, str(refused))
        return _render_security(request, passkey_form=form, status=400)
    except ChangeRefused as refused:
        form.add_error(refused.field, str(refused))
        return _render_security(request, passkey_form=form, status=refused.status)
    messages.success(request, f'The passkey "{credential.name}" was removed.')
    return redirect("accounts:security")


def _prove_passkey_change(request: HttpRequest, form: ChangeProofForm, *, change: str) -> None:
    _prove_fresh_factor(request, form)
    try:
        services.check_change_proof(
            request.user, change=change, password=form.cleaned_data["password"],
            stepped_up_at=services.stepped_up_at(request), request=request)
    except services.SecondFactorChangeRefused as refused:
        raise ChangeRefused(str(refused)) from None


@require_POST
def backup_codes(request: HttpRequest) -> HttpResponse:
    """New backup codes, once the password and a fresh second factor are proven."""
    form = ChangeProofForm(request.POST)
    if not form.is_valid():
        return _render_security(request, form, status=400)
    try:
        _prove_fresh_factor(request, form)
        codes = services.regenerate_backup_codes(
            request.user, password=form.cleaned_data["password"],
            stepped_up_at=services.stepped_up_at(request), request=request)
    except (ChangeRefused, services.SecondFactorChangeRefused) as refused:
        form.add_error(getattr(refused, "field", None), str(refused))
        return _render_security(request, form, status=getattr(refused, "status", 400))
    messages.success(request, "New backup codes were generated; the old ones no longer work.")
    return _render_backup_codes(request, codes, reverse("accounts:security"))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "403_csrf.html", status=403)
