"""Files no row refers to any more: deleted by a nightly job.

A scanned letter, a manual extract or a package is written to storage before
the transaction that records it commits. When that transaction rolls back
(an error after the write, a worker killed), the file stays with nothing
pointing at it: no purge or expiry would ever find it, and it may hold a
person's identity document. Files younger than a day are left alone: their
transaction may still be running.
"""

import datetime
import logging

from django.core.files.storage import default_storage
from django.utils import timezone

from requests_app.models import Attachment, ExportPackage, ManualTask

logger = logging.getLogger(__name__)

MIN_AGE = datetime.timedelta(days=1)


def stored_files(folder: str):
    """Every file name under `folder` in the default storage, at any depth. (Not storage.exists(folder):
    an object store has no folders, and would answer that it does not exist.)"""
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:  # a local folder nothing was ever stored in
        return
    for name in files:
        yield f"{folder}/{name}"
    for sub in folders:
        yield from stored_files(f"{folder}/{sub}")


def older_than(name: str, cutoff: datetime.datetime) -> bool:
    try:
        return default_storage.get_modified_time(name) < cutoff
    except FileNotFoundError:  # deleted meanwhile (a purge, an expiry)
        return False


def delete_orphan_files(*, now: datetime.datetime | None = None) -> int:
    """Delete the stored files older than MIN_AGE that no attachment, extract or package refers to."""
    cutoff = (now or timezone.now()) - MIN_AGE
    referenced = (
        set(Attachment.objects.values_list("file", flat=True))
        | set(ManualTask.objects.exclude(upload="").values_list("upload", flat=True))
        | set(ExportPackage.objects.exclude(storage_name="").values_list("storage_name", flat=True))
    )
    deleted = 0
    for folder in ("attachments", "manual-extracts", "exports"):
        for name in stored_files(folder):
            if name not in referenced and older_than(name, cutoff):
                default_storage.delete(name)
                deleted += 1
    if deleted:
        logger.warning("deleted %d stored file(s) that no record referred to", deleted)
    return deleted
