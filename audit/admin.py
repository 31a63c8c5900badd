from django.contrib import admin, messages
from django.utils.html import format_html

from audit import outbox
from audit.catalogue import Outcome
from audit.models import AuditEvent, ChainHead, Checkpoint, Delivery, Heartbeat

BADGES = {
    Outcome.SUCCESS: "badge--green", Outcome.FAILURE: "badge--red", Outcome.DENIED: "badge--amber",
    Delivery.Status.SENT: "badge--green", Delivery.Status.PENDING: "badge--amber",
    Delivery.Status.SENDING: "badge--amber", Delivery.Status.FAILED: "badge--red",
}


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


class ReadOnlyAdmin(admin.ModelAdmin):
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

    @admin.action(description="Retry now")
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
