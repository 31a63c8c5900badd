from typing import NoReturn

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from audit import outbox, webhooks
from audit.catalogue import EventKind, Outcome
from audit.models import AuditEvent, ChainHead, Checkpoint, Delivery, Heartbeat, WebhookEndpoint

BADGES = {
    Outcome.SUCCESS: "badge--green", Outcome.FAILURE: "badge--red", Outcome.DENIED: "badge--amber",
    Delivery.Status.SENT: "badge--green", Delivery.Status.PENDING: "badge--amber",
    Delivery.Status.SENDING: "badge--amber", Delivery.Status.FAILED: "badge--red",
}


def evidence_links(kind: str, object_id) -> str:
    """The evidence-pack buttons an incident's or a grant's admin page shows (the pack itself
    is built by the reports app, mounted in the admin as `admin:evidence`)."""
    if object_id is None:
        return "—"
    return format_html(
        '<a class="button" href="{}">Evidence pack (printable)</a> '
        '<a class="button" href="{}">Evidence pack (JSON)</a>',
        reverse("admin:evidence", args=[kind, object_id, "html"]),
        reverse("admin:evidence", args=[kind, object_id, "json"]))


def badge(value: str, label: str) -> str:
    return format_html('<span class="badge {}">{}</span>', BADGES.get(value, "badge--grey"), label)


class RequestFormMixin:
    """Hands the request to the admin form, whose step-up checks verify the acting user's
    one-time code (forms take a `request` keyword)."""

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class RequestForm(form):
            def __init__(self, *args, **inner):
                super().__init__(*args, request=request, **inner)

        return RequestForm


def refuse(request: HttpRequest, what: str, **data) -> NoReturn:
    """Answer 403 to staff asking for `what` beyond their permissions, audited."""
    from audit.services import refuse_admin_request

    refuse_admin_request(actor=request.user, what=what, data=data, request=request)
    raise PermissionDenied(f"Your permissions do not allow {what}.")


def fresh_code_accepted(request: HttpRequest) -> bool:
    """Whether the acting user typed a fresh one-time code (`code`) for a step-up."""
    from accounts.services import SecondFactorThrottled, verify_second_factor

    try:
        return verify_second_factor(request.user, request.POST.get("code", ""),
                                    request=request) is not None
    except SecondFactorThrottled:
        return False


def registered_actions(model_admin: admin.ModelAdmin) -> dict:
    """Every action an admin offers anyone, by name, whatever the user's permissions
    (the site's delete_selected included); `actions = None` turns them all off."""
    if model_admin.actions is None:
        return {}
    return {action.name: action for action in model_admin._get_base_actions()}


def requested_action(request: HttpRequest) -> str:
    """The action a changelist POST names, picked as Django's response_action picks it."""
    try:
        index = int(request.POST.get("index", 0))
    except ValueError:
        index = 0
    try:
        return request.POST.getlist("action")[index]
    except IndexError:
        return ""


