"""Soffid's "Break-glass recovery configuration" page, one per policy, with its credentials
inline (write-only: the secret is typed, never shown) and the authorized application's token."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from accounts.services import SecondFactorThrottled, verify_second_factor
from audit.admin import RequestFormMixin, fresh_code_accepted, refuse
from recovery import services
from recovery.models import EmergencyCredential, RecoveryEnrolment, RecoveryPolicy

USER_FIELDS = ("first_user", "second_user", "third_user")


RULE_FIELDS = (*USER_FIELDS, "required", "enabled", "sensitivity", "armed_by_incident")


class RecoveryPolicyForm(forms.ModelForm):
    code = forms.CharField(
        label="Your one-time code", required=False, max_length=20,
        help_text="A fresh code from your authenticator: needed to change the users, the "
                  "number required or whether the policy is enabled.")
    reason = forms.CharField(label="Reason for the change", required=False, max_length=2000,
                             help_text="Needed with the code; the holders are told.")
    application_enabled = forms.BooleanField(
        label="Enabled", required=False,
        help_text="While off, the application's token is refused (403) and cannot fetch the "
                  "bundle.")

    class Meta:
        model = RecoveryPolicy
        fields = ("name", "slug", "description", *USER_FIELDS, "required", "enabled",
                  "sensitivity", "armed_by_incident", "review_before_next", "attempt_minutes",
                  "reveal_minutes")

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        application = self.instance.application if self.instance.pk else None
        self.fields["application_enabled"].initial = bool(application and application.enabled)

    def clean(self):
        cleaned = super().clean()
        users = [cleaned.get(field) for field in USER_FIELDS if cleaned.get(field)]
        if len({user.pk for user in users}) != len(users):
            raise forms.ValidationError("Each authorized user may appear only once.")
        required = cleaned.get("required")
        if required and required > len(users):
            self.add_error("required", f"{required} required, but only {len(users)} "
                                       f"authorized user{'s' if len(users) != 1 else ''}.")
        enrolled = set(RecoveryEnrolment.objects.filter(
            user__in=users).values_list("user_id", flat=True))
        missing = [user.username for user in users if user.pk not in enrolled]
        users_changed = any(field in self.changed_data for field in USER_FIELDS)
        # A bundle is only ever re-issued for enrolled users: naming someone who has not
        # enrolled would leave the old bundle (and its former holders' shares) in service.
        if missing and (cleaned.get("enabled") or (users_changed and self.instance.pk)):
            self.add_error("enabled" if not users_changed else None,
                           "These users must set a recovery passphrase (on /recovery/enrol/) "
                           f"first: {', '.join(missing)}.")
        if self.instance.pk and any(field in self.changed_data for field in RULE_FIELDS):
            self._check_step_up(cleaned)
        return cleaned

    def _check_step_up(self, cleaned) -> None:
        if not (cleaned.get("reason") or "").strip():
            self.add_error("reason", "Say why: the holders and the security reviewers are told.")
        try:
            accepted = verify_second_factor(self.request.user, cleaned.get("code") or "",
                                            request=self.request)
        except SecondFactorThrottled:
            accepted = None
        if accepted is None:
            self.add_error("code", "A fresh one-time code is needed for this change.")


class CredentialForm(forms.ModelForm):
    username = forms.CharField(required=False, max_length=200,
                               help_text="Leave empty to keep the stored one.")
    secret = forms.CharField(required=False, max_length=4000, strip=False,
                             widget=forms.PasswordInput(render_value=False),
                             help_text="Never shown again. Leave empty to keep the stored one.")
    notes = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(
        attrs={"rows": 2}), help_text="Leave empty to keep the stored notes.")

    class Meta:
        model = EmergencyCredential
        fields = ("name",)

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("secret") and cleaned.get("name"):
            self.add_error("secret", "A new credential needs its secret.")
        return cleaned

    def save(self, commit=True):
        credential = super().save(commit=False)
        services.set_credential(credential, username=self.cleaned_data.get("username") or None,
                                secret=self.cleaned_data.get("secret") or None,
                                notes=self.cleaned_data.get("notes") or None)
        if commit:
            credential.save()
        return credential


class CredentialInline(admin.StackedInline):
    model = EmergencyCredential
    form = CredentialForm
    extra = 0
    fields = ("name", "username", "secret", "notes", "rotation_due", "revealed_at",
              "rotated_at")
    readonly_fields = ("rotation_due", "revealed_at", "rotated_at")


@admin.register(RecoveryPolicy)
class RecoveryPolicyAdmin(RequestFormMixin, SimpleHistoryAdmin):
    form = RecoveryPolicyForm
    inlines = [CredentialInline]
    list_display = ("name", "authorized_users", "required", "enabled", "rotation_due")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("token_status", "created_by", "created_at", "modified_by",
                       "modified_at", "bundle_status")
    fieldsets = (
        (None, {"fields": ("name", "slug", "description")}),
        ("Step-up for rule changes", {"fields": ("code", "reason")}),
        ("Authorized users", {"fields": USER_FIELDS}),
        ("Number of users required to break the glass", {"fields": ("required", "enabled")}),
        ("Risk", {"fields": ("sensitivity", "armed_by_incident", "review_before_next")}),
        ("Windows", {"fields": ("attempt_minutes", "reveal_minutes")}),
        ("Authorized application", {"fields": ("application_enabled", "token_status")}),
        ("Offline bundle", {"fields": ("bundle_status",)}),
        ("Audit information", {"fields": ("created_by", "created_at", "modified_by",
                                          "modified_at")}),
    )
    change_form_template = "admin/recovery/recoverypolicy/change_form.html"

    @admin.display(description="Authorized users")
    def authorized_users(self, policy: RecoveryPolicy) -> str:
        return ", ".join(user.username for user, _ in services.holders(policy))

    @admin.display(description="Rotation due", boolean=True)
    def rotation_due(self, policy: RecoveryPolicy) -> bool:
        return policy.credentials.filter(rotation_due=True).exists()

    @admin.display(description="Token")
    def token_status(self, policy: RecoveryPolicy) -> str:
        if policy.pk is None:
            return "Save the policy first."
        application = policy.application
        state = (f"{application.name}: token {application.token_prefix}…, last used "
                 f"{application.last_used_at or 'never'}" if application else "No token yet.")
        return format_html(
            '{}<br><input name="code" form="generate-token" placeholder="Your one-time code" '
            'autocomplete="one-time-code" inputmode="numeric" size="12"> <button type="submit" '
            'form="generate-token" class="button">Generate token</button>', state)

    @admin.display(description="Current bundle")
    def bundle_status(self, policy: RecoveryPolicy) -> str:
        bundle = services.current_bundle(policy) if policy.pk else None
        if bundle is None:
            return "None yet: every authorized user must set a recovery passphrase."
        kit = reverse("recovery:kit", args=[policy.slug])
        return format_html('Version {}, fingerprint <code>{}</code> — <a href="{}">recovery '
                           'kit</a>', bundle.version, bundle.fingerprint, kit)

    def save_model(self, request, obj, form, change):
        form.rules_before = (services.policy_rules(RecoveryPolicy.objects.get(pk=obj.pk))
                             if change else None)
        if not change:
            obj.created_by = request.user
        obj.modified_by = request.user
        super().save_model(request, obj, form, change)
        if obj.application and obj.application.enabled != form.cleaned_data[
                "application_enabled"]:
            obj.application.enabled = form.cleaned_data["application_enabled"]
            obj.application.save(update_fields=["enabled"])

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        policy = RecoveryPolicy.objects.get(pk=form.instance.pk)
        if form.rules_before is not None:
            services.record_policy_change(policy, form.rules_before, actor=request.user,
                                          reason=form.cleaned_data.get("reason", ""),
                                          request=request)
        changed = form.has_changed() or any(formset.has_changed() for formset in formsets)
        if changed or not services.current_bundle(policy):
            # In the admin's transaction: a bundle that cannot be issued undoes the change.
            services.issue_bundle(policy)

    def get_urls(self):
        return [path("<int:policy_id>/generate-token/",
                     self.admin_site.admin_view(self.generate_token_view),
                     name="recovery_recoverypolicy_generate_token"), *super().get_urls()]

    def generate_token_view(self, request, policy_id: int):
        if request.method != "POST":
            return redirect("admin:recovery_recoverypolicy_change", policy_id)
        policy = get_object_or_404(RecoveryPolicy, pk=policy_id)
        if not self.has_change_permission(request, policy):
            refuse(request, f"generating a token for the recovery policy {policy.slug!r}",
                   view="generate_token", model=self.opts.label, object=policy.pk)
        if not fresh_code_accepted(request):
            messages.error(request, "A fresh one-time code is needed to generate a token.")
            return redirect("admin:recovery_recoverypolicy_change", policy_id)
        token = services.generate_token(policy, actor=request.user, request=request)
        response = TemplateResponse(request, "admin/recovery/new_token.html", {
            **self.admin_site.each_context(request), "policy": policy, "token": token,
            "title": "New token"})
        response["Cache-Control"] = "no-store"
        return response


@admin.register(EmergencyCredential)
class EmergencyCredentialAdmin(SimpleHistoryAdmin):
    """The rotation workflow: revealed credentials are due until an administrator records that
    they were changed where they live."""

    list_display = ("name", "policy", "rotation_due", "revealed_at", "rotated_at")
    list_filter = ("rotation_due", "policy")
    fields = ("name", "policy", "rotation_due", "revealed_at", "rotated_at")
    readonly_fields = fields
    actions = ["record_rotation"]

    def has_add_permission(self, request) -> bool:
        return False  # credentials are added on their policy's page

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # ...and removed there, so the bundle is re-issued with the change

    @admin.action(description="Record rotation (changed where it lives)",
                  permissions=["change"])
    def record_rotation(self, request, queryset):
        for credential in queryset:
            services.record_rotation(credential, actor=request.user, request=request)
        messages.success(request, f"{queryset.count()} rotation(s) recorded.")
