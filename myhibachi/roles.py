"""Who is staff, who is a manager: the one place that knows the group names.

Staff are Django users in the Agent or Manager group (superusers count as
managers). Every screen, API endpoint and socket asks these functions.
"""
from rest_framework.permissions import BasePermission

AGENT = "Agent"
MANAGER = "Manager"


def _group_names(user):
    # Cached on the user object so one request asks the database once.
    if not hasattr(user, "_myhibachi_groups"):
        user._myhibachi_groups = frozenset(user.groups.values_list("name", flat=True))
    return user._myhibachi_groups


def is_manager(user) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or MANAGER in _group_names(user)


def is_staff_member(user) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or bool({AGENT, MANAGER} & _group_names(user))


class IsStaffMember(BasePermission):
    message = "Only myhibachi staff (Agent or Manager) may use this endpoint."

    def has_permission(self, request, view):
        return is_staff_member(request.user)


class IsManager(BasePermission):
    message = "Only managers may do this."

    def has_permission(self, request, view):
        return is_manager(request.user)


class IsManagerOrReadOnly(BasePermission):
    message = "Only managers may change this."

    def has_permission(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return is_staff_member(request.user)
        return is_manager(request.user)
