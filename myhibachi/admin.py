"""Users and API tokens in the admin, as managers may handle them.

Managers hold auth.add_user/change_user so they can take on and let go of
staff. Django's stock UserAdmin would also let them tick is_superuser, grant
any permission or group, and set anyone's password: that is every account.
Here, for anyone but a superuser (who keeps the stock admin):

- a user's fields are the name, email, active flag and the staff groups
  (Agent, Manager) only; fields not on the form are ignored however they are
  posted, so is_superuser, is_staff and permissions cannot be set;
- superusers cannot be opened, changed or deleted;
- nobody's password can be set (the set-password page answers 403); a manager
  sends a password-reset email instead (an action, and automatically for a
  user just added, who gets no usable password). Their own password they
  change through /admin/password_change/, which asks for the old one;
- another user's email cannot be changed (it is where reset links go).

API tokens: managers may list, create and delete them, but not for superusers.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import PasswordResetForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from . import roles

User = get_user_model()


def staff_groups():
    return Group.objects.filter(name__in=[roles.AGENT, roles.MANAGER]).order_by("name")


class _ResetForOneUser(PasswordResetForm):
    """Django's reset email, to exactly this user, even one with no usable password yet."""

    def __init__(self, user):
        super().__init__({"email": user.email})
        self.user = user

    def get_users(self, email):
        return [self.user] if self.user.is_active and self.user.email else []


def send_password_reset(request, user) -> bool:
    """Email the user a link to choose a password; False if they have no (valid) address."""
    form = _ResetForOneUser(user)
    if not user.is_active or not form.is_valid():
        return False
    form.save(request=request, use_https=request.is_secure(),
              subject_template_name="registration/staff_password_subject.txt",
              email_template_name="registration/staff_password_email.txt",
              extra_email_context={"by": request.user.get_full_name() or request.user.get_username()})
    return True


class ManagerUserCreationForm(forms.ModelForm):
    email = forms.EmailField(help_text="The new user gets an email here to choose their password.")

    class Meta:
        model = User
        fields = ("username", "first_name", "last_name", "email", "groups")

    def save(self, commit=True):
        user = super().save(commit=False)
        user.set_unusable_password()
        if commit:
            user.save()
            self.save_m2m()
        return user


class ManagerUserChangeForm(UserChangeForm):
    password = None  # not shown, not settable: see send_password_reset


class StaffUserAdmin(UserAdmin):
    manager_fieldsets = (
        (None, {"fields": ("username",)}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "groups")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    manager_add_fieldsets = ((None, {"classes": ("wide",),
                                     "fields": ("username", "first_name", "last_name", "email", "groups")}),)
    actions = ["send_password_reset_email"]

    def get_fieldsets(self, request, obj=None):
        if request.user.is_superuser:
            return super().get_fieldsets(request, obj)
        return self.manager_fieldsets if obj else self.manager_add_fieldsets

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return super().get_readonly_fields(request, obj)
        readonly = ["last_login", "date_joined"]
        if obj is not None and obj.pk != request.user.pk:
            readonly.append("email")
        return readonly

    def get_form(self, request, obj=None, **kwargs):
        if not request.user.is_superuser:
            kwargs["form"] = ManagerUserChangeForm if obj else ManagerUserCreationForm
        return super().get_form(request, obj, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = staff_groups()
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        if not request.user.is_superuser and "groups" in form.cleaned_data:
            # Groups outside Agent and Manager that the user already has (given
            # by a superuser) stay: a manager's form neither shows nor removes them.
            others = list(form.instance.groups.exclude(pk__in=staff_groups()))
            super().save_related(request, form, formsets, change)
            form.instance.groups.add(*others)
        else:
            super().save_related(request, form, formsets, change)

    def has_view_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def user_change_password(self, request, id, form_url=""):
        if not request.user.is_superuser:
            if str(request.user.pk) == str(id):
                return HttpResponseRedirect(reverse(f"{self.admin_site.name}:password_change"))
            raise PermissionDenied("Send the user a password-reset email instead.")
        return super().user_change_password(request, id, form_url)

    def response_add(self, request, obj, post_url_continue=None):
        if not request.user.is_superuser:
            transaction.on_commit(lambda: self._welcome(request, obj))
        return super().response_add(request, obj, post_url_continue)

    def _welcome(self, request, user):
        if send_password_reset(request, user):
            self.message_user(request, f"{user.email} was sent a link to choose a password.", messages.SUCCESS)

    @admin.action(description="Send password-reset email", permissions=["change"])
    def send_password_reset_email(self, request, queryset):
        sent, skipped = [], []
        for user in queryset:
            allowed = self.has_change_permission(request, user)
            (sent if allowed and send_password_reset(request, user) else skipped).append(user.get_username())
        if sent:
            self.message_user(request, f"Password-reset email sent to {', '.join(sent)}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Not sent to {', '.join(skipped)} (no email address, inactive, "
                                       "or not yours to reset).", messages.WARNING)


class StaffTokenAdmin(TokenAdmin):
    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.filter(user__is_superuser=False)
        return queryset

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = User.objects.filter(is_superuser=False)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
admin.site.unregister(TokenProxy)
admin.site.register(TokenProxy, StaffTokenAdmin)
