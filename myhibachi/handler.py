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

An async view would run through async_to_sync here; there are none (a test
says so), and WebSockets are Channels consumers, not views.
"""
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneThreadASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application():
    """django.core.asgi.get_asgi_application with this handler."""
    import django

    django.setup(set_prefix=False)
    return OneThreadASGIHandler()
