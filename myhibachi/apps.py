from django.apps import AppConfig


class MyhibachiConfig(AppConfig):
    name = "myhibachi"
    verbose_name = "myhibachi"

    def ready(self):
        from django.contrib import admin
        from django.db.models.signals import post_migrate

        from . import auth
        from .roles import ensure_staff_groups

        # A kept API token user is dropped by any change of users, tokens or groups.
        auth.connect()

        # Sent once per app with models (this app has none), after that app's
        # permissions exist; each run is idempotent and adds what is new.
        post_migrate.connect(ensure_staff_groups, dispatch_uid="myhibachi.ensure_staff_groups")

        from .admin_site import manager_only_has_permission, title_site

        # The one admin site answers to managers only (agents are staff of
        # the inbox, not of the admin), whatever their is_staff flag says.
        admin.site.has_permission = manager_only_has_permission.__get__(admin.site)
        title_site(admin.site)

        from .auth_views import StaffAdminAuthenticationForm

        # Says "wait N minutes" when the limit on log-in attempts refused one.
        admin.site.login_form = StaffAdminAuthenticationForm
