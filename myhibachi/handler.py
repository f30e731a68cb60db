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

The request_started signal, the chain and, for a response already in memory,
response.close() with its request_finished signal run in that one crossing
too (stock Django crosses three times: the signal, the chain, the close), and
no task is started to watch for a disconnect: a synchronous view cannot be
stopped by one. Closing before the bytes go out hands the database connection
back to the pool a little sooner. A streaming response (a CSV export, a file)
is read on the request's thread about 64 KB at a time and sent as it comes,
the disconnect watched, closed after the last chunk: stock Django reads a
synchronous stream into one list before sending any of it, so a large export
would sit whole in the node's memory.

At most REQUEST_SLOTS requests run their views at once on a node; the others
wait their turn on the event loop, first come first served. A node is one
Python process: its views share one interpreter lock with each other and
with the event loop, so fifty requests run side by side finish no sooner in
total than a few at a time, but the event loop waits for the lock behind all
of them and the last of them finishes much later than the first. A request
keeps its slot at most REQUEST_SLOT_SECONDS: a slow one (a PDF, a cold
dashboard) then gives its place up and runs on beside the limit, so it never
holds up the requests behind it for longer than that. (50 clients flat out
through nginx, 2 cores: without slots 1,300 req/s with p99 103-106 ms; with 4,
1,150 req/s with p99 75-88 ms; bench/bench_cluster.py, docs/benchmarks.md.)

An async view would run through async_to_sync here; there are none (a test
says so), and WebSockets are Channels consumers, not views.
"""
import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix

IDLE_THREADS = 32


class OneThreadASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self._idle = []  # one-thread executors no request is using
        self._lock = threading.Lock()
        self._slots = None  # (event loop, asyncio.Semaphore of REQUEST_SLOTS), made in the serving loop

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

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            response = await self._in_turn(sync_to_async(self._respond, thread_sensitive=True)(scope, body_file))
            if response.streaming:
                await self._stream(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    async def _in_turn(self, running):
        """Await the request's work (a coroutine) once one of the node's REQUEST_SLOTS is free; give the
        slot up when the work is done or has held it for REQUEST_SLOT_SECONDS, whichever comes first.
        The work is awaited here, in the request's own context, as it would be without slots."""
        if not settings.REQUEST_SLOTS:
            return await running
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(settings.REQUEST_SLOTS))
        slots = self._slots[1]
        try:
            await slots.acquire()
        except BaseException:
            running.close()  # never started: the client went away while it waited
            raise
        held = [True]

        def give_up():
            if held[0]:
                held[0] = False
                slots.release()

        timer = loop.call_later(settings.REQUEST_SLOT_SECONDS, give_up)
        try:
            return await running
        finally:
            timer.cancel()
            give_up()

    def _respond(self, scope, body_file):
        """On the request's thread: what Django's handle() and run_get_response() do, in order."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the ASGI server does the low-level chunking
        if not response.streaming:
            response.close()  # its bytes are in memory; request_finished runs here
        return response

    async def _stream(self, response, receive, send):
        """Send a streaming response, stopping if the client goes away (as Django's handle())."""
        if not response.is_async:
            response.streaming_content = _pulled(response.streaming_content)
        sending = asyncio.create_task(self.send_response(response, send))
        watching = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait([sending, watching], return_when=asyncio.FIRST_COMPLETED)
            for task in (watching, sending):
                if not task.done():
                    task.cancel()
                # The watcher ends with RequestAborted when the client left; a task stopped
                # here ends cancelled. Any other error is raised.
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        finally:
            await sync_to_async(response.close, thread_sensitive=True)()


STREAM_BATCH_BYTES = 64 * 1024


def _next_batch(parts) -> bytes:
    """Up to about STREAM_BATCH_BYTES of a synchronous stream's next parts (b"" at its end)."""
    batch, size = [], 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= STREAM_BATCH_BYTES:
            break
    return b"".join(batch)


async def _pulled(parts):
    """A synchronous stream (a CSV export's generator, a file) as an async one, read on the request's
    thread (where its database cursor lives) a batch at a time."""
    parts = iter(parts)
    take = sync_to_async(_next_batch, thread_sensitive=True)
    while batch := await take(parts):
        yield batch


def get_asgi_application():
    """django.core.asgi.get_asgi_application with this handler."""
    import django

    django.setup(set_prefix=False)
    return OneThreadASGIHandler()
