"""WebSocket URL routes, collected from the apps that serve sockets."""
websocket_urlpatterns = []
