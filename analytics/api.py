"""GET /api/v1/analytics/<metric>: managers only. JSON {metric, start, end, interval, series, totals, ...};
?format=csv streams the series (or ?table=<name> one of the result's tables, or ?table=entities
one row per booking / payment / response wait) as CSV."""
from datetime import timedelta

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ParseError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from myhibachi.roles import IsManager

from . import exports, metrics, refresh, rollups, timebase


class CSVRenderer(BaseRenderer):
    """Lets ?format=csv through DRF's negotiation; the view streams the body itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else str(data or "").encode()


PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First local date (default: 29 days before end)."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="Last local date, inclusive (default: today)."),
    OpenApiParameter("interval", str, enum=list(timebase.INTERVALS), description="Series grain (default day)."),
    OpenApiParameter("format", str, enum=["json", "csv"], description="csv: stream rows instead of JSON."),
    OpenApiParameter("table", str, description="With format=csv: 'series' (default), a table of the JSON result "
                                               "(by_agent, by_source, cohorts...) or 'entities' (one row per "
                                               "booking, payment or response wait, where the metric has them)."),
    OpenApiParameter("lens", str, enum=["booked", "event", "cash"], description="revenue entities: which rows."),
]


class MetricView(APIView):
    permission_classes = [IsManager]
    renderer_classes = [JSONRenderer, CSVRenderer]
    metric = None

    def get(self, request):
        try:
            rng = timebase.parse_range(request.query_params)
        except timebase.BadRange as exc:
            raise ParseError(str(exc))
        if self.metric == "pace" and not (request.query_params.get("start") or request.query_params.get("end")):
            # The coming twelve months by default: pace looks ahead.
            rng = timebase.Range(rng.end, timebase.shift_year(rng.end, 1) - timedelta(days=1), "month")
        table = request.query_params.get("table", "series")
        if request.query_params.get("format") == "csv" and table == "entities":
            if self.metric not in exports.ENTITIES:
                raise ParseError(f"'{self.metric}' has no per-entity rows; use table=series.")
            refresh.ensure_fresh()
            rows = exports.ENTITIES[self.metric](rng, request.query_params.get("lens", "booked"))
            return self._csv(rows, "entities")
        refresh.ensure_fresh()
        with rollups.reading():
            result = metrics.METRICS[self.metric](rng)
        if request.query_params.get("format") == "csv":
            if not isinstance(result.get(table), list):
                tables = ", ".join(k for k, v in result.items() if isinstance(v, list))
                raise ParseError(f"Unknown table {table[:40]!r}; this metric has: {tables}, entities.")
            return self._csv(exports.table_rows(result[table]), table)
        return Response({"metric": self.metric, "start": rng.start, "end": rng.end, "interval": rng.interval,
                         "time_zone": timebase.zone().key, **result})

    def handle_exception(self, exc):
        # Errors are JSON even when CSV was asked for.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return super().handle_exception(exc)

    def _csv(self, rows, table):
        response = StreamingHttpResponse(exports.stream(rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.metric}-{table}.csv"'
        return response


def view_for(name):
    doc = (metrics.METRICS[name].__doc__ or "").strip()

    def get(self, request):
        return MetricView.get(self, request)

    get = extend_schema(operation_id=f"analytics_{name}", summary=doc.splitlines()[0], description=doc,
                        parameters=PARAMETERS, tags=["analytics"],
                        responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT})(get)
    return type(f"{name.title()}MetricView", (MetricView,), {"metric": name, "__doc__": doc, "get": get}).as_view()
