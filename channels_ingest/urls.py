"""Webhook endpoints of the channel adapters."""
from django.urls import include, path

from .email import views as email_views
from .email import webhooks as email_webhooks

urlpatterns = [
    # Email: Anymail's SendGrid views, made strict (see channels_ingest/email/webhooks.py). They come
    # before Anymail's own URLs so they answer these two paths (keep the trailing slash).
    path("anymail/sendgrid/tracking/", email_webhooks.tracking_view, name="sendgrid_tracking_webhook"),
    path("anymail/sendgrid/inbound/", email_webhooks.inbound_view, name="sendgrid_inbound_webhook"),
    path("email/unsubscribe/<str:token>/", email_views.unsubscribe, name="email_unsubscribe"),
    # /anymail/sendgrid/tracking/ and /anymail/sendgrid/inbound/ (keep the trailing slash)
    path("anymail/", include("anymail.urls")),
]
