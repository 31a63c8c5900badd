"""The rule table and incidents in the admin. The table is edited as a whole on its list page
(every cell editable at once) and refused when the result has a gap or a contradiction, each
named by its cell. Incidents go through the same service as the API."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, Value, When
from django.forms.models import BaseModelFormSet
from simple_history.admin import SimpleHistoryAdmin

from audit.admin import evidence_links
from risk.incidents import IncidentError, clean_fields, upsert_incident
from risk.models import Incident, RiskRule
from risk.rules import RULE_FIELDS, SENSITIVITIES, current_table, save_rule, table_problems


class RuleTableFormSet(BaseModelFormSet):
    """The whole table as it would be after this save must be whole and consistent."""

    def clean(self):
        super().clean()
        if any(form.errors for form in self.forms):
            return
        cells = current_table()
        for form in self.forms:
            rule = form.instance
            cells[(rule.sensitivity, rule.severity)] = {
                name: form.cleaned_data.get(name, getattr(rule, name)) for name in RULE_FIELDS}
        problems = table_problems(cells)
        if problems:
            raise forms.ValidationError(problems)


class RuleForm(forms.ModelForm):
    """The change page of one cell, checked against the rest of the table."""

    class Meta:
        model = RiskRule
        fields = RULE_FIELDS

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        cells = current_table()
        cells[(self.instance.sensitivity, self.instance.severity)] = {
            name: cleaned.get(name) for name in RULE_FIELDS}
        problems = table_problems(cells)
        if problems:
            raise forms.ValidationError(problems)
        return cleaned


@admin.register(RiskRule)
class RiskRuleAdmin(SimpleHistoryAdmin):
    form = RuleForm
    list_display = ("cell", *RULE_FIELDS)
    list_editable = RULE_FIELDS
    list_display_links = ("cell",)
    list_per_page = 16  # the whole table on one page
    fields = RULE_FIELDS
    actions = None

    def get_queryset(self, request):
        order = {value: rank for rank, value in enumerate(SENSITIVITIES)}
        return super().get_queryset(request).annotate(
            sensitivity_rank=Case(*[When(sensitivity=value, then=Value(rank))
                                    for value, rank in order.items()],
                                  output_field=IntegerField()),
        ).order_by("sensitivity_rank", "severity")

    def get_changelist_formset(self, request, **kwargs):
        kwargs["formset"] = RuleTableFormSet
        return super().get_changelist_formset(request, **kwargs)

    @admin.display(description="Sensitivity × severity")
    def cell(self, rule: RiskRule) -> str:
        return rule.cell

    def has_add_permission(self, request) -> bool:
        # Every cell exists from the data migration; adding one could only duplicate it.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted cell would be a gap

    def save_model(self, request, obj, form, change):
        save_rule(obj, actor=request.user, request=request)


class IncidentForm(forms.ModelForm):
    class Meta:
        model = Incident
        fields = ("external_id", "title", "severity", "status", "url", "groups", "policies")

    def clean(self):
        """The service's own checks, shown on their fields (the API answers 400 with them)."""
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            clean_fields(external_id=cleaned.get("external_id") or self.instance.external_id,
                         title=cleaned.get("title", ""), severity=cleaned.get("severity", ""),
                         status=cleaned.get("status", ""), url=cleaned.get("url", ""))
        except IncidentError as invalid:
            self.add_error(invalid.field if invalid.field in self.fields else None, str(invalid))
        return cleaned


@admin.register(Incident)
class IncidentAdmin(SimpleHistoryAdmin):
    form = IncidentForm
    list_display = ("external_id", "title", "severity", "status", "opened_at", "resolved_at")
    list_filter = ("status", "severity")
    search_fields = ("external_id", "title")
    filter_horizontal = ("groups", "policies")
    readonly_fields = ("opened_at", "resolved_at", "evidence_pack")

    @admin.display(description="Evidence pack")
    def evidence_pack(self, incident: Incident) -> str:
        return evidence_links("incident", incident.pk)

    def get_readonly_fields(self, request, obj=None):
        # The external id is the incident's name in the paging system; it does not change.
        return (*self.readonly_fields, "external_id") if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # grants and the audit trail refer to it

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            result = upsert_incident(
                external_id=obj.external_id, title=data["title"], severity=data["severity"],
                status=data["status"], url=data.get("url", ""),
                groups=[group.slug for group in data["groups"]],
                policies=[policy.slug for policy in data["policies"]],
                actor=request.user, request=request)
        except IncidentError as invalid:  # the form's own checks make this rare
            messages.error(request, f"{invalid.field}: {invalid}")
            raise
        obj.pk = result.incident.pk
        obj.refresh_from_db()
        if result.grants_ended:
            messages.warning(request, f"{result.grants_ended} grant(s) opened under this "
                                      "incident were ended.")

    def save_related(self, request, form, formsets, change):
        """The service linked groups and policies, audited with the rest."""
