"""Webhook endpoints of the channel adapters."""
from django.urls import path

from .chat import views as chat_views
from .email import views as email_views
from .email import webhooks as email_webhooks
from .ringcentral import views as ringcentral_views
from .ringcentral import webhooks as ringcentral_webhooks

urlpatterns = [
    # Email: SendGrid's two webhooks only, on Anymail's views made strict (channels_ingest/email/webhooks.py).
    # Anymail's own anymail.urls is deliberately not included: it would open every other provider's
    # tracking and inbound views (/anymail/postmark/inbound/ ...) to anyone. Keep the trailing slash.
    path("anymail/sendgrid/tracking/", email_webhooks.tracking_view, name="sendgrid_tracking_webhook"),
    path("anymail/sendgrid/inbound/", email_webhooks.inbound_view, name="sendgrid_inbound_webhook"),
    path("email/unsubscribe/<str:token>/", email_views.unsubscribe, name="email_unsubscribe"),
    # SMS and calls: RingCentral's webhook (Verification-Token checked) and click to call. MMS files and
    # recordings are served by inbox.views.attachment, as every channel's stored files are.
    path("ringcentral/webhook/", ringcentral_webhooks.webhook_view, name="ringcentral_webhook"),
    path("ringcentral/ring-out/<str:pk>/", ringcentral_views.ring_out, name="ringcentral_ringout"),
    # The staff composer's "typing…" signal to a website chat visitor (staff only).
    path("chat/typing/<str:pk>", chat_views.staff_typing, name="chat_staff_typing"),
]
