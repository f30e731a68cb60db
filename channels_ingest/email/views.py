"""The unsubscribe page behind every campaign link and List-Unsubscribe header.

GET shows a confirmation button (link scanners in mail filters open links;
they must not unsubscribe anyone). POST unsubscribes: the button, and the
one-click POST that mail clients send (RFC 8058, body List-Unsubscribe=One-Click).
The signed token is the only credential, so the view needs no login or CSRF token.
"""
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import campaigns


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    data = campaigns.read_unsubscribe_token(token)
    if data is None:
        return render(request, "email/unsubscribe.html", {"invalid": True}, status=400)
    context = {"email": data["e"]}
    if request.method == "POST":
        campaigns.unsubscribe(email=data["e"], campaign_id=data.get("c"))
        context["done"] = True
    response = render(request, "email/unsubscribe.html", context)
    response["X-Robots-Tag"] = "noindex"
    return response
