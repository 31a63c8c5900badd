"""Paging subscriptions, the priority table and the service links in the admin. Every change
keeps one history row with the acting user (ConfigurationHistory); a subscription's secret or
token is write-only: typed to set or replace it, with a fresh one-time code, never shown
again."""

from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import ReadOnlyAdmin, RequestFormMixin, fresh_code_accepted
from paging import services
from paging.models import PrioritySeverity, ReceivedEvent, ServiceLink, Subscription

MIN_SECRET_LENGTH = 32


class SubscriptionForm(forms.ModelForm):
    secret = forms.CharField(
        label="Secret or token", required=False, max_length=500, strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="PagerDuty: the webhook subscription's signing secret (stored encrypted). "
                  "Opsgenie: a token of at least 32 characters you also put in the webhook's "
                  "\"Authorization: Bearer …\" header (stored as a hash). Never shown again; "
                  "leave empty to keep the stored one.")
    code = forms.CharField(label="Your one-time code", required=False, max_length=20,
                           help_text="A fresh code from your authenticator: needed to add a "
                                     "subscription or replace its secret or token.")

    class Meta:
        model = Subscription
        fields = ("name", "slug", "source", "enabled", "default_severity")

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean(self):
        cleaned = super().clean()
        secret = cleaned.get("secret") or ""
        if secret and len(secret) < MIN_SECRET_LENGTH:
            self.add_error("secret", f"Use at least {MIN_SECRET_LENGTH} characters.")
        elif not secret and not self.instance.has_secret:
            self.add_error("secret", "A new subscription needs its secret or token.")
        # Checked last, so that a form refused for another reason does not use up the code.
        new_secret = self.instance.pk is None or bool(secret)
        if not self.errors and new_secret and not fresh_code_accepted(self.request):
            self.add_error("code", "A fresh one-time code from your authenticator is needed to "
                                   "add a subscription or replace its secret or token.")
        return cleaned


@admin.register(Subscription)
class SubscriptionAdmin(RequestFormMixin, SimpleHistoryAdmin):
    form = SubscriptionForm
    list_display = ("name", "source", "slug", "enabled", "default_severity", "secret_state")
    list_filter = ("source", "enabled")
    search_fields = ("name", "slug")
    readonly_fields = ("secret_state", "created_at")
    prepopulated_fields = {"slug": ("name",)}

    def get_readonly_fields(self, request, obj=None):
        # The secret's kind (encrypted or hashed) follows the source: make another instead.
        return (*self.readonly_fields, "source") if obj is not None else self.readonly_fields

    @admin.display(description="Secret or token")
    def secret_state(self, subscription: Subscription) -> str:
        return "Set" if subscription.has_secret else "Not set"

    def save_model(self, request, obj, form, change):
        if change and set(form.changed_data) <= {"code"}:
            return  # nothing changed: no history row
        services.save_subscription(obj, secret=form.cleaned_data.get("secret") or "",
                                   actor=request.user, request=request)


@admin.register(PrioritySeverity)
class PrioritySeverityAdmin(SimpleHistoryAdmin):
    list_display = ("source", "priority", "severity")
    list_editable = ("severity",)
    list_filter = ("source", "severity")


@admin.register(ServiceLink)
class ServiceLinkAdmin(SimpleHistoryAdmin):
    list_display = ("source", "key", "description", "group_list")
    list_filter = ("source",)
    search_fields = ("key", "description")
    filter_horizontal = ("groups", "policies")

    @admin.display(description="Groups")
    def group_list(self, link: ServiceLink) -> str:
        return ", ".join(group.slug for group in link.groups.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return  # nothing changed: no history row
        services.save_service_link(obj, groups=form.cleaned_data["groups"],
                                   policies=form.cleaned_data["policies"])

    def save_related(self, request, form, formsets, change):
        pass  # save_model wrote the links with the row, as one change


@admin.register(ReceivedEvent)
class ReceivedEventAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "subscription", "event_type", "event_key", "outcome")
    list_filter = ("outcome", "subscription")
    search_fields = ("event_key", "event_type")
    list_select_related = ("subscription",)
