"""GET /analytics/report.pdf: the dashboard's range as a PDF, for managers.

The same figures as the dashboard and the API (metrics.METRICS over the dashboard's areas,
views.SECTIONS and views.cards), laid out for paper: a title with the business name and the
range, then one section per area with its headline figures, one SVG chart per unit (money, counts,
durations are never drawn on one axis; analytics/svgcharts.py) and the table of the same rows
under it, with the whole range's totals as its last row. WeasyPrint turns the HTML into PDF; it
runs no JavaScript and fetches nothing (render_pdf's url fetcher refuses every URL but data:).
"""
import functools
from datetime import date

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseBadRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from crm.models import Source
from inbox.views import staff_screen
from myhibachi.roles import is_manager

from . import metrics, refresh, svgcharts, timebase, views

PAPERS = {"letter": "letter", "a4": "A4"}
AXES = {"day": "Day", "week": "Week (starting Monday)", "month": "Month"}
UNITS = {"money": "US dollars", "count": "Count", "ratio": "Net revenue ÷ spend"}
TICKS = {"money": "${:,.0f}", "count": "{:,.0f}", "ratio": "{:g}×"}  # others (minutes, hours): "{:,g}"
# Bars while they stay readable (periods x series); denser charts are drawn as lines.
MAX_BARS = 120
# Every period is a table row, and WeasyPrint lays out a few hundred rows a second: longer tables
# are refused with a 400 that says which grain to choose (10 years by month is 121 rows).
MAX_PERIODS = 125
SOURCE_COLUMNS = [("leads", "Leads", "count"), ("converted", "Converted", "count"), ("conversion", "Conversion", "rate"),
                  ("spend", "Spend", "money"), ("cost_per_lead", "Cost per lead", "money"),
                  ("revenue", "Net revenue", "money"), ("roi", "ROI", "ratio")]


@staff_screen
def report_pdf(request):
    if not is_manager(request.user):
        raise PermissionDenied("Only managers may download the analytics report.")
    try:
        rng = timebase.parse_range(request.GET)
    except timebase.BadRange as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    paper = request.GET.get("paper") or "letter"
    if paper not in PAPERS:
        return HttpResponseBadRequest(f"'paper' must be one of letter, a4, got {paper[:40]!r}.",
                                      content_type="text/plain; charset=utf-8")
    if not request.GET.get("interval"):  # as the dashboard: the grain follows the length
        rng = timebase.Range(rng.start, rng.end, timebase.auto_interval(rng.days))
    if len(rng.buckets()) > MAX_PERIODS:
        return HttpResponseBadRequest(
            f"The PDF report lists every period, and {rng.days} days by {rng.interval} are {len(rng.buckets())} "
            f"periods (at most {MAX_PERIODS}): choose week or month.", content_type="text/plain; charset=utf-8")
    refresh.ensure_fresh()
    data = {key: metrics.METRICS[key](rng) for key, *_ in views.SECTIONS}
    html = render_to_string("analytics/report.html", report_context(rng, data, paper=PAPERS[paper]))
    response = HttpResponse(render_pdf(html), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="myhibachi-analytics-{rng.start}-{rng.end}.pdf"'
    return response


def report_context(rng, data, *, paper="letter") -> dict:
    cards = views.cards(data)
    sections = []
    for key, title, kind, columns in views.SECTIONS:
        result = data[key]
        interval = result.get("interval", rng.interval)  # leads are always by month
        totals = result["totals"]
        sections.append({
            "id": key, "title": title, "columns": columns, "rows": result["series"],
            "figures": [c for c in cards if c["anchor"] == key] or [
                {"label": label, "value": totals[col], "kind": k} for col, label, k in columns if col in totals],
            "total": [(totals.get(col, ""), k) for col, _, k in columns],
            "charts": period_charts(title, kind, columns, result["series"], interval, rng),
        })
    by_source = [{**row, "source": dict(Source.choices).get(row["source"], row["source"])}
                 for row in data["leads"]["by_source"]]
    return {
        "business": settings.BUSINESS_NAME, "rng": rng, "zone_name": timebase.zone().key, "paper": paper,
        "generated": timezone.localtime(), "sections": sections, "agents": data["staff"]["by_agent"],
        "by_source": by_source, "source_columns": SOURCE_COLUMNS,
        "source_chart": mark_safe(svgcharts.chart(
            kind="bar", categories=[r["source"] for r in by_source], unit="Count", axis="Lead source",
            series=[(label, [r[col] for r in by_source]) for col, label, _ in SOURCE_COLUMNS[:2]],
            fmt=_tick("count"), integer=True, title="Leads by source")) if by_source else None,
    }


def period_charts(title, kind, columns, rows, interval, rng) -> list:
    """One chart per unit among the columns, in the order they first appear: the revenue lenses share
    the money chart as separate labelled series (never added), counts and durations get their own."""
    categories = [period_label(r["period"], interval, rng) for r in rows]
    charts = []
    for unit in dict.fromkeys(k for _, _, k in columns):
        chosen = [(col, label) for col, label, k in columns if k == unit]
        values = [[_number(r.get(col)) for r in rows] for col, _ in chosen]
        scale, name = 1, UNITS.get(unit, unit)
        if unit == "duration":  # seconds are drawn in minutes, or hours once they run that long
            longest = max((v for vs in values for v in vs if v is not None), default=0)
            scale, name = (3600, "Hours") if longest >= 3 * 3600 else (60, "Minutes")
            values = [[None if v is None else v / scale for v in vs] for vs in values]
        bars = kind == "bar" and unit in ("count", "money") and len(rows) * len(chosen) <= MAX_BARS
        charts.append(mark_safe(svgcharts.chart(
            kind="bar" if bars else "line", categories=categories, series=[(label, vs) for (_, label), vs in
                                                                           zip(chosen, values)],
            unit=name, axis=AXES[interval], fmt=_tick(unit), integer=unit in ("count", "money"),
            title=f"{title}: {name.lower()}")))
    return charts


def period_label(period: str, interval: str, rng) -> str:
    day = date.fromisoformat(period)
    if interval == "month":
        return f"{day:%b %Y}"
    return f"{day:%b} {day.day}" + (f", {day.year}" if rng.start.year != rng.end.year else "")


def _tick(unit):
    """An axis tick: whole dollars, no trailing zeros (the tables under the charts have the exact figures)."""
    pattern = TICKS.get(unit, "{:,g}")
    return lambda value: ("−" if value < 0 else "") + pattern.format(abs(value))


def _number(value):
    return None if value is None else float(value)


@functools.cache
def _fetcher_class():
    from weasyprint.urls import URLFetcher

    class DataOnly(URLFetcher):
        """Every resource of the report is inline: any other URL (http, file, ...) is refused, so
        no text in the report can make the server fetch anything (docs/security.md)."""

        def fetch(self, url, headers=None):
            if not url.lower().startswith("data:"):
                raise ValueError(f"The PDF report fetches no URL: {url[:80]!r}")
            return super().fetch(url, headers)

    return DataOnly


def url_fetcher():
    """WeasyPrint's fetcher for the report: data: URLs only (a new one per document: it keeps state)."""
    return _fetcher_class()(allowed_protocols=["data"])


def render_pdf(html: str) -> bytes:
    """PDF bytes from a self-contained HTML document (WeasyPrint is loaded on the first report)."""
    from weasyprint import HTML

    return HTML(string=html, url_fetcher=url_fetcher()).write_pdf()

