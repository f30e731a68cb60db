from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from channels_ingest.chat.chatbot import ChatbotSessionView

from . import auth_views as rate_limited, health, metrics, views

urlpatterns = [
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("metrics", metrics.metrics, name="metrics"),  # loopback or METRICS_TOKEN only (myhibachi/metrics.py)
    path("login/", rate_limited.RateLimitedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Links in password-reset emails, which managers send from the admin (myhibachi/admin.py).
    path("password-reset/<uidb64>/<token>/", rate_limited.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin's, an image).
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
    # The website chatbot's integration (channels_ingest/chat/chatbot.py), before the inbox API's catch-all.
    path("api/v1/chatbot/sessions", ChatbotSessionView.as_view(), name="api-chatbot-sessions"),
    path("api/v1/analytics/", include("analytics.urls")),  # before inbox's catch-all 404
    path("api/v1/", include("inbox.api.urls")),
    path("analytics/", include("analytics.screens")),
    path("", include("channels_ingest.urls")),
    path("", include("inbox.urls")),
    path("", views.home, name="home"),
]

# An uncaught database-unreachable error outside a view is a 503 too (myhibachi/unavailable.py).
handler500 = "myhibachi.unavailable.server_error"
