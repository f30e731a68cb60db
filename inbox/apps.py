from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "inbox"
    verbose_name = "Unified inbox"

    def ready(self):
        from . import list_cache, merging, socket_access

        # Live sockets close when their person's access ends (log-out, groups, deactivation).
        socket_access.connect()
        # A customer merge (crm/merge.py) keeps one active conversation and writes both threads' history.
        merging.connect()
        # The API's cached list pages are dropped by writes made outside the inbox's services too.
        list_cache.connect()
