"""Art. 19 notices: a signed webhook POST to a real local HTTP server or an email once the
recipient's source is done; failure, retry, resend, waiver, and completion waiting for them."""

import datetime
import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import formats, timezone

from privacy_portal.celery import app as celery_app
from requests_app import tasks
from requests_app.audit import Actor, verify_chain
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AuditEvent,
    ErasureException,
    LegalHold,
    NoticeStatus,
    Recipient,
    RecipientNotice,
    RequestType,
    SourceAction,
    SourceSystem,
    WaiverReason,
)
from requests_app.services import actions, handling, intake, notices, webhooks
from tests.actions.conftest import ANA_EMAIL, ANA_PHONE, verified_request
from tests.conftest import AnsweringEndpoint, login_staff
from tests.factories import staff_in_role


class Receiver:
    """What the recipient's endpoint got, and the status it answers with."""

    def __init__(self):
        self.status = 200
        self.received = []  # (headers, body) per POST

    @property
    def bodies(self):
        return [json.loads(body) for _headers, body in self.received]


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 standing in for a recipient's webhook endpoint."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/art19"
    yield state
    server.shutdown()
    server.server_close()


def check_signature(headers: dict, body: bytes, secret: str) -> int:
    """The recipient's side of `Webhook-Signature: t=<unix>,v1=<hex>`, written independently
    of the service. Returns the signed timestamp."""
    parts = dict(part.split("=", 1) for part in headers["Webhook-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return int(parts["t"])


def carry_out_actions(request, actor, capture_on_commit, sources=None):
    """Dry run, approve and execute the request's planned actions (in `sources`, or all), running
    the tasks each step queues on commit (the notice tasks included) as a worker would.
    `capture_on_commit` is pytest-django's django_capture_on_commit_callbacks."""
    for action in request.source_actions.filter(**({"source__in": sources} if sources else {})):
        for service in (actions.dry_run_start, actions.approve, actions.execute):
            with capture_on_commit(execute=True):
                service(action=SourceAction.objects.get(pk=action.pk), actor=actor)


def correct_the_city(request, crm, actor, capture_on_commit, value):
    """Ask for the CRM's city to become `value`, then plan and carry out the request's actions."""
    actions.rectification_change_set(request=request, actor=actor, category=crm.categories.get(), field="city", value=value)
    actions.plan_actions(request=request, actor=actor)
    carry_out_actions(request, actor, capture_on_commit)


@pytest.fixture
def carry_out(django_capture_on_commit_callbacks):
    def run(request, actor, sources=None):
        carry_out_actions(request, actor, django_capture_on_commit_callbacks, sources)

    return run


def test_webhook_recipient_gets_one_signed_notice_once_its_source_is_done(crm, cdr, erasure_request, dpo_actor, receiver, carry_out):
    partner = Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_webhook_url=receiver.url)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)

    carry_out(erasure_request, dpo_actor, sources=[cdr])
    assert receiver.received == []  # the CRM, the partner's source, is not done yet
    before = int(time.time())
    carry_out(erasure_request, dpo_actor, sources=[crm])

    notice = RecipientNotice.objects.get(request=erasure_request, recipient=partner)
    assert notice.status == NoticeStatus.SENT and notice.sent_at is not None and notice.attempts == 1
    [(headers, body)] = receiver.received
    assert before - 1 <= check_signature(headers, body, partner.webhook_secret) <= time.time() + 1
    assert headers["Content-Type"] == "application/json"
    assert headers["Webhook-Id"] == str(notice.public_id)
    payload = json.loads(body)
    assert payload["type"] == "privacy.recipient_notice"
    assert payload["data"]["notice"] == str(notice.public_id)
    assert payload["data"]["identifiers"] == [ANA_EMAIL] and payload["data"]["identifier_kind"] == "email"
    assert [action["kind"] for action in payload["data"]["actions"]] == ["erase"]
    # The time the API and its webhooks would write: Brussels time with its offset, not UTC.
    [erased] = erasure_request.source_actions.filter(source=crm)
    assert payload["data"]["actions"][0]["done_at"] == timezone.localtime(erased.finished_at).isoformat(timespec="microseconds")
    assert payload["data"]["actions"][0]["done_at"].endswith(("+01:00", "+02:00"))
    assert payload["data"]["rectified_values"] == []
    event = AuditEvent.objects.get(request=erasure_request, action="recipient_notified")
    assert event.data == {"recipient": "Billing partner"}
    assert actions.completion_blockers(erasure_request) == []


