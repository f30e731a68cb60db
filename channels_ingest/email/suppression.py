"""Addresses we must not mail again: hard bounces, unsubscribes, spam complaints."""
import logging

from django.db import IntegrityError, transaction

from crm.identity import fold_email

from ..models import Suppression

logger = logging.getLogger(__name__)


def suppress(email: str, *, reason: str, detail: str = "") -> bool:
    """Record the address once; returns whether it is new. The first reason is kept."""
    email = fold_email(email)
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
    return Suppression.objects.filter(email=fold_email(email)).exists()


def suppressed_among(emails) -> set:
    emails = [fold_email(e) for e in emails]
    return set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
