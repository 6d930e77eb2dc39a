"""The subject's download from their status page answers conditional and range requests as the API's does
(downloads.package_download): a download cut short is finished with a range that uses none of the subject's
downloads, a 304 uses none either, and only a download from byte 0 counts."""

import hashlib
from datetime import timedelta

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import AuditEvent, ExportPackage, Status
from requests_app.services.exports import DOWNLOAD_RESUMPTION_WINDOW, download_token, export_release
from tests.factories import request_in_status, staff_in_role

# 10,000 bytes that differ from one position to the next, so that a wrong range shows.
LARGE = bytes(range(256)) * 39 + bytes(16)
ETAG = f'"{hashlib.sha256(LARGE).hexdigest()}"'


def released_package(max_downloads: int) -> ExportPackage:
    request = request_in_status(Status.IN_PROGRESS)
    export = ExportPackage.objects.create(
        request=request, status="ready", storage_name=default_storage.save("exports/test/attempt-1.zip", ContentFile(LARGE)),
        size=len(LARGE), sha256=hashlib.sha256(LARGE).hexdigest(), max_downloads=max_downloads,
    )
    return export_release(export=export, actor=Actor.staff(staff_in_role("DPO", username="dpo-ranges")))


def link(export: ExportPackage) -> str:
    return reverse("download", args=[export.request.reference, export.request.secret, download_token(export)])


def body(response) -> bytes:
    """The whole body; reading a streamed one to its end closes the stored file."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def downloads_of(export: ExportPackage) -> tuple[int, int]:
    """The subject's downloads counted, and those audited."""
    export.refresh_from_db()
    return export.download_count, AuditEvent.objects.filter(request=export.request, action="export_downloaded").count()


def resumptions_of(export: ExportPackage) -> list[tuple[str, dict]]:
    events = AuditEvent.objects.filter(request=export.request, action="export_download_resumed").order_by("sequence")
    return [(event.actor_kind, event.data) for event in events]


@pytest.mark.django_db
def test_a_download_cut_short_is_finished_with_a_range_that_uses_none_of_the_subjects_downloads(client):
    """The one download allowed, cut off at 4,000 bytes, is finished with a range: audited, not counted."""
    export = released_package(max_downloads=1)
    start = client.get(link(export), HTTP_RANGE="bytes=0-3999")
    assert start.status_code == 206 and start.streaming
    assert (start["Content-Range"], start["Content-Length"], start["ETag"]) == ("bytes 0-3999/10000", "4000", ETAG)
    received = body(start)
    assert received == LARGE[:4000]
    assert downloads_of(export) == (1, 1)

    rest = client.get(link(export), HTTP_RANGE="bytes=4000-", HTTP_IF_RANGE=start["ETag"])

    assert rest.status_code == 206 and rest["Content-Range"] == "bytes 4000-9999/10000"
    assert received + body(rest) == LARGE
    assert downloads_of(export) == (1, 1)
    assert resumptions_of(export) == [("subject", {"export": str(export.public_id), "first_byte": 4000, "bytes": 6000})]
    # Private data, resumable, saved under the name a whole download has.
    for response in (start, rest):
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
        assert response["Accept-Ranges"] == "bytes" and response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == f'attachment; filename="{export.request.reference}-access.zip"'
    # A new download from the start counts, and this package had its one.
    refused = client.get(link(export), HTTP_RANGE="bytes=0-")
    assert refused.status_code == 410 and "its download limit was reached" in refused.content.decode()


@pytest.mark.django_db
def test_a_whole_download_says_ranges_may_be_asked_for_and_keeps_its_headers(client):
    export = released_package(max_downloads=1)
    whole = client.get(link(export))
    assert whole.status_code == 200 and body(whole) == LARGE
    assert (whole["ETag"], whole["Accept-Ranges"], whole["Content-Length"]) == (ETAG, "bytes", "10000")
    assert "no-store" in whole["Cache-Control"] and "private" in whole["Cache-Control"]
    assert whole["Content-Disposition"] == f'attachment; filename="{export.request.reference}-access.zip"'
    assert downloads_of(export) == (1, 1)


@pytest.mark.django_db
def test_a_range_from_byte_0_counts_as_a_download(client):
    export = released_package(max_downloads=3)
    assert body(client.get(link(export), HTTP_RANGE="bytes=0-99")) == LARGE[:100]
    assert downloads_of(export) == (1, 1)
    assert body(client.get(link(export), HTTP_RANGE="bytes=0-")) == LARGE
    assert downloads_of(export) == (2, 2)
    assert resumptions_of(export) == []


@pytest.mark.django_db
def test_a_range_past_the_end_is_a_416_that_uses_no_download(client):
    export = released_package(max_downloads=1)
    for unsatisfiable in ("bytes=10000-", "bytes=-0"):
        refused = client.get(link(export), HTTP_RANGE=unsatisfiable)
        assert refused.status_code == 416 and refused["Content-Range"] == "bytes */10000", unsatisfiable
        assert "The range is outside the package, which has 10000 bytes." in refused.content.decode()
        assert "no-store" in refused["Cache-Control"]
    assert downloads_of(export) == (0, 0)


@pytest.mark.django_db
def test_the_package_the_subject_holds_is_a_304_that_uses_no_download(client):
    export = released_package(max_downloads=1)
    for if_none_match in (ETAG, f"W/{ETAG}", "*"):
        unchanged = client.get(link(export), HTTP_IF_NONE_MATCH=if_none_match)
        assert unchanged.status_code == 304 and unchanged["ETag"] == ETAG and unchanged.content == b""
    assert downloads_of(export) == (0, 0)
    assert client.get(link(export), HTTP_IF_NONE_MATCH='"another-package"').status_code == 200
    assert downloads_of(export) == (1, 1)
    # The limit reached, the package is still the one they hold.
    assert client.get(link(export), HTTP_IF_NONE_MATCH=ETAG).status_code == 304


@pytest.mark.django_db
def test_ranges_resume_no_more_than_one_packages_bytes_per_download_counted(client):
    """Byte 0 of a ZIP is always "P": without a bound, `bytes=1-` again and again would be copy after copy."""
    export = released_package(max_downloads=1)
    assert client.get(link(export)).status_code == 200
    assert body(client.get(link(export), HTTP_RANGE="bytes=1-")) == LARGE[1:]  # 9,999 bytes of the 10,000
    assert body(client.get(link(export), HTTP_RANGE="bytes=9999-")) == LARGE[-1:]  # the last one
    assert downloads_of(export) == (1, 1)

    refused = client.get(link(export), HTTP_RANGE="bytes=1-")  # a new copy: counted, and the one allowed is used
    assert refused.status_code == 410 and "its download limit was reached" in refused.content.decode()
    assert len(resumptions_of(export)) == 2


@pytest.mark.django_db
def test_a_range_counts_before_any_download_and_a_day_after_the_last(client):
    export = released_package(max_downloads=2)
    assert body(client.get(link(export), HTTP_RANGE="bytes=100-199")) == LARGE[100:200]
    assert downloads_of(export) == (1, 1)  # nothing to resume yet
    with time_machine.travel(timezone.now() + DOWNLOAD_RESUMPTION_WINDOW - timedelta(minutes=1)):
        assert client.get(link(export), HTTP_RANGE="bytes=200-").status_code == 206
        assert downloads_of(export) == (1, 1)
    with time_machine.travel(timezone.now() + DOWNLOAD_RESUMPTION_WINDOW + timedelta(minutes=1)):
        assert client.get(link(export), HTTP_RANGE="bytes=200-").status_code == 206
        assert downloads_of(export) == (2, 2)
