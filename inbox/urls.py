"""Staff screens. Included at the site root by myhibachi/urls.py."""
from django.urls import path

from . import image_proxy, views

app_name = "inbox"

urlpatterns = [
    path("inbox/", views.inbox_page, name="list"),
    path("inbox/rows", views.inbox_rows, name="rows"),
    path("inbox/image", image_proxy.image, name="image"),
    path("inbox/signature", views.signature, name="signature"),
    path("inbox/<int:pk>/", views.thread_page, name="thread"),
    path("inbox/<int:pk>/live", views.thread_live, name="live"),
    path("inbox/<int:pk>/history", views.thread_history, name="history"),
    path("inbox/<int:pk>/older", views.thread_older, name="older"),
    path("inbox/<int:pk>/send", views.send, name="send"),
    path("inbox/<int:pk>/status", views.change_status, name="status"),
    path("inbox/<int:pk>/assign", views.change_assignee, name="assign"),
    path("inbox/<int:pk>/customer-note", views.add_customer_note, name="customer-note"),
    path("inbox/<int:pk>/tags", views.change_tags, name="tags"),
    path("inbox/<int:pk>/messages/<int:message_pk>/attachments/<int:index>", views.attachment, name="attachment"),
    path("inbox/<int:pk>/messages/<int:message_pk>/recording", views.attachment, name="recording"),
    path("inbox/<int:pk>/messages/<int:message_pk>/retry", views.retry_reply, name="retry"),
    path("inbox/<int:pk>/messages/<int:message_pk>/email-instead", views.email_instead, name="email-instead"),
]
