"""Django's ASGI handler, with the whole request in one worker thread.

Every view of ours is synchronous, and so are most middleware. Stock Django
builds the middleware chain for async and adapts at each border: a sync-only
middleware wraps what is below it in async_to_sync, and each MiddlewareMixin
running in async mode moves its process_request and process_response to a
thread of their own. A request to the inbox list crossed between the event
loop and a worker thread about six times, each crossing a wake-up of the loop
and a thread switch under the GIL.

Here the chain is built synchronous, as under WSGI, and the request runs in
one sync_to_async call: middleware and view on one thread (the request's own,
from Django's ThreadSensitiveContext), one crossing there and one back. What
stays on the event loop is what Django's ASGIHandler does around it: reading
the body, the request signals, sending the response.

The request's thread is lent, not made: stock Django enters a new
ThreadSensitiveContext per request, whose executor starts a thread for the
request and joins it at the end (a sixth of a webhook's CPU on a node). Here
each request borrows an idle one-thread executor and gives it back when the
request is over, so threads are started only when more requests run at once
than ever before (at most IDLE_THREADS are kept). Everything Django runs
thread-sensitively for the request (the request_started and request_finished
signals with their close_old_connections, middleware, view, response.close)
still runs on that one thread, and one request at a time uses it.

An async view would run through async_to_sync here; there are none (a test
says so), and WebSockets are Channels consumers, not views.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

IDLE_THREADS = 32


class OneThreadASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self._idle = []  # one-thread executors no request is using
        self._lock = threading.Lock()

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        with self._lock:
            executor = self._idle.pop() if self._idle else None
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            with self._lock:
                keep = len(self._idle) < IDLE_THREADS
                if keep:
                    self._idle.append(executor)
            if not keep:
                executor.shutdown(wait=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application():
    """django.core.asgi.get_asgi_application with this handler."""
    import django

    django.setup(set_prefix=False)
    return OneThreadASGIHandler()
