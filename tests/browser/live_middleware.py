"""Test-only middleware of the live server (tests/browser/live_settings.py)."""
from asgiref.sync import iscoroutinefunction, markcoroutinefunction


def fresh_content_types(get_response):
    """Forget cached content types before each request: the tests flush the
    database between tests, and content types come back with new ids."""
    from django.contrib.contenttypes.models import ContentType

    if iscoroutinefunction(get_response):
        async def middleware(request):
            ContentType.objects.clear_cache()
            return await get_response(request)

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request):
        ContentType.objects.clear_cache()
        return get_response(request)

    return sync_middleware
