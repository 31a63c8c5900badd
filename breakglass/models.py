from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, Q
from django.utils import timezone

from audit.history import ConfigurationHistory
from risk.models import (
    MAX_BREAK_GLASS_MINUTES,
    MAX_REQUEST_MINUTES,
    MIN_BREAK_GLASS_MINUTES,
    MIN_REQUEST_MINUTES,
    Sensitivity,
    Severity,
)


class Group(models.Model):
    """Something access is given to: an on-call rota, a database role, a Django permission
    group. Everyone with access to a group also has access to the groups it contains."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    sensitivity = models.CharField(
        max_length=16, choices=Sensitivity.choices, default=Sensitivity.MEDIUM
    )
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="owned_groups",
                                    blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="member_groups",
                                     blank=True, help_text="Permanent members.")
    break_glass_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="break_glass_groups", blank=True,
        help_text="Who may give themselves access at once, with a reason.",
    )
    contains = models.ManyToManyField(
        "self", symmetrical=False, related_name="contained_in", blank=True,
        help_text="Access to this group also gives access to these groups (transitively).",
    )
    break_glass_minutes = models.PositiveIntegerField(
        null=True, blank=True,
        validators=[MinValueValidator(MIN_BREAK_GLASS_MINUTES),
                    MaxValueValidator(MAX_BREAK_GLASS_MINUTES)],
        help_text="Length of a break-glass grant, 15 to 1440 minutes. Empty: the deployment "
                  "default (BREAKGLASS_DURATION_HOURS).",
    )
    members_from_schedule = models.ForeignKey(
        "oncall.Schedule", on_delete=models.PROTECT, null=True, blank=True,
        related_name="groups",
        help_text="Whoever is on call now in this schedule has access, like a member.")
    members_from_directory_group = models.ForeignKey(
        "accounts.DirectoryGroup", on_delete=models.PROTECT, null=True, blank=True,
        related_name="catalog_groups", verbose_name="members from directory group",
        help_text="Everyone in this directory group (pushed by the identity provider over "
                  "SCIM) has access, like a member; leaving it there ends that access.")
    # Risk-based controls (SPEC §2.7).
    armed_by_incident = models.BooleanField(
        "only during a linked incident", default=False,
        help_text="Break glass only while an open incident is linked to this group; it is "
                  "chosen when breaking glass.")
    review_before_next = models.BooleanField(
        "previous use must be reviewed first", default=False,
        help_text="Self-service break glass waits until the review of the previous use here "
                  "is closed.")
    end_grants_on_resolve = models.BooleanField(
        "end access when the incident is resolved", default=True,
        help_text="Resolving an incident ends the grants opened under it.")
    # Access requests (SPEC §2.3).
    requestable = models.BooleanField(
        default=False, help_text="Anyone may ask for time-bound access; owners approve.")
    request_max_minutes = models.PositiveIntegerField(
        "maximum request duration (minutes)", default=8 * 60,
        validators=[MinValueValidator(MIN_REQUEST_MINUTES),
                    MaxValueValidator(MAX_REQUEST_MINUTES)],
        help_text="15 minutes to 14 days.")
    request_reason_required = models.BooleanField("reason required", default=True)
    request_incident_required = models.BooleanField("incident required", default=False)
    approvals_needed = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="Distinct owners who must approve, 1 to 3. Nobody approves their own request.")
    auto_approve_group = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="auto_approves",
        verbose_name="auto-approve group",
        help_text="Whoever has access to this group (a member, through nesting, or on call now) "
                  "is approved at once.")
    request_expiry_minutes = models.PositiveIntegerField(
        "pending request expiry (minutes)", default=24 * 60,
        validators=[MinValueValidator(MIN_REQUEST_MINUTES),
                    MaxValueValidator(MAX_REQUEST_MINUTES)],
        help_text="A request nobody decided on by then lapses.")
    history = ConfigurationHistory(m2m_fields=[owners, members, break_glass_users, contains])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def break_glass_duration(self) -> timedelta:
        if self.break_glass_minutes:
            return timedelta(minutes=self.break_glass_minutes)
        return timedelta(hours=settings.BREAKGLASS_DURATION_HOURS)


class GrantQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=Grant.OPEN_STATUSES)

    def active(self, at=None):
        """Grants giving access at `at` (now): active and not past their expiry instant,
        whether or not the expiry transition has run yet."""
        return self.filter(status=Grant.Status.ACTIVE, expires_at__gt=at or timezone.now())

    def due_to_expire(self, at=None):
        return self.filter(status=Grant.Status.ACTIVE, expires_at__lte=at or timezone.now())


# The statuses of a grant still open (asked for, or giving access): at most one per user and
# group. The constraint below, the conflict target of breakglass/sql.py and
# GrantQuerySet.open() all read this one list.
OPEN_GRANT_STATUSES = ["requested", "active"]


class Grant(models.Model):
    """Time-bound access of one user to one group. Each move of TRANSITIONS is one function in
    breakglass/services/grants.py."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        DENIED = "denied", "Denied"
        LAPSED = "lapsed", "Lapsed"

    class Source(models.TextChoices):
        BREAK_GLASS = "break_glass", "Break glass"
        REQUEST = "request", "Access request"
        API = "api", "API"

    TRANSITIONS = {
        Status.REQUESTED: {Status.ACTIVE, Status.DENIED, Status.LAPSED},
        Status.ACTIVE: {Status.EXPIRED, Status.REVOKED},
        Status.EXPIRED: set(),
        Status.REVOKED: set(),
        Status.DENIED: set(),
        Status.LAPSED: set(),
    }
    OPEN_STATUSES = tuple(map(Status, OPEN_GRANT_STATUSES))

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                             related_name="grants")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="grants")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    source = models.CharField(max_length=16, choices=Source.choices)
    reason = models.TextField()
    incident = models.CharField(max_length=200, blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, blank=True)
    claimed_severity = models.CharField(
        max_length=8, choices=Severity.choices, blank=True,
        help_text="A severity typed without an incident that was counted lower (as SEV3 on "
                  "high and critical groups); the severity above is the one that decided.")
    incident_record = models.ForeignKey(
        "risk.Incident", on_delete=models.PROTECT, null=True, blank=True,
        related_name="grants", verbose_name="linked incident")
    risk = models.JSONField(
        default=dict, blank=True,
        help_text="The rule cell that allowed it and the anomaly flags raised at activation.")
    is_drill = models.BooleanField("drill", default=False,
                                   help_text="A rehearsal: same path and alerts, labelled.")
    requested_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 null=True, blank=True, related_name="ended_grants")
    end_reason = models.TextField(blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        permissions = [("revoke_grant", "Can end any grant and revoke all access")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "group"], condition=Q(status__in=OPEN_GRANT_STATUSES),
                name="one_open_grant_per_user_and_group",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.user} → {self.group} ({self.status})"

    def gives_access(self, at=None) -> bool:
        at = at or timezone.now()
        return self.status == self.Status.ACTIVE and self.expires_at > at

    def can_become(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.status]


