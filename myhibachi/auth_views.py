"""Log-in forms that say when the limit on attempts refused one.

The limit itself is kept where passwords are checked, in StaffBackend
(myhibachi/login_limit.py), so it holds for /login/ and /admin/login/ alike.
When it refuses an attempt the password is not checked; these forms then show
how long to wait instead of "wrong password", and LoginLockoutMiddleware turns
the page into a 429 with Retry-After.
"""
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm

from . import login_limit


class LockoutMessageMixin:
    def get_invalid_login_error(self):
        lockout = login_limit.lockout_of(self.request) if self.request is not None else None
        if lockout is not None:
            return forms.ValidationError(lockout.message, code="locked_out")
        return super().get_invalid_login_error()


class StaffAuthenticationForm(LockoutMessageMixin, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match. Check both (the password is case-sensitive) "
                         "and try again.",
    }


class StaffAdminAuthenticationForm(LockoutMessageMixin, AdminAuthenticationForm):
    """The admin's log-in form (admin.site.login_form, set in apps.py)."""


class RateLimitedLoginView(auth_views.LoginView):
    form_class = StaffAuthenticationForm
    redirect_authenticated_user = True


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """The link in a password-reset email (sent by a manager from the admin).

    A new password also lifts a lock-out of that username: "ask a manager to
    send you a password-reset email" is what the lock-out message suggests.
    """

    def form_valid(self, form):
        response = super().form_valid(form)
        login_limit.forget(form.user.get_username())
        return response
