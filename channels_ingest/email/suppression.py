"""Addresses we must not mail again: hard bounces, unsubscribes, spam complaints."""
import logging

from django.db import IntegrityError, transaction

from ..models import Suppression

logger = logging.getLogger(__name__)


def suppress(email: str, *, reason: str, detail: str = "") -> bool:
    """Record the address once; returns whether it is new. The first reason is kept."""
    email = (email or "").strip().lower()
    if not email or "@" not in email:
        return False
    try:
        with transaction.atomic():
            Suppression.objects.create(email=email, reason=reason, detail=detail[:500])
    except IntegrityError:
        return False
    logger.info("suppressed %s (%s)", email, reason)
    return True


def is_suppressed(email: str) -> bool:
    return Suppression.objects.filter(email=(email or "").strip().lower()).exists()


def suppressed_among(emails) -> set:
    emails = [e.strip().lower() for e in emails]
    return set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
