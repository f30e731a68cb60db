"""Normalising customer identities so one person is found by any of them.

Emails are trimmed and lower-cased; phone numbers become E.164 using the
business region (settings.BUSINESS_REGION) for numbers written without a
country code; a website chat visitor's opaque token is kept only as its
SHA-256 digest, so the stored identity never reveals the token that lets a
browser speak as that visitor (not to staff, the API or another visitor).
Anything that cannot be normalised raises ValidationError with a message a
person can act on.
"""
import functools
import hashlib
import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

EMAIL = "email"
PHONE = "phone"
VISITOR = "visitor"
KINDS = ((EMAIL, "Email"), (PHONE, "Phone"), (VISITOR, "Website chat visitor"))
# The channel a customer first met through an identity of this kind prefers.
PREFERRED_CHANNEL = {EMAIL: "email", PHONE: "sms", VISITOR: "chat"}
# A visitor token as the chat widget makes it: URL-safe random text, long enough not to be guessed.
VISITOR_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")
VISITOR_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# A number from a channel (an SMS or call from RingCentral) that cannot be read as a phone number is
# kept as given behind this prefix, so the message is stored and staff see the flag (never dropped).
UNPARSED = "unparsed:"


def fold_email(raw: str) -> str:
    """The comparable form of an address (trimmed, lower-cased), without validating it."""
    return (raw or "").strip().lower()


def normalize_email(raw: str) -> str:
    value = fold_email(raw)
    if not value:
        raise ValidationError("An email address is required.", code="empty")
    try:
        validate_email(value)
    except ValidationError:
        raise ValidationError(f"{raw.strip()!r} is not a valid email address.", code="invalid_email")
    return value


def normalize_phone(raw: str, region: str | None = None) -> str:
    value = (raw or "").strip()
    if not value:
        raise ValidationError("A phone number is required.", code="empty")
    if value.startswith(UNPARSED) and len(value) > len(UNPARSED):
        return value[:80]  # already flagged (see phone_or_unparsed): normalising is idempotent
    if len(value) > 64:
        raise ValidationError("That phone number is too long to be real.", code="invalid_phone")
    e164, problem = _parse_phone(value, region or settings.BUSINESS_REGION)
    if problem:
        raise ValidationError(f"{value!r} {problem}", code="invalid_phone")
    return e164


@functools.lru_cache(maxsize=8192)
def _parse_phone(value: str, region: str) -> tuple[str, str]:
    """(E.164, "") or ("", what is wrong). Cached: a sync or a batch meets the same numbers again and
    again, and phonenumbers' parse and validation are most of the cost of storing an SMS."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return "", "is not a phone number we can read."
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return "", "is not a valid phone number."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def phone_or_unparsed(raw: str, region: str | None = None) -> tuple[str, bool]:
    """(E.164 number, False), or for a number that cannot be read ("call me", "Anonymous") the text as
    given behind UNPARSED and True: a channel stores the message under it, flagged, instead of dropping it."""
    try:
        return normalize_phone(raw, region), False
    except ValidationError:
        text = " ".join("".join(ch for ch in (raw or "") if ch.isprintable()).split())[:64]
        if not text:
            raise
        return UNPARSED + text, True


def is_unparsed(value: str) -> bool:
    return (value or "").startswith(UNPARSED)


def normalize_visitor(raw: str) -> str:
    """The stored form of a chat visitor token: "sha256:" and its digest. Idempotent, as every
    normaliser here is (a stored value is normalised again on save): a token has no colon."""
    value = (raw or "").strip()
    if VISITOR_DIGEST.fullmatch(value):
        return value
    if not VISITOR_TOKEN.fullmatch(value):
        raise ValidationError("A chat visitor token is 22 to 128 letters, digits, '-' or '_'.",
                              code="invalid_visitor")
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


NORMALIZERS = {EMAIL: normalize_email, PHONE: normalize_phone, VISITOR: normalize_visitor}


def normalize(kind: str, raw: str) -> str:
    try:
        normalizer = NORMALIZERS[kind]
    except KeyError:
        raise ValidationError(f"Unknown identity kind {kind!r}; use one of {', '.join(NORMALIZERS)}.",
                              code="invalid_kind")
    return normalizer(raw)
