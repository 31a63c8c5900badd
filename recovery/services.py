"""Every change in quorum recovery: enrolment, bundles, the policy's application token,
attempts (start, confirm, break, cancel, lapse), the reveal and the rotation that follows.

Each transition locks what it changes, checks, writes, records its audit event and queues its
alerts in one transaction. A refusal that is a security event (a wrong code, a confirmation
after the window) is recorded in its own transaction and then raised."""

import json
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import SecondFactorThrottled, verify_second_factor
from audit.alerts import alert, alert_security_reviewers
from audit.catalogue import EventKind, Outcome
from audit.reasons import check_reason
from audit.services import record
from breakglass.models import Scope
from breakglass.services import applications
from breakglass.services.errors import InvalidInput as GrantInvalidInput
from breakglass.services.grants import find_incident
from recovery import crypto
from recovery.models import (
    Confirmation,
    EmergencyCredential,
    RecoveryAttempt,
    RecoveryBundle,
    RecoveryEnrolment,
    RecoveryPolicy,
)
from review.services import blocking_message, blocking_review, open_for_attempt
from risk.rules import Path, decide_risk, decide_severity

ROTATION_REMINDER_EVERY = timedelta(days=1)


class RecoveryError(Exception):
    """A step that is not allowed; `status` is the HTTP answer it maps to."""

    status = 409


class RecoveryRefused(RecoveryError):
    status = 403


class InvalidInput(RecoveryError):
    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def attempt_link(attempt: RecoveryAttempt) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("recovery:attempt", args=[attempt.pk])


# --- Enrolment and the offline bundle --------------------------------------------------------

@transaction.atomic
def enrol(user: User, passphrase: str, *, request: HttpRequest | None = None):
    """Set (or replace) the user's recovery passphrase: a new key pair whose private half only
    the passphrase opens. Every bundle the user holds a share of is re-issued for the new key."""
    _check_strength(passphrase, user)
    try:
        fields = crypto.enrol(passphrase)
    except crypto.PassphraseTooWeak as weak:
        raise InvalidInput("passphrase", str(weak)) from weak
    enrolment, created = RecoveryEnrolment.objects.update_or_create(
        user=user, defaults={**fields, "enrolled_at": timezone.now()})
    record(EventKind.RECOVERY_ENROLLED, actor=user, target=user, request=request,
           data={"replaced": not created, "public_key": enrolment.public_key})
    for policy in policies_of(user):
        issue_bundle(policy)
    return enrolment


