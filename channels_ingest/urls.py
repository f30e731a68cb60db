"""Webhook endpoints of the channel adapters."""
from django.urls import include, path

urlpatterns = [
    # /anymail/sendgrid/tracking/ and /anymail/sendgrid/inbound/ (keep the trailing slash)
    path("anymail/", include("anymail.urls")),
]