def test_a_forged_signature_does_not_verify(crm, erasure_request, dpo_actor, receiver, carry_out):
    partner = Recipient.objects.create(source=crm, name="Partner", country="Belgium", notification_webhook_url=receiver.url)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out(erasure_request, dpo_actor)
    [(headers, body)] = receiver.received
    # The checker above is what proves the real signature: it must reject a changed body.
    with pytest.raises(AssertionError):
        check_signature(headers, body.replace(b"erase", b"rectify"), partner.webhook_secret)


def test_a_rectification_notice_carries_the_corrected_values(crm, dpo_actor, receiver, carry_out):
    request = verified_request(RequestType.RECTIFICATION)
    partner = Recipient.objects.create(source=crm, name="Partner", country="Belgium", notification_webhook_url=receiver.url)
    category = crm.categories.get()
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor)

    [(headers, body)] = receiver.received
    check_signature(headers, body, partner.webhook_secret)
    data = json.loads(body)["data"]
    assert [action["kind"] for action in data["actions"]] == ["rectify"]
    assert data["rectified_values"] == [{"category": "subscribers", "field": "city", "value": "Antwerpen"}]


def test_an_email_notice_in_french_puts_its_colons_in_the_translation(crm, dpo_actor, carry_out, settings):
    """The notice is in the site's language; French sets a no-break space before a colon."""
    settings.LANGUAGE_CODE = "fr"
    request = verified_request(RequestType.RECTIFICATION)
    Recipient.objects.create(source=crm, name="Partenaire", country="Belgium", notification_email="dpo@partner.example")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor)

    [message] = mail.outbox
    html = message.alternatives[0][0]
    for body in (message.body, html):
        assert "Valeurs corrigées\u00a0:" in body and "Antwerpen" in body
        assert re.search(r"Rectifiées \([^)]+\)\u00a0: ", body) and "Identifiants (adresse e-mail)\u00a0: " in body
        assert " :" not in body.replace("\u00a0:", "") and "):" not in body


def test_email_recipient_gets_the_identifiers(cdr, erasure_request, dpo_actor, carry_out):
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out(erasure_request, dpo_actor)

    [message] = mail.outbox
    assert message.to == ["dpo@roaming.example"]
    assert "Article 19" in message.body and "Call records" in message.body
    assert ANA_PHONE in message.body and ANA_EMAIL not in message.body  # only what this source knows her by
    assert message.body.startswith("To the data protection team of Roaming partner,")
    assert "Identifiers (phone number):" in message.body
    finished = timezone.localtime(erasure_request.source_actions.get(source=cdr).finished_at)
    when = formats.date_format(finished, "DATETIME_FORMAT")
    assert when.endswith(f" {finished:%Z}") and f"Erased ({when})" in message.body  # not ISO, with its zone once
    assert RecipientNotice.objects.get(request=erasure_request).status == NoticeStatus.SENT
    # Who writes to them, and whom to ask: the controller and its DPO, as every email to a subject says.
    signature = f"Data controller: {settings.CONTROLLER_NAME}, {settings.CONTROLLER_ADDRESS}.\nData protection officer: {settings.DPO_CONTACT_EMAIL}"
    assert message.body.rstrip().endswith(signature)
    assert f"Data protection officer: {settings.DPO_CONTACT_EMAIL}</p>" in message.alternatives[0][0]


