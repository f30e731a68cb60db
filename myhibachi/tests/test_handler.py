"""The ASGI handler runs a whole request, middleware and view, on one worker thread."""
import asyncio
import threading

from channels.testing import HttpCommunicator
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, path
from asgiref import sync
from asgiref.sync import iscoroutinefunction

from myhibachi.handler import OneThreadASGIHandler

seen = []


def recording_middleware(get_response):
    def middleware(request):
        seen.append(("middleware", threading.get_ident()))
        return get_response(request)
    return middleware


def thread_view(request):
    seen.append(("view", threading.get_ident()))
    return HttpResponse("ok")


urlpatterns = [path("thread", thread_view)]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[
    f"{__name__}.recording_middleware",
    "django.contrib.sessions.middleware.SessionMiddleware",  # MiddlewareMixin: would hop alone in async mode
    "myhibachi.login_limit.LoginLockoutMiddleware",  # sync only: async_to_sync below it in stock Django
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    f"{__name__}.recording_middleware",
])
def test_middleware_and_view_share_one_thread_off_the_event_loop(monkeypatch):
    seen.clear()
    handler = OneThreadASGIHandler()
    crossings = {"to_thread": 0, "to_loop": 0}
    to_thread, to_loop = sync.SyncToAsync.__call__, sync.AsyncToSync.__call__

    async def counted_to_thread(self, *args, **kwargs):
        crossings["to_thread"] += 1
        return await to_thread(self, *args, **kwargs)

    def counted_to_loop(self, *args, **kwargs):
        crossings["to_loop"] += 1
        return to_loop(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counted_to_thread)
    monkeypatch.setattr(sync.AsyncToSync, "__call__", counted_to_loop)

    async def go():
        loop_thread = threading.get_ident()
        response = await HttpCommunicator(handler, "GET", "/thread").get_response()
        return loop_thread, response

    loop_thread, response = asyncio.run(go())
    assert response["status"] == 200 and response["body"] == b"ok"
    threads = {ident for _, ident in seen}
    assert [what for what, _ in seen] == ["middleware", "middleware", "view"]
    assert len(threads) == 1 and loop_thread not in threads
    # The request_started signal, the chain, the view and the response's close in one crossing.
    # Stock Django crosses 5 times for this chain (the signal, a hop at each border, the
    # close), 10 for the production one (/login/).
    assert crossings == {"to_thread": 1, "to_loop": 0}


def _views(resolver):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _views(entry)
        elif isinstance(entry, URLPattern):
            yield entry.lookup_str, entry.callback


def test_no_view_is_async():
    # OneThreadASGIHandler would run one through async_to_sync; an async view needs it changed first.
    async_views = [name for name, view in _views(get_resolver()) if iscoroutinefunction(view)]
    assert async_views == []


