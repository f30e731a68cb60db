from django.apps import AppConfig


class MyhibachiConfig(AppConfig):
    name = "myhibachi"
    verbose_name = "myhibachi"

    def ready(self):
        from django.contrib import admin

        from .admin_site import manager_only_has_permission

        # The one admin site answers to managers only (agents are staff of
        # the inbox, not of the admin), whatever their is_staff flag says.
        admin.site.has_permission = manager_only_has_permission.__get__(admin.site)
