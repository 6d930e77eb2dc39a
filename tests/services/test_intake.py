import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app import tasks
from requests_app.audit import Actor, verify_chain
from requests_app.lifecycle import RequestError
from requests_app.models import (
    Channel,
    Organisation,
    PrivacyRequest,
    Recipient,
    RecipientNotice,
    SourceSystem,
    Status,
    WebhookDelivery,
    WebhookEndpoint,
)
from requests_app.services.deadlines import DEADLINE_FIELDS, refresh_deadline
from requests_app.services.intake import expire_unverified_requests, next_reference
from requests_app.services.routing import dispatch_unrouted
from tests.factories import at_once, request_in_status, staff_in_role, staff_who_signs_in, submit_request


@pytest.mark.django_db
def test_references_count_up_per_year():
    first = submit_request()
    second = submit_request()
    year = timezone.localtime().year
    assert (first.reference, second.reference) == (f"DSR-{year}-00001", f"DSR-{year}-00002")
    with time_machine.travel(timezone.now().replace(year=year + 1, month=1, day=15)):
        assert submit_request().reference == f"DSR-{year + 1}-00001"


@pytest.mark.django_db
def test_reference_year_follows_brussels_time():
    # 23:30 UTC on 31 December is already New Year in Brussels.
    received = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert next_reference(received).startswith("DSR-2027-")


@pytest.mark.django_db
def test_a_reference_costs_one_statement(django_assert_num_queries):
    # Every submission waits for the counter's row lock: one statement holds it least.
    with django_assert_num_queries(1):
        assert next_reference(timezone.now()).endswith("-00001")
    with django_assert_num_queries(1):
        assert next_reference(timezone.now()).endswith("-00002")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_submissions_at_once_get_distinct_consecutive_references():
    """Even the first of a year, when the counter row does not exist yet."""
    references = [request.reference for request in at_once(submit_request, times=6)]

    year = timezone.localtime().year
    assert sorted(references) == [f"DSR-{year}-{n:05d}" for n in range(1, 7)]
    assert verify_chain() == (6, None)


def test_references_work_on_sqlite_as_make_run_uses(tmp_path):
    """The upsert is SQL of our own: check it on SQLite too, in a fresh interpreter."""
    script = (
        "from django.db import connection, transaction\n"
        "from django.utils import timezone\n"
        "from requests_app.models import ReferenceCounter\n"
        "from requests_app.services.intake import next_reference\n"
        "with connection.schema_editor() as editor:\n"
        "    editor.create_model(ReferenceCounter)\n"
        "with transaction.atomic():\n"
        "    print(next_reference(timezone.now()), next_reference(timezone.now()))\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}", "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    year = timezone.localtime().year
    assert result.stdout.split() == [f"DSR-{year}-00001", f"DSR-{year}-00002"]


@pytest.mark.django_db
def test_secret_is_unguessable_and_distinct_from_the_reference():
    request = submit_request()
    other = submit_request()
    assert len(request.secret) >= 40 and request.secret != other.secret
    assert request.reference not in request.secret


@pytest.mark.django_db
def test_staff_intake_starts_new_with_an_earlier_received_date(staff_user):
    received = timezone.now() - timedelta(days=3)
    request = submit_request(channel=Channel.POST, received_at=received, actor=Actor.staff(staff_user))
    assert request.status == Status.NEW
    assert request.received_at == received
    event = request.events.get()
    assert (event.actor_id, event.data["channel"]) == (staff_user.id, "post")


@pytest.mark.django_db
def test_a_future_received_date_is_refused(staff_user):
    with pytest.raises(RequestError, match="cannot be in the future"):
        submit_request(
            channel=Channel.EMAIL, received_at=timezone.now() + timedelta(hours=1), actor=Actor.staff(staff_user)
        )
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("regime", "days_ago"),
    [("gdpr", 0), ("ccpa", 0), ("lgpd", 10), ("gdpr", 40)],  # 10 and 40: a letter recorded late, past an alert
)
@pytest.mark.django_db
def test_a_new_requests_deadline_is_the_one_refresh_deadline_derives(staff_user, regime, days_ago):
    """The deadline is set before the insert; it must follow the deadline service's rules."""
    received = timezone.now() - timedelta(days=days_ago)
    request = submit_request(regime=regime, channel=Channel.POST, received_at=received, actor=Actor.staff(staff_user))
    stored = PrivacyRequest.objects.values(*DEADLINE_FIELDS).get(pk=request.pk)
    refresh_deadline(request)
    assert stored == {field: getattr(request, field) for field in DEADLINE_FIELDS}
    assert stored["due_on"] is not None and (regime != "ccpa" or stored["acknowledgement_due_on"] is not None)


@pytest.mark.django_db
def test_a_submission_inserts_and_updates_nothing_twice(django_assert_num_queries):
    submit_request()  # the first event of the chain creates its head
    # savepoint, reference, request, rights, identities, audit chain (lock, event, head), release
    with django_assert_num_queries(9):
        submit_request(subject_phone="+32475123456")