def _due_notice(source, request, actor, carry_out, **recipient):
    """A pending notice whose source is already done: the recipient was added after the actions
    ran and planning again created its notice. Its task is queued on commit, which these tests
    do not run: they deliver it themselves."""
    actions.plan_actions(request=request, actor=actor)
    carry_out(request, actor)
    partner = Recipient.objects.create(source=source, name="Partner", country="Belgium", **recipient)
    actions.plan_actions(request=request, actor=actor)
    return RecipientNotice.objects.get(request=request, recipient=partner)


def test_a_failing_endpoint_keeps_the_notice_pending_then_failed_then_resent(
    crm, erasure_request, dpo_actor, receiver, carry_out, django_capture_on_commit_callbacks
):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=receiver.url)
    receiver.status = 500

    with pytest.raises(notices.NoticeFailed):
        notices.deliver(notice_id=notice.id)
    notice.refresh_from_db()
    assert (notice.status, notice.error, notice.attempts) == (NoticeStatus.PENDING, "HTTP 500", 1)
    assert actions.completion_blockers(erasure_request) == ["Recipient Partner has not been notified (Art. 19)."]
    with pytest.raises(RequestError, match="Partner has not been notified"):
        handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    with pytest.raises(RequestError, match="Only a failed notice"):
        notices.resend(notice=notice, actor=dpo_actor)

    assert notices.deliver(notice_id=notice.id, final_attempt=True) is False
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.FAILED, 2)
    assert AuditEvent.objects.get(request=erasure_request, action="recipient_notice_failed").data["error"] == "HTTP 500"
    assert actions.completion_blockers(erasure_request)

    receiver.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        notices.resend(notice=notice, actor=dpo_actor)
    notice.refresh_from_db()
    assert (notice.status, notice.error, notice.attempts) == (NoticeStatus.SENT, "", 3)
    assert len(receiver.received) == 3
    assert AuditEvent.objects.filter(request=erasure_request, action="recipient_notice_resent").count() == 1
    handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)


