"""A right a completion refused gets no data: its package, compiled or queued before, is neither released,
retried nor compiled, and the staff page offers no release nor asks for extracts."""

import io
import re
import zipfile

import pytest
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import ConnectorKind, ExportPackage, ExportStatus, ManualTask, RequestType, SourceSystem, Status
from requests_app.services import handling
from requests_app.services.exports import compile_export, export_release, export_retry, export_start
from requests_app.services.handling import RightRefusal
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import released_package, request_in_status, staff_in_role

pytestmark = pytest.mark.usefixtures("export_settings")

ACCESS_REFUSED = RightRefusal(RequestType.ACCESS, "other", "Your access request repeats the one we answered last week.")
NOT_DELIVERED = "Access (Art. 15) was refused when the request was completed: this package is not delivered."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1")


def ready_package(request, kind: str) -> ExportPackage:
    """A compiled package waiting for review: a ZIP in storage (the staff page previews it), holding no file."""
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    name = default_storage.save(f"exports/{kind}.zip", ContentFile(buffer.getvalue()))
    return ExportPackage.objects.create(request=request, kind=kind, status=ExportStatus.READY, storage_name=name)


@pytest.fixture
def access_refused(dpo):
    """A request for access and portability, completed with its portability package released and access refused,
    while an access package compiled before waited for review."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)])
    released_package(request, kind="portability")
    ready = ready_package(request, "access")
    handling.request_complete(
        request=request, actor=Actor.staff(dpo), letter="Here is your data.", expected_status=Status.IN_PROGRESS, refused=[ACCESS_REFUSED]
    )
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["access"]
    return ready


def test_the_package_of_a_refused_right_is_not_released(access_refused, dpo, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RequestError, match=re.escape(NOT_DELIVERED)):
        export_release(export=ExportPackage.objects.get(pk=access_refused.pk), actor=Actor.staff(dpo))
    access_refused.refresh_from_db()
    assert access_refused.status == ExportStatus.READY and access_refused.released_at is None
    assert not access_refused.request.events.filter(action="export_released").exists()
    assert mail.outbox == []  # no "your data is ready"


def test_the_staff_page_says_why_instead_of_offering_the_release(access_refused, dpo, client):
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[access_refused.public_id])).content.decode()
    assert "Release to the subject" not in page
    assert NOT_DELIVERED in page

    response = client.post(reverse("staff:export_action", args=[access_refused.public_id, "release"]), follow=True)
    assert NOT_DELIVERED in response.content.decode()
    assert ExportPackage.objects.get(pk=access_refused.pk).released_at is None


def test_the_granted_rights_package_is_still_offered(access_refused, dpo, client):
    portability = ready_package(access_refused.request, "portability")
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[portability.public_id])).content.decode()
    assert "Release to the subject" in page and "was refused when the request was completed" not in page


def test_no_package_of_a_refused_right_is_compiled_after_the_completion(access_refused, dpo, client):
    request = access_refused.request
    # Queued before the completion: the run collects nothing.
    queued = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)
    assert compile_export(export_id=queued.id) is None
    queued.refresh_from_db()
    assert queued.status == ExportStatus.FAILED and queued.storage_name == ""
    assert queued.error == "the completion refused the right this package answers: no data is collected"
    # Failed: not retried, and the page offers no retry.
    with pytest.raises(RequestError, match=re.escape(NOT_DELIVERED)):
        export_retry(export=ExportPackage.objects.get(pk=queued.pk), actor=Actor.staff(dpo))
    assert ExportPackage.objects.get(pk=queued.pk).status == ExportStatus.FAILED
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[queued.public_id])).content.decode()
    assert "Retry from the start" not in page and NOT_DELIVERED in page
    # A new one: a completed request has none started.
    with pytest.raises(RequestError, match="Only an open, verified request can have its data exported."):
        export_start(request=request, actor=Actor.staff(dpo), kind="access")


def test_no_manual_extract_is_asked_for_a_package_whose_right_was_refused(access_refused, dpo, client):
    """A package waiting for extracts when the completion refused its right."""
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind="email", purposes="Contracts",
        legal_basis="contract", retention="10 years", origin="Signed by the customer", owner=dpo,
    )
    waiting = ExportPackage.objects.create(request=access_refused.request, kind="access", status=ExportStatus.WAITING_MANUAL)
    task = ManualTask.objects.create(export=waiting, source=paper, assignee=dpo)
    login_staff(client, dpo)
    page = client.get(reverse("staff:export", args=[waiting.public_id])).content.decode()
    assert 'name="extract"' not in page and NOT_DELIVERED in page

    extract = SimpleUploadedFile("scan-index.csv", b"contract,signed_on\nMOB-4471,2024-03-01\n")
    response = client.post(
        reverse("staff:export_action", args=[waiting.public_id, "upload"]), {"task": task.pk, "extract": extract}, follow=True
    )
    assert NOT_DELIVERED in response.content.decode()
    task.refresh_from_db()
    assert task.done_at is None and task.upload.name == ""
    assert ExportPackage.objects.get(pk=waiting.pk).status == ExportStatus.WAITING_MANUAL
