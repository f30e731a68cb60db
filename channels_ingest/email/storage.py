"""Attachment and raw-source files, through Django's default storage (local
folder by default, S3 when AWS_STORAGE_BUCKET_NAME is set). Names are content
hashes, so storing the same email twice (e.g. after a crash) writes nothing new."""
import hashlib

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.text import get_valid_filename


def _save(name: str, data: bytes) -> str:
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def save_raw(raw: bytes) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    return _save(f"email/raw/{digest[:2]}/{digest}.eml", raw)


def _safe_name(filename: str) -> str:
    try:
        name = get_valid_filename(filename)[-100:]
    except Exception:  # get_valid_filename refuses names like ".."
        name = ""
    return name or "attachment"


def store_attachments(attachments) -> list:
    """Save each attachment within the size limit; return metadata for the message.

    An oversize attachment keeps its name, type and size and is flagged
    too_large; its bytes are not stored.
    """
    limit = settings.EMAIL_ATTACHMENT_MAX_BYTES
    stored = []
    for attachment in attachments:
        meta = {
            "filename": attachment.filename[:255], "content_type": attachment.content_type,
            "size": attachment.size, "inline": attachment.inline,
        }
        if attachment.content_id:
            meta["content_id"] = attachment.content_id[:255]
        if attachment.data is None or attachment.size > limit:
            meta["too_large"] = True
            meta["limit"] = limit
        else:
            digest = hashlib.sha256(attachment.data).hexdigest()
            meta["path"] = _save(f"email/attachments/{digest[:2]}/{digest}/{_safe_name(attachment.filename)}",
                                 attachment.data)
            meta["sha256"] = digest
        stored.append(meta)
    return stored
