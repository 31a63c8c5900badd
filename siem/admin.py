from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from siem import services
from siem.models import SiemStream


class SiemStreamForm(forms.ModelForm):
    """The bearer token is write-only: typed to set or replace it, never shown again."""

    bearer_token = forms.CharField(
        required=False, max_length=2000, strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="HTTP streams: sent as Authorization: Bearer. Encrypted at rest, never shown "
                  "again; leave empty to keep the stored one.")

    class Meta:
        model = SiemStream
        fields = ("name", "kind", "address", "tls", "tls_ca_file", "tls_server_name", "enabled",
                  "start_from")

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        kind = cleaned.get("kind") or self.instance.kind
        try:
            services.check_destination(kind, cleaned.get("address", ""),
                                       tls=cleaned.get("tls", False),
                                       tls_ca_file=cleaned.get("tls_ca_file", ""))
        except services.InvalidStream as invalid:
            self.add_error(invalid.field if invalid.field in self.fields else None, str(invalid))
        if cleaned.get("bearer_token") and kind != SiemStream.Kind.JSONL_HTTP:
            self.add_error("bearer_token", "Only an HTTP stream sends a bearer token.")
        return cleaned


@admin.register(SiemStream)
class SiemStreamAdmin(SimpleHistoryAdmin):
    form = SiemStreamForm
    list_display = ("name", "kind", "address", "enabled", "sent_through", "lag_shown",
                    "last_sent_at", "health")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "address")
    readonly_fields = ("sent_through", "lag_shown", "last_sent_at", "health", "last_error",
                       "failures", "next_attempt_at", "bearer_token_set")
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled", "start_from")}),
        ("Destination", {"fields": ("address", "tls", "tls_ca_file", "tls_server_name",
                                    "bearer_token", "bearer_token_set")}),
        ("Progress", {"fields": ("sent_through", "lag_shown", "last_sent_at", "health",
                                 "last_error", "failures", "next_attempt_at")}),
    )
    actions = ["send_now"]

    def get_readonly_fields(self, request, obj=None):
        # Another kind, or another start, is another stream: make a new one.
        fixed = ("kind", "start_from") if obj is not None else ()
        return (*self.readonly_fields, *fixed)

    @admin.display(description="Behind the chain by")
    def lag_shown(self, stream: SiemStream) -> str:
        return "—" if stream.pk is None else f"{services.lag(stream)} events"

    @admin.display(description="Health")
    def health(self, stream: SiemStream) -> str:
        if stream.pk is None:
            return "—"
        if stream.last_error:
            return format_html('<span class="badge badge--red">Failing</span> retry at {} UTC',
                               f"{stream.next_attempt_at:%Y-%m-%d %H:%M:%S}"
                               if stream.next_attempt_at else "once due")
        return format_html('<span class="badge {}">{}</span>',
                           "badge--green" if stream.enabled else "badge--grey",
                           "Working" if stream.enabled else "Paused")

    @admin.display(description="A bearer token is stored", boolean=True)
    def bearer_token_set(self, stream: SiemStream) -> bool:
        return bool(stream.bearer_token_encrypted)

    def save_model(self, request, obj, form, change):
        services.save_stream(obj, actor=request.user, request=request,
                             bearer_token=form.cleaned_data.get("bearer_token", ""))

    def delete_model(self, request, obj):
        services.delete_stream(obj, actor=request.user, request=request)

    def delete_queryset(self, request, queryset):
        for stream in queryset:
            services.delete_stream(stream, actor=request.user, request=request)

    @admin.action(description="Send now (skip the backoff)", permissions=["change"])
    def send_now(self, request, queryset):
        for stream in queryset:
            sent, error = services.send_now(stream)
            if error:
                messages.error(request, f"{stream.name}: {sent} events sent, then: {error}")
            else:
                messages.success(request, f"{stream.name}: {sent} events sent.")
