"""Websites in the admin. The verification contacts are the manager's alone: changing them
takes the manager's fresh one-time code, tells the old and the new contacts, and holds the new
ones for 24 hours unless a second administrator approves (backups.services.change_contacts)."""

from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from accounts.services import SecondFactorThrottled, verify_second_factor
from audit.admin import RequestFormMixin
from backups import services
from backups.models import BackupJob, EmergencyChallenge, Website

CONTACT_FIELDS = ("verification_email", "verification_mobile")


class WebsiteForm(forms.ModelForm):
    database_url = forms.CharField(
        label="Database URL", required=False, max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="sqlite:////path/to/db.sqlite3 or postgres://user:password@host/name. "
                  "Encrypted at rest, never shown again; leave empty to keep the stored one.")
    manager_code = forms.CharField(
        label="Manager's one-time code", required=False, max_length=20,
        help_text="Needed to change the verification contacts: the manager's fresh code.")

    class Meta:
        model = Website
        fields = ("name", "address", "manager", "owner_name", *CONTACT_FIELDS, "files_dir",
                  "emergency_enabled", "emergency_minutes", "retention_days")

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_address(self):
        return services.normalize_address(self.cleaned_data["address"])

    def contacts_changed(self) -> bool:
        return any(field in self.changed_data for field in CONTACT_FIELDS)

    def clean(self):
        cleaned = super().clean()
        if not self.contacts_changed() or self.errors:
            return cleaned
        user = self.request.user
        manager = cleaned.get("manager")
        if manager is None or manager.pk != user.pk:
            raise forms.ValidationError("Only the website's manager sets its verification "
                                        "contacts, with their own one-time code.")
        try:
            accepted = verify_second_factor(user, cleaned.get("manager_code") or "",
                                            request=self.request)
        except SecondFactorThrottled:
            accepted = None
        if accepted is None:
            self.add_error("manager_code", "A fresh one-time code from your authenticator is "
                                           "needed to change the contacts.")
        return cleaned


@admin.register(Website)
class WebsiteAdmin(RequestFormMixin, SimpleHistoryAdmin):
    form = WebsiteForm
    list_display = ("address", "name", "manager", "emergency_enabled", "locked_at",
                    "contacts_hold_until")
    list_filter = ("emergency_enabled",)
    search_fields = ("address", "name", "owner_name")
    readonly_fields = ("consecutive_failures", "locked_at", "contacts_changed_at",
                       "contacts_changed_by", "contacts_hold_until")
    actions = ["approve_contacts", "unlock", "start_drill"]

    def save_model(self, request, obj, form, change):
        new_contacts = {field: form.cleaned_data.get(field, "") for field in CONTACT_FIELDS}
        if change:  # the contacts change only through their service
            for field in CONTACT_FIELDS:
                setattr(obj, field, form.initial.get(field, ""))
        if form.cleaned_data.get("database_url"):
            from recovery.crypto import encrypt_field

            obj.database_url_encrypted = encrypt_field(form.cleaned_data["database_url"])
        super().save_model(request, obj, form, change)
        if form.contacts_changed():
            services.change_contacts(obj, email=new_contacts["verification_email"],
                                     mobile=new_contacts["verification_mobile"],
                                     actor=request.user, request=request)

    @admin.action(description="Approve new contacts now (second administrator)")
    def approve_contacts(self, request, queryset):
        for website in queryset:
            try:
                services.approve_contacts(website, actor=request.user, request=request)
            except PermissionError as refused:
                messages.error(request, f"{website}: {refused}")

    @admin.action(description="Start an emergency drill (a code labelled DRILL goes to the "
                              "contacts)")
    def start_drill(self, request, queryset):
        for website in queryset:
            try:
                nonce = services.start_drill(website, actor=request.user, request=request)
            except PermissionError as refused:
                messages.error(request, f"{website}: {refused}")
                continue
            if nonce:
                messages.success(request, f"{website}: drill code sent to the contacts; they "
                                          "enter it on the emergency page.")
            else:
                messages.error(request, f"{website}: no code was sent (locked, on hold or "
                                        "over the sending limits).")

    @admin.action(description="Unlock the emergency flow")
    def unlock(self, request, queryset):
        for website in queryset:
            services.unlock(website, actor=request.user, request=request)


@admin.register(BackupJob)
class BackupJobAdmin(admin.ModelAdmin):
    list_display = ("pk", "website", "status", "attempts", "created_at", "finished_at", "size")
    list_filter = ("status",)
    readonly_fields = [field.name for field in BackupJob._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EmergencyChallenge)
class EmergencyChallengeAdmin(admin.ModelAdmin):
    list_display = ("pk", "website", "created_at", "expires_at", "wrong_tries", "used_at")
    exclude = ("code_mac", "nonce")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
