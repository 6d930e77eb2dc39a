import hashlib
import html
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import ExportPackage, PrivacyRequest
from requests_app.lifecycle import RequestError
from requests_app.services.exports import DOWNLOAD_RESUMPTION_WINDOW, delete_expired_exports, download_token, export_release
from tests.api.conftest import client_with, key_for
from tests.exports.support import subject_download
from tests.conftest import login_staff
from tests.factories import confirm_email, staff_in_role

URL = "/api/v1/requests/"
BODY = {"rights": ["access"], "subject_name": "Ana Peeters", "subject_email": "ana@example.com",
        "relationship": "end_user", "signature": "Ana Peeters"}
ZIP = b"PK\x05\x06" + b"\x00" * 18  # an empty ZIP


def released_export(api, *, share: bool, max_downloads: int = 5, content: bytes = ZIP):
    created = api.post(URL, BODY, format="json").json()
    request = confirm_email(PrivacyRequest.objects.get(public_id=created["id"]))  # else its package is not released
    name = default_storage.save("exports/test/attempt-1.zip", ContentFile(content))
    export = ExportPackage.objects.create(
        request=request, status="ready", storage_name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest(),
        max_downloads=max_downloads,
    )
    export_release(export=export, actor=Actor.staff(staff_in_role("DPO", username="dpo1")), share_with_organisation=share)
    return created["id"], export