def test_a_recipient_trickling_its_answer_fails_the_attempt_at_the_deadline(crm, erasure_request, dpo_actor, carry_out, settings):
    """The notice is sent with its row locked: an endpoint sending its answer a byte at a time held both for as long as
    it went on (a socket's timeout counts each read apart)."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    slow = AnsweringEndpoint(b"HTTP/1.1 200 OK\r\nX-Padding: ", tail_size=10_000, pause=0.2, for_seconds=8)
    try:
        notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=slow.url)
        started = time.monotonic()
        with pytest.raises(notices.NoticeFailed):
            notices.deliver(notice_id=notice.id)
        assert time.monotonic() - started < 4
    finally:
        slow.close()
    notice.refresh_from_db()
    assert (notice.status, notice.error, notice.attempts) == (NoticeStatus.PENDING, webhooks.TooSlow.message, 1)


def test_a_recipients_large_answer_is_not_read(crm, erasure_request, dpo_actor, carry_out):
    size = 128 << 20
    large = AnsweringEndpoint(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size, tail_size=size)
    try:
        notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=large.url)
        assert notices.deliver(notice_id=notice.id) is True
        time.sleep(0.5)  # what the endpoint could still push into the sockets' buffers
        assert large.sent < 16 << 20
    finally:
        large.close()


def test_an_email_address_refused_for_good_fails_the_notice_at_once(crm, erasure_request, dpo_actor, carry_out, smtp_server):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_email="gone@partner.example")
    tasks.send_recipient_notice.delay(notice.id)  # no retry: the mail server will not change its mind
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (NoticeStatus.FAILED, 1)
    assert "SMTP 550" in notice.error
    assert smtp_server.refused == ["gone@partner.example"]
    assert AuditEvent.objects.filter(request=erasure_request, action="recipient_notice_failed").count() == 1


def test_a_notice_is_not_sent_to_a_name_resolving_to_an_internal_address(crm, erasure_request, dpo_actor, receiver, carry_out, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    url = receiver.url.replace("127.0.0.1", "localhost")  # localhost resolves to 127.0.0.1
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=url)
    assert notices.deliver(notice_id=notice.id, final_attempt=True) is False
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.FAILED and receiver.received == []
    assert notice.error == "Refused: the host resolves to an internal address (loopback, private, link-local or reserved)."


def test_the_task_retries_and_marks_the_notice_failed_after_its_last_attempt(crm, erasure_request, dpo_actor, receiver, carry_out):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=receiver.url)
    receiver.status = 503
    # Eager tasks retry at once (no countdown), the first try and max_retries retries, as long
    # as the Retry they raise is not propagated to the caller.
    celery_app.conf.task_eager_propagates = False
    try:
        tasks.send_recipient_notice.delay(notice.id)
    finally:
        celery_app.conf.task_eager_propagates = True
    notice.refresh_from_db()
    attempts = tasks.send_recipient_notice.max_retries + 1
    assert (notice.status, notice.error, notice.attempts) == (NoticeStatus.FAILED, "HTTP 503", attempts)
    assert len(receiver.received) == attempts


def test_a_recipient_added_after_the_actions_ran_is_told_when_planning_again(
    crm, erasure_request, dpo_actor, receiver, carry_out, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out(erasure_request, dpo_actor)
    Recipient.objects.create(source=crm, name="New partner", country="Belgium", notification_webhook_url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        actions.plan_actions(request=erasure_request, actor=dpo_actor)
    assert erasure_request.recipient_notices.get().status == NoticeStatus.SENT
    assert len(receiver.received) == 1


def test_delivering_twice_sends_once(crm, erasure_request, dpo_actor, receiver, carry_out):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=receiver.url)
    assert notices.deliver(notice_id=notice.id) is True
    assert notices.deliver(notice_id=notice.id) is False
    assert len(receiver.received) == 1
    assert AuditEvent.objects.filter(request=erasure_request, action="recipient_notified").count() == 1


def test_a_notice_whose_task_the_broker_lost_is_queued_again(
    crm, erasure_request, dpo_actor, receiver, carry_out, django_capture_on_commit_callbacks
):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out, notification_webhook_url=receiver.url)
    # Queued 90 minutes ago: a retry may still be waiting (an hour at most), so it is left alone.
    RecipientNotice.objects.filter(pk=notice.pk).update(queued_at=timezone.now() - datetime.timedelta(minutes=90))
    assert notices.requeue_lost_notices() == 0

    RecipientNotice.objects.filter(pk=notice.pk).update(queued_at=timezone.now() - datetime.timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly on commit
        assert notices.requeue_lost_notices() == 1
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT and len(receiver.received) == 1
    assert notices.requeue_lost_notices(now=timezone.now() + datetime.timedelta(days=1)) == 0  # sent: never again


def test_a_recipient_without_contact_details_fails_at_once(crm, erasure_request, dpo_actor, carry_out):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out)
    assert notices.deliver(notice_id=notice.id) is False
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.FAILED
    assert notice.error == "No email address or webhook URL is recorded for this recipient."
    with pytest.raises(RequestError, match="Add an email address or a webhook URL"):
        notices.resend(notice=notice, actor=dpo_actor)  # it would only fail again
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.FAILED

    Recipient.objects.filter(pk=notice.recipient_id).update(notification_email="privacy@partner.example")
    notices.resend(notice=notice, actor=dpo_actor)
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.PENDING


def test_waiving_needs_a_reason_and_a_note_and_unblocks_completion(crm, erasure_request, dpo_actor, carry_out):
    notice = _due_notice(crm, erasure_request, dpo_actor, carry_out)
    notices.deliver(notice_id=notice.id)
    with pytest.raises(RequestError, match="Say why"):
        notices.waive(notice=notice, actor=dpo_actor, reason=WaiverReason.IMPOSSIBLE, note="  ")
    with pytest.raises(RequestError, match="impossible, disproportionate effort, or it never received"):
        notices.waive(notice=notice, actor=dpo_actor, reason="", note="Partner went bankrupt in 2025")
    assert RecipientNotice.objects.get(pk=notice.pk).status == NoticeStatus.FAILED

    waived = notices.waive(notice=notice, actor=dpo_actor, reason=WaiverReason.IMPOSSIBLE, note=" Partner went bankrupt in 2025 ")
    assert (waived.status, waived.waiver_note, waived.waived_by) == (NoticeStatus.WAIVED, "Partner went bankrupt in 2025", dpo_actor.user)
    event = AuditEvent.objects.get(request=erasure_request, action="recipient_notice_waived")
    assert event.data == {"recipient": "Partner", "reason": "impossible"} and event.actor_label == "dpo"
    assert actions.completion_blockers(erasure_request) == []
    with pytest.raises(RequestError, match="already been notified or excused"):
        notices.waive(notice=notice, actor=dpo_actor, reason=WaiverReason.IMPOSSIBLE, note="again")
    handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    assert verify_chain()[1] is None


def test_the_dpo_issues_a_recipients_signing_secret_once_and_its_notices_verify_with_it(
    client, crm, erasure_request, dpo, dpo_actor, receiver, carry_out
):
    """The secret is shown on the answer that issued it, never again: the recipient checks notices with it."""
    partner = Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_webhook_url=receiver.url)
    first_secret = partner.webhook_secret
    edit_page = reverse("staff:recipient_edit", args=[partner.pk])
    issue = reverse("staff:recipient_secret", args=[partner.pk])
    login_staff(client, dpo)
    page = client.get(edit_page).content.decode()
    assert issue in page
    form = {"secret_seen": re.search(r'name="secret_seen" value="([0-9a-f]+)"', page).group(1)}

    response = client.post(issue, form)
    partner.refresh_from_db()
    shown = partner.webhook_secret
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert shown != first_secret and f'<code id="recipient-secret">{shown}</code>' in response.content.decode()
    # Reloaded (the browser sends the form again), or sent twice by a double click: the secret just shown stands.
    again = client.post(issue, form, follow=True)
    partner.refresh_from_db()
    assert partner.webhook_secret == shown and shown not in again.content.decode()
    assert "was replaced since the page was opened" in again.content.decode() and "nothing was changed now" in again.content.decode()
    assert AuditEvent.objects.filter(action="recipient_secret_renewed").count() == 1
    assert shown not in client.get(edit_page).content.decode()
    assert shown not in client.get(reverse("staff:inventory")).content.decode()
    event = AuditEvent.objects.get(action="recipient_secret_renewed")
    assert event.data == {"id": partner.pk, "name": "Billing partner"} and shown not in json.dumps(event.data)

    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out(erasure_request, dpo_actor)
    [(headers, body)] = receiver.received
    check_signature(headers, body, shown)
    with pytest.raises(AssertionError):
        check_signature(headers, body, first_secret)  # the old secret stopped at once

    auditor = login_staff(client, staff_in_role("Auditor", username="auditor-secret"))
    assert auditor.post(issue, {"secret_seen": partner.webhook_secret_seen}).status_code == 403
    assert client.get(issue).status_code in (403, 405)
    partner.refresh_from_db()
    assert partner.webhook_secret == shown


def test_a_notice_tells_only_what_changed_in_its_source(crm, cdr, dpo_actor, receiver, carry_out):
    """Erasure, rectification and restriction, erasure first: the call records are all kept under a hold,
    and in the CRM the erasure leaves nothing for the correction or the restriction flag to match."""
    crm_partner = Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_webhook_url=receiver.url)
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=365)
    )
    SourceSystem.objects.filter(pk=crm.pk).update(restriction_list="")  # the CRM restricts by its flag alone
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION, RequestType.RESTRICTION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor)
    assert request.source_actions.get(source=cdr, kind="erase").result["categories"] == []  # all held

    [(headers, body)] = receiver.received
    check_signature(headers, body, crm_partner.webhook_secret)
    data = json.loads(body)["data"]
    assert [(action["kind"], action["categories"]) for action in data["actions"]] == [("erase", ["subscribers"])]
    assert data["rectified_values"] == [] and b"Antwerpen" not in body  # nothing was corrected: no new city for them

    [message] = mail.outbox
    assert message.to == ["dpo@roaming.example"]
    assert "Processing restricted (" in message.body  # the phone number went on the restriction list
    assert "Erased" not in message.body  # the call records are all still there
    assert "Rectified" not in message.body and "Corrected values" not in message.body


def test_no_notice_goes_where_nothing_changed_and_a_notice_still_says_what_was_erased(crm, cdr, erasure_request, dpo_actor, carry_out):
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=365)
    )
    held = Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    carry_out(erasure_request, dpo_actor)

    assert erasure_request.recipient_notices.get(recipient=held).status == NoticeStatus.NOT_NEEDED
    [message] = mail.outbox
    assert message.to == ["art19@partner.example"]
    assert "Erased (" in message.body and ": subscribers" in message.body


def test_withdrawing_before_any_action_ran_settles_the_notices_as_not_needed(crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks):
    """QA: they stayed "To send once the actions are done" for good, and could still be waived."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE", notification_email="privacy@mailer.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=True):
        intake.request_withdraw(request=erasure_request, actor=Actor.subject())

    notice = erasure_request.recipient_notices.get()
    assert notice.status == NoticeStatus.NOT_NEEDED
    with django_capture_on_commit_callbacks(execute=True):
        assert notices.requeue_lost_notices(now=timezone.now() + datetime.timedelta(days=1)) == 0
        assert notices.deliver(notice_id=notice.id) is False
    assert not [email for email in mail.outbox if email.to == ["privacy@mailer.example"]]


