from django.urls import path

from . import api, metrics

urlpatterns = [path(name, api.view_for(name), name=f"api-analytics-{name}") for name in metrics.METRICS]

# The report builder's saved reports (analytics/builder_api.py).
from . import builder_api  # noqa: E402

urlpatterns += [
    path("reports", builder_api.ReportsView.as_view(), name="api-analytics-reports"),
    path("reports/<str:pk>", builder_api.ReportView.as_view(), name="api-analytics-report"),
    path("reports/<str:pk>/run", builder_api.ReportRunView.as_view(), name="api-analytics-report-run"),
]
