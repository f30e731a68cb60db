"""Admin access, its title, the base every model admin builds on, and shared actions."""
import csv

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.utils import timezone

from .roles import is_manager


def manager_only_has_permission(self, request):
    return is_manager(request.user)


def title_site(site):
    """The admin says whose business it runs, not "Django administration"."""
    site.site_header = f"{settings.BUSINESS_NAME} admin"
    site.site_title = f"{settings.BUSINESS_NAME} admin"


# A model's own record of when it was made: shown, never edited.
CREATION_FIELDS = ("created_at", "created", "date_joined")


def person_name(user) -> str:
    """Staff are shown by full name, as in the inbox; the username only when there is none."""
    if user is None:
        return "—"
    return user.get_full_name() or user.get_username()


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return person_name(obj)


class PersonListFilter(admin.RelatedFieldListFilter):
    """A list filter over a user field that names people as the inbox does."""

    def field_choices(self, field, request, model_admin):
        people = field.related_model._default_manager.filter(is_active=True).order_by("first_name", "username")
        return [(person.pk, person_name(person)) for person in people]


class BusinessAdmin(admin.ModelAdmin):
    """The base of every model admin of ours.

    - creation times are read-only (``CREATION_FIELDS`` a model has);
    - a choice of a user lists people by full name;
    - ``internal = True`` hides the model from everyone but superusers: records
      the software keeps for itself (live events, idempotency keys), which a
      manager has no decision to take about.
    """

    internal = False

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        names = {f.name for f in self.model._meta.fields}
        return readonly + [name for name in CREATION_FIELDS if name in names and name not in readonly]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        from django.contrib.auth import get_user_model

        if db_field.related_model is get_user_model() and db_field.name not in self.raw_id_fields:
            kwargs.setdefault("form_class", PersonChoiceField)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _internal_refused(self, request):
        return self.internal and not request.user.is_superuser

    def has_module_permission(self, request):
        return not self._internal_refused(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return not self._internal_refused(request) and super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._internal_refused(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._internal_refused(request) and super().has_delete_permission(request, obj)


def export_as_csv(modeladmin, request, queryset):
    """Download the selected rows with the columns shown in the list."""
    opts = modeladmin.model._meta
    fields = [f for f in opts.concrete_fields]
    response = HttpResponse(content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{opts.model_name}-{stamp}.csv"'
    writer = csv.writer(response)
    writer.writerow([f.name for f in fields])
    for obj in queryset.iterator(chunk_size=2000):
        writer.writerow([_csv_safe(f.value_from_object(obj)) for f in fields])
    return response


export_as_csv.short_description = "Export selected rows to CSV"


def _csv_safe(value):
    # Neutralise spreadsheet formulas in exported text (CSV injection).
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