def group_and_grant_rights(user) -> Q:
    """The releasing rights this app gives (accounts.rights): break-glass user or owner of
    any group, or holder of an active grant."""
    break_glass_user = Group.break_glass_users.through.objects.filter(user=user)
    owner = Group.owners.through.objects.filter(user=user)
    return (Q(Exists(break_glass_user)) | Q(Exists(owner))
            | Q(Exists(Grant.objects.active().filter(user=user))))


class ClaimMapping(models.Model):
    """What a value of the identity provider's `groups` claim gives a person who signs in
    with single sign-on: a Breakglass role, or membership or ownership of a catalog group.
    The provider is the source of truth for mapped roles: each sign-in adds what the claim
    names and removes what it no longer names (audited)."""

    class Role(models.TextChoices):
        SECURITY_REVIEWER = "security_reviewer", "Security reviewer"
        STAFF = "staff", "Staff (the admin)"
        GROUP_MEMBER = "group_member", "Member of a catalog group"
        GROUP_OWNER = "group_owner", "Owner of a catalog group"

    claim_value = models.CharField(
        max_length=255, help_text="A value of the `groups` claim, exactly as the provider "
                                  "sends it, e.g. breakglass-responders.")
    role = models.CharField(max_length=32, choices=Role.choices)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True, blank=True,
                              related_name="claim_mappings",
                              help_text="For group membership or ownership.")
    history = ConfigurationHistory()

    class Meta:
        ordering = ["claim_value", "role"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(role__in=["group_member", "group_owner"], group__isnull=False)
                           | Q(role__in=["security_reviewer", "staff"], group__isnull=True)),
                name="claim_mapping_names_a_group_only_for_group_roles"),
            models.UniqueConstraint(fields=["claim_value", "role", "group"],
                                    name="claim_mapping_once"),
        ]

    def __str__(self) -> str:
        where = f" of {self.group}" if self.group_id else ""
        return f"{self.claim_value} → {self.get_role_display()}{where}"


