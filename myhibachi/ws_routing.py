"""WebSocket URL routes, collected from the apps that serve sockets."""
from django.urls import path

from channels_ingest.chat.consumers import VisitorConsumer
from inbox.consumers import InboxConsumer

websocket_urlpatterns = [
    path("ws/inbox", InboxConsumer.as_asgi()),
]
# The public visitor socket: its own origin allow-list (CHAT_ALLOWED_ORIGINS), no session or log-in (asgi.py).
chat_urlpatterns = [
    path("ws/chat/<str:token>", VisitorConsumer.as_asgi()),
]
