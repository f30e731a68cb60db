"""/analytics/: the dashboard. Managers see every area; agents see only their own performance."""
from datetime import datetime, timezone as dt_timezone
from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse

from inbox.views import staff_screen
from myhibachi.roles import is_manager

from . import figure_cache, refresh, rollups, timebase

LIVE_MAX_AGE = 5


def cards(data) -> list:
    """The headline figure of each area and its change: each is a total shown in a table below."""
    revenue, bookings, staff = data["revenue"]["totals"], data["bookings"]["totals"], data["staff"]["totals"]
    return [
        {"label": "Booked revenue", "value": revenue["booked_amount"], "kind": "money",
         "change": revenue["booked_change"], "anchor": "revenue"},
        {"label": "Event revenue", "value": revenue["event_amount"], "kind": "money",
         "change": revenue["event_change"], "anchor": "revenue"},
        {"label": "Cash in", "value": revenue["cash_amount"], "kind": "money",
         "change": revenue["cash_change"], "anchor": "revenue"},
        {"label": "Inquiries", "value": bookings["inquiries"], "kind": "count", "anchor": "bookings"},
        {"label": "Inquiry → completed", "value": bookings["conversion"], "kind": "rate", "anchor": "bookings"},
        {"label": "First response (median)", "value": staff["first_response_median"], "kind": "duration",
         "anchor": "staff"},
        {"label": "Resolutions", "value": staff["resolutions"], "kind": "count", "anchor": "staff"},
        {"label": "Leads ROI", "value": data["leads"]["totals"]["roi"], "kind": "ratio", "anchor": "leads"},
        {"label": "On the books for these months", "value": data["pace"]["totals"]["amount"], "kind": "money",
         "change": data["pace"]["totals"]["pace"], "against": "the same day last year", "anchor": "pace"},
        {"label": "Lifetime value (median)", "value": data["customers"]["totals"]["ltv_median"], "kind": "money",
         "anchor": "customers"},
        {"label": "Churn rate", "value": data["customers"]["totals"]["churn_rate"], "kind": "rate",
         "anchor": "customers"},
        {"label": "Email open rate", "value": data["email"]["totals"]["open_rate"], "kind": "rate",
         "anchor": "email"},
        {"label": "Chatbot hand-off rate", "value": data["chatbot"]["totals"]["handoff_rate"], "kind": "rate",
         "anchor": "chatbot"},
    ]


def email_rows(email) -> list:
    """(label, rates) per campaign, then per kind of transactional mail: one table on the dashboard."""
    if not email:
        return []
    return ([(f"Campaign: {r['campaign']}", r) for r in email["campaigns"]]
            + [(r["kind"].replace("_", " ").capitalize(), r) for r in email["transactional"]])


# Each area: a chart of some series columns and the table of the same rows under it.
SECTIONS = [
    ("revenue", "Revenue (three lenses, never added)", "line",
     [("booked_amount", "Booked", "money"), ("event_amount", "Event date", "money"), ("cash_amount", "Cash", "money"),
      ("booked_amount_last_year", "Booked last year", "money")]),
    ("bookings", "Funnel by inquiry date", "bar",
     [("inquiries", "Inquiries", "count"), ("quoted", "Quoted", "count"), ("confirmed", "Confirmed", "count"),
      ("completed", "Completed", "count"), ("lost", "Lost", "count"), ("cancelled", "Cancelled", "count")]),
    ("staff", "Staff: replies, resolutions, first response", "bar",
     [("replies", "Replies", "count"), ("resolutions", "Resolutions", "count"),
      ("first_response_median", "First response median", "duration"),
      ("first_response_p90", "First response p90", "duration")]),
    ("leads", "Leads and spend by month", "bar",
     [("leads", "Leads", "count"), ("converted", "Converted", "count"), ("spend", "Spend", "money"),
      ("revenue", "Net revenue", "money"), ("roi", "ROI", "ratio")]),
    ("inbox", "Inbox volume and backlog", "line", [("received", "Received", "count"), ("backlog", "Backlog", "count")]),
    ("cash", "Cash by event date", "bar",
     [("deposits_held", "Deposits held", "money"), ("balance_due", "Balance due", "money"),
      ("overdue", "Overdue", "money"), ("quotes", "Unconfirmed quotes", "money")]),
    ("pace", "On the books by event month, against the same day last year", "bar",
     [("amount", "On the books", "money"), ("amount_last_year", "Same day last year", "money"),
      ("count", "Bookings", "count"), ("pace", "Pace", "ratio")]),
    ("customers", "Customers: new and returning", "bar",
     [("new", "New", "count"), ("returning", "Returning", "count")]),
    ("email", "Email sent", "bar", [("sent", "Sent", "count")]),
    ("chatbot", "Chatbot sessions and what followed", "bar",
     [("sessions", "Sessions", "count"), ("handoffs", "Hand-offs", "count"), ("bookings", "Bookings after", "count"),
      ("revenue", "Revenue after", "money")]),
]


@staff_screen
def dashboard(request):
    today = timebase.local_date(datetime.now(dt_timezone.utc))
    rng, preset, error = timebase.chosen_range(request.GET, today)
    # A live reload (the page heard of a new message) brings in any newer history at once (ensure_fresh).
    refresh.ensure_fresh(LIVE_MAX_AGE if request.GET.get("live") else None)
    manager = is_manager(request.user)
    with rollups.reading():
        # Areas read from rollups come from the cache while the rollups are unchanged (figure_cache).
        if manager:
            data = figure_cache.areas([key for key, *_ in SECTIONS], rng)
        else:
            data = figure_cache.areas(["staff"], rng, agent_id=request.user.pk)
    return render(request, "analytics/dashboard.html", {
        "rng": rng, "preset": preset, "presets": timebase.PRESETS, "error": error, "is_manager": manager,
        "data": data, "cards": cards(data) if manager else [], "email_rows": email_rows(data.get("email")),
        "intervals": timebase.INTERVALS, "zone_name": timebase.zone().key,
        "sections": [{"id": key, "title": title, "type": kind, "columns": columns, "rows": data[key]["series"],
                      "chart": {"type": kind, "labels": [r["period"] for r in data[key]["series"]],
                                "datasets": [{"label": label, "data": [_number(r.get(col)) for r in data[key]["series"]]}
                                             for col, label, _ in columns]},
                      "csv": reverse(f"api-analytics-{key}") + "?" + urlencode(
                          {"start": rng.start, "end": rng.end, "interval": rng.interval, "format": "csv"})}
                     for key, title, kind, columns in SECTIONS if key in data],
    }, status=400 if error else 200)


def _number(value):
    return None if value is None else float(value)
