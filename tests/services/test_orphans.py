"""Stored files whose record was rolled back are deleted by the nightly job; files in use, and files
whose transaction may still be running, are kept."""

import datetime
import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from requests_app import tasks
from requests_app.audit import Actor
from requests_app.models import ExportPackage, ExportStatus, ManualTask, SourceSystem
from requests_app.services.intake import attachment_add
from tests.factories import request_in_status

pytestmark = pytest.mark.django_db


def age(name: str, days: int) -> None:
    when = (timezone.now() - datetime.timedelta(days=days)).timestamp()
    os.utime(default_storage.path(name), (when, when))


def test_files_no_record_refers_to_are_deleted_once_a_day_old():
    request = request_in_status("in_progress")
    kept = attachment_add(request=request, file=SimpleUploadedFile("id.pdf", b"%PDF-1.4 kept"), actor=Actor.system())
    try:
        with transaction.atomic():  # a scanned letter whose transaction fails after the file was written
            rolled_back = attachment_add(request=request, file=SimpleUploadedFile("id.pdf", b"%PDF-1.4 lost"), actor=Actor.system())
            raise RuntimeError("the worker was killed")
    except RuntimeError:
        pass
    extract = default_storage.save("manual-extracts/x-crm.csv", ContentFile(b"id,name\n1,Ana\n"))
    package = default_storage.save("exports/0b7e4f1a/attempt-1.zip", ContentFile(b"PK"))
    young = default_storage.save("attachments/just-written", ContentFile(b"its transaction may still run"))
    # In use: a package (stored under another name, as when attempt-1.zip was taken) and a pending extract.
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    export.storage_name = default_storage.save("exports/0b7e4f1a/attempt-1.zip", ContentFile(b"PK ready"))
    export.save()
    task = ManualTask.objects.create(export=export, source=SourceSystem.objects.create(name="Archive", slug="archive"))
    task.upload.save("x-archive.csv", ContentFile(b"id\n1\n"))
    in_use = [kept.file.name, export.storage_name, task.upload.name]
    for name in (*in_use, rolled_back.file.name, extract, package):
        age(name, days=2)

    assert tasks.delete_orphan_files() == 3
    assert all(default_storage.exists(name) for name in (*in_use, young))
    assert not any(default_storage.exists(name) for name in (rolled_back.file.name, extract, package))
