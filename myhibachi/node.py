"""X-Node: which node of a cluster answered (NODE_NAME, set by deploy/cluster).

Only installed when NODE_NAME is set (settings.py). Sync and async, so an
ASGI node does not pay a thread hop for it.
"""
from django.conf import settings

from .middleware import AroundRequest


class NodeHeaderMiddleware(AroundRequest):
    def after(self, request, response, state):
        response["X-Node"] = settings.NODE_NAME
        return response