class Scope(models.TextChoices):
    ACCESS_READ = "access:read", "Check access"
    GRANTS_READ = "grants:read", "List grants"
    GRANTS_WRITE = "grants:write", "Revoke grants"
    BREAK_GLASS_WRITE = "break-glass:write", "Break glass for a user"
    AUDIT_READ = "audit:read", "Read the audit trail (SIEM export)"
    SCHEDULES_WRITE = "schedules:write", "Replace on-call shifts"
    SCIM_WRITE = "scim:write", "Provision users and groups over SCIM 2.0"
    RECOVERY_BUNDLE = "recovery:bundle", "Fetch its recovery policy's offline bundle"
    ACTIVITY_WRITE = "activity:write", "Report actions taken under a grant"
    INCIDENTS_WRITE = "incidents:write", "Open, update and resolve incidents"
    REQUESTS_READ = "requests:read", "Read access requests"
    REQUESTS_WRITE = "requests:write", "Make, approve, deny and withdraw access requests for users"
    GROUPS_READ = "groups:read", "Read groups and their owners"


class Application(models.Model):
    """A system calling the JSON API with a bearer token. Only a SHA-256 of the token is kept,
    with a short public prefix to find it; the token itself is shown once."""

    name = models.CharField(max_length=100, unique=True)
    scopes = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    token_prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = ConfigurationHistory(excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def audit_actor(self) -> tuple[str, str, str]:
        return "application", str(self.pk), f"{self.name} (token {self.token_prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class Connector(models.Model):
    """Makes a group's access real in another system: a PostgreSQL or MariaDB role, an LDAP
    group, a django.contrib.auth group (so grants carry real Django permissions), or a signed
    webhook. Every change goes through the alert outbox (retried until the target confirms);
    reconciliation compares the target's members with the access decision every minute.

    Secrets (the server URL with its password, the LDAP bind DN and password) are encrypted
    at rest and kept out of the history."""

    class Kind(models.TextChoices):
        POSTGRES_ROLE = "postgres_role", "PostgreSQL role"
        MARIADB_ROLE = "mariadb_role", "MariaDB/MySQL role"
        LDAP_GROUP = "ldap_group", "LDAP group"
        DJANGO_GROUP = "django_group", "Django auth group"
        WEBHOOK = "webhook", "Signed webhook"

    class Mode(models.TextChoices):
        REPAIR = "repair", "Repair drift (grant what is missing, revoke what is extra)"
        REPORT = "report", "Report drift only (alert, change nothing)"

    class Logins(models.TextChoices):
        USERNAME = "username", "The Breakglass username, unless a login is set for the user"
        EXPLICIT = "explicit", "Only users with a login set here (others are refused)"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Not checked yet"
        OK = "ok", "Working"
        FAILING = "failing", "Failing"

    name = models.SlugField(max_length=80, unique=True, default="",
                            help_text="Short name shown to people, e.g. prod-admin-role.")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="connectors")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    django_group = models.ForeignKey("auth.Group", on_delete=models.PROTECT, null=True,
                                     blank=True, related_name="+")
    url = models.URLField(blank=True, help_text="For webhooks: where grant and revoke events go.")
    server_url_encrypted = models.TextField(
        "server URL", blank=True, editable=False,
        help_text="Encrypted at rest (it holds a password): postgres://, mysql:// or ldap(s)://.")
    bind_dn_encrypted = models.TextField("bind DN", blank=True, editable=False)
    bind_password_encrypted = models.TextField("bind password", blank=True, editable=False)
    target_name = models.CharField(
        "role or group", max_length=500, blank=True,
        help_text="The database role, or the LDAP group's DN, that access gives.")
    options = models.JSONField(default=dict, blank=True,
                               help_text="Settings of this kind of connector (see the README).")
    logins = models.CharField(max_length=16, choices=Logins.choices, default=Logins.USERNAME)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.REPAIR)
    enabled = models.BooleanField(default=True)
    secret_version = models.PositiveIntegerField(
        default=1, help_text="Raise it to give the webhook a new signing secret.")
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN,
                              editable=False)
    health_detail = models.TextField(blank=True, editable=False)
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = ConfigurationHistory(excluded_fields=[
        "server_url_encrypted", "bind_dn_encrypted", "bind_password_encrypted", "health",
        "health_detail", "health_checked_at", "last_reconciled_at"])

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="django_group", django_group__isnull=False)
                           | Q(kind="webhook") & ~Q(url="")
                           | Q(kind__in=["postgres_role", "mariadb_role", "ldap_group"])
                           & ~Q(target_name="") & ~Q(server_url_encrypted="")),
                name="connector_has_its_target",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def recipient(self) -> str:
        return f"connector:{self.pk}"

    @property
    def reconciles(self) -> bool:
        """Kinds whose target can say who its members are."""
        return self.kind != self.Kind.WEBHOOK

    def signing_secret(self, version: int | None = None) -> str:
        """Derived from SECRET_KEY, never stored: this webhook's Standard Webhooks secret
        (whsec_ and the base64 of 32 bytes) for `version`, by default the current one."""
        import base64

        from django.utils.crypto import salted_hmac

        version = self.secret_version if version is None else version
        digest = salted_hmac("breakglass.connector", f"{self.pk}:{version}",
                             algorithm="sha256").digest()
        return "whsec_" + base64.b64encode(digest).decode("ascii")


