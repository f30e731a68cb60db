"""Attachment and raw-source files, through Django's default storage (local
folder by default, S3 when AWS_STORAGE_BUCKET_NAME is set). Names are content
hashes, so storing the same email twice (e.g. after a crash) writes nothing new."""
import hashlib

from django.conf import settings

from inbox import attachments as stored_files


_save = stored_files.save  # one scheme for every stored file (inbox/attachments.py)


def save_raw(raw: bytes) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    return _save(f"email/raw/{digest[:2]}/{digest}.eml", raw)


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
            stored_file = stored_files.store(filename=attachment.filename, content_type=attachment.content_type,
                                            data=attachment.data)
            meta["path"], meta["sha256"] = stored_file["path"], stored_file["sha256"]
        stored.append(meta)
    return stored
