"""Celery beat keeps the rollups current (settings.CELERY_BEAT_SCHEDULE)."""
from celery import shared_task

from . import refresh


@shared_task(name="analytics.refresh_recent", acks_late=True)
def refresh_recent():
    """Every ANALYTICS_REFRESH_SECONDS: the days and conversations that changed since the last run."""
    return refresh.refresh_recent()


@shared_task(name="analytics.refresh_all", acks_late=True)
def refresh_all():
    """Nightly: everything again (catches writes that bypass save(), such as queryset updates)."""
    return refresh.refresh_all()
