from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdmin, evidence_links, fresh_code_accepted, refuse
from breakglass.models import (
    AccessRequest,
    Application,
    ClaimMapping,
    Connector,
    ConnectorLogin,
    Grant,
    Group,
)
from breakglass.services import applications, connectors, grants, groups
from breakglass.services.errors import GrantError, InvalidInput
from breakglass.sql import reachable_from

STATUS_BADGES = {"active": "badge--green", "requested": "badge--amber", "revoked": "badge--red"}


class GroupAdminForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ("name", "slug", "description", "sensitivity", "owners", "members",
                  "members_from_schedule", "members_from_directory_group",
                  "break_glass_users", "contains",
                  "break_glass_minutes", "armed_by_incident", "end_grants_on_resolve",
                  "review_before_next",
                  "requestable", "request_max_minutes",
                  "request_reason_required", "request_incident_required", "approvals_needed",
                  "auto_approve_group", "request_expiry_minutes")

    def clean_contains(self):
        contained = list(self.cleaned_data.get("contains") or [])
        if self.instance.pk is None:
            return contained
        for inner in contained:
            if inner.pk == self.instance.pk or self.instance.pk in reachable_from([inner.pk]):
                raise forms.ValidationError(
                    f"“{inner.name}” already contains “{self.instance.name}” (directly or "
                    "through other groups): nesting it here would make a cycle."
                )
        return contained


@admin.register(Group)
class GroupAdmin(SimpleHistoryAdmin):
    form = GroupAdminForm
    list_display = ("name", "slug", "sensitivity_badge", "break_glass_minutes", "active_grants")
    list_filter = ("sensitivity",)
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("owners", "members", "break_glass_users", "contains")
    actions = ["revoke_all_of_selected"]

    def has_revoke_permission(self, request) -> bool:
        return grants.may_revoke_any(request.user)

    def save_related(self, request, form, formsets, change):
        # The form writes the memberships; who may break glass is also audited.
        before = groups.break_glass_usernames(form.instance) if change else set()
        super().save_related(request, form, formsets, change)
        groups.record_break_glass_users_change(form.instance, before, actor=request.user,
                                                 request=request)

    def get_queryset(self, request):
        from django.db.models import Count, Q

        return super().get_queryset(request).annotate(
            active_count=Count("grants", filter=Q(grants__status=Grant.Status.ACTIVE)))

    @admin.display(description="Sensitivity", ordering="sensitivity")
    def sensitivity_badge(self, group: Group) -> str:
        css = {"critical": "badge--red", "high": "badge--amber"}.get(group.sensitivity,
                                                                     "badge--grey")
        return format_html('<span class="badge {}">{}</span>', css,
                           group.get_sensitivity_display().upper())

    @admin.display(description="Active grants", ordering="active_count")
    def active_grants(self, group: Group) -> int:
        return group.active_count

    @admin.action(description="Revoke all active access to the selected groups",
                  permissions=["revoke"])
    def revoke_all_of_selected(self, request, queryset):
        total = sum(
            grants.revoke_all(group, actor=request.user, request=request,
                                reason=f"Revoke all from the admin by {request.user}")
            for group in queryset
        )
        messages.success(request, f"{total} grants ended.")


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    """Grants change only through their services (the actions below), never by editing."""

    list_display = ("pk", "user", "group", "status_badge", "source", "activated_at",
                    "expires_at", "ended_at", "ended_by")
    list_filter = ("status", "source", "group__sensitivity", "requested_at")
    search_fields = ("user__username", "group__name", "group__slug", "reason", "incident")
    date_hierarchy = "requested_at"
    list_select_related = ("user", "group", "ended_by")
    actions = ["end_selected", "revoke_everything"]
    readonly_fields = [*(field.name for field in Grant._meta.fields), "evidence_pack"]

    def has_revoke_permission(self, request) -> bool:
        return grants.may_revoke_any(request.user)

    @admin.display(description="Evidence pack")
    def evidence_pack(self, grant: Grant) -> str:
        return evidence_links("grant", grant.pk)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, grant: Grant) -> str:
        return format_html('<span class="badge {}">{}</span>',
                           STATUS_BADGES.get(grant.status, "badge--grey"),
                           grant.get_status_display())

    @admin.action(description="End access now for the selected grants", permissions=["revoke"])
    def end_selected(self, request, queryset):
        ended = 0
        for grant in queryset.filter(status=Grant.Status.ACTIVE):
            try:
                grants.revoke_grant(grant, actor=request.user, request=request,
                                      reason=f"Ended from the admin by {request.user}")
                ended += 1
            except GrantError:
                continue
        messages.success(request, f"{ended} grants ended.")

    @admin.action(description="Revoke ALL active access everywhere (emergency)",
                  permissions=["revoke"])
    def revoke_everything(self, request, queryset):
        total = grants.revoke_all(None, actor=request.user, request=request,
                                    reason=f"Global revoke all from the admin by {request.user}")
        messages.warning(request, f"{total} grants ended everywhere.")

    def changelist_view(self, request, extra_context=None):
        # "Revoke all everywhere" acts on no selection in particular.
        if request.POST.get("action") == "revoke_everything" and not request.POST.getlist(
                "_selected_action"):
            post = request.POST.copy()
            post.setlist("_selected_action", ["0"])
            request.POST = post
        return super().changelist_view(request, extra_context)


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    """Requests change only through their services (the request page), never here."""

    list_display = ("pk", "requester", "group", "kind", "status", "minutes", "created_at",
                    "expires_at", "decided_by")
    list_filter = ("status", "kind", "group__sensitivity")
    search_fields = ("requester__username", "group__name", "group__slug", "reason",
                     "incident")
    list_select_related = ("requester", "group", "decided_by")
    readonly_fields = [field.name for field in AccessRequest._meta.fields]