def test_an_execution_that_was_not_carried_out_after_a_withdrawal_settles_its_notice(
    crm, erasure_request, dpo_actor, step, django_capture_on_commit_callbacks
):
    """The subject withdrew while the execution waited for a worker: the notice waits for the run, then needs nothing."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE", notification_email="privacy@mailer.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = step(actions.approve, step(actions.dry_run_start, erasure_request.source_actions.get(), actor=dpo_actor), actor=dpo_actor)
    actions.execute(action=action, actor=dpo_actor)  # queued, not run yet
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    notice = erasure_request.recipient_notices.get()
    assert notice.status == NoticeStatus.PENDING  # the run may still change the source

    with django_capture_on_commit_callbacks(execute=True):
        token = SourceAction.objects.get(pk=action.pk).run_token
        assert actions.run_execution(action_id=action.id, token=token) == ActionStatus.FAILED
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.NOT_NEEDED
    assert not [email for email in mail.outbox if email.to == ["privacy@mailer.example"]]


def _erased_while_its_rectification_waits(crm, dpo_actor, step):
    """A request for erasure and rectification in the CRM, whose recipient is emailed: the erasure carried out, the
    rectification only planned, so the notice waits for it."""
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION)
    Recipient.objects.create(source=crm, name="Mailer", country="BE", notification_email="privacy@mailer.example")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Gent")
    actions.plan_actions(request=request, actor=dpo_actor)
    erasure = request.source_actions.get(kind=ActionKind.ERASE)
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        step(service, erasure, actor=dpo_actor)
    return request


def test_a_notice_of_an_erasure_done_before_a_withdrawal_is_still_sent(
    crm, dpo_actor, step, django_capture_on_commit_callbacks
):
    """Its source's rectification never runs once the request is withdrawn: the recipient is told of the erasure
    (Art. 19) instead of waiting for it for good."""
    request = _erased_while_its_rectification_waits(crm, dpo_actor, step)
    erasure = request.source_actions.get(kind=ActionKind.ERASE)
    assert erasure.status == ActionStatus.DONE and erasure.changed_anything()
    notice = request.recipient_notices.get()
    assert notice.status == NoticeStatus.PENDING  # waits for the rectification

    with django_capture_on_commit_callbacks(execute=True):
        intake.request_withdraw(request=request, actor=Actor.subject())
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT
    [email] = [email for email in mail.outbox if email.to == ["privacy@mailer.example"]]
    assert "Erased" in email.body and "Rectified" not in email.body


@pytest.mark.django_db(transaction=True)
def test_closing_a_request_does_not_wait_for_a_notice_being_delivered(crm, dpo_actor, step):
    """deliver() holds a notice's row while it sends, then appends to the audit trail. A withdrawal at that moment
    holds the trail's head, then settles the request's notices: waiting for that row was a deadlock, and held every
    audited write meanwhile. It leaves the notice to its delivery. (Without the fix the withdrawal waits, and the lock
    timeout set here turns the wait into an error.)"""
    request = _erased_while_its_rectification_waits(crm, dpo_actor, step)
    notice = request.recipient_notices.get()
    being_delivered, delivered = threading.Event(), threading.Event()

    def deliverer():
        with transaction.atomic():
            RecipientNotice.objects.select_for_update().get(pk=notice.pk)
            being_delivered.set()
            delivered.wait(30)
        connection.close()

    thread = threading.Thread(target=deliverer)
    thread.start()
    try:
        assert being_delivered.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")
        intake.request_withdraw(request=request, actor=Actor.subject())
    finally:
        delivered.set()
        thread.join()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    request.refresh_from_db()
    notice.refresh_from_db()
    assert request.status == "withdrawn" and notice.status == NoticeStatus.PENDING  # its delivery settles it


def test_a_closed_requests_notice_of_a_source_changed_part_way_is_left_to_staff_who_may_waive_it(
    client, dpo, crm, erasure_request, dpo_actor
):
    """The erasure stopped part-way after changing rows (an HTTP source has no rollback), then the subject withdrew.
    "Not needed" would be untrue and the notice tells only what finished actions changed, so closing leaves it
    pending: staff, and only they, can still settle it, on the page too."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    erasure_request.source_actions.update(status=ActionStatus.FAILED, result={"changed_before_failing": True, "categories": []})
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    notice = erasure_request.recipient_notices.get()
    assert notice.status == NoticeStatus.PENDING
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[erasure_request.reference])).content.decode()
    assert f'id="waive-{notice.public_id}-reason"' in page

    notices.waive(notice=notice, actor=dpo_actor, reason=WaiverReason.DISPROPORTIONATE, note="Told them by phone instead.")

    notice.refresh_from_db()
    assert notice.status == NoticeStatus.WAIVED
    assert erasure_request.events.filter(action="recipient_notice_waived").exists()


