from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.trailing_slash = "/?"  # /api/v1/canned-responses with or without the slash
router.register("canned-responses", views.CannedResponseViewSet, basename="canned-response")
router.register("routing-rules", views.RoutingRuleViewSet, basename="routing-rule")

urlpatterns = [
    path("inbox", views.InboxListView.as_view(), name="api-inbox"),
    path("inbox/<int:pk>", views.ConversationDetailView.as_view(), name="api-conversation"),
    path("inbox/<int:pk>/reply", views.ReplyView.as_view(), name="api-reply"),
    path("inbox/<int:pk>/messages/<int:message_pk>/retry", views.RetryReplyView.as_view(), name="api-retry"),
    path("inbox/<int:pk>/messages/<int:message_pk>/email-instead", views.EmailInsteadView.as_view(),
         name="api-email-instead"),
    path("inbox/<int:pk>/status", views.StatusView.as_view(), name="api-status"),
    path("inbox/<int:pk>/assign", views.AssignView.as_view(), name="api-assign"),
    path("inbox/<int:pk>/note", views.NoteView.as_view(), name="api-note"),
    path("inbox/<int:pk>/read", views.ReadView.as_view(), name="api-read"),
    path("inbox/<int:pk>/tags", views.TagsView.as_view(), name="api-tags"),
    path("inbox/<int:pk>/tags/<str:name>", views.TagView.as_view(), name="api-tag"),
    path("staff", views.StaffNamesView.as_view(), name="api-staff"),
    path("events", views.EventsView.as_view(), name="api-events"),
    path("customers", views.CustomerListView.as_view(), name="api-customers"),
    path("customers/<str:pk>/merge", views.CustomerMergeView.as_view(), name="api-customer-merge"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    path("docs/", views.DocsView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
    re_path(r"^.*$", views.UnknownEndpointView.as_view()),
]
