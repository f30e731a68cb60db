"""Mailbox passwords: read from an environment variable, or stored encrypted
with a Fernet key derived from SECRET_KEY (rotating SECRET_KEY means typing the
stored passwords again; the error says so)."""
import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class PasswordUnavailable(Exception):
    pass


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
        value = os.environ.get(mailbox.password_env)
        if value is None:
            raise PasswordUnavailable(f"Environment variable {mailbox.password_env} is not set.")
        return value
    if mailbox.password_encrypted:
        return decrypt(mailbox.password_encrypted)
    raise PasswordUnavailable(f"Mailbox {mailbox.name} has no password: set password_env or store one in the admin.")
