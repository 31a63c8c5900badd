"""The closed catalogue of audit event kinds. `record()` refuses any kind not listed here.

Each kind is `area.verb_noun`; its description says when it is written. Later features add
their kinds here, in one place, so the whole trail can be read from this file.
"""

from django.db import models


class EventKind(models.TextChoices):
    # Sign-in (accounts): forwarded from contrib.auth and django-axes, or written by services.
    SIGN_IN = "auth.sign_in", "Signed in with a password"
    SIGN_IN_FAILED = "auth.sign_in_failed", "A password sign-in failed"
    SSO_SIGN_IN = "auth.sso_sign_in", "Signed in through the identity provider (single sign-on)"
    SSO_FAILED = (
        "auth.sso_failed",
        "A single sign-on did not complete (token, state, account or provider refused)",
    )
    SSO_ROLES_CHANGED = (
        "auth.sso_roles_changed",
        "The identity provider's groups claim changed a person's roles or catalog groups",
    )
    SSO_ACCOUNT_LINKED = (
        "auth.sso_account_linked",
        "A first single sign-on was linked to the account the directory provisioned for it",
    )
    LOCAL_LOGIN_USED = (
        "auth.local_login_used",
        "The local password login was used while single sign-on is configured (break glass)",
    )
    LOCAL_LOGIN_REFUSED = (
        "auth.local_login_refused",
        "The local login was refused: this account signs in through the identity provider",
    )
    SIGN_OUT = "auth.sign_out", "Signed out"
    LOCKOUT = "auth.lockout", "A username was locked out from an address after repeated failures"
    SESSION_EXPIRED = "auth.session_expired", "A session ended at its idle or absolute limit"
    OTP_VERIFIED = "auth.otp_verified", "A second factor was verified"
    OTP_FAILED = "auth.otp_failed", "A second-factor code was wrong"
    OTP_THROTTLED = "auth.otp_throttled", "A second-factor attempt was refused while throttled"
    DEVICE_ENROLLED = (
        "auth.device_enrolled", "An authenticator app was enrolled by a user with no second factor"
    )
    BACKUP_CODES_ISSUED = (
        "auth.backup_codes_issued", "A first set of backup codes was issued (enrolment or demo)"
    )
    AUTHENTICATOR_REPLACED = (
        "auth.authenticator_replaced",
        "A user replaced their authenticator app, proving their password and a fresh factor",
    )
    BACKUP_CODES_REGENERATED = (
        "auth.backup_codes_regenerated",
        "A user replaced their backup codes, proving their password and a fresh factor",
    )
    SECOND_FACTOR_CHANGE_REFUSED = (
        "auth.second_factor_change_refused",
        "A second-factor change was refused: wrong password or no factor in the last 5 minutes",
    )
    SECOND_FACTOR_REMOVED = (
        "auth.second_factor_removed",
        "Staff removed a user's authenticator app or backup codes, with a fresh code of their own",
    )
    PASSKEY_ADDED = (
        "auth.passkey_added",
        "A user added a passkey, proving their password and a fresh factor",
    )
    PASSKEY_REMOVED = "auth.passkey_removed", "A passkey was removed from an account"
    # Identity provisioning (SCIM 2.0 from the company's directory).
    SCIM_USER_CREATED = "scim.user_created", "The directory created an account over SCIM"
    SCIM_USER_UPDATED = (
        "scim.user_updated", "The directory changed an account's name, email or status over SCIM")
    SCIM_GROUP_CREATED = "scim.group_created", "The directory created a directory group over SCIM"
    SCIM_GROUP_UPDATED = (
        "scim.group_updated", "The directory changed a directory group's name or members")
    SCIM_GROUP_DELETED = "scim.group_deleted", "The directory deleted a directory group"
    ACCOUNT_DEPROVISIONED = (
        "account.deprovisioned",
        "An account was deactivated or deleted by the directory: every grant ended and every "
        "session signed out in the same transaction",
    )
    # Grants (breakglass).
    GRANT_ACTIVATED = (
        "grant.activated", "Access was given (break glass, or a request approved)")
    GRANT_EXTENDED = (
        "grant.extended", "Active access was extended (break glass again, or an extension "
                          "approved)")
    GRANT_REFUSED = "grant.refused", "A break-glass attempt was refused"
    GRANT_EXPIRED = "grant.expired", "Access ended at its expiry time"
    GRANT_REVOKED = "grant.revoked", "Access was ended early"
    GRANT_DENIED = (
        "grant.denied", "A requested grant ended unused: its request was denied or withdrawn")
    GRANT_LAPSED = "grant.lapsed", "A requested grant ended unused: its request lapsed"
    GRANTS_REVOKED_ALL = "grant.revoked_all", "Every active grant of a group (or all) was ended"
    GRANT_EXPIRY_REMINDER = "grant.expiry_reminder", "The holder was reminded: 1 hour left"
    GRANT_ACTIVITY = "grant.activity", "A system reported an action taken under a grant"
    BREAK_GLASS_USERS_CHANGED = (
        "group.break_glass_users_changed", "A group owner changed who may break glass"
    )
    # Access requests (breakglass) and on-call schedules (oncall).
    REQUEST_CREATED = "request.created", "Access (or an extension) was requested"
    REQUEST_APPROVAL = "request.approval", "An owner approved a request (more may be needed)"
    REQUEST_APPROVED = "request.approved", "A request got the approvals it needed"
    REQUEST_AUTO_APPROVED = (
        "request.auto_approved", "A request was approved at once by the group's auto-approve rule"
    )
    REQUEST_DENIED = "request.denied", "An owner denied a request"
    REQUEST_LAPSED = "request.lapsed", "A request was still pending at its expiry and lapsed"
    REQUEST_WITHDRAWN = "request.withdrawn", "A requester withdrew a pending request"
    REQUEST_SETTINGS_CHANGED = (
        "group.request_settings_changed", "A group owner changed the group's request settings"
    )
    SHIFTS_REPLACED = (
        "schedule.shifts_replaced", "An on-call schedule's coming shifts were replaced"
    )
    # Quorum recovery (recovery).
    RECOVERY_ENROLLED = "recovery.enrolled", "A user set (or replaced) their recovery passphrase"
    RECOVERY_POLICY_CHANGED = (
        "recovery.policy_changed", "A recovery policy's users, required number or state changed"
    )
    RECOVERY_STARTED = "recovery.attempt_started", "An authorized user started a recovery attempt"
    RECOVERY_CONFIRMED = "recovery.confirmed", "An authorized user confirmed a recovery attempt"
    RECOVERY_REFUSED = (
        "recovery.refused", "A recovery start or confirmation was refused (wrong code, window)"
    )
    GLASS_BROKEN = "recovery.glass_broken", "Enough users confirmed: the glass was broken"
    RECOVERY_CANCELLED = "recovery.attempt_cancelled", "A recovery attempt was cancelled"
    RECOVERY_LAPSED = "recovery.attempt_lapsed", "A recovery attempt lapsed without its quorum"
    CREDENTIALS_VIEWED = "recovery.credentials_viewed", "A participant viewed the credentials"
    CREDENTIAL_ROTATED = "recovery.credential_rotated", "An administrator recorded a rotation"
    ROTATION_REMINDER = "recovery.rotation_reminder", "Revealed credentials still await rotation"
    BUNDLE_ISSUED = "recovery.bundle_issued", "A policy's offline recovery bundle was re-issued"
    BUNDLE_FETCHED = "recovery.bundle_fetched", "The authorized application fetched a bundle"
    RECOVERY_APPLICATION_BOUND = (
        "recovery.application_bound", "A new application was made a policy's authorized one"
    )
    # Emergency website backups (backups).
    EMERGENCY_CODE_SENT = "emergency.code_sent", "A code was sent to a website's preset contacts"
    EMERGENCY_CODE_REFUSED = (
        "emergency.code_refused", "A code was not sent: limit reached, locked or on hold"
    )
    EMERGENCY_VERIFIED = "emergency.verified", "A website owner verified a code: session opened"
    EMERGENCY_VERIFY_FAILED = "emergency.verify_failed", "A wrong, used or expired code was entered"
    EMERGENCY_LOCKED = "emergency.locked", "20 failures in a row locked a website's emergency flow"
    EMERGENCY_UNLOCKED = "emergency.unlocked", "The manager unlocked a website's emergency flow"
    EMERGENCY_SESSION_ENDED = (
        "emergency.session_ended",
        "An emergency session ended: its window, the owner, a switch-off, a lock-out or an admin",
    )
    EMERGENCY_THROTTLED = (
        "emergency.throttled", "Emergency page requests from an address were refused (429)"
    )
    BACKUP_STARTED = "backup.started", "An emergency session started a website backup"
    BACKUP_COMPLETED = "backup.completed", "A backup archive was written and recorded"
    BACKUP_FAILED = "backup.failed", "A backup failed (it is retried while attempts remain)"
    BACKUP_DOWNLOADED = "backup.downloaded", "An emergency session downloaded a backup"
    BACKUP_DELETED = "backup.deleted", "A backup archive was deleted after its retention"
    CONTACTS_CHANGED = "website.contacts_changed", "A website's verification contacts changed"
    CONTACTS_APPROVED = (
        "website.contacts_approved", "A second administrator released new contacts at once"
    )
    WEBSITE_CREATED = (
        "website.created", "A website was added; its manager awaits a second administrator"
    )
    MANAGER_CHANGED = (
        "website.manager_changed",
        "A website's manager was handed over, or a new one named pending confirmation",
    )
    MANAGER_CONFIRMED = (
        "website.manager_confirmed", "A second administrator confirmed a website's manager"
    )
    WEBSITE_SOURCE_CHANGED = (
        "website.source_changed",
        "What a website's backup reads changed: its files directory or its database",
    )
    # Risk-based controls (risk).
    RISK_RULES_CHANGED = "risk.rules_changed", "An administrator changed the risk rule table"
    INCIDENT_OPENED = "incident.opened", "An incident was opened (API or admin)"
    INCIDENT_UPDATED = "incident.updated", "An incident's title, severity, links or status changed"
    INCIDENT_RESOLVED = "incident.resolved", "An incident was resolved: grants opened under it end"
    # Reviews, abort links and evidence (review).
    REVIEW_CLOSED = "review.closed", "A security reviewer recorded a use's outcome"
    REVIEW_REFUSED = (
        "review.refused", "A review outcome was refused (own use, already closed)"
    )
    REVIEW_ESCALATED = "review.escalated", "A review open for 72 hours was escalated"
    GRANT_ABORTED = (
        "grant.aborted", "Not us: an alert's abort link ended a grant and locked its holder"
    )
    ABORT_REFUSED = (
        "grant.abort_refused", "An abort link was refused: replayed, expired, forged or not theirs"
    )
    ACCOUNT_REOPENED = (
        "auth.account_reopened", "An administrator reopened an account an abort link locked"
    )
    EVIDENCE_EXPORTED = "audit.evidence_exported", "An evidence pack was exported"
    # Applications and the API.
    APPLICATION_CREATED = "api.application_created", "An API application was created"
    TOKEN_ROTATED = "api.token_rotated", "An application's token was replaced"
    API_AUTH_FAILED = "api.auth_failed", "An API call came with a missing, wrong or disabled token"
    API_THROTTLED = "api.throttled", "API calls from an address were refused after failures"
    # The administration site.
    ADMIN_ACTION_REFUSED = (
        "admin.action_refused",
        "Staff asked the admin for an action or page their permissions do not allow (403)",
    )
    # The trail itself.
    CHAIN_BROKEN = "audit.chain_broken", "The hourly verification found the audit chain broken"
    # Connectors: access made real in other systems.
    CONNECTOR_CREATED = "connector.created", "A connector was set up (command or admin)"
    CONNECTOR_CHECKED = "connector.checked", "A connector's connection was tested"
    CONNECTOR_DRIFT = (
        "connector.drift",
        "Reconciliation found a target's members differing from the access decision",
    )
    CONNECTOR_REPAIRED = (
        "connector.repaired", "Reconciliation granted or revoked on a target to repair drift")
    CONNECTOR_REVOCATION_OVERDUE = (
        "connector.revocation_overdue",
        "A target has not confirmed a revocation for 5 minutes (still retried)",
    )
    # Alerts (audit): the outbox's own trail.
    DELIVERY_FAILED = "alert.delivery_failed", "An alert could not be delivered for 24 hours"
    DELIVERY_RETRIED = "alert.delivery_retried", "An administrator asked to retry an alert now"
    # Housekeeping (audit.housekeeping): one event per hourly run that removed something.
    HOUSEKEEPING_DONE = (
        "system.housekeeping_done",
        "Housekeeping removed expired sessions, old sign-in records and task results, and "
        "blanked old sent alerts' bodies (the counts are in its data)",
    )
    # Responders' tools (integrations/): Slack, PagerDuty, Opsgenie, outgoing webhooks, SIEM.
    SLACK_INTERACTION_REFUSED = (
        "slack.interaction_refused",
        "A Slack interaction was refused: bad or stale signature, or a Slack user linked to "
        "no one",
    )
    SLACK_ACCOUNT_LINKED = (
        "slack.account_linked", "A user linked or unlinked their Slack account")
    INTEGRATION_WEBHOOK_REFUSED = (
        "integration.webhook_refused",
        "A PagerDuty or Opsgenie webhook was refused: wrong signature or token, or a replay",
    )
    INTEGRATION_EVENT_IGNORED = (
        "integration.event_ignored",
        "A paging-system webhook of a type Breakglass does not act on was accepted and ignored",
    )
    WEBHOOK_ENDPOINT_CHANGED = (
        "webhook.endpoint_changed",
        "An outgoing webhook endpoint was added, changed, or had its signing secret rotated",
    )
    SIEM_STREAM_CHANGED = (
        "siem.stream_changed", "A SIEM stream was added, changed, paused or restarted")


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class ActorType(models.TextChoices):
    USER = "user", "User"
    APPLICATION = "application", "Application"
    WEBSITE_OWNER = "website_owner", "Website owner (emergency session)"
    ANONYMOUS = "anonymous", "Anonymous"
    SYSTEM = "system", "System"