@pytest.fixture
def filed_over_the_api(db, django_capture_on_commit_callbacks):
    """A request an organisation with a webhook endpoint filed, whose follow-up task was lost."""
    staff_who_signs_in("DPO", username="dpo1", email="dpo1@example.com")
    organisation = Organisation.objects.create(name="Mobile Operator SA")
    WebhookEndpoint.objects.create(organisation=organisation, url="https://portal.example/hooks")
    with django_capture_on_commit_callbacks() as callbacks:
        request = submit_request(channel=Channel.API, organisation=organisation, actor=Actor.organisation(organisation))
    # Nothing but one task after commit: the caller's answer waits for no more.
    assert len(callbacks) == 1
    assert (request.routed_at, WebhookDelivery.objects.count(), mail.outbox) == (None, 0, [])
    return request


def followed_up(request) -> tuple:
    request.refresh_from_db()
    confirmations = [m for m in mail.outbox if m.to == ["ana@example.com"] and m.subject.endswith("is confirmed")]
    created = WebhookDelivery.objects.filter(event="request.created", payload__request=str(request.public_id))
    # The webhook's claim is not left looking like an owed email (the sweeps queue those again).
    assert not request.notifications.filter(kind="webhook", sent_at__isnull=True).exists()
    return request.assignee.username, request.events.filter(action="routed").count(), created.count(), len(confirmations)


