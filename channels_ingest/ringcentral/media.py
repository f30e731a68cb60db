"""MMS attachments and call recordings, downloaded with our token into Django's storage
(a local folder, or S3 when AWS_STORAGE_BUCKET_NAME is set) as entries of inbox.attachments'
shape, so the thread shows them and inbox.views.attachment serves them to staff as it does
email's. Names are content hashes, as email attachments' are: downloading twice writes nothing new."""
import hashlib

from django.conf import settings

from inbox import attachments as stored_files
from inbox import services

from . import client as rc


def _save(prefix: str, filename: str, data: bytes) -> tuple[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    return stored_files.save(f"ringcentral/{prefix}/{digest[:2]}/{digest}/{stored_files.safe_name(filename)}", data), digest


def download(message) -> None:
    limit = settings.RINGCENTRAL_MEDIA_MAX_BYTES
    metadata = message.metadata
    changes = {"media_pending": False}
    with rc.client() as api:
        if "attachments" in metadata:
            attachments = []
            for item in metadata["attachments"]:
                item = dict(item)
                if "path" not in item and not item.get("refused"):
                    try:
                        data, content_type = api.download(item["uri"], max_bytes=limit)
                        item["path"], item["sha256"] = _save("mms", item.get("filename") or "attachment", data)
                        item["size"] = len(data)
                        item["content_type"] = item.get("content_type") or content_type
                    except rc.Refused as exc:
                        item["refused"] = exc.message[:300]
                attachments.append(item)
            changes["attachments"] = attachments
        call = metadata.get("call")
        if call and call.get("recording") and "path" not in call["recording"]:
            recording = dict(call["recording"])
            try:
                data, content_type = api.download(recording["uri"], max_bytes=limit)
                extension = "wav" if "wav" in content_type else "mp3"
                recording["path"], recording["sha256"] = _save("recordings", f"recording.{extension}", data)
                recording["content_type"], recording["size"] = content_type, len(data)
            except rc.Refused as exc:
                recording["refused"] = exc.message[:300]
            changes["call"] = {**call, "recording": recording}
    services.annotate_message(message=message, metadata=changes)
