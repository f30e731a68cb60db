"""Files attached to messages, kept in Django's default storage (a local folder, or S3
with AWS_STORAGE_BUCKET_NAME) under their content hash: storing the same file twice
writes nothing new. Inbound email (channels_ingest.email.storage) and staff replies
store them alike; a message lists them in metadata["attachments"] as
{"filename", "content_type", "size", "path", "sha256"} (plus "too_large" without a path).
MMS files and call recordings (channels_ingest.ringcentral.media) are entries of the same
shape ("refused" without a path when RingCentral would not give them; a call's recording
is metadata["call"]["recording"]). One view serves them all (views.attachment) and one
renderer shows them in the thread (templatetags.inbox_ui), whatever the channel.
"""
import hashlib
import posixpath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils.text import get_valid_filename

from .errors import ReplyTooLarge

MAX_REPLY_ATTACHMENTS = 10
# Shown in the thread and opened in the browser (served with their type, inline). Anything else
# (SVG, which can carry script, included) is served as a download typed application/octet-stream.
INLINE_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Call recordings: the thread's <audio> plays them, so they keep their type (still as a download).
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/wav", "audio/x-wav"})


def save(name: str, data: bytes) -> str:
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(data))


def safe_name(filename: str) -> str:
    try:
        name = get_valid_filename(filename)[-100:]
    except Exception:  # get_valid_filename refuses names like ".."
        name = ""
    return name or "attachment"


def store(*, filename: str, content_type: str, data: bytes) -> dict:
    """Save one file; return its metadata entry."""
    digest = hashlib.sha256(data).hexdigest()
    path = save(f"email/attachments/{digest[:2]}/{digest}/{safe_name(filename)}", data)
    return {"filename": (filename or "attachment")[:255], "content_type": (content_type or "application/octet-stream")[:100],
            "size": len(data), "path": path, "sha256": digest}


def store_uploads(files) -> list[dict]:
    """Files a staff member attached to a reply (Django UploadedFiles), each within
    EMAIL_ATTACHMENT_MAX_BYTES, at most MAX_REPLY_ATTACHMENTS; refused as a whole otherwise."""
    files = list(files or [])
    if len(files) > MAX_REPLY_ATTACHMENTS:
        raise ReplyTooLarge(f"{len(files)} files are attached; a reply carries at most {MAX_REPLY_ATTACHMENTS}.")
    limit = settings.EMAIL_ATTACHMENT_MAX_BYTES
    for upload in files:
        if upload.size > limit:
            raise ReplyTooLarge(f"{upload.name} is {upload.size / 1_000_000:.1f} MB; "
                                f"an attachment can be at most {limit / 1_000_000:.0f} MB.")
    return [store(filename=upload.name, content_type=upload.content_type or "", data=upload.read())
            for upload in files]


def read(meta: dict) -> bytes | None:
    """The stored bytes of an attachment entry; None when only its name was kept."""
    handle = open_stored(meta)
    if handle is None:
        return None
    with handle:
        return handle.read()


def is_inline_image(meta: dict) -> bool:
    return str(meta.get("content_type") or "").lower() in INLINE_IMAGE_TYPES


def entry(metadata, index: int | None) -> dict | None:
    """A message's stored-file entry: attachment `index`, or with index None its call's recording;
    None when there is no such entry."""
    metadata = metadata if isinstance(metadata, dict) else {}
    if index is None:
        call = metadata.get("call")
        found = call.get("recording") if isinstance(call, dict) else None
    else:
        items = metadata.get("attachments")
        found = items[index] if isinstance(items, list) and 0 <= index < len(items) else None
    return found if isinstance(found, dict) else None


def open_stored(meta: dict):
    """The stored file of an entry, opened for reading; None when only its name was kept
    (too large, refused, not downloaded yet) or the file is gone."""
    path = meta.get("path")
    if not path or not default_storage.exists(path):
        return None
    return default_storage.open(path, "rb")


def download_name(meta: dict) -> str:
    return str(meta.get("filename") or posixpath.basename(meta.get("path") or "") or "attachment")
