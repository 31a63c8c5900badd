from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdmin, evidence_links, fresh_code_accepted, refuse
from breakglass.models import AccessRequest, Application, Connector, Grant, Group
from breakglass.services import applications, grants, groups
from breakglass.services.errors import GrantError
from breakglass.sql import reachable_from

STATUS_BADGES = {"active": "badge--green", "requested": "badge--amber", "revoked": "badge--red"}


class GroupAdminForm(forms.ModelForm):
    class Meta:
        model = Group
        fields = ("name", "slug", "description", "sensitivity", "owners", "members",
                  "members_from_schedule", "break_glass_users", "contains",
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


@admin.register(Connector)
class ConnectorAdmin(SimpleHistoryAdmin):
    list_display = ("group", "kind", "django_group", "url", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("group__name", "url")
    readonly_fields = ("signing_secret_shown",)

    @admin.display(description="Signing secret (webhooks)")
    def signing_secret_shown(self, connector: Connector) -> str:
        if connector.pk is None or connector.kind != Connector.Kind.WEBHOOK:
            return "—"
        return connector.signing_secret()
