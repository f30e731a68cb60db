"""Admin access and shared admin actions."""
import csv

from django.http import HttpResponse
from django.utils import timezone

from .roles import is_manager


def manager_only_has_permission(self, request):
    return is_manager(request.user)


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
