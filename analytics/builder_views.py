"""/analytics/builder/: the report builder screen (managers only; agents 403).

A GET form of choices (measure, two dimensions, filters, range) becomes a spec dict that
builder.validate checks exactly as it checks the API's, so the screen can ask for nothing the API
could not. htmx swaps the form and the report in place (HX-Target "builder") and pushes the URL, so
a report on screen is a link; ?format=csv streams the same rows. Saving posts the spec as JSON.
"""
import functools
import json
from datetime import datetime, timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from crm.models import Booking
from inbox.views import staff_screen
from myhibachi.ids import BadId, parse_id
from myhibachi.roles import AGENT, MANAGER, is_manager

from . import builder, exports, reports, timebase

MAX_CHART_SERIES = 12
MAX_LOCATIONS = 200


def manager_screen(view):
    """staff_screen (log-in, CSP, the business's time zone), and managers only."""

    @staff_screen
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_manager(request.user):
            raise PermissionDenied("The report builder is for managers.")
        return view(request, *args, **kwargs)

    return wrapper


def spec_from_form(params) -> tuple[dict, list]:
    """(spec dict, notes): the form's choices as a spec. Dimensions and filters the chosen measure
    does not take (left from another measure) are dropped with a note; anything else is validate's."""
    measure = builder.MEASURES.get(params.get("measure", ""))
    notes, dimensions, filters = [], [], {}
    for name in (d for d in params.getlist("dimension") if d):
        if measure and name in builder.DIMENSIONS and name not in measure.dimensions:
            notes.append(f"{measure.label} cannot be split by {builder.DIMENSIONS[name].label.lower()}; left out.")
        else:
            dimensions.append(name)
    for name, dimension in builder.DIMENSIONS.items():
        values = [v for v in params.getlist(f"filter_{name}") if v]
        if not values or not dimension.filterable:
            continue
        if measure and name not in measure.dimensions:
            notes.append(f"{measure.label} cannot be filtered by {dimension.label.lower()}; that filter is left out.")
        else:
            filters[name] = values
    preset = params.get("preset") or "last_12_months"
    chosen = ({"start": params.get("start", ""), "end": params.get("end", "")} if preset == "custom"
              else {"preset": preset})
    return {"measure": params.get("measure", ""), "dimensions": dimensions, "filters": filters,
            "range": chosen}, notes


def _form_state(raw: dict, rng=None) -> dict:
    """What the form shows: the spec's choices as strings (filters as sets for `in`)."""
    chosen = raw.get("range") if isinstance(raw.get("range"), dict) else {}
    dimensions = [d for d in raw.get("dimensions", []) if isinstance(d, str)] + ["", ""]
    filters = raw.get("filters") if isinstance(raw.get("filters"), dict) else {}
    return {"measure": raw.get("measure") if isinstance(raw.get("measure"), str) else "",
            "dimensions": dimensions[:2],
            "filters": {k: {str(v) for v in vs} for k, vs in filters.items() if isinstance(vs, list)},
            "preset": chosen.get("preset", "custom" if "start" in chosen else "last_12_months"),
            "start": chosen.get("start") or (rng.start.isoformat() if rng else ""),
            "end": chosen.get("end") or (rng.end.isoformat() if rng else "")}


def table_of(result) -> dict:
    """The report as the screen shows it: a list for one dimension, a grid for two (the first
    dimension down, the second across)."""
    dims = result.spec.dimensions
    if len(dims) < 2:
        rows = [{"label": result.label(dims[0], r[dims[0]]) if dims else result.spec.measure.label,
                 "cells": [r["value"]]} for r in result.rows]
        return {"head": [builder.DIMENSIONS[dims[0]].label if dims else "", result.spec.measure.label],
                "rows": rows}
    down, across = (list(dict.fromkeys(r[d] for r in result.rows)) for d in dims)
    if dims[1] != "month":
        across.sort(key=lambda v: (v in (None, ""), result.label(dims[1], v).casefold()))
    cells = {(r[dims[0]], r[dims[1]]): r["value"] for r in result.rows}
    empty = result.spec.measure.empty
    return {"head": [f"{builder.DIMENSIONS[dims[0]].label} \\ {builder.DIMENSIONS[dims[1]].label}",
                     *(result.label(dims[1], v) for v in across)],
            "rows": [{"label": result.label(dims[0], d), "cells": [cells.get((d, a), empty) for a in across]}
                     for d in down]}