def test_a_notice_of_a_closed_request_can_no_longer_be_waived_or_sent_again(crm, erasure_request, dpo_actor):
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    notice = erasure_request.recipient_notices.get()
    events = erasure_request.events.count()

    refusal = "This request is withdrawn: its notices to recipients can no longer be waived or sent again."
    with pytest.raises(RequestError, match=refusal):
        notices.waive(notice=notice, actor=dpo_actor, reason=WaiverReason.IMPOSSIBLE, note="Partner went bankrupt")
    RecipientNotice.objects.filter(pk=notice.pk).update(status=NoticeStatus.FAILED)  # as a notice that failed for good was
    with pytest.raises(RequestError, match=refusal):
        notices.resend(notice=notice, actor=dpo_actor)
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.FAILED and erasure_request.events.count() == events


@pytest.mark.parametrize(("regime", "law"), [("gdpr", " (Art. 19)"), ("uk_gdpr", " (Art. 19)"), ("ccpa", ""), ("lgpd", "")])
def test_the_notices_blocking_completion_cite_the_gdprs_article_only_where_the_requests_law_numbers_it_so(
    crm, dpo_actor, django_capture_on_commit_callbacks, regime, law
):
    Recipient.objects.create(source=crm, name="Partner", country="Belgium", notification_email="dpo@partner.example")
    Recipient.objects.create(source=crm, name="Authorities", country="Belgium")  # nowhere to send it
    request = verified_request(RequestType.ERASURE, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    RecipientNotice.objects.filter(request=request, recipient__name="Partner").update(status=NoticeStatus.FAILED)

    assert sorted(actions.completion_blockers(request)) == [
        f"Recipient Authorities cannot be notified{law}: it has no email address or webhook URL. Add one in the "
        "inventory, or waive the notice.",
        f"Recipient Partner has not been notified{law}.",
    ]