def _check_strength(passphrase: str, user: User) -> None:
    """A passphrase guards a share that can be attacked offline: refuse the common, the
    numeric and the ones close to the user's own names."""
    from django.contrib.auth import password_validation
    from django.core.exceptions import ValidationError

    validators = password_validation.get_password_validators([
        {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
        {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
        {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    ])
    try:
        password_validation.validate_password(passphrase, user, validators)
    except ValidationError as weak:
        raise InvalidInput("passphrase", " ".join(weak.messages)) from weak
    if len(set(passphrase)) < 6:
        raise InvalidInput("passphrase", "Use more different characters: a few unrelated "
                                         "words work well.")


def policies_of(user: User):
    from django.db.models import Q

    return RecoveryPolicy.objects.filter(
        Q(first_user=user) | Q(second_user=user) | Q(third_user=user))


def signing_key(policy: RecoveryPolicy):
    return crypto.signing_key_from_seed(crypto.decrypt_field(policy.signing_seed))


def issue_bundle(policy: RecoveryPolicy) -> RecoveryBundle | None:
    """Seal the policy's credentials for its holders again (after any change of users, the
    threshold, a passphrase or a credential). None while a holder has not enrolled."""
    # Locked, so two re-issues at once (two holders enrolling) build from the latest roster
    # and take distinct versions.
    policy = RecoveryPolicy.objects.select_for_update().get(pk=policy.pk)
    holders = list(User.objects.filter(pk__in=policy.authorized_user_ids)
                   .select_related("recovery_enrolment"))
    if not holders or any(not hasattr(user, "recovery_enrolment") for user in holders):
        return None
    order = {pk: index for index, pk in enumerate(policy.authorized_user_ids)}
    holders.sort(key=lambda user: order[user.pk])
    raw = crypto.build_bundle(
        policy=policy.slug, version=_next_version(policy), threshold=policy.required,
        holders=[(user.username, user.recovery_enrolment.as_fields()) for user in holders],
        credentials=[_plain_credential(credential) for credential in policy.credentials.all()],
        signing_key=signing_key(policy),
    )
    bundle = json.loads(raw)
    # Encrypted at rest too: it holds every holder's sealed key and salt, which a stolen
    # database dump must not get to attack offline.
    issued = RecoveryBundle.objects.create(
        policy=policy, version=bundle["version"], content=crypto.encrypt_field(raw.decode()),
        fingerprint=crypto.bundle_fingerprint(raw), issued_at=timezone.now())
    record(EventKind.BUNDLE_ISSUED, actor=None, target=policy,
           data={"version": issued.version, "fingerprint": issued.fingerprint,
                 "holders": [user.username for user in holders],
                 "threshold": policy.required})
    return issued


def _next_version(policy: RecoveryPolicy) -> int:
    latest = policy.bundles.order_by("-version").values_list("version", flat=True).first()
    return (latest or 0) + 1


def current_bundle(policy: RecoveryPolicy) -> RecoveryBundle | None:
    return policy.bundles.order_by("-version").first()


def bundle_bytes(bundle: RecoveryBundle) -> bytes:
    """The bundle exactly as issued (its fingerprint is over these bytes)."""
    return crypto.decrypt_field(bundle.content).encode()


def bundle_is_current(policy: RecoveryPolicy, bundle: RecoveryBundle) -> bool:
    """Whether the bundle still names the policy's holders and threshold."""
    import json as _json

    document = _json.loads(bundle_bytes(bundle))
    usernames = [user.username for user, _ in holders(policy)]
    return (document["threshold"] == policy.required
            and [holder["username"] for holder in document["holders"]] == usernames)


def _plain_credential(credential: EmergencyCredential) -> dict:
    return {
        "name": credential.name,
        "username": _decrypt(credential.username_encrypted),
        "secret": _decrypt(credential.secret_encrypted),
        "notes": _decrypt(credential.notes_encrypted),
    }


def _decrypt(token: str) -> str:
    return crypto.decrypt_field(token) if token else ""


def set_credential(credential: EmergencyCredential, *, username: str | None = None,
                   secret: str | None = None, notes: str | None = None) -> None:
    """Encrypt what was given (None keeps the stored value); the caller saves."""
    for field, value in (("username", username), ("secret", secret), ("notes", notes)):
        if value is not None:
            setattr(credential, f"{field}_encrypted",
                    crypto.encrypt_field(value) if value else "")


# --- The authorized application ---------------------------------------------------------------

@transaction.atomic
def generate_token(policy: RecoveryPolicy, *, actor: User,
                   request: HttpRequest | None = None) -> str:
    """A new token for the policy's application (created on first use), shown once; the old
    one stops working at once."""
    policy = RecoveryPolicy.objects.select_for_update().get(pk=policy.pk)
    if policy.application is None:
        application, token = applications.create_application(
            f"Recovery bundle: {policy.slug}", [Scope.RECOVERY_BUNDLE], actor=actor)
        policy.application = application
        policy.modified_by = actor
        policy.save(update_fields=["application", "modified_by", "modified_at"])  # history row
        return token
    return applications.rotate_token(policy.application, actor=actor, request=request)


@transaction.atomic
def bind_new_application(policy: RecoveryPolicy, *, name: str, scopes: list[str], actor,
                         request: HttpRequest | None = None) -> tuple:
    """Create an application and make it the policy's authorized one (the operator's
    `create_application --policy`); returns it with its token, shown once. It always holds
    the recovery:bundle scope. Refused (RecoveryError) when the policy already has one:
    replacing who may fetch the bundle is a token rotation in the admin, not a new client."""
    policy = RecoveryPolicy.objects.select_for_update().get(pk=policy.pk)
    if policy.application_id is not None:
        raise RecoveryError(f"The policy {policy.slug!r} already has an authorized "
                            f"application; use Generate token in the admin to replace it.")
    application, token = applications.create_application(
        name, [*scopes, Scope.RECOVERY_BUNDLE], actor=actor)
    policy.application = application
    policy.modified_by = actor
    policy.save(update_fields=["application", "modified_by", "modified_at"])  # history row
    event = record(EventKind.RECOVERY_APPLICATION_BOUND, actor=actor, target=policy,
                   request=request, data={"application": application.name,
                                          "token_prefix": application.token_prefix})
    alert_security_reviewers(event, template="event")
    return application, token


# --- Online attempts --------------------------------------------------------------------------

def _check_code(user: User, code: str, *, attempt_or_policy, request) -> None:
    """A fresh second-factor code, or a refusal audited as a security event."""
    try:
        accepted = verify_second_factor(user, code or "", request=request)
    except SecondFactorThrottled as throttled:
        raise RecoveryRefused("Too many wrong codes: wait, then try again.") from throttled
    if accepted is None:
        _refuse(attempt_or_policy, user, "a wrong one-time code", request)
        raise RecoveryRefused("That code is not right. Enter a fresh code from your "
                              "authenticator.")


def check_fresh_code(user: User, code: str, *, request: HttpRequest | None = None) -> None:
    """Step-up before a sensitive change of the user's own (setting a recovery passphrase)."""
    _check_code(user, code, attempt_or_policy=user, request=request)


def holders(policy: RecoveryPolicy) -> list[tuple[User, bool]]:
    """The authorized users in their order, each with whether they have enrolled."""
    users = {user.pk: user for user in User.objects.filter(pk__in=policy.authorized_user_ids)}
    enrolled = set(RecoveryEnrolment.objects.filter(user__in=users).values_list("user_id",
                                                                                 flat=True))
    return [(users[pk], pk in enrolled) for pk in policy.authorized_user_ids]


def signing_fingerprint(policy: RecoveryPolicy) -> str:
    return crypto.signing_key_fingerprint(signing_key(policy).verify_key)


def _refuse(target, user, why: str, request, data: dict | None = None) -> None:
    with transaction.atomic():
        record(EventKind.RECOVERY_REFUSED, actor=user, target=target, outcome=Outcome.DENIED,
               reason=why, request=request, data=data)


def start_attempt(policy: RecoveryPolicy, *, actor: User, reason: str, code: str,
                  incident: str = "", severity: str = "", drill: bool = False,
                  request: HttpRequest | None = None) -> RecoveryAttempt:
    """An authorized user asks to break the glass, with a reason and a fresh code; they count
    as the first confirmation. The others are alerted by email and SMS with a link.

    The risk rule for the policy's sensitivity and the incident's severity (or `severity`
    without one, at most SEV3 on high and critical policies) may refuse, raise the
    confirmations needed above the policy's number, and cap the reveal window. A policy armed
    by incidents needs an open one linked to it."""
    reason = check_reason(reason, invalid=InvalidInput,
                          missing="Give a reason: every authorized user is told.")
    if not policy.is_authorized(actor):
        raise RecoveryRefused("You are not an authorized user of this policy.")
    if not policy.enabled:
        raise RecoveryError("This policy is not enabled.")
    try:
        linked = find_incident(incident)
    except GrantInvalidInput as invalid:
        raise InvalidInput("incident", str(invalid)) from invalid
    if policy.armed_by_incident and (
            linked is None or not linked.policies.filter(pk=policy.pk).exists()):
        why = (f"{policy.name} can be used only during an open incident linked to it: "
               "choose that incident.")
        _refuse(policy, actor, why, request)
        raise RecoveryRefused(why)
    if policy.review_before_next:
        blocking = blocking_review(policy=policy)
        if blocking is not None:
            why = blocking_message(blocking)
            _refuse(policy, actor, why, request)
            raise RecoveryRefused(why)
    decided, claimed = decide_severity(policy.sensitivity, incident=linked, severity=severity)
    decision = decide_risk(Path.QUORUM, sensitivity=policy.sensitivity, severity=decided,
                           claimed=claimed)
    required = max(policy.required, decision.approvals)
    if decision.allowed and required > len(policy.authorized_user_ids):
        decision = replace(decision, allowed=False, why=(
            f"Risk rule {decision.cell} needs {required} confirmations, but this policy has "
            f"{len(policy.authorized_user_ids)} authorized user(s)."))
    if not decision.allowed:
        _refuse(policy, actor, decision.why, request, data={"risk": decision.as_data()})
        raise RecoveryRefused(decision.why)
    _check_code(actor, code, attempt_or_policy=policy, request=request)
    now = timezone.now()
    try:
        with transaction.atomic():
            lapse_due_attempts(policy=policy)
            attempt = RecoveryAttempt.objects.create(
                policy=policy, initiator=actor, reason=reason, opened_at=now,
                expires_at=now + policy.attempt_window, required=required, incident=linked,
                risk=decision.as_data(), is_drill=bool(drill))
            Confirmation.objects.create(attempt=attempt, user=actor, confirmed_at=now)
            event = record(EventKind.RECOVERY_STARTED, actor=actor, target=attempt,
                           reason=reason, request=request,
                           data={"policy": policy.slug, "required": required,
                                 "incident": linked.external_id if linked else "",
                                 "risk": decision.as_data(), "drill": bool(drill),
                                 "expires_at": attempt.expires_at.isoformat()})
            others = User.objects.filter(pk__in=policy.authorized_user_ids,
                                         is_active=True).exclude(pk=actor.pk)
            alert(event, users=others, channels=["email", "sms"], template="recovery_started",
                  context={"attempt": attempt, "attempt_link": attempt_link(attempt)})
            alert_security_reviewers(event, template="event")
            _break_if_enough(attempt, now=now, request=request)
    except IntegrityError as clash:
        raise RecoveryError("An attempt on this policy is already open: confirm that one."
                            ) from clash
    return attempt


def confirm(attempt: RecoveryAttempt, *, actor: User, code: str,
            request: HttpRequest | None = None) -> RecoveryAttempt:
    """One authorized user's agreement, with a fresh code. The confirmation that reaches the
    required number breaks the glass, exactly once however many arrive together."""
    if not attempt.policy.is_authorized(actor):
        _refuse(attempt, actor, "not an authorized user of this policy", request)
        raise RecoveryRefused("You are not an authorized user of this policy.")
    if attempt.confirmations.filter(user=actor).exists():
        raise RecoveryError("You have already confirmed this attempt.")  # no code spent on it
    if not attempt.policy.enabled:
        raise RecoveryError("This policy has been disabled.")
    _check_code(actor, code, attempt_or_policy=attempt, request=request)
    refusal = None
    with transaction.atomic():
        attempt = RecoveryAttempt.objects.select_for_update().get(pk=attempt.pk)
        now = timezone.now()
        if attempt.effective_status(now) == RecoveryAttempt.Status.LAPSED:
            if attempt.status == RecoveryAttempt.Status.OPEN:
                _lapse(attempt, now)
            record(EventKind.RECOVERY_REFUSED, actor=actor, target=attempt,
                   outcome=Outcome.DENIED, reason="a confirmation after the window",
                   request=request)
            refusal = RecoveryError("This attempt's window has closed; start a new one.")
        elif attempt.status != RecoveryAttempt.Status.OPEN:
            refusal = RecoveryError(f"This attempt is {attempt.get_status_display().lower()}.")
        elif attempt.confirmations.filter(user=actor).exists():
            refusal = RecoveryError("You have already confirmed this attempt.")
        else:
            Confirmation.objects.create(attempt=attempt, user=actor, confirmed_at=now)
            record(EventKind.RECOVERY_CONFIRMED, actor=actor, target=attempt, request=request,
                   data={"confirmations": attempt.confirmations.count(),
                         "required": attempt.confirmations_needed})
            _break_if_enough(attempt, now=now, request=request)
    if refusal is not None:
        raise refusal
    return attempt


def _break_if_enough(attempt: RecoveryAttempt, *, now, request) -> None:
    # Only users still authorized (and active) count: a policy changed under an open attempt
    # cannot be broken with confirmations of people it no longer names.
    confirmed = list(attempt.confirmations.filter(
        user__in=attempt.policy.authorized_user_ids, user__is_active=True).values_list(
        "user__username", flat=True))
    if len(confirmed) < attempt.confirmations_needed:
        return
    attempt.status = RecoveryAttempt.Status.BROKEN
    attempt.broken_at = now
    attempt.reveal_until = now + min(
        attempt.policy.reveal_window,
        timedelta(minutes=attempt.risk.get("max_minutes") or attempt.policy.reveal_minutes))
    attempt.save(update_fields=["status", "broken_at", "reveal_until"])
    review = open_for_attempt(attempt)
    event = record(EventKind.GLASS_BROKEN, actor=None, target=attempt, request=request,
                   reason=attempt.reason,
                   data={"policy": attempt.policy.slug, "participants": sorted(confirmed),
                         "reveal_until": attempt.reveal_until.isoformat(),
                         "review": review.pk, **({"drill": True} if attempt.is_drill else {})})
    participants = User.objects.filter(pk__in=attempt.policy.authorized_user_ids)
    alert(event, users=participants, channels=["email", "sms"], template="event")
    alert_security_reviewers(event, template="event")


def may_reveal(attempt: RecoveryAttempt, user: User, at=None) -> bool:
    return not why_not_reveal(attempt, user, at)


def why_not_reveal(attempt: RecoveryAttempt, user: User, at=None) -> str:
    """Why `user` may not see the attempt's credentials now, or "". A policy disabled after
    the glass broke reveals nothing more, whatever is left of the window."""
    at = at or timezone.now()
    if not attempt.policy.enabled:
        return "This policy has been disabled: its credentials are no longer shown."
    if not (attempt.status == RecoveryAttempt.Status.BROKEN and attempt.reveal_until > at
            and attempt.policy.is_authorized(user) and user.is_active
            and attempt.confirmations.filter(user=user).exists()):
        return ("Only those who confirmed see the credentials, and only within the reveal "
                "window.")
    return ""


def reveal(attempt: RecoveryAttempt, *, actor: User,
           request: HttpRequest | None = None) -> list[dict]:
    """The credentials, for a participant of a broken attempt within its reveal window, while
    its policy is enabled. Each view is audited; what was shown is marked rotation due. A
    refusal is audited in its own transaction."""
    with transaction.atomic():
        # The policy row is locked so that a disable committed before this read wins.
        attempt = RecoveryAttempt.objects.select_related("policy").get(pk=attempt.pk)
        attempt.policy = RecoveryPolicy.objects.select_for_update().get(pk=attempt.policy_id)
        why = why_not_reveal(attempt, actor)
        if not why:
            return _reveal(attempt, actor=actor, request=request)
    _refuse(attempt, actor, why, request)
    raise RecoveryRefused(why)


def _reveal(attempt: RecoveryAttempt, *, actor: User, request) -> list[dict]:
    if attempt.is_drill:
        # A drill proves the quorum works; the real secrets stay sealed (and need no rotation).
        record(EventKind.CREDENTIALS_VIEWED, actor=actor, target=attempt, request=request,
               data={"credentials": [], "drill": True})
        return [{"name": "Drill", "username": "", "notes": "A drill: the glass opened as it "
                 "would, and the real credentials stay sealed.", "secret": "", "drill": True}]
    credentials = list(attempt.policy.credentials.select_for_update())
    now = timezone.now()
    shown = []
    for credential in credentials:
        try:
            shown.append(_plain_credential(credential))
        except crypto.CryptoError:  # one broken row must not hide the others
            shown.append({"name": credential.name, "username": "", "notes": "",
                          "secret": "", "unreadable": True})
    for credential in credentials:
        credential.rotation_due = True
        credential.revealed_at = now
        credential.save(update_fields=["rotation_due", "revealed_at"])
    record(EventKind.CREDENTIALS_VIEWED, actor=actor, target=attempt, request=request,
           data={"credentials": [credential.name for credential in credentials]})
    return shown


def cancel(attempt: RecoveryAttempt, *, actor: User,
           request: HttpRequest | None = None) -> RecoveryAttempt:
    """End an open attempt. Idempotent: cancelling a cancelled attempt changes nothing."""
    if actor.pk != attempt.initiator_id and not actor.is_superuser:
        raise RecoveryRefused("Only the initiator (or an administrator) cancels an attempt.")
    with transaction.atomic():
        attempt = RecoveryAttempt.objects.select_for_update().get(pk=attempt.pk)
        if attempt.status == RecoveryAttempt.Status.CANCELLED:
            return attempt
        if attempt.effective_status(timezone.now()) == RecoveryAttempt.Status.LAPSED:
            if attempt.status == RecoveryAttempt.Status.OPEN:
                _lapse(attempt, timezone.now())
            return attempt
        if attempt.status != RecoveryAttempt.Status.OPEN:
            raise RecoveryError(f"This attempt is {attempt.get_status_display().lower()}.")
        attempt.status = RecoveryAttempt.Status.CANCELLED
        attempt.ended_at = timezone.now()
        attempt.ended_by = actor
        attempt.save(update_fields=["status", "ended_at", "ended_by"])
        record(EventKind.RECOVERY_CANCELLED, actor=actor, target=attempt, request=request)
    return attempt


def record_policy_change(policy: RecoveryPolicy, before: dict, *, actor, reason: str,
                         request=None) -> None:
    """After the admin saved a change of users, required number or state: its open attempt
    is cancelled, the change audited with its reason, and old and new holders and the
    security reviewers told. Runs in the admin's transaction."""
    after = policy_rules(policy)
    if after == before:
        return
    close_open_attempts(policy, actor=actor, why="the policy changed", request=request)
    event = record(EventKind.RECOVERY_POLICY_CHANGED, actor=actor, target=policy,
                   reason=reason, request=request, data={"before": before, "after": after})
    told = set(before["users"]) | set(after["users"])
    alert(event, users=User.objects.filter(username__in=told, is_active=True),
          channels=["email", "sms"], template="event")
    alert_security_reviewers(event, template="event")


def policy_rules(policy: RecoveryPolicy) -> dict:
    return {"users": [user.username for user, _ in holders(policy)],
            "required": policy.required, "enabled": policy.enabled,
            "sensitivity": policy.sensitivity, "armed_by_incident": policy.armed_by_incident}


def close_open_attempts(policy: RecoveryPolicy, *, actor, why: str, request=None) -> int:
    """A change of who may break the glass, how many must agree, or whether the policy is
    enabled cancels its open attempt: it was started under rules that no longer hold."""
    closed = 0
    for attempt in RecoveryAttempt.objects.select_for_update().filter(
            policy=policy, status=RecoveryAttempt.Status.OPEN):
        attempt.status = RecoveryAttempt.Status.CANCELLED
        attempt.ended_at = timezone.now()
        attempt.ended_by = actor
        attempt.save(update_fields=["status", "ended_at", "ended_by"])
        record(EventKind.RECOVERY_CANCELLED, actor=actor, target=attempt, reason=why,
               request=request)
        closed += 1
    return closed


def _lapse(attempt: RecoveryAttempt, now) -> None:
    attempt.status = RecoveryAttempt.Status.LAPSED
    attempt.ended_at = attempt.expires_at
    attempt.save(update_fields=["status", "ended_at"])
    record(EventKind.RECOVERY_LAPSED, actor=None, target=attempt,
           data={"confirmations": attempt.confirmations.count(),
                 "required": attempt.confirmations_needed})


def lapse_due_attempts(policy: RecoveryPolicy | None = None) -> int:
    """The minute sweep (and every new start): open attempts past their window lapse, once."""
    due = RecoveryAttempt.objects.filter(status=RecoveryAttempt.Status.OPEN,
                                         expires_at__lte=timezone.now())
    if policy is not None:
        due = due.filter(policy=policy)
    lapsed = 0
    for pk in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            attempt = RecoveryAttempt.objects.select_for_update().filter(
                pk=pk, status=RecoveryAttempt.Status.OPEN).first()
            if attempt is not None:
                _lapse(attempt, timezone.now())
                lapsed += 1
    return lapsed


# --- Rotation ---------------------------------------------------------------------------------

@transaction.atomic
def record_rotation(credential: EmergencyCredential, *, actor: User, secret: str = "",
                    request: HttpRequest | None = None) -> EmergencyCredential:
    """An administrator changed the credential where it lives; the new secret (if given) is
    stored, the bundle re-issued and the reminders stop."""
    credential = EmergencyCredential.objects.select_for_update().get(pk=credential.pk)
    if secret:
        set_credential(credential, secret=secret)
    credential.rotation_due = False
    credential.rotated_at = timezone.now()
    credential.reminded_at = None
    credential.save()
    record(EventKind.CREDENTIAL_ROTATED, actor=actor, target=credential, request=request,
           data={"new_secret_stored": bool(secret)})
    if secret:
        issue_bundle(credential.policy)
    return credential


def send_rotation_reminders() -> int:
    """Daily: every credential still due for rotation reminds the administrators and the
    policy's users."""
    now = timezone.now()
    due = EmergencyCredential.objects.filter(rotation_due=True).exclude(
        reminded_at__gt=now - ROTATION_REMINDER_EVERY)
    sent = 0
    for credential in due.select_related("policy"):
        with transaction.atomic():
            credential.reminded_at = now
            credential.save(update_fields=["reminded_at"])
            event = record(EventKind.ROTATION_REMINDER, actor=None, target=credential,
                           data={"revealed_at": credential.revealed_at.isoformat()
                                 if credential.revealed_at else None})
            users = User.objects.filter(is_active=True, is_superuser=True) | User.objects.filter(
                pk__in=credential.policy.authorized_user_ids, is_active=True)
            alert(event, users=users.distinct(), channels=["email"], template="event")
            sent += 1
    return sent