def chart_of(result, table) -> dict:
    """Chart.js data from the table's rows: a line over months, bars otherwise; one series per column
    of a grid (at most MAX_CHART_SERIES: the table has them all)."""
    dims = result.spec.dimensions
    number = lambda v: None if v is None else float(v)  # noqa: E731
    series = table["head"][1:1 + MAX_CHART_SERIES]
    return {"type": "line" if dims and dims[0] == "month" else "bar",
            "labels": [row["label"] for row in table["rows"]],
            "datasets": [{"label": name, "data": [number(row["cells"][i]) for row in table["rows"]]}
                         for i, name in enumerate(series)],
            "truncated": len(table["head"]) - 1 > MAX_CHART_SERIES}


def _choices(names) -> dict:
    """The options of these filters: whitelists, staff by name, the locations bookings have
    (a query each for the last two)."""
    out = {name: [(v, builder.CHOICE_LABELS.get(name, {}).get(v, v.capitalize())) for v in d.allowed()]
           for name, d in builder.DIMENSIONS.items() if d.allowed and name in names}
    if "agent" in names:
        people = (get_user_model().objects.filter(Q(is_superuser=True) | Q(groups__name__in=[AGENT, MANAGER]))
                  .distinct().order_by("first_name", "last_name", "username"))
        out["agent"] = [(str(u.pk), u.get_full_name() or u.get_username()) for u in people]
    if "location" in names:
        out["location"] = [(v, v) for v in Booking.objects.exclude(location="").order_by("location")
                           .values_list("location", flat=True).distinct()[:MAX_LOCATIONS]]
    return out


def _options(choices, chosen) -> list:
    """(value, label, selected) of a filter; chosen values not among the choices (a location no booking
    has any more) stay on the list, so running again keeps them."""
    known = {v for v, _ in choices}
    return [(v, label, v in chosen) for v, label in choices] + [(v, v, True) for v in sorted(chosen - known)]


def _saved(user) -> list:
    rows = []
    for report in reports.visible_reports(user):
        try:
            reports.load(report)
            problem = None
        except reports.StaleReport as exc:
            problem = str(exc)
        rows.append({"report": report, "mine": report.owner_id == user.pk, "problem": problem})
    return rows


@manager_screen
def report_builder(request):
    spec = loaded = error = None
    notes, raw, status = [], {}, 200
    if request.GET.get("report"):
        loaded = _report(request, request.GET["report"])
        raw = loaded.spec if isinstance(loaded.spec, dict) else {}
        try:
            spec = reports.load(loaded, today=_today())
        except reports.StaleReport as exc:
            error = str(exc)
    elif request.GET.get("measure"):
        raw, notes = spec_from_form(request.GET)
        try:
            spec = builder.validate(raw, today=_today())
        except builder.BadSpec as exc:
            error, status = str(exc), 400
    return _page(request, raw=raw, spec=spec, loaded=loaded, notes=notes, error=error, status=status)


def _today():
    return timebase.local_date(datetime.now(dt_timezone.utc))


