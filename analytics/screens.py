"""The analytics screens, included at /analytics/ by myhibachi/urls.py."""
from django.urls import path

from . import views

urlpatterns = [path("", views.dashboard, name="analytics-dashboard")]
