"""The analytics screens, included at /analytics/ by myhibachi/urls.py."""
from django.urls import path

from . import report, views

urlpatterns = [path("", views.dashboard, name="analytics-dashboard")]
urlpatterns.append(path("report.pdf", report.report_pdf, name="analytics-report"))
