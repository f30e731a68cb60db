"""Normalising customer identities so one person is found by any of them.

Emails are trimmed and lower-cased; phone numbers become E.164 using the
business region (settings.BUSINESS_REGION) for numbers written without a
country code. Anything that cannot be normalised raises ValidationError
with a message a person can act on.
"""
import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

EMAIL = "email"
PHONE = "phone"
KINDS = ((EMAIL, "Email"), (PHONE, "Phone"))


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
    if len(value) > 64:
        raise ValidationError("That phone number is too long to be real.", code="invalid_phone")
    try:
        number = phonenumbers.parse(value, region or settings.BUSINESS_REGION)
    except phonenumbers.NumberParseException:
        raise ValidationError(f"{value!r} is not a phone number we can read.", code="invalid_phone")
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{value!r} is not a valid phone number.", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize(kind: str, raw: str) -> str:
    if kind == EMAIL:
        return normalize_email(raw)
    if kind == PHONE:
        return normalize_phone(raw)
    raise ValidationError(f"Unknown identity kind {kind!r}; use 'email' or 'phone'.", code="invalid_kind")
