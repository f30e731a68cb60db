"""Our webhook subscription at RingCentral: created or renewed by `manage.py ringcentral_subscribe`,
renewed by a beat task a day before it expires.

On creation RingCentral POSTs to the address with a Validation-Token header that
webhooks.RingCentralWebhook echoes; every later notification carries the
verification token we set here (settings.RINGCENTRAL_VERIFICATION_TOKEN).
"""
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import client as rc
from .models import Subscription

PATH = "/restapi/v1.0/subscription"
EVENT_FILTERS = [
    f"{rc.EXTENSION}/message-store/instant?type=SMS",  # inbound SMS/MMS, the record in the body
    f"{rc.EXTENSION}/message-store",  # any change (delivery statuses): a sync is queued
    f"{rc.EXTENSION}/telephony/sessions?missedCall=true",  # missed calls: a call-log sync is queued
]
RENEW_BEFORE = timedelta(days=1)


class SubscribeError(Exception):
    pass


def _body(address: str) -> dict:
    return {"eventFilters": EVENT_FILTERS, "expiresIn": settings.RINGCENTRAL_SUBSCRIPTION_SECONDS,
            "deliveryMode": {"transportType": "WebHook", "address": address,
                             "verificationToken": settings.RINGCENTRAL_VERIFICATION_TOKEN}}


def _save(answer: dict, *, renewed: bool) -> Subscription:
    expires = parse_datetime(answer.get("expirationTime") or "") or timezone.now() + timedelta(
        seconds=int(answer.get("expiresIn") or 0))
    values = {"address": (answer.get("deliveryMode") or {}).get("address", ""),
              "event_filters": answer.get("eventFilters") or [], "status": answer.get("status", ""),
              "expires_at": expires}
    if renewed:
        values["renewed_at"] = timezone.now()
    subscription, _ = Subscription.objects.update_or_create(subscription_id=str(answer["id"]), defaults=values)
    return subscription


def subscribe(address: str | None = None, *, transport=None) -> tuple[Subscription, bool]:
    """Renew the stored subscription for this address, or create one; returns (it, created)."""
    address = address or settings.RINGCENTRAL_WEBHOOK_URL
    if not address:
        raise SubscribeError("No webhook address: set RINGCENTRAL_WEBHOOK_URL or pass --address.")
    if not settings.RINGCENTRAL_VERIFICATION_TOKEN:
        raise SubscribeError("Set RINGCENTRAL_VERIFICATION_TOKEN first: without it every notification is refused.")
    current = Subscription.objects.filter(address=address).order_by("-expires_at").first()
    with rc.client(transport=transport) as api:
        if current is not None:
            try:
                answer = api.request("PUT", f"{PATH}/{current.subscription_id}", json=_body(address)).json()
                return _save(answer, renewed=True), False
            except rc.Refused as exc:
                if exc.status != 404:
                    raise
                current.delete()  # gone at RingCentral (expired): make a new one
        try:
            answer = api.post_json(PATH, _body(address))
        except rc.Refused as exc:
            raise SubscribeError(f"RingCentral did not create the subscription: {exc.message}. It calls the "
                                 f"address with a Validation-Token first: is {address} reachable from it?")
    return _save(answer, renewed=False), True


def renew_due() -> str:
    due = Subscription.objects.filter(expires_at__lt=timezone.now() + RENEW_BEFORE).order_by("expires_at").first()
    if due is None:
        return "nothing due"
    subscription, created = subscribe(due.address)
    return f"{'created' if created else 'renewed'} {subscription.subscription_id}"
