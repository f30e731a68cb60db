"""Users and API tokens in the admin, as managers may handle them.

Managers hold auth.add_user/change_user so they can take on and let go of
staff. Django's stock UserAdmin would also let them tick is_superuser, grant
any permission or group, and set anyone's password: that is every account.
Here, for anyone but a superuser (who keeps the stock admin):

- "Add agent" asks for a name, an email and a role (Agent or Manager) and
  emails the person a link to choose their password; their email is their
  username;
- a user's fields are the name, email, active flag and the role only (no
  staff status, no permission or group widgets); fields not on the form are
  ignored however they are posted, so is_superuser, is_staff and permissions
  cannot be set;
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
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from . import roles
from .admin_site import person_name

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


ROLES = [(roles.AGENT, "Agent — works the inbox"), (roles.MANAGER, "Manager — also runs the admin")]


def role_of(user) -> str:
    """"Manager", "Agent", "Superuser" or "—" (no staff role), from groups the caller prefetched."""
    if user.is_superuser:
        return "Superuser"
    names = {g.name for g in user.groups.all()}
    return roles.MANAGER if roles.MANAGER in names else roles.AGENT if roles.AGENT in names else "—"


class RoleFormMixin:
    """The role is one choice; it becomes membership of exactly one of the two staff groups."""

    def _set_role(self, user):
        if "role" in self.cleaned_data:
            user._new_role = self.cleaned_data["role"]


class ManagerUserCreationForm(RoleFormMixin, forms.ModelForm):
    first_name = forms.CharField(max_length=150)
    last_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(help_text="They get an email here with a link to choose their password, "
                                       "and log in with this address.")
    role = forms.ChoiceField(choices=ROLES, initial=roles.AGENT, widget=forms.RadioSelect)

    class Meta:
        model = User
        fields = ("first_name", "last_name", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User._default_manager.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists():
            raise forms.ValidationError("Someone already has this email address.")
        return email

    def save(self, commit=True):
        user = super().save(commit=False)
        user.username = self.cleaned_data["email"]
        user.set_unusable_password()
        self._set_role(user)
        if commit:
            user.save()
        return user


class ManagerUserChangeForm(RoleFormMixin, UserChangeForm):
    password = None  # not shown, not settable: see send_password_reset
    role = forms.ChoiceField(choices=ROLES, widget=forms.RadioSelect)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "role" not in self.initial:
            current = role_of(self.instance)
            self.initial["role"] = current if current in (roles.AGENT, roles.MANAGER) else None

    def save(self, commit=True):
        self._set_role(self.instance)
        return super().save(commit)


class ManagersUserList(ChangeList):
    """A manager's user list leaves out superusers: not theirs to open, so not listed."""

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).filter(is_superuser=False)


UserList = ChangeList


class StaffUserAdmin(UserAdmin):
    manager_fieldsets = (
        (None, {"fields": ("username",)}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Access", {"fields": ("is_active", "role")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    manager_add_fieldsets = ((None, {"classes": ("wide",),
                                     "fields": ("first_name", "last_name", "email", "role")}),)
    actions = ["send_password_reset_email"]
    list_display = ("full_name", "email", "role", "is_active", "last_login")
    list_filter = ("groups", "is_active")
    ordering = ("first_name", "last_name", "username")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def get_changelist(self, request, **kwargs):
        return UserList if request.user.is_superuser else ManagersUserList

    def get_list_display(self, request):
        if request.user.is_superuser:
            return (*self.list_display, "is_staff")
        return self.list_display

    def get_list_filter(self, request):
        return self.list_filter if request.user.is_superuser else ("is_active",)

    @admin.display(description="Name", ordering="first_name")
    def full_name(self, obj):
        return person_name(obj)

    @admin.display(description="Role")
    def role(self, obj):
        return role_of(obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if add and not request.user.is_superuser:
            context["title"] = "Add agent"
        return super().render_change_form(request, context, add, change, form_url, obj)

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

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        role = getattr(form.instance, "_new_role", None)
        if role is not None and not request.user.is_superuser:
            # Exactly one staff group; other groups the user has (given by a
            # superuser) stay: a manager's form neither shows nor removes them.
            user = form.instance
            user.groups.remove(*staff_groups().exclude(name=role))
            user.groups.add(Group.objects.get(name=role))

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
            self.message_user(request, f"A link to choose a password was sent to {user.email}.", messages.SUCCESS)

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


class StaffGroupAdmin(GroupAdmin):
    """Groups are permission sets: superusers only. Managers give people a role instead."""

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser


admin.site.unregister(Group)
admin.site.register(Group, StaffGroupAdmin)
admin.site.unregister(User)
admin.site.register(User, StaffUserAdmin)
admin.site.unregister(TokenProxy)
admin.site.register(TokenProxy, StaffTokenAdmin)
