"""X-Node: which node of a cluster answered (NODE_NAME, set by deploy/cluster).

Only installed when NODE_NAME is set (settings.py). Sync and async, so an
ASGI node does not pay a thread hop for it.
"""
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def node_header(get_response):
    name = settings.NODE_NAME

    if iscoroutinefunction(get_response):
        async def middleware(request):
            response = await get_response(request)
            response["X-Node"] = name
            return response
    else:
        def middleware(request):
            response = get_response(request)
            response["X-Node"] = name
            return response
    return middleware
