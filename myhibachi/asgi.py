"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Production nodes run it with Uvicorn, which hands a staff event to 500 sockets
in well under half the time Daphne takes (bench/bench_screens.py, README):

    uvicorn myhibachi.asgi:application --loop uvloop --http httptools \
        --ws websockets-sansio --ws-per-message-deflate false --no-access-log

(no per-message deflate: it would compress every event once per socket;
a pool of 8 database connections by default, DB_POOL_SIZE, see settings.py).
Daphne serves it the same way (manage.py runserver, the test live server).
"""
import gc
import os

from myhibachi.handler import get_asgi_application  # the whole request on one thread (handler.py)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myhibachi.settings")
# A node pools its PostgreSQL connections unless told otherwise (DB_POOL_SIZE=0 turns it
# off): without a pool every request opens a connection of its own. Only the ASGI entry
# point sets this default, before the settings are read, so Celery, manage.py and the
# tests keep plain connections; runserver has read the settings before it imports this.
os.environ.setdefault("DB_POOL_SIZE", "8")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs apps loaded)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from channels.auth import AuthMiddleware  # noqa: E402

from inbox.consumers import with_server_send  # noqa: E402

from .ws_routing import chat_urlpatterns, websocket_urlpatterns  # noqa: E402

# Staff sockets: the page must come from one of our hosts, the session cookie says who.
staff_sockets = AllowedHostsOriginValidator(
    CookieMiddleware(SessionMiddleware(AuthMiddleware(URLRouter(websocket_urlpatterns))))
)
# Website chat visitors: pages on the business's website (another origin), never a session or a log-in;
# the consumer checks the origin against CHAT_ALLOWED_ORIGINS itself (channels_ingest/chat/consumers.py).
chat_sockets = URLRouter(chat_urlpatterns)


async def websocket_app(scope, receive, send):
    app = chat_sockets if scope.get("path", "").startswith("/ws/chat/") else staff_sockets
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": with_server_send(websocket_app),
    }
)

# What is loaded at start-up lives as long as the process. Moved out of the
# collector's generations, it is not walked again by every full collection,
# which under load otherwise runs several times a second (bench/ does the same).
gc.collect()
gc.freeze()
