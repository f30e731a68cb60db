"""Create the Agent and Manager groups with their permissions.

Agents read everything in the inbox and CRM and act on conversations
(messages, notes, status, assignment). Managers may also change customers,
bookings, canned responses, routing rules and users.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

AGENT_PERMS = {
    "crm": {"customer": "v", "customeridentity": "v", "booking": "v", "lead": "v", "marketingspend": "v"},
    "inbox": {"conversation": "vc", "message": "vac", "note": "vac", "cannedresponse": "v", "routingrule": "v",
              "tag": "va"},
}
MANAGER_APPS = ("crm", "inbox")
MANAGER_EXTRA = {"auth": {"user": "vac", "group": "v"}, "authtoken": {"token": "vad"}}
ACTIONS = {"v": "view", "a": "add", "c": "change", "d": "delete"}


def _perms(Permission, table):
    codenames = []
    for app_label, models in table.items():
        for model, letters in models.items():
            codenames += [(app_label, f"{ACTIONS[ch]}_{model}") for ch in letters]
    found = []
    for app_label, codename in codenames:
        found += list(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    return found


def create_groups(apps, schema_editor):
    # Permissions are normally made after migrate; make them now so the
    # groups can hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    agent, _ = Group.objects.get_or_create(name="Agent")
    agent.permissions.set(_perms(Permission, AGENT_PERMS))
    manager, _ = Group.objects.get_or_create(name="Manager")
    perms = list(Permission.objects.filter(content_type__app_label__in=MANAGER_APPS))
    manager.permissions.set(perms + _perms(Permission, MANAGER_EXTRA))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Agent", "Manager"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0001_initial"),
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
