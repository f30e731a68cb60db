"""/api/v1/analytics/reports: saved report builder specs (managers only).

GET    reports             the reports the manager may open: their own and the shared ones
POST   reports             save {name, spec, shared}; the spec is checked (400 says what is wrong)
GET    reports/{id}        one report
PUT    reports/{id}        change name, spec or shared (fields left out stay); owner or superuser only
DELETE reports/{id}        owner or superuser only
GET    reports/{id}/run    run it: JSON rows and total, or ?format=csv the same rows as CSV
"""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from inbox.api.idempotency import idempotent
from myhibachi.ids import BadId, parse_id
from myhibachi.roles import IsManager

from . import api, builder, reports

SPEC_HELP = ('{"measure": name, "dimensions": [up to 2 names], "filters": {dimension: [values]}, "range": '
             '{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"} or {"preset": "last_12_months"}}; names and values '
             "from the whitelists in docs/analytics.md (Report builder).")


class Refused(APIException):
    """A report that cannot run: its own status and code, and a message that says why."""

    def __init__(self, message, *, code, status_code=status.HTTP_400_BAD_REQUEST):
        super().__init__(message, code)
        self.status_code = status_code


class OwnerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ReportSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=reports.NAME_MAX, allow_blank=True)
    spec = serializers.JSONField(help_text=SPEC_HELP)
    shared = serializers.BooleanField(default=False, help_text="Other managers can see and run it.")
    owner = serializers.SerializerMethodField()
    can_change = serializers.SerializerMethodField(help_text="Whether you may change or delete it.")
    problem = serializers.SerializerMethodField(
        help_text="Why the saved spec cannot run in this version (null: it can).")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_owner(self, report) -> OwnerSerializer:
        return {"id": report.owner_id, "name": report.owner.get_full_name() or report.owner.get_username()}

    def get_can_change(self, report) -> bool:
        return reports.can_change(self.context["request"].user, report)

    def get_problem(self, report) -> str | None:
        try:
            reports.load(report)
        except reports.StaleReport as exc:
            return str(exc)
        return None


class ReportChangeSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=reports.NAME_MAX, required=False, allow_blank=True)
    spec = serializers.JSONField(required=False, help_text=SPEC_HELP)
    shared = serializers.BooleanField(required=False)


RUN_RESULT = {
    "type": "object", "description": "spec (normalised), measure {name, label, kind, definition}, start, end, "
                                     "time_zone, dimensions, rows [{dimension: value, ..., <measure>: value}], total",
}
ERRORS = {400: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}


def _report(request, raw_id, *, change=False):
    try:
        report_id = parse_id(raw_id)
    except BadId:
        raise NotFound(f"There is no report {raw_id[:40]}.")
    return reports.access_report(request.user, report_id, change=change)


def _write(call):
    """Run a write; a bad spec or name is a 400 that says which field and why."""
    try:
        return call()
    except builder.BadSpec as exc:
        raise ValidationError({"spec": [str(exc)]})
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict)


class ReportsView(APIView):
    permission_classes = [IsManager]

    @extend_schema(operation_id="analytics_reports_list", tags=["analytics"],
                   responses={200: ReportSerializer(many=True), 403: OpenApiTypes.OBJECT})
    def get(self, request):
        """Your saved reports and the ones other managers shared, by name."""
        return Response(ReportSerializer(reports.visible_reports(request.user), many=True,
                                         context={"request": request}).data)

    @extend_schema(operation_id="analytics_reports_create", tags=["analytics"], request=ReportSerializer,
                   responses={201: ReportSerializer, **ERRORS})
    @idempotent
    def post(self, request):
        """Save a report spec by name (unique among your reports). Accepts an Idempotency-Key header."""
        data = ReportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = _write(lambda: reports.save_report(owner=request.user, **data.validated_data))
        return Response(ReportSerializer(report, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ReportView(APIView):
    permission_classes = [IsManager]

    @extend_schema(operation_id="analytics_reports_retrieve", tags=["analytics"],
                   responses={200: ReportSerializer, **ERRORS})
    def get(self, request, pk):
        """One report you own or that was shared."""
        return Response(ReportSerializer(_report(request, pk), context={"request": request}).data)

    @extend_schema(operation_id="analytics_reports_update", tags=["analytics"], request=ReportChangeSerializer,
                   responses={200: ReportSerializer, **ERRORS})
    def put(self, request, pk):
        """Change the name, spec or sharing of your report (fields left out stay as they are)."""
        report = _report(request, pk, change=True)
        data = ReportChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _write(lambda: reports.update_report(report=report, by=request.user, **data.validated_data))
        return Response(ReportSerializer(report, context={"request": request}).data)

    @extend_schema(operation_id="analytics_reports_destroy", tags=["analytics"], responses={204: None, **ERRORS})
    def delete(self, request, pk):
        """Delete your report."""
        reports.delete_report(report=_report(request, pk, change=True), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReportRunView(api.MetricView):
    metric = "report"

    @extend_schema(operation_id="analytics_reports_run", tags=["analytics"], parameters=[
        OpenApiParameter("format", str, enum=["json", "csv"], description="csv: stream the rows as CSV."),
    ], responses={200: RUN_RESULT, **ERRORS, 422: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        """Run a saved report over its range (a preset range is taken from today): one row per combination
        of dimension values with rows (every month when month is a dimension) and the total. 400
        `too_many_cells` over 5,000 cells; 422 `stale_report` when the saved spec no longer validates."""
        report = _report(request, pk)
        try:
            result = builder.run(reports.load(report))
        except reports.StaleReport as exc:
            raise Refused(str(exc), code="stale_report", status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)
        except builder.TooManyCells as exc:
            raise Refused(str(exc), code="too_many_cells")
        if request.query_params.get("format") == "csv":
            return self._csv(result.csv(), f"{report.pk}")
        return Response({"id": report.pk, "name": report.name, **result.as_json()})
