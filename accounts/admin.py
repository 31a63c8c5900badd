from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from accounts.forms import UserChangeForm
from accounts.models import BackupCodeDevice, DirectoryGroup, TOTPDevice, User
from accounts.services import remove_second_factor
from audit.admin import fresh_code_accepted


@admin.register(User)
class UserAdmin(SimpleHistoryAdmin, DjangoUserAdmin):
    form = UserChangeForm
    fieldsets = (
        *DjangoUserAdmin.fieldsets[:1],
        ("Personal info", {"fields": ("first_name", "last_name", "email", "mobile")}),
        # With single sign-on: who keeps the local break-glass login, and which identity at
        # the provider this account is (set at the first sign-on; an administrator may link
        # an account made by hand). Both changes are kept in the history.
        ("Single sign-on", {"fields": ("may_use_local_login", "sso_subject")}),
        *DjangoUserAdmin.fieldsets[2:],
    )
    list_display = ("username", "email", "mobile", "is_staff", "is_active",
                    "may_use_local_login", "last_login")
    list_filter = (*DjangoUserAdmin.list_filter, "may_use_local_login")
    search_fields = ("username", "email", "first_name", "last_name", "mobile")
    # review/admin.py adds "reopen_after_review": reviews build on accounts, not the reverse.


class SecondFactorAdmin(admin.ModelAdmin):
    """A user's second factor is removed only by the action below, which asks the acting staff
    member for a fresh one-time code and goes through remove_second_factor (audited, the user
    told by email and SMS). Django's delete page and bulk delete would do it silently."""

    actions = ["remove_second_factor"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_remove_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    @admin.action(description="Remove (the user enrols again; asks for your one-time code)",
                  permissions=["remove"])
    def remove_second_factor(self, request, queryset):
        confirmed = request.POST.get("post") == "yes"
        if not (confirmed and fresh_code_accepted(request)):
            if confirmed:
                messages.error(request, "A fresh one-time code is needed to remove a factor.")
            return TemplateResponse(request, "admin/accounts/confirm_remove_second_factor.html", {
                **self.admin_site.each_context(request), "devices": queryset, "opts": self.opts,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "title": f"Remove {self.opts.verbose_name_plural}?"})
        for device in queryset:
            if remove_second_factor(device, actor=request.user, request=request):
                messages.success(request, f"Removed {device}; {device.user} has been told.")


@admin.register(BackupCodeDevice)
class BackupCodeDeviceAdmin(SecondFactorAdmin):
    """Codes are never shown (only their keyed hashes exist); removing the set resets it."""

    list_display = ("user", "name", "confirmed", "unused")
    search_fields = ("user__username",)
    fields = ("user", "name", "confirmed")
    readonly_fields = ("user", "confirmed")  # unconfirming a set would remove it silently

    @admin.display(description="Unused codes")
    def unused(self, device: BackupCodeDevice) -> int:
        return device.unused_count()


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(SecondFactorAdmin):
    """The seed is never shown (it is stored encrypted); removing a lost phone's device makes
    its owner enrol again after the password and a backup code."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    fields = ("user", "name", "confirmed", "created_at", "last_used_at")
    readonly_fields = ("user", "confirmed", "created_at", "last_used_at")


@admin.register(DirectoryGroup)
class DirectoryGroupAdmin(SimpleHistoryAdmin):
    """Read only: the directory owns these groups and changes them over SCIM, where every
    change is audited; a hand edit here would be undone by its next push anyway."""

    list_display = ("display_name", "external_id")
    search_fields = ("display_name", "external_id", "members__username")
    readonly_fields = ("display_name", "external_id", "members")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