class GuardedActionsMixin:
    """Refuses (403, audited) a changelist POST naming an action this admin has but the user
    may not run. Django itself only hides such an action and answers "No action selected",
    which leaves no trace of the attempt. The admin site mixes this into every ModelAdmin."""

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST" and "_save" not in request.POST:
            name = requested_action(request)
            if name in registered_actions(self) and name not in self.get_actions(request):
                refuse(request, f"the admin action {name!r} on {self.opts.verbose_name_plural}",
                       action=name, model=self.opts.label)
        return super().changelist_view(request, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        # simple-history's revert rebuilds the change form on an old version and saves it:
        # the form's step-up and custody checks would compare against that old version, not
        # the row in force. Configuration changes go through the change page, never a revert.
        if request.method == "POST":
            refuse(request, f"reverting {self.opts.verbose_name} from its history",
                   model=self.opts.label, object=str(object_id), version=str(version_id))
        return super().history_form_view(request, object_id, version_id, extra_context)


class GuardedAdmin(GuardedActionsMixin, admin.ModelAdmin):
    """The base of Breakglass's ModelAdmins: every state-changing action declares
    `permissions=[...]` (tests/security_review/test_02_admin_action_permissions.py)."""


class ReadOnlyAdmin(GuardedAdmin):
    """Nobody edits the trail through the admin, superusers included."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("channel", "recipient", "status", "attempts", "sent_at", "provider_message_id",
              "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "recorded_at", "kind_code", "outcome_badge", "actor_label",
                    "target_label", "ip")
    list_display_links = ("sequence", "kind_code")
    list_filter = ("kind", "outcome", "actor_type", "target_type", "recorded_at")
    search_fields = ("actor_label", "target_label", "reason", "ip", "request_id", "=actor_id",
                     "=target_id")
    date_hierarchy = "recorded_at"
    list_per_page = 100
    show_full_result_count = False
    inlines = [DeliveryInline]
    fields = ("sequence", "recorded_at", "kind", "outcome", "actor_type", "actor_id",
              "actor_label", "target_type", "target_id", "target_label", "reason", "data", "ip",
              "user_agent", "request_id", "mac")

    @admin.display(description="Kind", ordering="kind")
    def kind_code(self, event: AuditEvent) -> str:
        return format_html('<code title="{}">{}</code>', event.get_kind_display(), event.kind)

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, event: AuditEvent) -> str:
        return badge(event.outcome, event.get_outcome_display())

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "chain_status": chain_status()}
        return super().changelist_view(request, extra_context)


def chain_status() -> dict:
    head = ChainHead.objects.filter(pk=1).first()
    checkpoint = Checkpoint.objects.order_by("-written_at").first()
    return {"head": head, "checkpoint": checkpoint}


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "channel", "recipient", "status_badge", "attempts",
                    "next_attempt_at", "sent_at", "event_link", "last_error")
    list_filter = ("status", "channel", "created_at")
    search_fields = ("recipient", "provider_message_id", "=event__sequence")
    date_hierarchy = "created_at"
    list_select_related = ("event",)
    actions = ["retry_now"]
    exclude = ("body", "html_body")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, delivery: Delivery) -> str:
        return badge(delivery.status, delivery.get_status_display())

    @admin.display(description="Event")
    def event_link(self, delivery: Delivery) -> str:
        return format_html("#{} {}", delivery.event.sequence, delivery.event.kind)

    def has_retry_permission(self, request) -> bool:
        # Deliveries are read-only here; asking for a retry is the one change allowed.
        return request.user.has_perm("audit.change_delivery")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        for delivery in queryset:
            outbox.retry_delivery(delivery, actor=request.user)
        messages.success(request, f"{queryset.count()} deliveries are due again.")


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("written_at", "sequence", "verified", "problem")
    list_filter = ("verified",)
    date_hierarchy = "written_at"


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "beat_at")


class WebhookEndpointForm(forms.ModelForm):
    """Every save needs a fresh one-time code: an endpoint decides where alerts about break-glass
    use go, and a narrowed or disabled one stops them."""

    event_kinds = forms.MultipleChoiceField(
        label="Event kinds", choices=EventKind.choices, required=False,
        widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="The alerts it receives; select none for every alert.")
    code = forms.CharField(label="Your one-time code", required=False, max_length=20,
                           help_text="A fresh code from your authenticator.")

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "enabled", "event_kinds")

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean(self):
        cleaned = super().clean()
        for field, check in (("url", webhooks.check_url),
                             ("event_kinds", webhooks.check_event_kinds)):
            if field in cleaned:
                try:
                    cleaned[field] = check(cleaned[field])
                except webhooks.InvalidEndpoint as invalid:
                    self.add_error(field, str(invalid))
        if not self.errors and self._changes_something() and not self._fresh_code(cleaned):
            self.add_error("code", "A fresh one-time code from your authenticator is needed to "
                                   "add or change a webhook endpoint.")
        return cleaned

    def _changes_something(self) -> bool:
        return self.instance.pk is None or any(
            field != "code" for field in self.changed_data)

    def _fresh_code(self, cleaned: dict) -> bool:
        from accounts.services import SecondFactorThrottled, verify_second_factor

        try:
            return verify_second_factor(self.request.user, cleaned.get("code") or "",
                                        request=self.request) is not None
        except SecondFactorThrottled:
            return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(RequestFormMixin, SimpleHistoryAdmin):
    """Secrets are made here and shown once (on creation and on "Rotate signing secret"),
    never again."""

    form = WebhookEndpointForm
    list_display = ("name", "url", "enabled", "kinds_shown", "secret_status")
    list_filter = ("enabled",)
    search_fields = ("name", "url")
    readonly_fields = ("secret_status", "created_at")
    actions = ["rotate_secret"]

    @admin.display(description="Alerts")
    def kinds_shown(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_kinds) or "every alert"

    @admin.display(description="Signing secret")
    def secret_status(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.pk is None:
            return "Made when you save; shown once."
        words = f"Set {endpoint.secret_rotated_at or endpoint.created_at:%Y-%m-%d %H:%M} UTC"
        if endpoint.previous_secret_expires_at and (
                endpoint.previous_secret_expires_at > timezone.now()):
            words += (f"; the previous secret also signs until "
                      f"{endpoint.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC")
        return words + "."

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # disable it instead: its audit events and deliveries name it

    def save_model(self, request, obj, form, change):
        if change:
            webhooks.change_webhook_endpoint(
                obj, changes={field: form.cleaned_data[field]
                              for field in webhooks.EDITABLE_FIELDS},
                actor=request.user, request=request)
            obj.refresh_from_db()
        else:
            obj.issued_secret = webhooks.create_webhook_endpoint(obj, actor=request.user,
                                                                 request=request)

    def response_add(self, request, obj, post_url_continue=None):
        return self._secret_page(request, "admin/audit/webhookendpoint/new_secrets.html",
                                 issued=[(obj, obj.issued_secret)], title="Signing secret")

    @admin.action(description="Rotate signing secret", permissions=["change"])
    def rotate_secret(self, request, queryset):
        """Asks for a fresh one-time code on a confirmation page (posted back with
        `post=yes`), then shows each new secret once."""
        confirmed = request.POST.get("post") == "yes"
        if not (confirmed and fresh_code_accepted(request)):
            if confirmed:
                messages.error(request, "A fresh one-time code is needed to rotate a signing "
                                        "secret.")
            return self._secret_page(
                request, "admin/audit/webhookendpoint/confirm_rotation.html",
                endpoints=queryset, title="Rotate signing secrets?",
                overlap_hours=round(settings.WEBHOOK_ROTATION_OVERLAP.total_seconds() / 3600))
        # All or none: a secret rotated but never shown would leave its receiver unable to
        # verify once the overlap ends.
        with transaction.atomic():
            issued = [(endpoint, webhooks.rotate_webhook_secret(endpoint, actor=request.user,
                                                                request=request))
                      for endpoint in queryset]
        return self._secret_page(request, "admin/audit/webhookendpoint/new_secrets.html",
                                 issued=issued, title="New signing secrets")

    def _secret_page(self, request, template: str, **context):
        from django.contrib.admin import helpers
        from django.template.response import TemplateResponse

        response = TemplateResponse(request, template, {
            **self.admin_site.each_context(request), **context, "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME})
        response["Cache-Control"] = "no-store"
        return response