@admin.register(Application)
class ApplicationAdmin(SimpleHistoryAdmin):
    list_display = ("name", "token_prefix", "scope_list", "enabled", "last_used_at")
    list_filter = ("enabled",)
    search_fields = ("name", "token_prefix")
    readonly_fields = ("token_prefix", "created_at", "last_used_at")
    actions = ["generate_token"]

    @admin.display(description="Scopes")
    def scope_list(self, application: Application) -> str:
        return ", ".join(application.scopes)

    def has_add_permission(self, request) -> bool:
        return False  # `manage.py create_application` prints the first token once

    @admin.action(description="Generate token (replaces the current one)",
                  permissions=["change"])
    def generate_token(self, request, queryset):
        """Asks for a fresh one-time code on a confirmation page (posted back with
        `post=yes`), then shows each new token once."""
        bound = queryset.exclude(recovery_policy=None)
        if bound.exists() and not request.user.has_perm("recovery.change_recoverypolicy"):
            # A policy's own fetcher is locked out by a new token: a change to the policy.
            refuse(request, "a new token for a recovery policy's application without the "
                   "right to change recovery policies", action="generate_token",
                   model=self.opts.label, policies=sorted(bound.values_list(
                       "recovery_policy__slug", flat=True)))
        confirmed = request.POST.get("post") == "yes"
        if not (confirmed and fresh_code_accepted(request)):
            if confirmed:
                messages.error(request, "A fresh one-time code is needed to generate a token.")
            return self._token_page(request, "admin/breakglass/confirm_new_tokens.html",
                                    applications=queryset, title="Generate new tokens?")
        issued = [(app, applications.rotate_token(app, actor=request.user, request=request))
                  for app in queryset]
        return self._token_page(request, "admin/breakglass/new_tokens.html", issued=issued,
                                title="New tokens")

    def _token_page(self, request, template: str, **context):
        from django.contrib.admin import helpers
        from django.template.response import TemplateResponse

        response = TemplateResponse(request, template, {
            **self.admin_site.each_context(request), **context, "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME})
        response["Cache-Control"] = "no-store"
        return response


CONNECTOR_SECRETS = {"server_url": "Server URL", "bind_dn": "Bind DN",
                     "bind_password": "Bind password"}
HEALTH_BADGES = {"ok": "badge--green", "failing": "badge--red", "unknown": "badge--grey"}


class ConnectorForm(forms.ModelForm):
    """The secrets are write-only: typed to set or replace them, never shown again (left
    empty, the stored one stays). Every kind's own rules are checked as the command checks
    them (the kind's check_settings)."""

    server_url = forms.CharField(
        label="Server URL", required=False, max_length=2000,
        widget=forms.PasswordInput(render_value=False),
        help_text="postgres://user:password@host:port/db, mysql://user:password@host:port or "
                  "ldaps://host:636. Encrypted at rest, never shown again; leave empty to keep "
                  "the stored one.")
    bind_dn = forms.CharField(label="Bind DN (LDAP)", required=False, max_length=1000,
                              widget=forms.PasswordInput(render_value=False),
                              help_text="Encrypted at rest; leave empty to keep the stored one.")
    bind_password = forms.CharField(
        label="Bind password (LDAP)", required=False, max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="Encrypted at rest; leave empty to keep the stored one.")

    class Meta:
        model = Connector
        fields = ("name", "group", "kind", "target_name", "options", "logins", "mode",
                  "enabled", "django_group", "url", "secret_version")

    def clean(self):
        from breakglass.connectors import target_class
        from breakglass.connectors.base import ConnectorProblem, Settings
        from breakglass.connectors.base import secret as stored_secret

        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind  # read-only once created
        if not kind:
            return cleaned
        secrets = {}
        for store in CONNECTOR_SECRETS:
            typed = (cleaned.get(store) or "").strip()
            secrets[store] = typed or (stored_secret(self.instance, store)
                                       if self.instance.pk else "")
        try:
            options = connectors.check_options(kind, cleaned.get("options") or {})
        except InvalidInput as invalid:
            raise forms.ValidationError(str(invalid)) from None
        cleaned["options"] = options
        settings = Settings(target_name=cleaned.get("target_name") or "",
                            secrets={k: v for k, v in secrets.items() if v}, options=options,
                            fields={"url": cleaned.get("url") or ""})
        try:
            target_class(kind).check_settings(settings)
        except ConnectorProblem as problem:
            raise forms.ValidationError(str(problem)) from None
        self.secrets = secrets
        return cleaned

    def save(self, commit=True):
        from recovery.crypto import encrypt_field

        connector = super().save(commit=False)
        for store in CONNECTOR_SECRETS:
            if (self.cleaned_data.get(store) or "").strip():
                setattr(connector, f"{store}_encrypted",
                        encrypt_field(self.cleaned_data[store].strip()))
        if commit:
            connector.save()
        return connector


class ConnectorLoginInline(admin.TabularInline):
    model = ConnectorLogin
    extra = 0
    autocomplete_fields = ("user",)
    verbose_name = "login on the target"
    verbose_name_plural = ("Logins on the target (when a user's login is not their "
                           "Breakglass username)")


@admin.register(Connector)
class ConnectorAdmin(SimpleHistoryAdmin):
    form = ConnectorForm
    inlines = [ConnectorLoginInline]
    list_display = ("name", "group", "kind", "target_name", "mode", "health_badge",
                    "last_reconciled_at", "pending_count", "enabled")
    list_filter = ("kind", "enabled", "health", "mode")
    search_fields = ("name", "group__name", "target_name", "url")
    readonly_fields = ("connection", "health_badge", "health_detail", "health_checked_at",
                       "last_reconciled_at", "pending_shown", "signing_secret_shown")
    fieldsets = (
        (None, {"fields": ("name", "group", "kind", "enabled", "mode", "logins")}),
        ("Target", {"fields": ("target_name", "server_url", "bind_dn", "bind_password",
                               "options", "django_group", "url", "secret_version",
                               "signing_secret_shown")}),
        ("Health", {"fields": ("connection", "health_badge", "health_detail",
                               "health_checked_at", "last_reconciled_at", "pending_shown")}),
    )
    actions = ["test_connections", "reconcile_now"]
    change_form_template = "admin/breakglass/connector/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        # Another kind needs other secrets and settings: make a new connector instead.
        return (*self.readonly_fields, "kind") if obj is not None else self.readonly_fields

    @admin.display(description="Health", ordering="health")
    def health_badge(self, connector: Connector) -> str:
        return format_html('<span class="badge {}">{}</span>',
                           HEALTH_BADGES.get(connector.health, "badge--grey"),
                           connector.get_health_display())

    @admin.display(description="Revocations pending")
    def pending_count(self, connector: Connector) -> int:
        return connectors.pending_revocations().filter(connector=connector).count()

    @admin.display(description="Revocations pending")
    def pending_shown(self, connector: Connector) -> str:
        if connector.pk is None:
            return "—"
        pending = list(connectors.pending_revocations().filter(connector=connector)[:20])
        if not pending:
            return "None"
        return format_html_join(
            "", "<div>{} since {} UTC{}</div>",
            ((item.user.get_username(), f"{item.asked_at:%Y-%m-%d %H:%M}",
              f": {item.last_error}" if item.last_error else "") for item in pending))

    @admin.display(description="Connection")
    def connection(self, connector: Connector) -> str:
        if connector.pk is None:
            return "Save first, then test the connection."
        return format_html(
            '<button type="submit" class="button" form="connector-test">{}</button> '
            '<button type="submit" class="button" form="connector-reconcile">{}</button>',
            "Test connection", "Reconcile now")

    @admin.display(description="Signing secret (webhooks)")
    def signing_secret_shown(self, connector: Connector) -> str:
        if connector.pk is None or connector.kind != Connector.Kind.WEBHOOK:
            return "—"
        return connector.signing_secret()

    def get_urls(self):
        return [
            path("<int:connector_id>/test/", self.admin_site.admin_view(self.test_view),
                 name="breakglass_connector_test"),
            path("<int:connector_id>/reconcile/",
                 self.admin_site.admin_view(self.reconcile_view),
                 name="breakglass_connector_reconcile"),
            *super().get_urls()]

    def _connector_for_change(self, request, connector_id: int, what: str) -> Connector:
        connector = get_object_or_404(Connector, pk=connector_id)
        if not self.has_change_permission(request, connector):
            refuse(request, f"{what} the connector {connector.name!r}", view=what,
                   model=self.opts.label, object=connector.pk)
        return connector

    def test_view(self, request, connector_id: int):
        if request.method == "POST":
            connector = self._connector_for_change(request, connector_id, "testing")
            self._tell_test(request, connector)
        return redirect("admin:breakglass_connector_change", connector_id)

    def reconcile_view(self, request, connector_id: int):
        if request.method == "POST":
            connector = self._connector_for_change(request, connector_id, "reconciling")
            self._tell_reconcile(request, connector)
        return redirect("admin:breakglass_connector_change", connector_id)

    @admin.action(description="Test connection", permissions=["change"])
    def test_connections(self, request, queryset):
        for connector in queryset:
            self._tell_test(request, connector)

    @admin.action(description="Reconcile now", permissions=["change"])
    def reconcile_now(self, request, queryset):
        for connector in queryset:
            self._tell_reconcile(request, connector)

    @staticmethod
    def _tell_test(request, connector: Connector) -> None:
        ok, words = connectors.test_connection(connector, actor=request.user, request=request)
        (messages.success if ok else messages.error)(request, f"{connector.name}: {words}")

    @staticmethod
    def _tell_reconcile(request, connector: Connector) -> None:
        if not connector.reconciles:
            messages.warning(request, f"{connector.name}: a webhook cannot list its members, "
                                      "so there is nothing to reconcile.")
            return
        result = connectors.reconcile(connector, actor=request.user, request=request)
        if result.problem:
            messages.error(request, f"{connector.name}: could not reconcile: {result.problem}")
            return
        words = (f"{connector.name}: {result.present} present, {result.wanted} with access; "
                 f"missing {len(result.missing)}, extra {len(result.extra)}; granted "
                 f"{len(result.granted)}, revoked {len(result.revoked)}")
        if result.failed:
            messages.error(request, words + "; failed: " + "; ".join(
                f"{login}: {error}" for login, error in result.failed.items()))
        else:
            messages.success(request, words + ".")


@admin.register(ClaimMapping)
class ClaimMappingAdmin(SimpleHistoryAdmin):
    """Single sign-on: what each value of the provider's `groups` claim gives. Applied at
    every sign-in (breakglass/services/claims.py); the history keeps every change."""

    list_display = ("claim_value", "role", "group")
    list_filter = ("role",)
    search_fields = ("claim_value", "group__name")
    autocomplete_fields = ("group",)
