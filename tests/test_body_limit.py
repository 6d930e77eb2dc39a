"""How large a request body may be, refused (413) before anything reads it (privacy_portal.middleware.body_limit).
The public pages' limit is tested with them (test_status_page); the API's in tests/api."""

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from requests_app.models import ConnectorKind, ExportPackage, ExportStatus, ManualTask, SourceSystem, Status
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

PASSWORD = "correct-horse-battery"
TOO_LARGE = "What you sent is too large"


def with_csrf_cookie() -> Client:
    """A browser that enforces the CSRF check and holds its cookie, as anyone can get one by opening a page:
    the check then reads the whole body to look for the form's token before refusing it."""
    browser = Client(enforce_csrf_checks=True)
    browser.get(reverse("staff:login"))
    assert django_settings.CSRF_COOKIE_NAME in browser.cookies
    return browser


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/staff/login/", "/staff/login/code/", "/staff/setup/", "/staff/language/", "/admin/login/", "/admin/logout/"]
)
def test_a_large_body_to_a_page_anyone_may_post_to_is_refused_before_the_csrf_check_reads_it(settings, url):
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    browser = with_csrf_cookie()
    large = SimpleUploadedFile("junk.bin", b"x" * 8192)
    response = browser.post(url, {"username": "dpo1", "password": PASSWORD, "junk": large})
    assert response.status_code == 413  # not the CSRF check's 403, which came after reading it all
    assert TOO_LARGE in response.content.decode()


@pytest.mark.django_db
def test_a_session_signed_in_with_the_password_only_has_the_public_limit(settings):
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    staff_in_role("DPO", username="dpo1")
    browser = with_csrf_cookie()
    signed_in = browser.post(
        reverse("staff:login"),
        {"username": "dpo1", "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies[django_settings.CSRF_COOKIE_NAME].value},
    )
    assert signed_in.url.startswith(reverse("staff:otp"))
    response = browser.post(reverse("staff:otp"), {"token": SimpleUploadedFile("junk.bin", b"x" * 8192)})
    assert response.status_code == 413


@pytest.fixture
def waiting_extract(db):
    """A DPO, and the manual task of an export waiting for the extract they own."""
    dpo = staff_in_role("DPO", username="dpo1")
    paper = SourceSystem.objects.create(slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind="email", owner=dpo)
    export = ExportPackage.objects.create(
        request=request_in_status(Status.IN_PROGRESS), kind="access", status=ExportStatus.WAITING_MANUAL
    )
    return dpo, ManualTask.objects.create(export=export, source=paper, assignee=dpo)


def upload_extract(client, task, size: int):
    extract = SimpleUploadedFile("extract.csv", b"contract,signed_on\n" + b"MOB-4471,2024-03-01\n" * (size // 20))
    return client.post(
        reverse("staff:export_action", args=[task.export.public_id, "upload"]), {"task": task.pk, "extract": extract}, follow=True
    )


def test_signed_in_staff_upload_an_extract_larger_than_the_public_limit(client, settings, waiting_extract):
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    dpo, task = waiting_extract
    login_staff(client, dpo)
    response = upload_extract(client, task, 8192)
    assert response.status_code == 200 and "Extract uploaded." in response.content.decode()
    task.refresh_from_db()
    assert task.done_at is not None


def test_signed_in_staff_have_a_body_limit_of_their_own(client, settings, waiting_extract):
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    settings.STAFF_MAX_BODY_BYTES = 16384
    settings.STAFF_UPLOAD_MAX_BYTES = 2 * 1024 * 1024
    dpo, task = waiting_extract
    login_staff(client, dpo)
    response = upload_extract(client, task, 32768)
    assert response.status_code == 413
    assert "What you sent is too large: a document may be at most 2 MB." in response.content.decode()
    task.refresh_from_db()
    assert task.done_at is None


def test_an_extract_over_its_limit_is_refused_with_the_limit(client, settings, waiting_extract):
    settings.MANUAL_EXTRACT_MAX_BYTES = 1024 * 1024
    dpo, task = waiting_extract
    login_staff(client, dpo)
    response = upload_extract(client, task, 1536 * 1024)
    assert "The file is too large: the limit is 1 MB." in response.content.decode()
    task.refresh_from_db()
    assert task.done_at is None
