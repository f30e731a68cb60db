"""The analytics screens, included at /analytics/ by myhibachi/urls.py."""
from django.urls import path

from . import builder_views, report, views

urlpatterns = [
    path("", views.dashboard, name="analytics-dashboard"),
    path("report.pdf", report.report_pdf, name="analytics-report"),
    # The report builder (analytics/builder_views.py).
    path("builder/", builder_views.report_builder, name="analytics-builder"),
    path("builder/save", builder_views.save_report, name="analytics-builder-save"),
    path("builder/<str:pk>", builder_views.change_report, name="analytics-builder-change"),
]
