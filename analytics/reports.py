"""Saved reports (SavedReport): who may see, run, change and delete them, and every write.

Managers only (the screens and the API check IsManager first). A manager sees their own reports and
the shared ones; a superuser sees all. Only the owner, or a superuser, changes or deletes a report.
Another manager asking for a report that is neither theirs nor shared is told it does not exist.
A saved spec is validated again on every load (builder.validate): a spec an older version saved
that this one no longer accepts gives StaleReport with the reason, never a 500.
"""
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import Http404

from . import builder
from .models import SavedReport

NAME_MAX = SavedReport._meta.get_field("name").max_length
OWNER_ONLY = "Only the report's owner can change or delete it; save a copy under your own name."


class StaleReport(builder.BadSpec):
    """A saved spec this version cannot run."""


def visible_reports(user):
    """The reports a manager may open: their own and the shared ones (superusers: all), by name."""
    qs = SavedReport.objects.select_related("owner").order_by("name", "id")
    return qs if user.is_superuser else qs.filter(Q(owner=user) | Q(shared=True))


def can_change(user, report) -> bool:
    return user.is_superuser or report.owner_id == user.pk


def access_report(user, report_id, *, change=False) -> SavedReport:
    """The report, if the user may open it (and change it, with change=True)."""
    report = visible_reports(user).filter(pk=report_id).first()
    if report is None:
        raise Http404(f"There is no report {report_id}.")
    if change and not can_change(user, report):
        raise PermissionDenied(OWNER_ONLY)
    return report


def load(report, *, today=None) -> builder.Spec:
    """The report's spec, validated now."""
    try:
        return builder.validate(report.spec, today=today)
    except builder.BadSpec as exc:
        raise StaleReport(f"The report “{report.name}” was saved with a spec this version cannot run: {exc} "
                          "Open the builder, choose again and save it.")


def clean_name(name) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= NAME_MAX:
        raise ValidationError({"name": [f"Give the report a name of 1 to {NAME_MAX} characters."]})
    return name


def check_name_free(owner_id, name, report=None):
    taken = SavedReport.objects.filter(owner_id=owner_id, name=name).exclude(pk=getattr(report, "pk", None))
    if taken.exists():
        raise ValidationError({"name": [f"You already have a report called “{name}”; choose another name."]})


def save_report(*, owner, name, spec, shared=False) -> SavedReport:
    """Save a new report; spec is checked (BadSpec) and stored normalised."""
    name, spec = clean_name(name), builder.validate(spec).as_json()
    with transaction.atomic():
        check_name_free(owner.pk, name)
        return SavedReport.objects.create(owner=owner, name=name, spec=spec, shared=bool(shared))


def update_report(*, report, by, name=None, spec=None, shared=None) -> SavedReport:
    """Change what is given of name, spec and shared; only the owner or a superuser may."""
    if not can_change(by, report):
        raise PermissionDenied(OWNER_ONLY)
    fields = ["updated_at"]
    if spec is not None:
        report.spec = builder.validate(spec).as_json()
        fields.append("spec")
    if shared is not None:
        report.shared = bool(shared)
        fields.append("shared")
    with transaction.atomic():
        if name is not None:
            report.name = clean_name(name)
            check_name_free(report.owner_id, report.name, report)
            fields.append("name")
        report.save(update_fields=fields)
    return report


def delete_report(*, report, by) -> None:
    if not can_change(by, report):
        raise PermissionDenied(OWNER_ONLY)
    report.delete()
