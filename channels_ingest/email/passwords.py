"""Mailbox passwords: read from an environment variable, or stored encrypted
with a Fernet key derived from SECRET_KEY (rotating SECRET_KEY means typing the
stored passwords again; the error says so).

Only variables named IMAP_PASSWORD_<NAME> can be a mailbox's password: a
manager sets password_env, and any other name (SECRET_KEY, DATABASE_URL,
SENDGRID_API_KEY, ANYMAIL_WEBHOOK_SECRET...) would send that secret to
whatever server the mailbox points at. The model field refuses other names,
and password_for() refuses them again, for rows written some other way."""
import base64
import hashlib
import os
import re

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError

PASSWORD_ENV_RE = re.compile(r"IMAP_PASSWORD_[A-Z0-9_]+")
PASSWORD_ENV_RULE = "Only environment variables named IMAP_PASSWORD_<NAME> (capitals, digits, _) can hold a mailbox password."


class PasswordUnavailable(Exception):
    pass


def password_env_allowed(name: str) -> bool:
    return PASSWORD_ENV_RE.fullmatch(name or "") is not None


def validate_password_env(value: str) -> None:
    """The model field's validator (an empty value means: use the stored password)."""
    if value and not password_env_allowed(value):
        raise ValidationError(f"{PASSWORD_ENV_RULE} For example IMAP_PASSWORD_SALES.", code="password_env")


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"myhibachi.mailbox-password:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise PasswordUnavailable(
            "The stored mailbox password cannot be decrypted (was SECRET_KEY changed?). Type it again in the admin."
        )


def password_for(mailbox) -> str:
    if mailbox.password_env:
        if not password_env_allowed(mailbox.password_env):
            raise PasswordUnavailable(f"Mailbox {mailbox.name}: its password environment variable is refused. "
                                      f"{PASSWORD_ENV_RULE}")
        value = os.environ.get(mailbox.password_env)
        if value is None:
            raise PasswordUnavailable(f"Environment variable {mailbox.password_env} is not set.")
        return value
    if mailbox.password_encrypted:
        return decrypt(mailbox.password_encrypted)
    raise PasswordUnavailable(f"Mailbox {mailbox.name} has no password: set password_env or store one in the admin.")


PLAIN_TEXT_REFUSED = ("Plain-text IMAP (TLS: none) sends the password unencrypted and is refused outside DEBUG: "
                      "use implicit TLS or STARTTLS (ops can allow a local server with IMAP_ALLOW_PLAINTEXT=1).")


def plain_text_allowed() -> bool:
    """May a mailbox log in without TLS? In development, or when ops allow it for a local server."""
    return bool(settings.DEBUG or settings.IMAP_ALLOW_PLAINTEXT)
