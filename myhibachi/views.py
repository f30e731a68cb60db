from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static

from inbox.views import inbox_page


def home(request):
    """The site root is the staff inbox (anonymous -> login, non-staff -> 403)."""
    return inbox_page(request)


def favicon(request):
    """Browsers ask for /favicon.ico on pages without an icon link (the admin's, an image).

    The address is looked up per request: at import time (URLconf, `check --deploy`) the
    production storage may have no collectstatic manifest yet."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
