"""A base for middleware that does something around the rest of the chain.

Sync and async alike: on an ASGI node an async-capable middleware costs no
thread hop, which Django's MiddlewareMixin hooks would (they run in
sync_to_async). A subclass overrides what it needs: ``before`` (its result is
the state handed to the others), ``cleanup`` (always runs, also when the chain
raised) and ``after`` (on the response).
"""
from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class AroundRequest:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def before(self, request):
        return None

    def cleanup(self, state) -> None:
        pass

    def after(self, request, response, state):
        return response

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        state = self.before(request)
        try:
            response = self.get_response(request)
        finally:
            self.cleanup(state)
        return self.after(request, response, state)

    async def __acall__(self, request):
        state = self.before(request)
        try:
            response = await self.get_response(request)
        finally:
            self.cleanup(state)
        return self.after(request, response, state)
