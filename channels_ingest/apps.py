from django.apps import AppConfig


class ChannelsIngestConfig(AppConfig):
    name = "channels_ingest"
    verbose_name = "Channel adapters"

    def ready(self):
        from .email import signals  # noqa: F401  (connects the booking confirmation email)
