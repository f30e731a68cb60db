"""Create the Agent and Manager groups with their permissions.

Agents read everything in the inbox and CRM and act on conversations
(messages, notes, status, assignment). Managers may also change customers,
bookings, canned responses, routing rules and users. The tables live in
myhibachi.roles, whose post_migrate handler keeps the groups complete as
models are added.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

from myhibachi.roles import AGENT, AGENT_PERMISSIONS, MANAGER, MANAGER_APPS, MANAGER_EXTRA, codenames, permissions_matching


def create_groups(apps, schema_editor):
    # Permissions are normally made after migrate; make them now so the
    # groups can hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def permissions(pairs):
        return permissions_matching(Permission, pairs)

    agent, _ = Group.objects.get_or_create(name=AGENT)
    agent.permissions.set(permissions(codenames(AGENT_PERMISSIONS)))
    manager, _ = Group.objects.get_or_create(name=MANAGER)
    manager.permissions.set([*Permission.objects.filter(content_type__app_label__in=MANAGER_APPS),
                             *permissions(codenames(MANAGER_EXTRA))])


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[AGENT, MANAGER]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("inbox", "0001_initial"),
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]
    operations = [migrations.RunPython(create_groups, remove_groups)]
