"""Websites in the admin. The verification contacts are the manager's alone: changing them
takes the manager's fresh one-time code, tells the old and the new contacts, and holds the new
ones for 24 hours unless a second administrator approves (backups.services.change_contacts).
A manager named at creation or by anyone but the manager in office waits for a second
administrator (custody.confirm_manager); what a backup reads changes only with a fresh code."""

import json

from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from accounts.services import SecondFactorThrottled, verify_second_factor
from audit.admin import RequestFormMixin
from backups import custody, services, site_admin, sources
from backups.archive import ArchiveError, remote
from backups.models import BackupJob, EmergencyChallenge, Website

CONTACT_FIELDS = ("verification_email", "verification_mobile")
SOURCE_FIELDS = ("files_dir", "database_url")
BACKUP_SOURCE_SECTION = ("files_dir", "database_url", "ssh_private_key", "ssh_passphrase",
                         "server_access", "pin_host_key", "shown_host_key",
                         "wordpress_confirmation", "use_wordpress", "shown_wordpress",
                         "manager_code")


class WebsiteForm(forms.ModelForm):
    database_url = forms.CharField(
        label="Database URL", required=False, max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="sqlite:////path/to/db.sqlite3, postgres://user:password@host/name or "
                  "mysql://user:password@host:3306/name. Encrypted at rest, never shown again; "
                  "leave empty to keep the stored one (or confirm WordPress's settings below).")
    ssh_private_key = forms.CharField(
        label="SSH private key", required=False, max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="For an ssh:// files directory: the private key (OpenSSH or PEM; Ed25519, "
                  "ECDSA or RSA) whose public key the server's account authorizes. Encrypted "
                  "at rest, never shown again; leave empty to keep the stored one.")
    ssh_passphrase = forms.CharField(
        label="Its passphrase", required=False, max_length=1000,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only for an encrypted private key.")
    pin_host_key = forms.BooleanField(label="Pin the server's host key", required=False)
    shown_host_key = forms.CharField(required=False, widget=forms.HiddenInput)
    use_wordpress = forms.BooleanField(label="Use the database wp-config.php names",
                                       required=False)
    shown_wordpress = forms.CharField(required=False, widget=forms.HiddenInput)
    manager_code = forms.CharField(
        label="Your one-time code", required=False, max_length=20,
        help_text="A fresh code from your authenticator: needed to change the verification "
                  "contacts (manager only), to hand the website to another manager, and to "
                  "change the files directory or the database.")

    class Meta:
        model = Website
        fields = ("name", "address", "manager", "owner_name", *CONTACT_FIELDS, "files_dir",
                  "emergency_enabled", "emergency_minutes", "retention_days")
        widgets = {"files_dir": forms.TextInput(attrs={"size": 80})}

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request
        self.proven = False  # the acting user gave a fresh code in this save
        self._stored: Website | None = None
        self.server = site_admin.ServerReading.of(self.instance)
        self._offer_server_choices()

    def _offer_server_choices(self) -> None:
        """Pinning and WordPress confirmation are offered only with what the page shows: the
        fingerprint and the settings travel with the form and must still hold when saved."""
        for name in ("pin_host_key", "shown_host_key", "use_wordpress", "shown_wordpress"):
            self.fields[name].disabled = True
        self.fields["pin_host_key"].help_text = self.server.pin_note
        self.fields["use_wordpress"].help_text = self.server.wordpress_note
        if (fingerprint := self.server.presented_fingerprint) is not None:
            self.fields["pin_host_key"].disabled = False
            self.fields["shown_host_key"].disabled = False
            self.fields["shown_host_key"].initial = fingerprint
            self.fields["pin_host_key"].label = (
                f"Pin the host key {fingerprint} that {self.server.address} presents now")
            self.fields["pin_host_key"].help_text = (
                "Compare it with the server's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key"
                ".pub on the server) before you pin it. A backup only talks to the pinned key.")
        if (summary := self.server.wordpress) is not None:
            self.fields["use_wordpress"].disabled = False
            self.fields["shown_wordpress"].disabled = False
            self.fields["shown_wordpress"].initial = json.dumps(summary, sort_keys=True)
            self.fields["use_wordpress"].help_text = (
                "WordPress found: " + site_admin.describe_wordpress(summary) + ". Each backup "
                "reads wp-config.php again: a new password is followed, another database "
                "stops the backup until you confirm again.")

    def clean_ssh_private_key(self):
        key = self.cleaned_data["ssh_private_key"].strip()
        if key:
            try:
                remote.load_private_key(key + "\n", self.data.get("ssh_passphrase", ""))
            except ArchiveError as refused:
                raise forms.ValidationError(str(refused)) from None
        return key + "\n" if key else ""

    def clean_address(self):
        return services.normalize_address(self.cleaned_data["address"])

    def clean_files_dir(self):
        """Only under the operator's BACKUP_SOURCE_ROOTS, never Breakglass's own files; the
        job checks the resolved path again when it runs (backups.sources)."""
        files_dir = self.cleaned_data["files_dir"].strip()
        if files_dir:
            policy = sources.current_policy()
            try:
                if remote.is_ssh_source(files_dir):
                    policy.check_ssh_source(files_dir)
                else:
                    policy.check_files_dir(files_dir)
            except sources.SourceRefused as refused:
                raise forms.ValidationError(str(refused)) from None
        return files_dir

    def clean_database_url(self):
        """Only a database BACKUP_DATABASE_ALLOW names, never Breakglass's own."""
        database_url = self.cleaned_data["database_url"].strip()
        files_dir = self.cleaned_data.get("files_dir", "")
        if database_url:
            policy = sources.current_policy()
            try:
                if remote.is_ssh_source(files_dir or ""):
                    policy.check_remote_database_url(policy.check_ssh_source(files_dir),
                                                     database_url)
                else:
                    policy.check_database_url(database_url)
            except sources.SourceRefused as refused:
                raise forms.ValidationError(str(refused)) from None
        return database_url

    def stored(self) -> Website | None:
        """The website as it is in the database, which every change is measured against: the
        copy the form was built on may be an old version (the history page builds one)."""
        if self._stored is None and self.instance.pk is not None:
            self._stored = Website.objects.get(pk=self.instance.pk)
        return self._stored

    def changed(self, field: str) -> bool:
        stored = self.stored()
        if stored is None:
            return field in self.changed_data
        value = self.cleaned_data.get(field)
        return getattr(value, "pk", value) != getattr(stored, Website._meta.get_field(
            field).attname)

    def contacts_changed(self) -> bool:
        return any(self.changed(field) for field in CONTACT_FIELDS)

    def manager_changed(self) -> bool:
        return self.instance.pk is not None and self.changed("manager")

    def source_changed(self) -> bool:
        return self.changed("files_dir") or any(self.cleaned_data.get(field) for field in (
            "database_url", "ssh_private_key", "pin_host_key", "use_wordpress"))

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if self.manager_changed() and self.contacts_changed():
            raise forms.ValidationError(
                "Change the manager and the verification contacts in separate saves: the "
                "contacts are set by the manager in office.")
        if self.changed("files_dir") and (cleaned.get("pin_host_key")
                                          or cleaned.get("use_wordpress")):
            raise forms.ValidationError(
                "Save the new files directory first: the host key and wp-config.php shown "
                "were read from the old one.")
        if cleaned.get("use_wordpress") and cleaned.get("database_url"):
            raise forms.ValidationError("Either type a database URL or use WordPress's "
                                        "settings, not both.")
        if self.contacts_changed():
            self._check_contacts_setter(cleaned.get("manager"))
        if self.contacts_changed() or self.source_changed() or self._handing_over():
            self._check_fresh_code(cleaned.get("manager_code") or "")
        return cleaned

    def _check_contacts_setter(self, submitted_manager) -> None:
        """The contacts are the manager in office's (on a new website: the manager named)."""
        user = self.request.user
        website = self.stored()
        manager_id = website.manager_id if website else getattr(submitted_manager, "pk", None)
        if manager_id != user.pk:
            raise forms.ValidationError("Only the website's manager sets its verification "
                                        "contacts, with their own one-time code.")
        if website and not website.manager_confirmed:
            raise forms.ValidationError("Only the website's manager sets its verification "
                                        "contacts, once a second administrator confirmed them.")

    def _handing_over(self) -> bool:
        return self.manager_changed() and self.stored().manager_id == self.request.user.pk

    def _check_fresh_code(self, code: str) -> None:
        try:
            accepted = verify_second_factor(self.request.user, code, request=self.request)
        except SecondFactorThrottled:
            accepted = None
        if accepted is None:
            self.add_error("manager_code", "A fresh one-time code from your authenticator is "
                                           "needed to change the contacts, the manager or "
                                           "what the backup reads.")
        self.proven = accepted is not None


@admin.register(Website)
class WebsiteAdmin(RequestFormMixin, SimpleHistoryAdmin):
    form = WebsiteForm
    list_display = ("address", "name", "manager", "manager_confirmed", "pending_manager",
                    "emergency_enabled", "locked_at", "contacts_hold_until")
    list_filter = ("emergency_enabled",)
    search_fields = ("address", "name", "owner_name")
    readonly_fields = ("manager_confirmed", "pending_manager", "manager_named_by",
                       "consecutive_failures", "locked_at", "contacts_changed_at",
                       "contacts_changed_by", "contacts_hold_until", "server_access",
                       "wordpress_confirmation")
    actions = ["approve_contacts", "confirm_manager", "end_emergency_sessions", "unlock",
               "start_drill"]

    def get_fields(self, request, obj=None):
        # A website being added has no custody or lock-out state yet: showing the defaults
        # ("manager confirmed") would promise what creation does not give.
        fields = super().get_fields(request, obj)
        if obj is None:
            return [field for field in fields if field not in self.readonly_fields]
        return fields

    def get_fieldsets(self, request, obj=None):
        """What the backup reads in a section of its own, with the code that changes it."""
        fields = self.get_fields(request, obj)
        reads = [field for field in BACKUP_SOURCE_SECTION if field in fields]
        custody_state = [field for field in fields if field in self.readonly_fields
                         and field not in reads]
        general = [field for field in fields if field not in reads + custody_state]
        sections = [(None, {"fields": general}),
                    ("What the backup reads", {
                        "fields": reads,
                        "description": "Changes here take your fresh one-time code and are "
                                       "told to the manager and the contacts."})]
        if custody_state:
            sections.append(("Custody and lock-out", {"fields": custody_state}))
        return sections

    @admin.display(description="SSH access")
    def server_access(self, obj):
        return site_admin.describe_server_access(obj)

    @admin.display(description="WordPress")
    def wordpress_confirmation(self, obj):
        return site_admin.describe_wordpress_confirmation(obj)

    def save_model(self, request, obj, form, change):
        if not change:
            from recovery.crypto import encrypt_field

            secrets = {"database_url_encrypted": "database_url",
                       "ssh_private_key_encrypted": "ssh_private_key",
                       "ssh_passphrase_encrypted": "ssh_passphrase"}
            for stored, typed in secrets.items():
                if form.cleaned_data.get(typed):
                    setattr(obj, stored, encrypt_field(form.cleaned_data[typed]))
            custody.create_website(obj, actor=request.user, request=request)
            return
        # The manager, the contacts and what a backup reads change only through their services,
        # and the state the form does not edit (lock, hold, confirmation) is never written back
        # from a stale copy.
        new_manager, stored = obj.manager, form.stored()
        guarded = (*CONTACT_FIELDS, "files_dir")
        new_values = {field: form.cleaned_data.get(field, "") for field in guarded}
        obj.manager_id = stored.manager_id
        for field in guarded:
            setattr(obj, field, getattr(stored, field))
        obj.save(update_fields=[name for name in WebsiteForm.Meta.fields
                                if name != "manager" and name not in guarded])
        if form.source_changed():
            custody.change_source(obj, files_dir=new_values["files_dir"],
                                  database_url=form.cleaned_data.get("database_url", ""),
                                  actor=request.user, request=request)
            site_admin.apply_server_choices(request, obj, form.cleaned_data)
        if form.manager_changed():
            custody.change_manager(obj, new_manager=new_manager, actor=request.user,
                                    proven=form.proven, request=request)
        if form.contacts_changed():
            services.change_contacts(obj, email=new_values["verification_email"],
                                     mobile=new_values["verification_mobile"],
                                     actor=request.user, request=request)
        if form.changed("emergency_enabled") and not obj.emergency_enabled:
            services.end_emergency_sessions(obj, actor=request.user, request=request,
                                            reason="emergency access was switched off")

    @admin.action(description="Approve new contacts now (second administrator)",
                  permissions=["change"])
    def approve_contacts(self, request, queryset):
        self._each(request, queryset, services.approve_contacts)

    @admin.action(description="Confirm the manager (second administrator)",
                  permissions=["change"])
    def confirm_manager(self, request, queryset):
        self._each(request, queryset, custody.confirm_manager)

    @admin.action(description="End emergency session (every open one, at once)",
                  permissions=["change"])
    def end_emergency_sessions(self, request, queryset):
        for website in queryset:
            ended = services.end_emergency_sessions(
                website, actor=request.user, request=request,
                reason="an administrator ended the emergency sessions")
            messages.info(request, f"{website}: {ended} open emergency session(s) ended.")

    @admin.action(description="Start an emergency drill (a code labelled DRILL goes to the "
                              "contacts)", permissions=["change"])
    def start_drill(self, request, queryset):
        for website in queryset:
            try:
                nonce = services.start_drill(website, actor=request.user, request=request)
            except PermissionError as refused:
                messages.error(request, f"{website}: {refused}")
                continue
            if nonce:
                messages.success(request, f"{website}: drill code sent to the contacts; the "
                                          "owner types the address and that code on "
                                          "/emergency/.")
            else:
                messages.error(request, f"{website}: no code was sent (locked, on hold or "
                                        "over the sending limits).")

    @admin.action(description="Unlock the emergency flow", permissions=["change"])
    def unlock(self, request, queryset):
        self._each(request, queryset, services.unlock)

    @staticmethod
    def _each(request, queryset, service) -> None:
        """Call `service` for each selected website; a refusal names its website."""
        for website in queryset:
            try:
                service(website, actor=request.user, request=request)
            except PermissionError as refused:
                messages.error(request, f"{website}: {refused}")


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
