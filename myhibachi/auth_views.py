"""Log in with a limit on repeated failures.

Failures are counted in the cache per (username, client address) for
LOGIN_FAILURE_WINDOW seconds. After LOGIN_MAX_FAILURES the form is refused
with 429 and a message saying when to try again, before the password is even
checked, so guessing cannot continue; a successful log in clears the count.
"""
import hashlib
import time

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.forms.utils import ErrorDict

LOGIN_MAX_FAILURES = 5
LOGIN_FAILURE_WINDOW = 15 * 60


def _limits():
    return (getattr(settings, "LOGIN_MAX_FAILURES", LOGIN_MAX_FAILURES),
            getattr(settings, "LOGIN_FAILURE_WINDOW", LOGIN_FAILURE_WINDOW))


def client_address(request) -> str:
    # nginx sets X-Real-IP on the upstream side (deploy/nginx.conf); only a
    # proxy we run can set it, since the nodes listen on loopback.
    return request.META.get("HTTP_X_REAL_IP") or request.META.get("REMOTE_ADDR") or "unknown"


def failure_key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}\0{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


class StaffAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match. Check both (the password is case-sensitive) "
                         "and try again.",
    }


class RateLimitedLoginView(auth_views.LoginView):
    form_class = StaffAuthenticationForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        key = failure_key(request.POST.get("username", ""), client_address(request))
        max_failures, window = _limits()
        record = cache.get(key)
        if record and record["count"] >= max_failures:
            form = self.get_form()
            # Set the errors by hand: validating the form would check the password.
            form.cleaned_data, form._errors = {}, ErrorDict()
            wait = max(1, int(record["until"] - time.time()))
            minutes = (wait + 59) // 60
            form.add_error(None, forms.ValidationError(
                f"Too many failed log-in attempts for this username. Wait {minutes} minute"
                f"{'s' if minutes != 1 else ''} and try again, or ask a manager to reset your password."))
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        key = failure_key(self.request.POST.get("username", ""), client_address(self.request))
        max_failures, window = _limits()
        record = cache.get(key) or {"count": 0, "until": time.time() + window}
        record["count"] += 1
        cache.set(key, record, timeout=max(1, int(record["until"] - time.time())))
        return super().form_invalid(form)

    def form_valid(self, form):
        cache.delete(failure_key(self.request.POST.get("username", ""), client_address(self.request)))
        return super().form_valid(form)