def test_requests_reuse_threads_and_still_run_side_by_side():
    """One request after another runs on the same thread (none started per request); requests
    that overlap each get a thread of their own."""
    started = threading.Event()
    release = threading.Event()

    def slow_view(request):
        seen.append(("slow", threading.get_ident()))
        started.set()
        release.wait(5)
        return HttpResponse("slow")

    async def one(path):
        return await HttpCommunicator(handler, "GET", path).get_response()

    handler = None

    async def go():
        seen.clear()
        for _ in range(3):
            assert (await one("/thread"))["body"] == b"ok"
        sequential = {ident for _, ident in seen}
        seen.clear()
        slow = asyncio.ensure_future(one("/slow"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        fast = await one("/thread")  # answered while the slow one still holds its thread
        release.set()
        return sequential, fast, await slow

    urlpatterns.append(path("slow", slow_view))
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[f"{__name__}.recording_middleware"]):
            handler = OneThreadASGIHandler()
            sequential, fast, slow = asyncio.run(go())
    finally:
        urlpatterns.pop()
    assert len(sequential) == 1  # middleware and view of three requests, one thread
    assert fast["body"] == b"ok" and slow["body"] == b"slow"
    slow_thread = [ident for what, ident in seen if what == "slow"]
    view_thread = [ident for what, ident in seen if what == "view"]
    assert slow_thread != view_thread


def test_signals_run_once_per_request_on_the_request_thread():
    """request_started and request_finished (close_old_connections hands the database
    connection back) run once each, on the thread the view ran on."""
    from django.core import signals

    fired = []

    def started(**kwargs):
        fired.append(("started", threading.get_ident()))

    def finished(**kwargs):
        fired.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
            seen.clear()
            handler = OneThreadASGIHandler()
            response = asyncio.run(HttpCommunicator(handler, "GET", "/thread").get_response())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert response["body"] == b"ok"
    view_thread = seen[0][1]
    assert fired == [("started", view_thread), ("finished", view_thread)]


async def rest_of_body(communicator) -> bytes:
    """The body parts still to come, up to the last one; then the application's end."""
    body = b""
    while True:
        message = await communicator.receive_output(5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(5)
    return body


def chunks_view(request):
    def chunks():
        for n in range(3):
            yield f"row {n}\n".encode()
    return StreamingHttpResponse(chunks(), content_type="text/csv")


def test_a_streaming_response_is_sent_in_full_and_then_closed():
    from django.core import signals

    finished = []

    def on_finished(**kwargs):
        finished.append(True)

    urlpatterns.append(path("stream", chunks_view))
    signals.request_finished.connect(on_finished)
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
            handler = OneThreadASGIHandler()

            async def go():
                communicator = HttpCommunicator(handler, "GET", "/stream")
                await communicator.send_input({"type": "http.request", "body": b""})
                start = await communicator.receive_output(5)
                return start, await rest_of_body(communicator)

            start, body = asyncio.run(go())
    finally:
        signals.request_finished.disconnect(on_finished)
        urlpatterns.pop()
    assert start["status"] == 200
    assert body == b"row 0\nrow 1\nrow 2\n"
    assert finished == [True]  # closed once, after the last chunk


def test_a_large_stream_goes_out_while_it_is_still_being_written():
    """The first part of a CSV export reaches the client before the view's generator has written
    the rest (stock Django reads a synchronous stream whole into memory first), and every part is
    read on the request's thread, where its database cursor lives."""
    from myhibachi.handler import STREAM_BATCH_BYTES

    rest_may_follow = threading.Event()
    threads = set()

    def rows():
        threads.add(threading.get_ident())
        yield b"x" * STREAM_BATCH_BYTES
        rest_may_follow.wait(5)
        threads.add(threading.get_ident())
        yield b"last\n"

    def export_view(request):
        seen.append(("view", threading.get_ident()))
        return StreamingHttpResponse(rows(), content_type="text/csv")

    urlpatterns.append(path("export", export_view))
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
            seen.clear()
            handler = OneThreadASGIHandler()

            async def go():
                communicator = HttpCommunicator(handler, "GET", "/export")
                await communicator.send_input({"type": "http.request", "body": b""})
                await communicator.receive_output(5)  # the status line and headers
                first = await communicator.receive_output(5)
                written_before = rest_may_follow.is_set()
                rest_may_follow.set()
                return first, written_before, first["body"] + await rest_of_body(communicator)

            first, written_before, body = asyncio.run(go())
    finally:
        rest_may_follow.set()
        urlpatterns.pop()
    assert first["body"] == b"x" * STREAM_BATCH_BYTES and first["more_body"] and not written_before
    assert body == b"x" * STREAM_BATCH_BYTES + b"last\n"
    assert threads == {seen[0][1]}  # the generator ran where the view ran


def _slot_views():
    """A view that notes how many views run at once, and one that runs until told to stop."""
    state = {"running": 0, "most": 0, "order": [], "lock": threading.Lock(),
             "started": threading.Event(), "release": threading.Event()}

    def counted(request):
        with state["lock"]:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["order"].append(request.GET["n"])
        release_wait = threading.Event()
        release_wait.wait(0.02)  # long enough for the others to pile up if they could
        with state["lock"]:
            state["running"] -= 1
        return HttpResponse(request.GET["n"])

    def held(request):
        state["started"].set()
        state["release"].wait(5)
        return HttpResponse("held")

    return state, [path("counted", counted), path("held", held)]


def _serve(views, go):
    urlpatterns.extend(views)
    try:
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
            handler = OneThreadASGIHandler()
            return asyncio.run(go(handler))
    finally:
        del urlpatterns[-len(views):]


def _get(handler, path):
    return HttpCommunicator(handler, "GET", path).get_response()


@override_settings(REQUEST_SLOTS=2, REQUEST_SLOT_SECONDS=5)
def test_at_most_request_slots_views_run_at_once_and_the_rest_in_arrival_order():
    state, views = _slot_views()

    async def go(handler):
        requests = []
        for n in range(8):
            requests.append(asyncio.ensure_future(_get(handler, f"/counted?n={n}")))
            await asyncio.sleep(0.002)  # arrive in this order
        return await asyncio.gather(*requests)

    answers = _serve(views, go)
    assert [a["body"] for a in answers] == [str(n).encode() for n in range(8)]  # every one answered
    assert state["most"] == 2
    assert state["order"][2:] == [str(n) for n in range(2, 8)]  # the waiting ones, first come first served


@override_settings(REQUEST_SLOTS=1, REQUEST_SLOT_SECONDS=0.05)
def test_a_slow_request_gives_its_slot_up_and_never_holds_up_the_others_for_long():
    state, views = _slot_views()

    async def go(handler):
        slow = asyncio.ensure_future(_get(handler, "/held"))
        await asyncio.get_running_loop().run_in_executor(None, state["started"].wait, 5)
        fast = await asyncio.wait_for(_get(handler, "/counted?n=1"), 2)  # the only slot is the slow one's
        still_running = not slow.done()
        state["release"].set()
        return fast, still_running, await slow

    fast, still_running, slow = _serve(views, go)
    assert fast["body"] == b"1" and still_running and slow["body"] == b"held"


@override_settings(REQUEST_SLOTS=0)
def test_without_slots_every_request_runs_at_once():
    state, views = _slot_views()

    async def go(handler):
        return await asyncio.gather(*(_get(handler, f"/counted?n={n}") for n in range(6)))

    _serve(views, go)
    assert state["most"] == 6
