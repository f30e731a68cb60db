"""Saved reports in the admin: the same rules as the builder and the API (analytics/reports.py).
A manager lists their own and the shared reports and changes or deletes only their own; the spec
is checked by builder.validate on save and stored normalised."""
import json

from django import forms
from django.core.exceptions import ValidationError
from django.contrib import admin

from myhibachi.admin_site import BusinessAdmin

from . import builder, reports
from .models import SavedReport


class SavedReportForm(forms.ModelForm):
    owner_id = None  # set by the admin: who saves it

    class Meta:
        model = SavedReport
        fields = ("name", "spec", "shared")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        try:
            reports.check_name_free(self.instance.owner_id or self.owner_id, name, self.instance)
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["name"])
        return name

    def clean_spec(self):
        try:
            return builder.validate(self.cleaned_data["spec"]).as_json()
        except builder.BadSpec as exc:
            raise forms.ValidationError(str(exc))


@admin.register(SavedReport)
class SavedReportAdmin(BusinessAdmin):
    form = SavedReportForm
    list_display = ("name", "owner", "shared", "measure", "updated_at")
    list_filter = ("shared",)
    search_fields = ("name",)
    readonly_fields = ("owner", "created_at", "updated_at")

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"owner_id": request.user.pk})

    def get_queryset(self, request):
        return reports.visible_reports(request.user)

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or reports.can_change(request.user, obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or reports.can_change(request.user, obj))

    def save_model(self, request, obj, form, change):
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="Measure")
    def measure(self, obj):
        spec = obj.spec if isinstance(obj.spec, dict) else {}
        measure = builder.MEASURES.get(spec.get("measure")) if isinstance(spec.get("measure"), str) else None
        return measure.label if measure else json.dumps(spec.get("measure"))[:40]