class ConnectorLogin(models.Model):
    """A user's login on a connector's target when it is not their Breakglass username (a
    database login, an LDAP uid or DN)."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="login_set")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="connector_logins")
    login = models.CharField(max_length=500)
    history = ConfigurationHistory()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "user"], name="one_login_per_connector"),
            models.UniqueConstraint(fields=["connector", "login"], name="login_used_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.login!r} on {self.connector}"


class ConnectorMembership(models.Model):
    """What Breakglass last asked of a connector's target for one user (present or absent)
    and whether the target has confirmed it. A revocation not yet confirmed is "pending":
    the grant page, /access/ and the API show it until the target says it is done."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE,
                                  related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="connector_memberships")
    grant = models.ForeignKey("Grant", on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="connector_memberships")
    login = models.CharField(
        max_length=500, blank=True,
        help_text="The login asked for: a revocation removes this one, even when the user's "
                  "login on the connector changed since.")
    wanted = models.BooleanField(help_text="Present in the target (True) or absent (False).")
    applied = models.BooleanField(default=False)
    # Raised by every new ask, so a sender only confirms the ask it actually carried out.
    version = models.PositiveIntegerField(default=1)
    asked_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    overdue_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "user"],
                                    name="one_membership_per_connector_and_user"),
        ]
        indexes = [models.Index(fields=["applied", "wanted"], name="membership_pending")]

    def __str__(self) -> str:
        state = "present" if self.wanted else "absent"
        return f"{self.user} {state} on {self.connector} ({'done' if self.applied else 'pending'})"

    @property
    def revocation_pending(self) -> bool:
        return not self.wanted and not self.applied


class AccessRequest(models.Model):
    """A request for time-bound access to a group (its grant waits in `requested`), or for
    more time on an active grant. Transitions live in breakglass/services/requests.py."""

    class Kind(models.TextChoices):
        ACCESS = "access", "Access"
        EXTENSION = "extension", "Extension"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        LAPSED = "lapsed", "Lapsed"
        WITHDRAWN = "withdrawn", "Withdrawn"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ACCESS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                  related_name="access_requests")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="access_requests")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="requests",
                              help_text="The grant asked for, or the one to extend.")
    minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(MIN_REQUEST_MINUTES),
                    MaxValueValidator(MAX_REQUEST_MINUTES)])
    reason = models.TextField(blank=True)
    incident = models.CharField(max_length=200, blank=True)
    approvals_needed = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The group's number, or the risk rule's if higher, "
                                         "fixed when the request was made.")
    risk = models.JSONField(default=dict, blank=True,
                            help_text="The risk rule decision that let the request be made.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="Lapses if still pending then.")
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="decided_requests")
    comment = models.TextField(blank=True, help_text="The denier's (or withdrawer's) words.")
    auto_rule = models.CharField(max_length=200, blank=True,
                                 help_text="The rule that approved it at once, if one did.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["grant"], condition=Q(status="pending", kind="extension"),
                name="one_pending_extension_per_grant",
            ),
            models.CheckConstraint(
                condition=Q(minutes__gte=MIN_REQUEST_MINUTES, minutes__lte=MAX_REQUEST_MINUTES),
                name="request_minutes_in_range",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        kind = "extension" if self.kind == self.Kind.EXTENSION else "access"
        return f"request #{self.pk}: {kind} to {self.group} for {self.requester}"

    @property
    def approvals_required(self) -> int:
        return self.approvals_needed or self.group.approvals_needed

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def effective_status(self, at=None) -> str:
        """Pending past its expiry counts as lapsed at once, whether or not the sweep ran."""
        if self.status == self.Status.PENDING and self.expires_at <= (at or timezone.now()):
            return self.Status.LAPSED
        return self.status


class Approval(models.Model):
    """One owner's yes to a request; a request needs its group's approvals_needed of them."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE,
                                related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="approvals")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["request", "approver"],
                                               name="one_approval_per_owner")]

    def __str__(self) -> str:
        return f"{self.approver} approved request #{self.request_id}"


class GrantActivity(models.Model):
    """An action a system reports as taken under a grant (SPEC §2.7 full action logging):
    shown on the grant's timeline, each report also in the audit trail."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="activities")
    action = models.CharField(max_length=100)
    detail = models.TextField(blank=True)
    happened_at = models.DateTimeField(help_text="When the system says it happened.")
    reported_at = models.DateTimeField()
    application = models.ForeignKey(Application, on_delete=models.PROTECT, null=True,
                                    blank=True, related_name="+")

    class Meta:
        ordering = ["happened_at", "pk"]
        verbose_name_plural = "grant activities"

    def __str__(self) -> str:
        return f"{self.action} under grant #{self.grant_id}"
