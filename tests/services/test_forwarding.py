"""Closing a request as forwarded to the controller: the carrier processes the data for a customer, which answers."""

import datetime

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import IllegalTransition, NotAllowed, RequestError, StaleRequest
from requests_app.models import AuditEvent, ExportPackage, ExportStatus, PrivacyRequest, RequestType, Status
from requests_app.services import exports, handling, intake
from tests.factories import released_package, request_in_status, staff_in_role

CONTROLLER = "Mobile Operator SA"
CONTACT = "privacy@mobile-operator.example\nAvenue du Port 1, 1000 Brussels"


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-forward", email="dpo-forward@example.com")


def forward(request, actor, **changes):
    kwargs = {
        "controller": CONTROLLER, "contact": CONTACT, "forwarded_on": datetime.date(2026, 3, 4),
        "expected_status": Status.IN_PROGRESS,
    }
    return handling.request_forward(request=request, actor=Actor.staff(actor), **{**kwargs, **changes})


def in_progress_since(day: datetime.date, **overrides) -> PrivacyRequest:
    with time_machine.travel(datetime.datetime.combine(day, datetime.time(10), tzinfo=timezone.get_default_timezone()), tick=False):
        return request_in_status(Status.IN_PROGRESS, **overrides)


@pytest.mark.django_db
def test_forwarding_closes_the_request_and_sends_a_letter_that_is_not_a_refusal(dpo, django_capture_on_commit_callbacks):
    request = in_progress_since(datetime.date(2026, 3, 2))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        forward(request, dpo)

    request.refresh_from_db()
    assert request.status == Status.FORWARDED and request.closed_at is not None
    assert (request.forwarded_to, request.forwarded_to_contact, request.forwarded_on) == (
        CONTROLLER, CONTACT, datetime.date(2026, 3, 4)
    )
    # Closed like any other closing: no more reminders.
    assert (request.next_alert_on, request.clock_paused) == (None, False)
    letter = request.messages.get()
    assert letter.subject == f"Your privacy request {request.reference} was forwarded to the controller of the data"
    for expected in (
        f"we process on behalf of {CONTROLLER}, which decides why and how that data is used",
        "a processor acting on its instructions (Art. 28), not its controller, so we cannot answer your request ourselves",
        f"We forwarded your request to {CONTROLLER} on 4 March 2026. {CONTROLLER} will answer you.",
        CONTACT,
        "you may submit a new request to us about that data",
        "lodge a complaint with a supervisory authority, in particular the Data Protection Authority",
        "judicial remedy",
    ):
        assert expected in letter.body
    assert "cannot grant" not in letter.body and "reason" not in letter.body.lower()
    assert mail.outbox[-1].body.startswith(letter.body[:40])


@pytest.mark.django_db
def test_the_trail_records_the_forwarding_and_its_letter_but_not_the_contact(dpo):
    request = in_progress_since(datetime.date(2026, 3, 2))
    forward(request, dpo)

    closing = AuditEvent.objects.get(request=request, action="forward")
    assert (closing.from_status, closing.to_status, closing.data) == (Status.IN_PROGRESS, Status.FORWARDED, {"forwarded_on": "2026-03-04"})
    assert AuditEvent.objects.filter(request=request, action="forwarding_letter_sent").exists()
    trail = " ".join(f"{event.note} {event.data}" for event in AuditEvent.objects.filter(request=request))
    assert "privacy@mobile-operator.example" not in trail and "Avenue du Port" not in trail and CONTROLLER not in trail


@pytest.mark.django_db
def test_forwarded_today_unless_another_day_is_given(dpo):
    request = request_in_status(Status.NEW)
    forward(request, dpo, forwarded_on=None, expected_status=Status.NEW)
    request.refresh_from_db()
    assert (request.status, request.forwarded_on) == (Status.FORWARDED, timezone.localdate())


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.COMPLETED, Status.REJECTED, Status.WITHDRAWN, Status.FORWARDED])
def test_a_closed_request_cannot_be_forwarded(dpo, status):
    request = request_in_status(status)
    messages_before = request.messages.count()
    with pytest.raises(IllegalTransition, match="cannot be moved to forwarded to the controller"):
        forward(request, dpo, expected_status=status)
    assert PrivacyRequest.objects.get(pk=request.pk).status == status
    assert request.messages.count() == messages_before