def test_the_follow_up_routes_tells_the_organisation_and_confirms_once_however_often_it_runs(
    filed_over_the_api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():  # the assignment email and the webhook's delivery are not the point
        tasks.follow_up_request(filed_over_the_api.id)
        tasks.follow_up_request(filed_over_the_api.id)
    assert followed_up(filed_over_the_api) == ("dpo1", 1, 1, 1)


def test_the_unrouted_sweeper_does_the_whole_follow_up_of_a_lost_task(filed_over_the_api, django_capture_on_commit_callbacks):
    with time_machine.travel(timezone.now() + timedelta(minutes=6)), django_capture_on_commit_callbacks():
        assert dispatch_unrouted() == 1  # tasks run inline in tests
    assert followed_up(filed_over_the_api) == ("dpo1", 1, 1, 1)


@pytest.mark.django_db
def test_unverified_requests_expire_and_lose_their_personal_data(settings):
    settings.UNVERIFIED_REQUEST_EXPIRY = timedelta(days=7)
    stale = submit_request(subject_name="Old Stale", subject_email="old@example.com", description="private")
    # What staff wrote about it may quote the subject too.
    stale.notes.create(author=staff_in_role("DPO", username="dpo-notes"), body="Old Stale phoned from +32475123456")
    stale.messages.create(direction="to_subject", subject="Your request, Mr Stale", body="Dear Mr Stale")
    stale.pauses.create(started_at=timezone.now(), ended_at=timezone.now(), reason="Mr Stale is abroad")
    fresh_time = timezone.now() + timedelta(days=6)
    with time_machine.travel(fresh_time):
        fresh = submit_request()
    verified = request_in_status(Status.NEW)

    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        assert expire_unverified_requests() == 1
        assert expire_unverified_requests() == 0  # a second run finds nothing more

    stale.refresh_from_db()
    assert stale.status == Status.EXPIRED
    assert (stale.subject_name, stale.subject_email, stale.description, stale.signature) == ("", "", "", "")
    assert stale.name_for_search == ""  # the search's copy of the name too
    assert stale.personal_data_purged_at is not None
    assert stale.identities.count() == 0
    assert list(stale.notes.values_list("body", flat=True)) == [""]
    assert list(stale.messages.values_list("subject", "body")) == [("", "")]
    assert list(stale.pauses.values_list("reason", flat=True)) == [""]
    assert list(stale.events.values_list("action", flat=True)) == ["submitted", "expire", "personal_data_purged"]
    assert verify_chain()[1] is None

    fresh.refresh_from_db()
    verified.refresh_from_db()
    assert fresh.status == Status.AWAITING_VERIFICATION and fresh.subject_name
    assert verified.status == Status.NEW


@pytest.mark.django_db
def test_an_unconfirmed_request_waits_for_a_link_asked_for_on_its_last_day_and_not_sent_yet(settings):
    """The mail server down when the subject asks for a new link at the end of the week: the link goes out once it is
    back (and then works 48 hours from its email), so the request is not expired under it meanwhile; nor for ever."""
    from requests_app.services.intake import resend_link

    settings.UNVERIFIED_REQUEST_EXPIRY = timedelta(days=7)
    settings.VERIFICATION_LINK_MAX_AGE = timedelta(hours=48)
    request = submit_request()  # its emails' tasks wait for a commit this test never makes: none is sent
    asked_at = timezone.now() + timedelta(days=6, hours=23)
    with time_machine.travel(asked_at):
        assert resend_link(request_id=request.id)

    with time_machine.travel(asked_at + timedelta(hours=47)):
        assert expire_unverified_requests() == 0
    with time_machine.travel(asked_at + timedelta(hours=48, minutes=1)):
        assert expire_unverified_requests() == 1


@pytest.mark.django_db
def test_asking_for_links_again_and_again_does_not_keep_an_unconfirmed_request_for_ever(settings):
    from requests_app.services.intake import resend_link

    settings.UNVERIFIED_REQUEST_EXPIRY = timedelta(days=7)
    settings.VERIFICATION_LINK_MAX_AGE = timedelta(hours=48)
    request = submit_request()
    last_asked_at = timezone.now() + timedelta(days=6, hours=23)
    with time_machine.travel(last_asked_at):
        assert resend_link(request_id=request.id)
    with time_machine.travel(last_asked_at + timedelta(hours=2)):  # past its week, under the link in force
        assert expire_unverified_requests() == 0
        assert not resend_link(request_id=request.id)
    with time_machine.travel(last_asked_at + timedelta(hours=48, minutes=1)):
        assert expire_unverified_requests() == 1


@pytest.mark.django_db
def test_a_lost_verification_email_is_queued_again(django_capture_on_commit_callbacks):
    from requests_app.services.intake import requeue_lost_acknowledgements

    # Outside the capture, the task queued on commit never runs: as if Redis restarted and lost it.
    request = submit_request()
    assert requeue_lost_acknowledgements() == 0  # queued just now: a worker may yet take it
    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert requeue_lost_acknowledgements(now=later) == 1
    (email,) = mail.outbox
    assert email.to == [request.subject_email] and "/verify/" in email.body
    request.refresh_from_db()
    assert request.acknowledged_at is not None
    assert requeue_lost_acknowledgements(now=later + timedelta(hours=3)) == 0  # sent: never again


@pytest.mark.django_db
def test_a_lost_confirmation_of_a_request_received_directly_is_queued_again(django_capture_on_commit_callbacks):
    from requests_app.services.intake import requeue_lost_acknowledgements

    organisation = Organisation.objects.create(name="Operator")
    request = submit_request(channel=Channel.API, organisation=organisation, actor=Actor.organisation(organisation))
    with django_capture_on_commit_callbacks(execute=True):
        assert requeue_lost_acknowledgements(now=timezone.now() + timedelta(hours=3)) == 1
    (email,) = mail.outbox
    assert email.subject.endswith("is confirmed") and f"/status/{request.reference}/" in email.body


@pytest.mark.django_db
def test_an_acknowledgement_still_being_retried_or_a_week_old_is_left_alone(settings):
    from requests_app.services.intake import requeue_lost_acknowledgements

    request = submit_request()
    settings.EMAIL_BACKEND = "tests.services.test_intake.RefusingMailBackend"
    with time_machine.travel(timezone.now() + timedelta(hours=1)), pytest.raises(ConnectionRefusedError):
        tasks.send_verification_email(request.id)  # one try of the retrying task; the mail server is down
    assert requeue_lost_acknowledgements(now=timezone.now() + timedelta(hours=2, minutes=30)) == 0
    assert requeue_lost_acknowledgements(now=timezone.now() + timedelta(hours=3, minutes=30)) == 1
    assert requeue_lost_acknowledgements(now=timezone.now() + timedelta(days=8)) == 0  # too late to help; it expired


class RefusingMailBackend:
    """A mail server that cannot be reached (an OSError: the email tasks retry on it)."""

    def __init__(self, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("mail server down")


@pytest.mark.django_db
def test_a_closed_request_keeps_personal_data_for_the_retention_period_only(settings):
    from requests_app.services.intake import purge_closed_requests

    settings.CLOSED_REQUEST_RETENTION = timedelta(days=3 * 365)
    completed = request_in_status(Status.COMPLETED, subject_name="Ana Peeters", description="my old contract")
    open_one = request_in_status(Status.IN_PROGRESS, subject_name="Bo Jansen")
    assert completed.closed_at is not None and open_one.closed_at is None
    # Why a recipient was not told (Art. 19) is staff's free text about the subject too.
    source = SourceSystem.objects.create(slug="crm", name="CRM", identity_kind="email", legal_basis="contract", purposes="x")
    police = Recipient.objects.create(source=source, name="Police", country="Belgium")
    RecipientNotice.objects.create(request=completed, recipient=police, waiver_reason="impossible", waiver_note="Ana Peeters said they know")

    assert purge_closed_requests(now=timezone.now() + timedelta(days=3 * 365 - 1)) == 0  # still within it
    assert purge_closed_requests(now=timezone.now() + timedelta(days=3 * 365 + 1)) == 1
    assert purge_closed_requests(now=timezone.now() + timedelta(days=3 * 365 + 2)) == 0  # once

    completed.refresh_from_db()
    open_one.refresh_from_db()
    assert (completed.subject_name, completed.subject_email, completed.description) == ("", "", "")
    assert (completed.name_for_search, open_one.name_for_search) == ("", "bojansen")
    assert completed.personal_data_purged_at is not None and completed.identities.count() == 0
    assert completed.recipient_notices.get().waiver_note == ""
    assert completed.events.filter(action="personal_data_purged").count() == 1
    assert completed.reference and verify_chain()[1] is None  # the reference and the trail stay
    assert open_one.subject_name == "Bo Jansen"  # an open request is never purged
