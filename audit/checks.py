from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def audit_key_check(app_configs, **kwargs):
    if len(settings.AUDIT_HMAC_KEY) < 32:
        return [Error("AUDIT_HMAC_KEY must be at least 32 characters.", id="audit.E001")]
    return []


@register()
def sms_backend_check(app_configs, **kwargs):
    from audit.sms import BACKENDS

    errors = []
    if settings.SMS_BACKEND not in BACKENDS and "." not in settings.SMS_BACKEND:
        errors.append(Error(f"Unknown SMS_BACKEND {settings.SMS_BACKEND!r}.", id="audit.E002",
                            hint="Use console, locmem, twilio or a dotted path."))
    if settings.SMS_BACKEND == "twilio":
        missing = [name for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                     "TWILIO_FROM_NUMBER") if not getattr(settings, name)]
        if missing:
            errors.append(Error(f"SMS_BACKEND=twilio needs {', '.join(missing)}.",
                                id="audit.E003"))
    return errors


@register()
def alert_webhook_secret_check(app_configs, **kwargs):
    """The rule config/settings.py applies at start-up, checked again on the settings in
    force: a settings module that sets ALERT_WEBHOOK_SECRET after importing the base one
    escapes the start-up check, and its deliveries would all be dead-lettered."""
    from audit.webhooks import is_secret

    if not settings.ALERT_WEBHOOK_URL or is_secret(settings.ALERT_WEBHOOK_SECRET):
        return []
    return [Error("ALERT_WEBHOOK_URL is set: ALERT_WEBHOOK_SECRET must be a Standard Webhooks "
                  "secret, whsec_ and the base64 of 24 to 64 random bytes.", id="audit.E004",
                  hint="Generate one with: python -c 'import base64, os; print(\"whsec_\" + "
                       "base64.b64encode(os.urandom(32)).decode())' and give the same value "
                       "to the receiver.")]


@register()
def provider_timeout_check(app_configs, **kwargs):
    """Every provider call is bounded inside the relay's lease: a call still running when the
    lease ends lets another relay send the same alert again."""
    from audit import outbox, twilio_sms

    timeouts = {"the alert webhook": outbox.WEBHOOK_TIMEOUT_SECONDS,
                "Twilio": twilio_sms.TIMEOUT_SECONDS}
    for name, mailer in getattr(settings, "MAILERS", {}).items():
        if mailer.get("BACKEND", "").endswith("smtp.EmailBackend"):
            options = mailer.get("OPTIONS", {})
            timeouts[f"the {name} SMTP mailer"] = options.get(
                "timeout", getattr(settings, "EMAIL_TIMEOUT", None))
    ceiling = outbox.max_provider_timeout()
    return [
        Error(f"{client} has no timeout or one above {ceiling:g} s: a provider that stalls "
              f"would outlive the relay's {outbox.LEASE.total_seconds():g} s lease.",
              id="audit.E005", hint="Set a timeout of about 10 seconds.")
        for client, timeout in timeouts.items() if timeout is None or timeout > ceiling
    ]