@pytest.mark.django_db
def test_an_unconfirmed_request_cannot_be_forwarded(dpo):
    """Nobody confirmed the address: the letter could reach a stranger, as a rejection's could."""
    request = request_in_status(Status.AWAITING_VERIFICATION)
    with pytest.raises(IllegalTransition):
        forward(request, dpo, expected_status=Status.AWAITING_VERIFICATION)
    assert not request.messages.exists()


@pytest.mark.django_db
def test_forwarding_a_request_changed_since_the_page_was_loaded_is_refused(dpo):
    request = request_in_status(Status.IDENTITY_CHECK)
    with pytest.raises(StaleRequest, match="has changed since you loaded it"):
        forward(request, dpo, expected_status=Status.NEW)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IDENTITY_CHECK


@pytest.mark.django_db
def test_a_handler_cannot_forward_a_request_assigned_to_someone_else(dpo):
    handler = staff_in_role("Handler", username="handler-forward")
    request = in_progress_since(datetime.date(2026, 3, 2))
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    with pytest.raises(NotAllowed):
        forward(request, handler)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS

    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    forward(request, handler)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.FORWARDED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"controller": "  "}, "Name the controller"),
        ({"contact": ""}, "how the subject can contact the controller"),
        ({"forwarded_on": datetime.date(2026, 3, 1)}, "received on 2 March 2026: it cannot have been forwarded before"),
    ],
)
def test_forwarding_needs_the_controller_how_to_reach_it_and_a_possible_day(dpo, changes, message):
    request = in_progress_since(datetime.date(2026, 3, 2))
    with pytest.raises(RequestError, match=message):
        forward(request, dpo, **changes)
    with pytest.raises(RequestError, match="cannot be in the future"):
        forward(request, dpo, forwarded_on=timezone.localdate() + datetime.timedelta(days=1))
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS and not request.messages.exists()


@pytest.mark.django_db
def test_a_request_we_answered_in_part_cannot_be_forwarded(dpo):
    """A package released to the subject: we acted as the controller of that data, which the letter would deny."""
    request = in_progress_since(datetime.date(2026, 3, 2))
    released_package(request)
    with pytest.raises(RequestError, match="We answered part of this request ourselves"):
        forward(request, dpo)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS and not request.messages.exists()


@pytest.mark.django_db
def test_a_ccpa_letter_cites_no_gdpr_article_and_names_both_authorities(dpo):
    request = in_progress_since(datetime.date(2026, 3, 2), regime="ccpa", rights=[intake.RightDetails(RequestType.ERASURE)])
    forward(request, dpo)
    body = request.messages.get().body
    assert "(Art. 28)" not in body and "a processor acting on its instructions, not its controller" in body
    assert "California Privacy Protection Agency" in body and "Data Protection Authority" in body


@pytest.mark.django_db
def test_a_forwarded_requests_package_is_never_delivered_and_is_ended(dpo):
    request = in_progress_since(datetime.date(2026, 3, 2))
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.READY)
    forward(request, dpo)
    export.refresh_from_db()
    assert "forwarded to the controller" in exports.delivery_refusal(export)
    exports.delete_expired_exports()
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED


@pytest.mark.django_db
def test_the_retention_purge_blanks_the_contact_and_keeps_the_controllers_name(dpo, settings):
    request = in_progress_since(datetime.date(2026, 3, 2))
    forward(request, dpo)
    intake.purge_closed_requests(now=timezone.now() + settings.CLOSED_REQUEST_RETENTION + datetime.timedelta(days=1))
    request.refresh_from_db()
    assert request.personal_data_purged_at is not None
    assert (request.forwarded_to, request.forwarded_to_contact) == (CONTROLLER, "")


@pytest.mark.django_db
def test_a_controller_with_the_longest_name_the_form_takes_is_forwarded_to(dpo):
    """Its name is in the letter, not the subject line, which has 200 characters of its own at most."""
    request = in_progress_since(datetime.date(2026, 3, 2))
    forward(request, dpo, controller="M" * 200)
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.FORWARDED
    assert "M" * 200 in request.messages.get().body