def _page(request, *, raw, spec=None, loaded=None, notes=(), error=None, status=200):
    """The builder with the report of spec run (or the reason it cannot be), or its CSV."""
    result = None
    if spec is not None:
        try:
            result = builder.run(spec)
        except builder.TooManyCells as exc:
            error, status = str(exc), 400
    if result is not None and request.GET.get("format") == "csv":
        response = StreamingHttpResponse(exports.stream(result.csv()), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="report-{result.spec.measure.name}.csv"'
        return response
    table = table_of(result) if result else None
    form = _form_state(spec.as_json() if spec else raw, spec.rng if spec else None)
    measure = spec.measure if spec else builder.MEASURES.get(form["measure"])
    offered = [d for d in builder.DIMENSIONS.values() if measure is None or d.name in measure.dimensions]
    filterable = [d for d in offered if measure and d.filterable]
    choices = _choices({d.name for d in filterable})
    context = {
        "measures": builder.MEASURES.values(), "measure": measure, "dimensions": offered, "presets": timebase.PRESETS,
        "filters": [{"name": d.name, "label": d.label, "options": options, "size": min(len(options), 7)}
                    for d in filterable for options in [_options(choices[d.name], form["filters"].get(d.name, set()))]],
        "form": form, "spec": spec, "spec_json": json.dumps(spec.as_json()) if spec else "",
        "result": result, "table": table, "chart": chart_of(result, table) if result else None, "notes": notes,
        "error": error, "loaded": loaded, "can_change": loaded is not None and reports.can_change(request.user, loaded),
        "csv_url": f"{reverse('analytics-builder')}?{_csv_query(request)}", "zone_name": timebase.zone().key,
        "max_cells": f"{builder.MAX_CELLS:,}", "title": _title(spec),
    }
    context["chart_json"] = json.dumps(context["chart"]) if result else ""
    if request.headers.get("HX-Target") == "builder":
        response = render(request, "analytics/_builder.html", context, status=status)
    else:
        context["saved"] = _saved(request.user)
        response = render(request, "analytics/builder.html", context, status=status)
    patch_vary_headers(response, ["HX-Target"])
    return response


def _title(spec) -> str:
    """"Booked revenue by source and month"."""
    if spec is None:
        return ""
    split = " and ".join(builder.DIMENSIONS[d].label.lower() for d in spec.dimensions)
    return f"{spec.measure.label} by {split}" if split else spec.measure.label


def _report(request, raw_id, *, change=False):
    try:
        report_id = parse_id(raw_id)
    except BadId:
        raise Http404("There is no such report.")
    return reports.access_report(request.user, report_id, change=change)


def _csv_query(request) -> str:
    params = request.GET.copy()
    params["format"] = "csv"
    return params.urlencode()


def _posted_spec(request):
    try:
        return json.loads(request.POST.get("spec", ""))
    except ValueError:
        return None


def _refused(request, raw, message):
    """The builder again with the reason (400), showing the report the person was looking at."""
    try:
        spec = builder.validate(raw, today=_today())
    except builder.BadSpec:
        spec = None
    return _page(request, raw=raw if isinstance(raw, dict) else {}, spec=spec, error=message, status=400)


@require_POST
@manager_screen
def save_report(request):
    """Save as…: a new report of the posted spec, then open it (its link is the report's)."""
    raw = _posted_spec(request)
    try:
        report = reports.save_report(owner=request.user, name=request.POST.get("name", ""), spec=raw,
                                     shared=request.POST.get("shared") == "on")
    except builder.BadSpec as exc:
        return _refused(request, raw, str(exc))
    except ValidationError as exc:
        return _refused(request, raw, " ".join(m for ms in exc.message_dict.values() for m in ms))
    return redirect(f"{reverse('analytics-builder')}?report={report.pk}")


@require_POST
@manager_screen
def change_report(request, pk):
    """The owner saves the spec on screen into their report (and its sharing), or deletes it."""
    report = _report(request, pk, change=True)
    if request.POST.get("action") == "delete":
        reports.delete_report(report=report, by=request.user)
        return redirect("analytics-builder")
    raw = _posted_spec(request)
    if raw is None:
        return _refused(request, {}, "The report on screen did not come with the form; run it again, then save.")
    try:
        reports.update_report(report=report, by=request.user, spec=raw, shared=request.POST.get("shared") == "on")
    except builder.BadSpec as exc:
        return _refused(request, raw, str(exc))
    return redirect(f"{reverse('analytics-builder')}?report={report.pk}")
