from inbox.views import inbox_page


def home(request):
    """The site root is the staff inbox (anonymous -> login, non-staff -> 403)."""
    return inbox_page(request)
