"""Celery beat keeps the rollups current (settings.CELERY_BEAT_SCHEDULE)."""
from datetime import datetime, timezone as dt_timezone

from celery import shared_task
from django.conf import settings

from . import figure_cache, refresh, timebase


@shared_task(name="analytics.refresh_recent", acks_late=True)
def refresh_recent():
    """Every ANALYTICS_REFRESH_SECONDS: the days and conversations that changed since the last run;
    when it wrote, the dashboard's figures for the new rollups are computed next, in a task of their
    own (warm_dashboard), so the step itself stays short."""
    result = refresh.refresh_recent()
    if result.get("written"):
        warm_dashboard.apply_async(expires=settings.ANALYTICS_REFRESH_SECONDS)
    return result


@shared_task(name="analytics.refresh_all", acks_late=True)
def refresh_all():
    """Nightly: everything again (catches writes that bypass save(), such as queryset updates)."""
    result = refresh.refresh_all()
    warm_dashboard.apply_async(expires=settings.ANALYTICS_REFRESH_SECONDS)
    return result


@shared_task(name="analytics.warm_dashboard", acks_late=True)
def warm_dashboard():
    """The dashboard's cached areas for each preset range, computed for the rollups as they are now
    (figure_cache.warm): the first manager to look after a change does not wait for them. Idempotent:
    a second run finds them cached and computes nothing."""
    figure_cache.warm(timebase.preset_ranges(timebase.local_date(datetime.now(dt_timezone.utc))))
