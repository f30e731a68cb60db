"""Who is staff, who is a manager: the one place that knows the group names.

Staff are Django users in the Agent or Manager group (superusers count as
managers). Every screen, API endpoint and socket asks these functions.
"""
from rest_framework.permissions import BasePermission

AGENT = "Agent"
MANAGER = "Manager"


def _group_names(user):
    """The staff groups (AGENT, MANAGER) the user is in, asked once per request:
    myhibachi.auth.StaffBackend reads them with the user; other ways in (API
    tokens) ask here."""
    if not hasattr(user, "_myhibachi_groups"):
        remember_staff_groups(user, names=user.groups.filter(name__in=[AGENT, MANAGER]).values_list("name", flat=True))
    return user._myhibachi_groups


def remember_staff_groups(user, *, names=(), agent=False, manager=False):
    user._myhibachi_groups = frozenset(names) | {name for name, member in ((AGENT, agent), (MANAGER, manager))
                                                 if member}


def is_manager(user) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or MANAGER in _group_names(user)


def is_staff_member(user) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or bool({AGENT, MANAGER} & _group_names(user))


def staff_user_ids(user_ids) -> set:
    """Which of these users are staff now (is_staff_member), in one query."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    return set(get_user_model()._default_manager.filter(
        Q(is_superuser=True) | Q(groups__name__in=[AGENT, MANAGER]), pk__in=list(user_ids), is_active=True,
    ).values_list("pk", flat=True).distinct())


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


# What each group may do, by app and model: v=view a=add c=change d=delete.
AGENT_PERMISSIONS = {
    "crm": {"customer": "v", "customeridentity": "v", "booking": "v", "lead": "v", "marketingspend": "v",
            "payment": "v", "lostreason": "v"},
    "inbox": {"conversation": "vc", "message": "vac", "note": "vac", "cannedresponse": "v", "routingrule": "v",
              "tag": "va"},
}
MANAGER_APPS = ("crm", "inbox", "channels_ingest", "analytics")
# The admin shows API tokens through DRF's TokenProxy (its own content type and
# permissions: view_tokenproxy...), the API through Token: both are granted.
MANAGER_EXTRA = {"auth": {"user": "vac", "group": "v"}, "authtoken": {"token": "vad", "tokenproxy": "vad"}}
_ACTIONS = {"v": "view", "a": "add", "c": "change", "d": "delete"}


def codenames(table):
    return [(app, f"{_ACTIONS[letter]}_{model}") for app, models in table.items()
            for model, letters in models.items() for letter in letters]


def permissions_matching(Permission, pairs):
    """The Permission rows for (app_label, codename) pairs; works with historical models too."""
    from django.db.models import Q

    query = Q(pk__in=[])
    for app, codename in pairs:
        query |= Q(content_type__app_label=app, codename=codename)
    return Permission.objects.filter(query)


def ensure_staff_groups(**kwargs):
    """Create the Agent and Manager groups and give them their permissions.

    Runs after every migrate (and after the test database is flushed), so a
    model added later is granted to managers without another data migration.
    """
    from django.contrib.auth.models import Group, Permission

    def permissions(pairs):
        return permissions_matching(Permission, pairs)

    agent, _ = Group.objects.get_or_create(name=AGENT)
    agent.permissions.add(*permissions(codenames(AGENT_PERMISSIONS)))
    manager, _ = Group.objects.get_or_create(name=MANAGER)
    manager.permissions.add(*Permission.objects.filter(content_type__app_label__in=MANAGER_APPS),
                            *permissions(codenames(MANAGER_EXTRA)))