@pytest.mark.django_db
def test_a_shared_package_is_listed_and_downloaded_with_an_audit_event(api):
    request_id, export = released_export(api, share=True)
    listed = api.get(f"{URL}{request_id}/exports/").json()
    assert [item["id"] for item in listed] == [str(export.public_id)]
    assert listed[0]["downloads_left"] == 5

    response = api.get(f"{URL}{request_id}/exports/{export.public_id}/download/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == ZIP
    export.refresh_from_db()
    assert (export.organisation_download_count, export.download_count) == (1, 0)  # none of the subject's used
    assert export.request.events.get(action="export_downloaded").actor_kind == "organisation"
    assert api.get(f"{URL}{request_id}/exports/").json()[0]["downloads_left"] == 4


@pytest.mark.django_db
def test_a_package_not_shared_is_invisible(api):
    request_id, export = released_export(api, share=False)
    assert api.get(f"{URL}{request_id}/exports/").json() == []
    assert api.get(f"{URL}{request_id}/exports/{export.public_id}/download/").status_code == 404


@pytest.mark.django_db
def test_another_organisation_cannot_see_the_package(api, other_operator):
    request_id, export = released_export(api, share=True)
    theirs = client_with(key_for(other_operator))
    assert theirs.get(f"{URL}{request_id}/exports/").status_code == 404
    assert theirs.get(f"{URL}{request_id}/exports/{export.public_id}/download/").status_code == 404


@pytest.mark.django_db
def test_the_download_limit_holds_over_the_api(api):
    request_id, export = released_export(api, share=True, max_downloads=1)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    # Asked for as the schema documents it (Swagger UI's "Try it out" sends this Accept): it was refused 406.
    answer = api.get(url, HTTP_ACCEPT="application/zip")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    refused = api.get(url, HTTP_ACCEPT="application/zip")
    assert refused.status_code == 410 and refused["Content-Type"] == "application/problem+json"
    assert "download limit" in refused.json()["detail"]
    assert ExportPackage.objects.get(pk=export.pk).organisation_download_count == 1
    assert api.get(f"{URL}{request_id}/exports/").json() == []


@pytest.mark.django_db
def test_the_organisations_downloads_leave_the_subjects_untouched(api):
    """The subject was told how many downloads they have: the organisation's count apart, both ways."""
    request_id, export = released_export(api, share=True, max_downloads=1)
    assert api.get(f"{URL}{request_id}/exports/{export.public_id}/download/").status_code == 200

    assert ExportPackage.objects.downloadable().filter(pk=export.pk).exists()  # the status page still offers it
    downloaded, package_file = subject_download(export)
    package_file.close()
    assert (downloaded.download_count, downloaded.organisation_download_count) == (1, 1)
    with pytest.raises(RequestError, match="download limit"):
        subject_download(export)


@pytest.mark.django_db
def test_the_subjects_timeline_tells_the_organisations_downloads_from_those_with_their_link(api):
    """The link to the status page is all a download takes: a subject who fears it leaked sees each one, and whose."""
    request_id, export = released_export(api, share=True)
    assert api.get(f"{URL}{request_id}/exports/{export.public_id}/download/").status_code == 200
    subject_download(export)[1].close()

    timeline = [item["event"] for item in api.get(f"{URL}{request_id}/").json()["timeline"]]
    assert timeline[-3:] == [
        "We made a copy of your data available to download.",
        "The organisation that filed your request for you downloaded a copy of your data.",
        "A copy of your data was downloaded with the link on this page.",
    ]


@pytest.mark.django_db
def test_staff_see_the_subjects_and_the_organisations_downloads_apart(api, client):
    request_id, export = released_export(api, share=True)
    api.get(f"{URL}{request_id}/exports/{export.public_id}/download/")

    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = client.get(reverse("staff:export", args=[export.public_id])).content.decode()

    assert "0/5 downloads by the subject" in page and "1/5 by Mobile Operator SA over the API" in page


@pytest.mark.django_db
def test_the_release_form_says_the_organisations_downloads_count_apart(api, client):
    created = api.post(URL, BODY, format="json").json()
    export = ExportPackage.objects.create(
        request=confirm_email(PrivacyRequest.objects.get(public_id=created["id"])), status="ready", max_downloads=5,
        storage_name=default_storage.save("exports/test/attempt-1.zip", ContentFile(ZIP)), size=len(ZIP),
    )
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = html.unescape(client.get(reverse("staff:export", args=[export.public_id])).content.decode())
    assert "Mobile Operator SA may then download it 5 times, counted apart from the subject's downloads" in page


@pytest.mark.django_db
def test_a_package_used_up_by_the_subject_stays_for_the_organisation_until_it_is_used_up_too(api):
    request_id, export = released_export(api, share=True, max_downloads=1)
    subject_download(export)[1].close()
    assert delete_expired_exports() == 0
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    assert api.get(url).status_code == 200

    assert delete_expired_exports() == 1
    assert ExportPackage.objects.get(pk=export.pk).status == "expired"


@pytest.mark.django_db
def test_a_package_not_shared_is_deleted_once_the_subject_used_it_up(api):
    _, export = released_export(api, share=False, max_downloads=1)
    subject_download(export)[1].close()
    assert delete_expired_exports() == 1


@pytest.mark.django_db
def test_a_package_deleted_at_its_expiry_is_still_gone_not_unknown(api):
    """The hourly job deletes an expired package's file: the API keeps answering 410, as documented."""


    request_id, export = released_export(api, share=True)
    ExportPackage.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    assert api.get(url).status_code == 410
    assert delete_expired_exports() == 1
    assert ExportPackage.objects.get(pk=export.pk).status == "expired"
    assert api.get(url).status_code == 410
    assert api.get(f"{URL}{request_id}/exports/").json() == []  # the list shows what can still be downloaded


@pytest.mark.django_db
def test_a_read_key_cannot_download_a_subjects_data(api, operator):
    request_id, export = released_export(api, share=True)
    reader = client_with(key_for(operator, scope="read"))
    assert len(reader.get(f"{URL}{request_id}/exports/").json()) == 1
    assert reader.get(f"{URL}{request_id}/exports/{export.public_id}/download/").status_code == 403
    assert ExportPackage.objects.get(pk=export.pk).organisation_download_count == 0


@pytest.mark.django_db
def test_a_head_request_does_not_use_up_a_download(api):
    """Link checkers and proxies send HEAD: it must not count, or the subject loses downloads."""
    request_id, export = released_export(api, share=True)
    refused = api.head(f"{URL}{request_id}/exports/{export.public_id}/download/")
    assert refused.status_code == 405
    assert refused["Allow"] == "GET, OPTIONS"
    export.refresh_from_db()
    assert export.organisation_download_count == 0
    assert not export.request.events.filter(action="export_downloaded").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("share", [True, False])
def test_updated_since_lists_a_request_once_a_package_is_shared_with_its_organisation(api, share):


    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        created = api.post(URL, BODY, format="json").json()
    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert api.get(URL, {"updated_since": since}).json()["results"] == []
    request = PrivacyRequest.objects.get(public_id=created["id"])
    name = default_storage.save("exports/test/attempt-1.zip", ContentFile(ZIP))
    export = ExportPackage.objects.create(request=request, status="ready", storage_name=name, size=len(ZIP), sha256="0" * 64)
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        confirm_email(request)  # before `since`: the confirmation is a change of its own

    export_release(export=export, actor=Actor.staff(staff_in_role("DPO", username="dpo1")), share_with_organisation=share)

    listed = [item["id"] for item in api.get(URL, {"updated_since": since}).json()["results"]]
    # Released to the subject only, the package is not the portal's to list, but the timeline it reads says so.
    assert listed == [created["id"]]
    assert len(api.get(f"{URL}{created['id']}/exports/").json()) == (1 if share else 0)


@pytest.mark.django_db
def test_a_withdrawal_over_the_api_deletes_the_package_and_its_download_says_why(api, django_capture_on_commit_callbacks):
    """The withdrawal ends the package at once and its file goes when it commits; the list no longer shows it, and
    the download answers 410 with what ended it, as the subject's link does."""
    from django.utils import formats, timezone

    request_id, export = released_export(api, share=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{URL}{request_id}/withdraw/").status_code == 200
    export.refresh_from_db()
    assert export.status == "expired" and not default_storage.exists(export.storage_name)
    assert api.get(f"{URL}{request_id}/exports/").json() == []
    response = api.get(f"{URL}{request_id}/exports/{export.public_id}/download/")
    withdrawn_at = formats.date_format(timezone.localtime(export.request.closed_at), "DATETIME_FORMAT")
    assert response.status_code == 410
    assert response.json()["detail"] == (
        f"This package can no longer be downloaded: the request was withdrawn on {withdrawn_at}, which ended access to its data."
    )
    assert export.organisation_download_count == 0 and not export.request.events.filter(action="export_downloaded").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("share", [False, True])
def test_the_status_page_says_the_subjects_downloads_are_used_up_even_where_the_organisation_has_some_left(
    api, client, share
):
    """Shared with the organisation, the package is not used up while it has downloads left: the subject's status
    page said nothing of it, the "Your data" section simply gone."""
    request_id, export = released_export(api, share=share, max_downloads=1)
    ExportPackage.objects.filter(pk=export.pk).update(download_count=1)  # the subject used their one download
    request = PrivacyRequest.objects.get(public_id=request_id)
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert "can no longer be downloaded: it was downloaded as many times as allowed." in page


@pytest.mark.django_db
def test_a_read_key_is_refused_the_download_itself_only(api, operator):
    """Another method is a 405 whatever the key, and OPTIONS describes the endpoint to any key: the read key's 403
    came first."""
    request_id, export = released_export(api, share=True)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    read = client_with(key_for(operator, scope="read"))
    assert [read.head(url).status_code, read.post(url).status_code, read.options(url).status_code] == [405, 405, 200]
    assert read.get(url).status_code == 403


@pytest.mark.django_db
def test_an_expiry_on_a_whole_minute_keeps_its_six_digits_of_microseconds(api):
    """An expiry is typed in whole minutes: DRF's own field wrote it without the fraction every other time has."""
    request_id, export = released_export(api, share=True)
    ExportPackage.objects.filter(pk=export.pk).update(expires_at=datetime(2030, 3, 26, 16, 5, tzinfo=UTC))
    assert api.get(f"{URL}{request_id}/exports/").json()[0]["expires_at"] == "2030-03-26T17:05:00.000000+01:00"


# A package large enough for ranges: 10,000 bytes that differ from one position to the next.
LARGE = bytes(range(256)) * 39 + bytes(16)


def downloads_of(export) -> tuple[int, int]:
    """The organisation's downloads counted, and those audited."""
    export.refresh_from_db()
    return export.organisation_download_count, export.request.events.filter(action="export_downloaded").count()


@pytest.mark.django_db
def test_a_download_has_a_strong_etag_and_one_the_portal_holds_is_a_304_that_counts_nothing(api):
    request_id, export = released_export(api, share=True, max_downloads=2)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    etag = f'"{hashlib.sha256(ZIP).hexdigest()}"'
    first = api.get(url)
    assert first.status_code == 200 and (first["ETag"], first["Accept-Ranges"]) == (etag, "bytes")
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        unchanged = api.get(url, HTTP_IF_NONE_MATCH=if_none_match)
        assert unchanged.status_code == 304 and unchanged["ETag"] == etag and unchanged.content == b""
    assert downloads_of(export) == (1, 1)
    other = api.get(url, HTTP_IF_NONE_MATCH='"another-package"')
    assert other.status_code == 200 and b"".join(other.streaming_content) == ZIP
    assert downloads_of(export) == (2, 2)
    # The limit reached, the package is still the same: a 304 still, not a 410.
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304


@pytest.mark.django_db
def test_a_download_cut_short_is_resumed_with_a_range_that_uses_no_download(api):
    """The one download allowed, cut off at 4,000 bytes, is finished with ranges: only a range from byte 0 counts."""
    request_id, export = released_export(api, share=True, max_downloads=1, content=LARGE)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    start = api.get(url, HTTP_RANGE="bytes=0-3999")
    assert start.status_code == 206 and start.streaming
    assert (start["Content-Range"], start["Content-Length"]) == ("bytes 0-3999/10000", "4000")
    received = b"".join(start.streaming_content)
    assert received == LARGE[:4000]
    assert downloads_of(export) == (1, 1)

    rest = api.get(url, HTTP_RANGE="bytes=4000-", HTTP_IF_RANGE=start["ETag"])
    assert rest.status_code == 206 and rest["Content-Range"] == "bytes 4000-9999/10000"
    assert received + b"".join(rest.streaming_content) == LARGE
    last = api.get(url, HTTP_RANGE="bytes=-10")
    assert last["Content-Range"] == "bytes 9990-9999/10000" and b"".join(last.streaming_content) == LARGE[-10:]
    middle = api.get(url, HTTP_RANGE="bytes=5000-5009")
    assert middle["Content-Length"] == "10" and b"".join(middle.streaming_content) == LARGE[5000:5010]
    assert downloads_of(export) == (1, 1)
    # Each resumption is audited, though it counts nothing.
    resumed = export.request.events.filter(action="export_download_resumed").order_by("sequence")
    assert [(event.actor_kind, event.data) for event in resumed] == [
        ("organisation", {"export": str(export.public_id), "first_byte": first, "bytes": size})
        for first, size in ((4000, 6000), (9990, 10), (5000, 10))
    ]

    # A new download from the start counts, and this package had one.
    for again in ({}, {"HTTP_RANGE": "bytes=0-"}, {"HTTP_RANGE": "bytes=0-0"}):
        refused = api.get(url, **again)
        assert refused.status_code == 410 and "download limit" in refused.json()["detail"]
    assert downloads_of(export) == (1, 1)


@pytest.mark.django_db
def test_ranges_resume_no_more_than_one_packages_bytes_per_download_counted(api):
    """Byte 0 of a ZIP is always "P": without a bound, `bytes=1-` again and again was a copy after copy, uncounted."""
    request_id, export = released_export(api, share=True, max_downloads=1, content=LARGE)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    assert api.get(url).status_code == 200
    assert api.get(url, HTTP_RANGE="bytes=1-").status_code == 206  # 9,999 bytes of the 10,000
    assert api.get(url, HTTP_RANGE="bytes=9999-").status_code == 206  # the last one
    assert downloads_of(export) == (1, 1)

    refused = api.get(url, HTTP_RANGE="bytes=1-")  # a new copy: counted, and the one download allowed is used
    assert refused.status_code == 410 and "download limit" in refused.json()["detail"]
    assert export.request.events.filter(action="export_download_resumed").count() == 2


@pytest.mark.django_db
def test_a_range_a_day_after_the_last_download_counts_so_ranges_never_make_the_limit_endless(api):
    request_id, export = released_export(api, share=True, max_downloads=2, content=LARGE)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    assert api.get(url).status_code == 200
    with time_machine.travel(timezone.now() + DOWNLOAD_RESUMPTION_WINDOW - timedelta(minutes=1)):
        assert api.get(url, HTTP_RANGE="bytes=1-").status_code == 206
        assert downloads_of(export) == (1, 1)
    with time_machine.travel(timezone.now() + DOWNLOAD_RESUMPTION_WINDOW + timedelta(minutes=1)):
        counted = api.get(url, HTTP_RANGE="bytes=1-")
        assert counted.status_code == 206 and b"".join(counted.streaming_content) == LARGE[1:]
        assert downloads_of(export) == (2, 2)
    # That counted download opens a new day of resumptions; a day after it, the limit reached, a range is refused.
    with time_machine.travel(timezone.now() + 2 * DOWNLOAD_RESUMPTION_WINDOW + timedelta(minutes=2)):
        refused = api.get(url, HTTP_RANGE="bytes=1-")
        assert refused.status_code == 410 and "download limit" in refused.json()["detail"]


@pytest.mark.django_db
def test_a_range_not_from_byte_0_counts_as_a_download_when_none_was_made_yet(api):
    request_id, export = released_export(api, share=True, content=LARGE)
    partial = api.get(f"{URL}{request_id}/exports/{export.public_id}/download/", HTTP_RANGE="bytes=100-199")
    assert partial.status_code == 206 and b"".join(partial.streaming_content) == LARGE[100:200]
    assert downloads_of(export) == (1, 1)


@pytest.mark.django_db
def test_a_range_past_the_end_is_a_416_and_other_ranges_get_the_whole_package(api):
    request_id, export = released_export(api, share=True, max_downloads=10, content=LARGE)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    for unsatisfiable in ("bytes=10000-", "bytes=20000-20010", "bytes=-0"):
        refused = api.get(url, HTTP_RANGE=unsatisfiable)
        assert refused.status_code == 416 and refused["Content-Range"] == "bytes */10000", unsatisfiable
        assert refused["Content-Type"] == "application/problem+json"
        assert refused.json()["title"] == "Range Not Satisfiable"
        assert refused.json()["detail"] == "The range is outside the package, which has 10000 bytes."
    assert downloads_of(export) == (0, 0)
    # Several ranges, a range that cannot be read, or a range of another package (If-Range): the whole package.
    whole = [
        {"HTTP_RANGE": "bytes=0-1,5000-5001"}, {"HTTP_RANGE": "bytes=9-5"}, {"HTTP_RANGE": "items=0-5"},
        {"HTTP_RANGE": "bytes=4000-", "HTTP_IF_RANGE": '"another-package"'},
    ]
    for headers in whole:
        answer = api.get(url, **headers)
        assert answer.status_code == 200 and b"".join(answer.streaming_content) == LARGE, headers
    assert downloads_of(export) == (4, 4)
    # A range beyond the end is cut at it.
    tail = api.get(url, HTTP_RANGE="bytes=9990-20000")
    assert tail["Content-Range"] == "bytes 9990-9999/10000" and b"".join(tail.streaming_content) == LARGE[-10:]


@pytest.mark.django_db
def test_an_ended_package_is_gone_for_a_304_a_resumption_and_a_416_too(api):


    request_id, export = released_export(api, share=True, content=LARGE)
    url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    etag = api.get(url, HTTP_RANGE="bytes=0-99")["ETag"]
    ExportPackage.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    for headers in ({"HTTP_IF_NONE_MATCH": etag}, {"HTTP_RANGE": "bytes=100-"}, {"HTTP_RANGE": "bytes=10000-"}):
        gone = api.get(url, **headers)
        assert gone.status_code == 410 and "expired" in gone.json()["detail"], headers
    assert downloads_of(export) == (1, 1)




@pytest.mark.django_db
@pytest.mark.parametrize("ranging", ["subject", "organisation"])
def test_a_range_resumes_only_a_download_of_the_same_side(api, client, ranging):
    """The subject's and the organisation's downloads count apart, and so do their resumptions: the other side's
    download of a moment ago is not one to finish uncounted, when this side's own is more than a day old."""
    request_id, export = released_export(api, share=True, max_downloads=3, content=LARGE)
    api_url = f"{URL}{request_id}/exports/{export.public_id}/download/"
    subject_link = reverse("download", args=[export.request.reference, export.request.secret, download_token(export)])
    ranging_client, ranging_url, other_client, other_url = (
        (client, subject_link, api, api_url) if ranging == "subject" else (api, api_url, client, subject_link)
    )
    assert b"".join(ranging_client.get(ranging_url).streaming_content) == LARGE
    with time_machine.travel(timezone.now() + DOWNLOAD_RESUMPTION_WINDOW + timedelta(minutes=1)):
        assert b"".join(other_client.get(other_url).streaming_content) == LARGE

        ranged = ranging_client.get(ranging_url, HTTP_RANGE="bytes=1-")

    assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == LARGE[1:]
    export.refresh_from_db()
    counted = {"subject": export.download_count, "organisation": export.organisation_download_count}
    assert counted == {"subject": 2 if ranging == "subject" else 1, "organisation": 2 if ranging == "organisation" else 1}
    assert not export.request.events.filter(action="export_download_resumed").exists()
