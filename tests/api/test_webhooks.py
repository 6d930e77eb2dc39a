"""Webhooks against a real HTTP server on 127.0.0.1, signatures checked by an independent implementation."""

import hashlib
import hmac
import json
import logging
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app import tasks
from requests_app.api.fields import MomentField
from requests_app.audit import Actor
from requests_app.models import AuditEvent, DeliveryStatus, PrivacyRequest, SentNotification, WebhookDelivery, WebhookEndpoint
from requests_app.services import webhooks
from tests.api.conftest import client_with, key_for
from tests.conftest import AnsweringEndpoint, login_staff
from tests.factories import confirm_email, staff_in_role

URL = "/api/v1/requests/"
BODY = {"rights": ["access"], "subject_name": "Ana Peeters", "subject_email": "ana@example.com",
        "relationship": "end_user", "signature": "Ana Peeters"}


class Receiver:
    """A portal's webhook receiver: answers with the next status in `statuses` (then 200) and keeps what it got."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        return [json.loads(body)["type"] for _, body in self.received]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def verify_signature(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """How a portal checks a delivery, written from the README, not from the app's code: any of the
    `v1=` signatures may be the one made with its secret."""
    timestamp, signatures = None, []
    for item in header.split(","):
        name, _, value = item.partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value)
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(timezone.now().timestamp() - int(timestamp)) < tolerance
    return fresh and any(hmac.compare_digest(expected, signature) for signature in signatures)


def verify_as_the_first_readme_did(secret: str, header: str, body: bytes) -> bool:
    """The README's check before secrets could be rolled: a dict of the header's items, so with two
    `v1=` it sees only the last one. Receivers built from it must go on working with the old secret."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def readme_verify():
    """The README's own example, run as a portal would copy it."""
    from django.conf import settings

    readme = (settings.BASE_DIR / "README.md").read_text()
    section = readme[readme.index("### Webhooks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(code, namespace)
    return namespace["verify"]


SECRET = re.compile(r"whsec_[A-Za-z0-9_-]+")


def roll_in_the_admin(client, endpoint, follow=False):
    """The DPO's two steps: open the confirmation page, send its form."""
    url = reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk])
    page = client.get(url)
    assert page.status_code == 200
    seen = re.search(r'name="secret_seen_at" value="([^"]+)"', page.content.decode()).group(1)
    return client.post(url, {"secret_seen_at": seen}, follow=follow)


def shown_secret(response) -> str:
    [secret] = SECRET.findall(response.content.decode())
    return secret


def endpoint_form(client, operator) -> dict:
    """A blank add form, filled in: with the form's own submission key."""
    page = client.get(reverse("admin:requests_app_webhookendpoint_add")).content.decode()
    submission_key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', page).group(1)
    return {"organisation": operator.pk, "url": "https://portal.example.com/hooks", "active": "on", "submission_key": submission_key}


@pytest.mark.django_db(transaction=True)
def test_events_reach_the_organisations_endpoint_signed(operator, receiver):
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    api = client_with(key_for(operator))
    created = api.post(URL, BODY, format="json").json()
    api.post(f"{URL}{created['id']}/withdraw/")

    assert receiver.events() == ["request.created", "request.status_changed"]
    for headers, body in receiver.received:
        assert verify_signature(endpoint.secret, headers["Webhook-Signature"], body)
        assert not verify_signature("whsec_wrong", headers["Webhook-Signature"], body)
    changed = json.loads(receiver.received[1][1])
    assert changed["data"] == {
        "request": created["id"], "reference": created["reference"], "status": "withdrawn",
        "due_on": created["due_on"], "previous_status": "new",
    }
    assert "Ana" not in receiver.received[0][1].decode()  # no personal data in events
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 2


@pytest.mark.django_db
def test_request_created_comes_first_even_when_the_follow_up_task_is_late(operator, django_capture_on_commit_callbacks):
    """A worker backlog must not let a portal hear of a withdrawal before it hears of the request."""
    from requests_app.models import PrivacyRequest
    from requests_app.services import intake

    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    api = client_with(key_for(operator))
    with django_capture_on_commit_callbacks(execute=False):  # the follow-up task waits in the queue
        created = api.post(URL, BODY, format="json").json()
        api.post(f"{URL}{created['id']}/withdraw/")
    sent = [(d.event, d.payload["status"], d.payload["due_on"]) for d in WebhookDelivery.objects.order_by("id")]
    assert sent == [
        ("request.created", "new", created["due_on"]),  # as filed
        ("request.status_changed", "withdrawn", created["due_on"]),
    ]
    intake.request_follow_up(request_id=PrivacyRequest.objects.get(public_id=created["id"]).pk)  # the task, at last
    assert WebhookDelivery.objects.filter(event="request.created").count() == 1


@pytest.mark.django_db
def test_a_late_request_created_is_dated_when_the_request_was_created(operator, django_capture_on_commit_callbacks):
    """Queued only with the withdrawal (the follow-up task late), it was dated with the withdrawal's moment, the same
    created_at as the status_changed after it: a receiver sorting by created_at could put the request back to new."""
    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    api = client_with(key_for(operator))
    with django_capture_on_commit_callbacks(execute=False):  # the follow-up task waits in the queue
        created = api.post(URL, BODY, format="json").json()
        withdrawn = api.post(f"{URL}{created['id']}/withdraw/").json()
    announced, changed = WebhookDelivery.objects.order_by("id")
    assert (announced.event, changed.event) == ("request.created", "request.status_changed")
    assert MomentField().to_representation(announced.occurred_at) == created["created_at"]
    assert MomentField().to_representation(changed.occurred_at) == withdrawn["updated_at"]
    assert announced.occurred_at < changed.occurred_at


@pytest.mark.django_db
def test_events_queued_for_one_request_at_one_moment_are_still_strictly_ordered(operator, django_capture_on_commit_callbacks):
    """Filed and withdrawn within one clock tick (or two events in one transaction): each event a microsecond after
    the one before, and the request's updated_at no earlier than the last, so that updated_since it lists it."""
    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    api = client_with(key_for(operator))
    with time_machine.travel(datetime(2026, 3, 2, 8, 14, 7, 412345, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=False):
            created = api.post(URL, BODY, format="json").json()
            api.post(f"{URL}{created['id']}/withdraw/")
        request = PrivacyRequest.objects.get(public_id=created["id"])
        webhooks.emit(request, webhooks.WebhookEvent.REQUEST_DUE_DATE_CHANGED)
    moments = list(WebhookDelivery.objects.order_by("id").values_list("occurred_at", flat=True))
    tick = timedelta(microseconds=1)
    assert moments == [request.created_at, request.created_at + tick, request.created_at + 2 * tick]
    since = MomentField().to_representation(moments[-1])
    assert [listed["id"] for listed in api.get(URL, {"updated_since": since}).json()["results"]] == [created["id"]]


@pytest.mark.django_db
def test_request_created_sent_after_a_pause_gives_the_due_date_the_request_was_filed_with(operator):
    """request.created describes the request as filed: a pause finished before it went out (an endpoint added
    since, a late follow-up task) must not move its due date past the one the API answered at filing."""
    from requests_app import lifecycle
    from requests_app.services import intake

    # Filed on Friday 30 January: due 28 February, a Saturday, so Monday 2 March.
    with time_machine.travel(datetime(2026, 1, 30, 12, tzinfo=UTC), tick=False):
        created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    with time_machine.travel(datetime(2026, 2, 10, 12, tzinfo=UTC), tick=False):
        lifecycle.transition(request, "await_subject", actor=Actor.system())
    with time_machine.travel(datetime(2026, 2, 15, 12, tzinfo=UTC), tick=False):
        lifecycle.transition(request, "start_work", actor=Actor.system())
    request.refresh_from_db()
    assert request.original_due_on == datetime(2026, 3, 5).date()  # the five days paused added
    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")

    intake.request_follow_up(request_id=request.pk)

    announced = WebhookDelivery.objects.get(event="request.created").payload
    assert created["due_on"] == announced["due_on"] == "2026-03-02"


@pytest.mark.django_db
def test_a_request_forwarded_to_its_controller_is_announced_as_such_without_the_contact(operator, django_capture_on_commit_callbacks):
    from requests_app.services import handling

    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    with django_capture_on_commit_callbacks(execute=False):
        created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
        handling.request_forward(
            request=PrivacyRequest.objects.get(public_id=created["id"]), actor=Actor.staff(staff_in_role("DPO", username="dpo-hook")),
            controller="Mobile Operator SA", contact="privacy@mobile-operator.example", expected_status="new",
        )
    changed = WebhookDelivery.objects.get(event="request.status_changed")
    assert changed.payload == {
        "request": created["id"], "reference": created["reference"], "status": "forwarded",
        "due_on": created["due_on"], "previous_status": "new",
    }


@pytest.mark.django_db(transaction=True)
def test_other_organisations_get_nothing(operator, other_operator, receiver):
    WebhookEndpoint.objects.create(organisation=other_operator, url=receiver.url)
    client_with(key_for(operator)).post(URL, BODY, format="json")
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_due_date_changes_and_ready_exports_are_sent(operator, receiver):
    from requests_app.audit import Actor
    from requests_app.models import ExportPackage, PrivacyRequest
    from requests_app.services.deadlines import request_extend
    from requests_app.services.exports import export_release

    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    request = confirm_email(PrivacyRequest.objects.get(public_id=created["id"]))  # else its package is not released
    dpo = staff_in_role("DPO", username="dpo1")
    request_extend(request=request, actor=Actor.staff(dpo), reason="Many systems")
    unshared = ExportPackage.objects.create(request=request, status="ready", storage_name="exports/x.zip")
    export_release(export=unshared, actor=Actor.staff(dpo))  # a package the portal cannot fetch: no news to it
    export = ExportPackage.objects.create(request=request, status="ready", storage_name="exports/y.zip")
    export_release(export=export, actor=Actor.staff(dpo), share_with_organisation=True)

    assert receiver.events() == ["request.created", "request.due_date_changed", "export.ready"]
    due_change = json.loads(receiver.received[1][1])["data"]
    assert due_change["previous_due_on"] == created["due_on"] and due_change["due_on"] > created["due_on"]
    assert json.loads(receiver.received[2][1])["data"]["export"] == str(export.public_id)


@pytest.mark.django_db(transaction=True)
def test_failures_are_retried_with_backoff_until_delivered(operator):
    receiver = Receiver(statuses=[500, 503])
    try:
        WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        client_with(key_for(operator)).post(URL, BODY, format="json")
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
        first_retry = delivery.next_attempt_at - timezone.now()
        assert timedelta(seconds=55) < first_retry <= timedelta(seconds=60)

        assert webhooks.dispatch_due() == 0  # not due yet
        with time_machine.travel(timezone.now() + timedelta(seconds=61)):
            assert webhooks.dispatch_due() == 1
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.last_status_code) == (2, 503)
        assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=115)  # doubled

        with time_machine.travel(timezone.now() + timedelta(minutes=4)):
            webhooks.dispatch_due()
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("delivered", 3)
        assert len(receiver.received) == 3
        assert len({headers["Webhook-Id"] for headers, _ in receiver.received}) == 1  # one event, three tries
    finally:
        receiver.server.shutdown()


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_failing_for_a_day_is_disabled_and_the_dpo_told(operator):
    receiver = Receiver(statuses=[500] * 100)
    try:
        endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        client_with(key_for(operator)).post(URL, BODY, format="json")
        mail.outbox.clear()
        with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
            webhooks.dispatch_due()
        delivery = WebhookDelivery.objects.get()
        endpoint.refresh_from_db()
        assert delivery.status == "failed" and not endpoint.active and endpoint.disabled_at
        assert any("disabled" in message.subject for message in mail.outbox)
        # A disabled endpoint is sent nothing new, but the log keeps what happened meanwhile, to redeliver.
        received = len(receiver.received)
        client_with(key_for(operator)).post(URL, BODY, format="json")
        missed = WebhookDelivery.objects.latest("id")
        assert (missed.event, missed.status, missed.last_error, missed.attempts) == ("request.created", "failed", "endpoint disabled", 0)
        assert len(receiver.received) == received
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=True, disabled_at=None)
        receiver.statuses.clear()
        webhooks.deliver(delivery_id=webhooks.redeliver(delivery=missed).id)
        assert json.loads(receiver.received[-1][1])["type"] == "request.created"
    finally:
        receiver.server.shutdown()


# An answer whose header never ends: one byte of it every 0.2 s.
TRICKLED_HEAD = b"HTTP/1.1 200 OK\r\nX-Padding: "


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_trickling_its_answer_fails_the_attempt_at_the_deadline_and_the_delivery_after_a_day(operator, settings):
    """A socket's timeout counts each read apart: an endpoint sending a byte every 0.2 s held the worker until the task's
    time limit, whose exception skipped the attempt's outcome. The delivery stayed pending with no error, for good."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    slow = AnsweringEndpoint(TRICKLED_HEAD, tail_size=10_000, pause=0.2, for_seconds=8)
    try:
        endpoint = WebhookEndpoint.objects.create(organisation=operator, url=slow.url)
        started = time.monotonic()
        client_with(key_for(operator)).post(URL, BODY, format="json")
        assert time.monotonic() - started < 4
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
            "pending", 1, None, webhooks.TooSlow.message,
        )
        mail.outbox.clear()
        with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
            webhooks.dispatch_due()
        delivery.refresh_from_db()
        endpoint.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 2, webhooks.TooSlow.message)
        assert not endpoint.active and any("disabled" in message.subject for message in mail.outbox)
    finally:
        slow.close()


@pytest.mark.django_db(transaction=True)
def test_the_body_of_an_answer_is_not_waited_for(operator, settings):
    """Its status is all an attempt needs: a 200 whose body came a byte every 0.2 s held the worker as long."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    slow = AnsweringEndpoint(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", tail_size=100_000, pause=0.2, for_seconds=8)
    try:
        WebhookEndpoint.objects.create(organisation=operator, url=slow.url)
        started = time.monotonic()
        client_with(key_for(operator)).post(URL, BODY, format="json")
        assert time.monotonic() - started < 2
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("delivered", 200, "")
    finally:
        slow.close()


@pytest.mark.django_db(transaction=True)
def test_a_large_answer_is_not_read(operator):
    """A 200 MB answer was read whole into the worker's memory."""
    size = 128 << 20
    large = AnsweringEndpoint(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size, tail_size=size)
    try:
        WebhookEndpoint.objects.create(organisation=operator, url=large.url)
        client_with(key_for(operator)).post(URL, BODY, format="json")
        assert WebhookDelivery.objects.get().status == "delivered"
        time.sleep(0.5)  # what the endpoint could still push into the sockets' buffers
        assert large.sent < 16 << 20
    finally:
        large.close()


@pytest.mark.django_db
def test_an_attempt_cut_short_by_the_tasks_time_limit_is_recorded_and_retried(operator, settings):
    """Celery ends a task past its soft time limit by raising SoftTimeLimitExceeded in it, from a signal (as here):
    let through, it skipped the attempt's outcome, and the delivery never failed."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 30
    slow = AnsweringEndpoint(TRICKLED_HEAD, tail_size=10_000, pause=0.2, for_seconds=8)
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=slow.url)
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event="request.created", payload={"request": "x"}, next_attempt_at=timezone.now()
    )

    def soft_time_limit(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_time_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        assert webhooks.deliver(delivery_id=delivery.id) is False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        slow.close()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, webhooks.TooSlow.message)
    assert timedelta(seconds=55) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=60)


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_refusing_one_event_but_taking_the_others_stays_on(operator):
    """A portal answering 400 to one event type only was switched off for every event, by a day of that one."""
    receiver = Receiver(statuses=[400] * 100)
    try:
        endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        client_with(key_for(operator)).post(URL, BODY, format="json")  # refused
        refused = WebhookDelivery.objects.get()
        receiver.statuses.clear()
        with time_machine.travel(timezone.now() + timedelta(hours=1)):
            client_with(key_for(operator)).post(URL, BODY, format="json")  # taken
        mail.outbox.clear()
        receiver.statuses[:] = [400] * 100
        with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
            webhooks.deliver(delivery_id=refused.id)
        refused.refresh_from_db()
        endpoint.refresh_from_db()
        assert refused.status == "failed" and endpoint.active and endpoint.disabled_at is None
        assert not any("disabled" in message.subject for message in mail.outbox)
    finally:
        receiver.server.shutdown()


@pytest.mark.django_db(transaction=True)
def test_a_request_filed_before_the_endpoint_existed_is_announced_before_its_changes(operator, receiver):
    """The request.created claim was used up with no endpoint to send it to: the portal then heard of a status
    change of a request it had never been told of."""
    from requests_app.services import intake

    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    assert not WebhookDelivery.objects.exists()
    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    request = PrivacyRequest.objects.get(public_id=created["id"])
    intake.request_withdraw(request=request, actor=Actor.system())

    assert receiver.events() == ["request.created", "request.status_changed"]


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_added_later_is_told_of_a_request_before_its_changes(operator, receiver):
    """request.created was claimed once per request: an endpoint added after it went to the first heard of the
    request's withdrawal only, a request it had never been told of."""
    from requests_app.services import intake

    second = Receiver()
    try:
        WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
        WebhookEndpoint.objects.create(organisation=operator, url=second.url)
        request = PrivacyRequest.objects.get(public_id=created["id"])
        intake.request_withdraw(request=request, actor=Actor.system())
        intake.request_follow_up(request_id=request.pk)  # its task again (a redelivery): nobody is told twice

        assert receiver.events() == second.events() == ["request.created", "request.status_changed"]
        announced = json.loads(second.received[0][1])["data"]
        assert (announced["request"], announced["status"], announced["due_on"]) == (created["id"], "new", created["due_on"])
    finally:
        second.server.shutdown()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_transactions_announcing_a_request_at_once_announce_it_once_to_each_endpoint(operator, receiver):
    """The second transaction's claim waits for the first's, then finds it taken."""
    from django.db import connection, transaction

    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()  # no endpoint yet: no claim
    request = PrivacyRequest.objects.get(public_id=created["id"])
    for path in ("/first", "/second"):
        WebhookEndpoint.objects.create(organisation=operator, url=receiver.url + path)
    first_claimed, errors = threading.Event(), []

    def announce(wait_for=None, hold=0.0):
        try:
            if wait_for:
                wait_for.wait(5)
            with transaction.atomic():
                webhooks.emit_created(PrivacyRequest.objects.get(pk=request.pk))
                first_claimed.set()
                time.sleep(hold)  # the other transaction claims meanwhile, and waits for this one
        except Exception as error:  # seen by the test, not lost in the thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=announce, kwargs={"hold": 0.5}), threading.Thread(target=announce, kwargs={"wait_for": first_claimed})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert sorted(WebhookDelivery.objects.filter(event="request.created").values_list("endpoint__url", flat=True)) == [
        receiver.url + "/first", receiver.url + "/second",
    ]
    assert receiver.events() == ["request.created", "request.created"]


def _wait_until_waiting_for_a_lock(backend_pid: int, timeout: float = 10.0) -> bool:
    """Whether the backend `backend_pid` came to wait for a lock within `timeout` seconds."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return True
        time.sleep(0.02)
    return False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_follow_up_announcing_a_request_while_it_is_being_changed_waits_for_the_change(operator):
    """The follow-up task's request.created against a change of the same request (a withdrawal, a staff transition, a
    due date moved): the change holds the request's lock and announces the request first. The task's claim row used
    to be written before it took that lock, and each transaction waited for the other: a deadlock."""
    from django.db import connection, transaction

    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    WebhookDelivery.objects.all().delete()
    SentNotification.objects.filter(request=request, kind="webhook").delete()  # the follow-up task has not run yet
    change_holds_the_lock, task_pid, outcome = threading.Event(), [], {}

    def change():  # as lifecycle or the deadline service: the request locked, then the event
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '10s'")  # never hangs the suite
                PrivacyRequest.objects.select_for_update().get(pk=request.pk)
                change_holds_the_lock.set()
                # The task is now as far as it goes before it must wait for this transaction.
                outcome["task waited"] = _wait_until_waiting_for_a_lock(task_pid[0]) if task_pid else False
                webhooks.emit(request, webhooks.WebhookEvent.REQUEST_DUE_DATE_CHANGED, {"previous_due_on": "2026-01-01"})
            outcome["change"] = "committed"
        except Exception as error:  # seen by the test, not lost in the thread
            outcome["change"] = repr(error)
        finally:
            connection.close()

    def follow_up():  # intake.request_follow_up's webhook step
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '10s'")
                cursor.execute("SELECT pg_backend_pid()")
                task_pid.append(cursor.fetchone()[0])
            change_holds_the_lock.wait(10)
            with transaction.atomic():
                webhooks.emit_created(PrivacyRequest.objects.get(pk=request.pk))
            outcome["task"] = "committed"
        except Exception as error:
            outcome["task"] = repr(error)
        finally:
            connection.close()

    task = threading.Thread(target=follow_up)
    task.start()
    while task.is_alive() and not task_pid:
        time.sleep(0.01)
    other = threading.Thread(target=change)
    other.start()
    for thread in (task, other):
        thread.join(30)
    assert outcome == {"task waited": True, "change": "committed", "task": "committed"}
    assert list(WebhookDelivery.objects.order_by("id").values_list("event", flat=True)) == [
        "request.created", "request.due_date_changed",
    ]


@pytest.mark.django_db
def test_each_delivery_names_its_request_for_the_next_events_moment(operator):
    """The moment of a request's latest event to an endpoint is read through an index on the request's id, not from
    the payloads of the endpoint's whole log: every delivery (a disabled endpoint's, a redelivery) names it."""
    from requests_app.services import intake

    switched_off = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/off", active=False)
    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    intake.request_withdraw(request=request, actor=Actor.system())
    changed = WebhookDelivery.objects.exclude(endpoint=switched_off).get(event="request.status_changed")
    WebhookDelivery.objects.filter(pk=changed.pk).update(status=DeliveryStatus.DELIVERED)  # as the portal had it
    webhooks.redeliver(delivery=changed)

    assert WebhookDelivery.objects.count() == 5
    assert set(WebhookDelivery.objects.values_list("request_public_id", flat=True)) == {request.public_id}
    moments = list(WebhookDelivery.objects.exclude(endpoint=switched_off).order_by("id").values_list("occurred_at", flat=True))
    assert moments[0] < moments[1] == moments[2]  # created, changed, and the change redelivered


@pytest.mark.django_db
def test_upgrading_names_the_request_of_each_delivery_already_logged(operator):
    import importlib

    from django.apps import apps

    from requests_app.services import intake

    migration = importlib.import_module("requests_app.migrations.0090_webhook_delivery_request")
    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    intake.request_follow_up(request_id=PrivacyRequest.objects.get(public_id=created["id"]).pk)  # request.created
    WebhookDelivery.objects.update(request_public_id=None)  # as logged before the upgrade

    migration.name_the_request(apps, None)
    assert [str(public_id) for public_id in WebhookDelivery.objects.values_list("request_public_id", flat=True)] == [created["id"]]


@pytest.mark.django_db
def test_upgrading_keeps_requests_announced_to_an_endpoint_from_being_announced_to_it_again(operator):
    """Claims made once per request, before the upgrade, become one per endpoint the event went to."""
    import importlib

    from django.apps import apps

    from requests_app.models import SentNotification
    from requests_app.services import intake

    migration = importlib.import_module("requests_app.migrations.0068_request_created_claimed_per_endpoint")
    told = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    created = client_with(key_for(operator)).post(URL, BODY, format="json").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    intake.request_follow_up(request_id=request.pk)  # request.created to the endpoint
    SentNotification.objects.filter(request=request, kind="webhook").update(key="request.created")  # as claimed then
    added = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks2")

    migration.claim_per_endpoint(apps, None)
    intake.request_withdraw(request=request, actor=Actor.system())

    sent = list(WebhookDelivery.objects.order_by("id").values_list("endpoint", "event"))
    assert sent == [
        (told.pk, "request.created"),
        (added.pk, "request.created"),
        (told.pk, "request.status_changed"),
        (added.pk, "request.status_changed"),
    ]
    assert not SentNotification.objects.filter(key="request.created").exists()
    migration.claim_per_request(apps, None)  # and back, should the upgrade be undone
    assert list(SentNotification.objects.filter(kind="webhook").values_list("request", "key")) == [(request.pk, "request.created")]


@pytest.mark.django_db(transaction=True)
def test_delivering_twice_sends_once(operator, receiver):
    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    client_with(key_for(operator)).post(URL, BODY, format="json")
    delivery = WebhookDelivery.objects.get()
    assert webhooks.deliver(delivery_id=delivery.id) is False
    assert len(receiver.received) == 1


@pytest.mark.django_db(transaction=True)
def test_plain_http_is_refused_in_production_mode(operator, receiver, settings):
    settings.WEBHOOK_ALLOW_HTTP = False
    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    client_with(key_for(operator)).post(URL, BODY, format="json")
    delivery = WebhookDelivery.objects.get()
    assert receiver.received == [] and delivery.last_error == "ValidationError"


@pytest.mark.django_db(transaction=True)
def test_the_dpo_sees_the_log_and_redelivers(client, operator, receiver):
    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    client_with(key_for(operator)).post(URL, BODY, format="json")
    delivery = WebhookDelivery.objects.get()
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = client.get(reverse("staff:webhooks")).content.decode()
    assert "request.created" in page and "Delivered" in page
    client.post(reverse("staff:webhook_redeliver", args=[delivery.public_id]))
    assert len(receiver.received) == 2
    assert WebhookDelivery.objects.filter(status="delivered").count() == 2
    # The same event: a receiver that skips repeats by Webhook-Id skips this one.
    (first_headers, first_body), (again_headers, again_body) = receiver.received
    assert again_headers["Webhook-Id"] == first_headers["Webhook-Id"] == str(delivery.event_id)
    assert json.loads(again_body)["id"] == json.loads(first_body)["id"] == str(delivery.event_id)
    assert json.loads(again_body)["created_at"] == json.loads(first_body)["created_at"]

    # While the event is still being sent, another redelivery would send it twice at once.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="pending")
    refused = client.post(reverse("staff:webhook_redeliver", args=[delivery.public_id]), follow=True)
    assert "still being delivered" in refused.content.decode()
    assert WebhookDelivery.objects.count() == 2 and len(receiver.received) == 2

    client.logout()
    login_staff(client, staff_in_role("Handler", username="h1"))
    assert client.get(reverse("staff:webhooks")).status_code == 403
    assert client.post(reverse("staff:webhook_redeliver", args=[delivery.public_id])).status_code == 403


@pytest.mark.django_db
def test_an_endpoint_without_https_is_refused_when_saved(operator, settings):
    """Refused when the DPO saves it, not after 24 hours of failed deliveries."""
    from django.core.exceptions import ValidationError

    settings.WEBHOOK_ALLOW_HTTP = False
    with pytest.raises(ValidationError) as refused:
        WebhookEndpoint(organisation=operator, url="http://portal.example.com/hooks").full_clean()
    assert refused.value.message_dict["url"] == ["Use an https:// address: events and notices are sent only over HTTPS."]
    WebhookEndpoint(organisation=operator, url="https://portal.example.com/hooks").full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("allow_http", [True, False])
def test_an_address_no_delivery_could_use_is_refused_when_saved_in_development_too(operator, settings, allow_http):
    from django.core.exceptions import ValidationError

    settings.WEBHOOK_ALLOW_HTTP = allow_http
    for url in ("ftp://portal.example.com/hooks", "portal.example.com/hooks", "javascript:alert(1)"):
        with pytest.raises(ValidationError):
            WebhookEndpoint(organisation=operator, url=url).full_clean()
    if allow_http:
        WebhookEndpoint(organisation=operator, url="http://127.0.0.1:8399/hooks").full_clean()


INTERNAL_URLS = [
    "http://127.0.0.1:18303/x",
    "https://169.254.169.254/latest/meta-data/",
    "http://localhost:6379/",
    "https://api.localhost./",
    "http://[::1]:8303/staff/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:a00:1]/",  # 10.0.0.1, IPv4-mapped
    "https://10.0.0.1/", "https://172.16.5.4/", "https://192.168.1.1/", "https://100.64.0.1/",
    "https://0.0.0.0/", "https://224.0.0.1/", "https://240.0.0.1/", "https://255.255.255.255/",
    "https://2130706433/", "https://0x7f.1/", "https://127.1/",  # 127.0.0.1, as the resolver also reads it
    "https://[::]/", "https://[fe80::1]/", "https://[fc00::1]/", "https://[fec0::1]/", "https://[ff02::1]/",
    "https://[2002:7f00:1::]/", "https://[2002:a00:1::]/",  # 6to4 of 127.0.0.1 and 10.0.0.1
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_an_internal_address_is_refused_when_saved(operator, settings, url):
    """An endpoint on the internal network would turn the delivery log into a port scanner."""
    from django.core.exceptions import ValidationError

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(ValidationError) as refused:
        WebhookEndpoint(organisation=operator, url=url).full_clean()
    assert "This address is internal" in " ".join(refused.value.message_dict["url"])


@pytest.mark.django_db
def test_public_addresses_and_names_are_accepted_when_saved(operator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    for url in ("https://portal.example.com/hooks", "https://93.184.216.34/hooks", "https://[2606:4700::1111]/hooks"):
        WebhookEndpoint(organisation=operator, url=url).full_clean()


@pytest.mark.django_db
def test_the_admin_refuses_an_internal_endpoint_with_a_field_error(client, operator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    response = client.post(
        reverse("admin:requests_app_webhookendpoint_add"), {"organisation": operator.pk, "url": "http://127.0.0.1:18303/x", "active": "on"}
    )
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()
    assert "This address is internal" in response.context["adminform"].form.errors["url"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["https://hooks:s3cret@portal.example.com/hooks", "https://ghp_S3cr3t@portal.example.com/hooks", "https://portal.example.com/hooks?token=abc"]
)
def test_a_password_or_token_in_an_endpoints_address_is_refused_when_saved(operator, url):
    """The address shows on /staff/webhooks/, in the disabled-endpoint email and in audit events, kept for good;
    deliveries are signed with the endpoint's own secret. Refused where internal addresses are allowed too."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        WebhookEndpoint(organisation=operator, url=url).full_clean()
    assert "Leave passwords and tokens out of the address" in " ".join(refused.value.message_dict["url"])


@pytest.mark.django_db
def test_the_admin_refuses_a_password_in_an_endpoints_address_with_a_field_error(client, operator):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    response = client.post(
        reverse("admin:requests_app_webhookendpoint_add"),
        {"organisation": operator.pk, "url": "https://hooks:s3cret@portal.example.com/hooks", "active": "on"},
    )
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()
    assert "Leave passwords and tokens out of the address" in response.context["adminform"].form.errors["url"][0]


@pytest.mark.django_db
def test_internal_addresses_are_accepted_when_allowed_for_development(operator, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    for url in ("http://127.0.0.1:8399/hooks", "http://localhost:8399/hooks", "http://[::1]:8399/hooks"):
        WebhookEndpoint(organisation=operator, url=url).full_clean()


@pytest.mark.django_db(transaction=True)
def test_a_name_resolving_to_an_internal_address_is_not_sent_to(client, operator, receiver, settings):
    """Saved before the check existed, or a name whose DNS changed: refused at each attempt, nothing sent."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    url = receiver.url.replace("127.0.0.1", "localhost")  # localhost resolves to 127.0.0.1
    WebhookEndpoint.objects.create(organisation=operator, url=url)
    client_with(key_for(operator)).post(URL, BODY, format="json")
    delivery = WebhookDelivery.objects.get()
    assert receiver.received == []
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.PENDING, webhooks.InternalAddressRefused.message)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    assert "Refused: the host resolves to an internal address" in client.get(reverse("staff:webhooks")).content.decode()

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhooks.deliver(delivery_id=delivery.id) is True
    (headers, _body), = receiver.received
    assert headers["Host"] == url.split("/")[2]  # the URL's host, though the connection went to its address


def resolving(monkeypatch, name, *answers):
    """Make `name` resolve to each of `answers` in turn (an address, or an error), other names as usual."""
    import socket

    real_getaddrinfo, answers = socket.getaddrinfo, list(answers)

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real_getaddrinfo(host, port, *args, **kwargs)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer.split()]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("answer", ["10.1.2.3", "::ffff:169.254.169.254", "93.184.216.34 192.168.0.7"])
def test_a_public_name_whose_dns_answers_an_internal_address_is_refused(monkeypatch, settings, answer):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    resolving(monkeypatch, "portal.example.com", answer)
    with pytest.raises(webhooks.InternalAddressRefused):
        webhooks.post_signed("https://portal.example.com/hooks", secrets=["s"], webhook_id="1", body=b"{}")


def test_the_name_is_resolved_once_and_the_request_goes_to_the_address_checked(monkeypatch, receiver):
    """No second lookup a rebinding DNS server could answer differently: here a second lookup would fail."""
    import socket

    port = receiver.server.server_port
    resolving(monkeypatch, "portal.test", "127.0.0.1", socket.gaierror("a second lookup"))
    status = webhooks.post_signed(f"http://portal.test:{port}/hooks", secrets=["s"], webhook_id="1", body=b"{}")
    assert status == 200
    (headers, _body), = receiver.received
    assert headers["Host"] == f"portal.test:{port}"


def test_an_address_that_cannot_be_reached_is_passed_over_for_the_next(monkeypatch, receiver):
    """Pinned to the first address, a name whose IPv6 answer this server cannot reach failed every attempt,
    where a client resolving it itself goes on to the IPv4 one."""
    port = receiver.server.server_port
    resolving(monkeypatch, "portal.test", "::1 127.0.0.1")  # nothing listens on [::1] there
    assert webhooks.post_signed(f"http://portal.test:{port}/hooks", secrets=["s"], webhook_id="1", body=b"{}") == 200
    assert len(receiver.received) == 1


@pytest.mark.django_db
def test_a_host_name_whose_resolver_never_answers_fails_the_attempt_at_the_deadline_and_is_retried(
    monkeypatch, operator, receiver, settings
):
    """getaddrinfo has no timeout: behind a slow or black-holed DNS server a delivery held the worker for as long as
    the resolver went on trying, past the attempt's deadline, up to the task's time limit.

    Only the resolver is stood in for here: glibc takes its nameservers only from
    /etc/resolv.conf, for the whole machine (no per-process setting could point it at a local socket that never
    answers), and this machine's resolver answers at once. The stand-in blocks in getaddrinfo, as a lookup waiting
    on a silent server does, until the test lets it answer (or, as glibc does after its retries, gives up after
    10 s: without the deadline this test fails instead of hanging); the endpoint is a real server."""
    import socket

    real_getaddrinfo, dns_answers = socket.getaddrinfo, threading.Event()

    def silent_until_answering(host, port, *args, **kwargs):
        if host == "portal.test":
            if not dns_answers.wait(timeout=10):
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent_until_answering)
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=f"http://portal.test:{receiver.server.server_port}/hooks")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event="request.created", payload={"request": "x"}, next_attempt_at=timezone.now()
    )
    try:
        started = time.monotonic()
        assert webhooks.deliver(delivery_id=delivery.id) is False
        assert 0.9 < time.monotonic() - started < 1.5  # the deadline, not the resolver, ended it
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
            "pending", 1, None, "Too slow: the host name did not resolve in time.",
        )
        assert timedelta(seconds=55) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=60)
        assert receiver.received == []

        dns_answers.set()  # the resolver is back: the retry goes through
        with time_machine.travel(timezone.now() + timedelta(seconds=61)):
            webhooks.dispatch_due()
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == ("delivered", 2, 200, "")
        assert len(receiver.received) == 1
    finally:
        dns_answers.set()  # lets the abandoned lookup's thread end


def _lookup_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "webhook-resolve")


@pytest.mark.django_db
def test_a_black_holed_dns_leaves_at_most_the_allowed_lookups_in_flight_and_every_delivery_is_retried(
    monkeypatch, operator, receiver, settings
):
    """Each attempt gave up on its lookup at the deadline but left its thread waiting on the resolver: while DNS was
    black-holed, a worker sending a delivery every few seconds gathered one more thread for each. Now the lookups in
    flight are bounded; past the bound, an attempt fails at once, and every delivery is sent once DNS is back.
    (The resolver is stood in for, as in the test above: glibc cannot be pointed at a silent socket per process.)"""
    import socket

    real_getaddrinfo, dns_answers = socket.getaddrinfo, threading.Event()

    def black_holed(host, port, *args, **kwargs):
        if host == "portal.test":
            if not dns_answers.wait(timeout=30):
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", black_holed)
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_MAX_PENDING_LOOKUPS = 2
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=f"http://portal.test:{receiver.server.server_port}/hooks")
    deliveries = [
        WebhookDelivery.objects.create(endpoint=endpoint, event="request.created", payload={"request": str(n)}, next_attempt_at=timezone.now())
        for n in range(5)
    ]
    threads_before = _lookup_threads()
    try:
        durations = []
        for delivery in deliveries:
            started = time.monotonic()
            assert webhooks.deliver(delivery_id=delivery.id) is False
            durations.append(time.monotonic() - started)
            assert _lookup_threads() - threads_before <= 2
        # The first two waited for their lookups until the deadline; the other three found both still in flight.
        assert all(0.9 < duration < 1.5 for duration in durations[:2]), durations
        assert all(duration < 0.2 for duration in durations[2:]), durations
        for delivery in deliveries:
            delivery.refresh_from_db()
            assert (delivery.status, delivery.attempts, delivery.last_error) == (
                "pending", 1, "Too slow: the host name did not resolve in time.",
            )
            assert delivery.next_attempt_at > timezone.now()
        assert receiver.received == []

        dns_answers.set()  # DNS is back: the lookups left waiting end, and give their places back
        deadline = time.monotonic() + 5
        while _lookup_threads() > threads_before and time.monotonic() < deadline:
            time.sleep(0.05)
        with time_machine.travel(timezone.now() + timedelta(seconds=61)):
            webhooks.dispatch_due()
        assert {WebhookDelivery.objects.get(pk=d.pk).status for d in deliveries} == {"delivered"}
        assert len(receiver.received) == 5
    finally:
        dns_answers.set()


def test_a_lookup_whose_thread_cannot_start_gives_its_place_back(monkeypatch, settings):
    """Kept, the place would be lost for good: after WEBHOOK_MAX_PENDING_LOOKUPS such failures, no webhook
    would be sent again by this process."""
    import socket

    import requests

    settings.WEBHOOK_MAX_PENDING_LOOKUPS = 1
    real_start = threading.Thread.start

    def no_thread_for_lookups(thread):
        if thread.name == "webhook-resolve":  # the attempt's deadline timer is a thread too, and starts
            raise RuntimeError("can't start new thread")
        real_start(thread)

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", no_thread_for_lookups)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            webhooks.post_signed("http://portal.test/hooks", secrets=["s"], webhook_id="1", body=b"{}")
    # The one place is free: the next lookup runs, and its answer (an unknown name) is the attempt's failure.
    resolving(monkeypatch, "portal.test", socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(requests.ConnectionError, match="cannot resolve the host"):
        webhooks.post_signed("http://portal.test/hooks", secrets=["s"], webhook_id="1", body=b"{}")


def test_a_name_the_resolver_does_not_know_is_a_connection_error_not_too_slow(monkeypatch):
    """The lookup runs in a thread of its own: its failure is still the attempt's, told apart from its silence."""
    import socket

    import requests

    resolving(monkeypatch, "portal.test", socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(requests.ConnectionError, match="cannot resolve the host"):
        webhooks.post_signed("http://portal.test/hooks", secrets=["s"], webhook_id="1", body=b"{}")


def test_over_https_the_certificate_is_checked_against_the_host_name(monkeypatch):
    """Connected to the address, TLS still sends the name (SNI) and verifies the certificate for it."""
    import pathlib
    import ssl

    import requests

    certificate = str(pathlib.Path(__file__).parent / "data" / "localhost-tls.pem")  # self-signed, for "localhost"
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", certificate)
    receiver = Receiver()
    names_sent = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate)
    context.sni_callback = lambda _socket, name, _context: names_sent.append(name)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.server.server_port
    try:
        assert webhooks.post_signed(f"https://localhost:{port}/hooks", secrets=["s"], webhook_id="1", body=b"{}") == 200
        assert names_sent == ["localhost"] and receiver.received[0][0]["Host"] == f"localhost:{port}"
        with pytest.raises(requests.exceptions.SSLError):  # the certificate is not for 127.0.0.1
            webhooks.post_signed(f"https://127.0.0.1:{port}/hooks", secrets=["s"], webhook_id="1", body=b"{}")
    finally:
        receiver.server.shutdown()


@pytest.mark.django_db
def test_switching_a_disabled_endpoint_on_again_clears_its_disabled_time(client, operator):
    endpoint = WebhookEndpoint.objects.create(
        organisation=operator, url="https://portal.example.com/hooks", active=False, disabled_at=timezone.now()
    )
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    change = reverse("admin:requests_app_webhookendpoint_change", args=[endpoint.pk])
    response = client.post(change, {"organisation": operator.pk, "url": endpoint.url, "active": "on"})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.disabled_at is None


# --- Rolling a secret --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_after_a_roll_both_secrets_sign_until_the_overlap_ends(client, operator, receiver):
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    old = endpoint.secret
    api = client_with(key_for(operator))
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    new = shown_secret(roll_in_the_admin(client, endpoint))
    endpoint.refresh_from_db()
    assert new == endpoint.secret != old
    assert timedelta(hours=23, minutes=59) < endpoint.previous_secret_expires_at - timezone.now() <= timedelta(hours=24)

    created = api.post(URL, BODY, format="json").json()
    headers, body = receiver.received[-1]
    signature = headers["Webhook-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", signature)
    assert verify_signature(new, signature, body) and verify_signature(old, signature, body)
    assert not verify_signature("whsec_wrong", signature, body)
    # A receiver built from the earlier README, not yet told of the roll, goes on working.
    assert verify_as_the_first_readme_did(old, signature, body)
    verify = readme_verify()
    assert verify([old], signature, body) and verify([new], signature, body) and verify([old, new], signature, body)
    assert not verify(["whsec_wrong"], signature, body)

    with time_machine.travel(endpoint.previous_secret_expires_at + timedelta(seconds=1)):
        api.post(f"{URL}{created['id']}/withdraw/")
        headers, body = receiver.received[-1]
        signature = headers["Webhook-Signature"]
        assert signature.count("v1=") == 1
        assert verify_signature(new, signature, body) and not verify_signature(old, signature, body)
        assert verify_as_the_first_readme_did(new, signature, body)
        assert verify([new], signature, body) and not verify([old], signature, body)
        tasks.dispatch_due_webhooks()  # the periodic job forgets the old secret
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at) == (new, "", None)
    assert receiver.events() == ["request.created", "request.status_changed"]


@pytest.mark.django_db(transaction=True)
def test_each_retry_is_signed_with_the_secrets_valid_when_it_is_sent(operator):
    receiver = Receiver(statuses=[500, 500])
    try:
        endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        old = endpoint.secret
        client_with(key_for(operator)).post(URL, BODY, format="json")  # first attempt: 500
        dpo = Actor.staff(staff_in_role("DPO", username="dpo1"))
        new = webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
        with time_machine.travel(timezone.now() + timedelta(seconds=61)):
            webhooks.dispatch_due()  # second attempt, during the overlap: 500
            webhooks.expire_previous_secret(endpoint=endpoint, actor=dpo)
        with time_machine.travel(timezone.now() + timedelta(minutes=4)):
            webhooks.dispatch_due()  # third attempt, after the early expiry: delivered
            signed_with = [
                [secret for secret in (old, new) if verify_signature(secret, headers["Webhook-Signature"], body)]
                for headers, body in receiver.received
            ]
        assert signed_with == [[old], [old, new], [new]]
        assert len({headers["Webhook-Id"] for headers, _ in receiver.received}) == 1
        assert WebhookDelivery.objects.get().status == "delivered"
    finally:
        receiver.server.shutdown()


@pytest.mark.django_db
def test_the_overlap_follows_the_setting(operator, settings):
    dpo = Actor.staff(staff_in_role("DPO", username="dpo1"))
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    settings.WEBHOOK_SECRET_OVERLAP = timedelta(hours=2)
    webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
    endpoint.refresh_from_db()
    assert timedelta(minutes=119) < endpoint.previous_secret_expires_at - timezone.now() <= timedelta(hours=2)

    settings.WEBHOOK_SECRET_OVERLAP = timedelta(0)  # no overlap: the old secret stops at once
    new = webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
    endpoint.refresh_from_db()
    assert endpoint.signing_secrets() == [new] and endpoint.previous_secret == ""


@pytest.mark.django_db
def test_rolling_again_during_an_overlap_makes_the_current_secret_the_old_one(operator):
    dpo = Actor.staff(staff_in_role("DPO", username="dpo1"))
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    first = endpoint.secret
    second = webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
    endpoint.refresh_from_db()
    first_overlap_end = endpoint.previous_secret_expires_at
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        third = webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
        endpoint.refresh_from_db()
        # At most two sign: the newest, and the one it replaced, for a whole new overlap.
        assert endpoint.signing_secrets() == [third, second] and first not in (third, second)
        assert endpoint.previous_secret_expires_at - first_overlap_end > timedelta(hours=2, minutes=59)
    plain, cut_short = AuditEvent.objects.filter(action="webhook_secret_rolled").order_by("sequence")
    assert plain.data["older_secret_stopped_instead_of"] is None
    assert cut_short.data["older_secret_stopped_instead_of"] == first_overlap_end.isoformat()


@pytest.mark.django_db
def test_a_roll_form_sent_twice_rolls_once(client, operator):
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    url = reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk])
    seen = re.search(r'name="secret_seen_at" value="([^"]+)"', client.get(url).content.decode()).group(1)
    secret = shown_secret(client.post(url, {"secret_seen_at": seen}))
    again = client.post(url, {"secret_seen_at": seen}, follow=True)  # a reload, a second click
    assert "rolled since you loaded the page" in again.content.decode()
    assert client.post(url, {"secret_seen_at": "not a date"}, follow=True).status_code == 200
    endpoint.refresh_from_db()
    assert endpoint.secret == secret
    assert AuditEvent.objects.filter(action="webhook_secret_rolled").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_dpo_expires_the_old_secret_early(client, operator, receiver):
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    old = endpoint.secret
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    new = shown_secret(roll_in_the_admin(client, endpoint))
    change_page = client.get(reverse("admin:requests_app_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    expire_url = reverse("admin:requests_app_webhookendpoint_expire_old_secret", args=[endpoint.pk])
    assert "The old secret signs too until" in change_page and expire_url in change_page
    assert "Expire the old secret now" in client.get(expire_url).content.decode()

    done = client.post(expire_url, follow=True).content.decode()
    assert "The old secret no longer signs" in done
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)
    assert expire_url not in done  # nothing left to expire

    client_with(key_for(operator)).post(URL, BODY, format="json")
    headers, body = receiver.received[-1]
    assert headers["Webhook-Signature"].count("v1=") == 1
    assert verify_signature(new, headers["Webhook-Signature"], body)
    assert not verify_signature(old, headers["Webhook-Signature"], body)

    assert "nothing to expire" in client.post(expire_url, follow=True).content.decode()
    assert client.get(expire_url).status_code == 302  # no confirmation page for nothing
    assert AuditEvent.objects.filter(action="webhook_old_secret_expired").count() == 1


@pytest.mark.django_db
def test_a_secret_is_shown_once_when_it_is_issued(client, operator):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    add_url = reverse("admin:requests_app_webhookendpoint_add")
    assert not SECRET.search(client.get(add_url).content.decode())  # none before it exists
    added = client.post(add_url, endpoint_form(client, operator))
    endpoint = WebhookEndpoint.objects.get()
    # The POST leads to the endpoint's page (Post/Redirect/Get), which shows the secret that signs, once: it waited
    # for it in the database session, never in the address or a cookie.
    issued_url = reverse("admin:requests_app_webhookendpoint_issued", args=[endpoint.pk])
    assert added.status_code == 302 and added["Location"] == issued_url and not SECRET.search(added.content.decode())
    shown = client.get(issued_url)
    assert shown.status_code == 200 and shown_secret(shown) == endpoint.secret
    assert "no-store" in shown["Cache-Control"]
    assert endpoint.secret not in str(dict(client.session)) and endpoint.secret not in str(client.cookies)
    for later in (client.get(issued_url), client.get(issued_url)):  # a reload; the page opened again later
        page = later.content.decode()
        assert later.status_code == 200 and "no-store" in later["Cache-Control"] and not SECRET.search(page)
        assert "was shown once, when it was issued, and cannot be shown again" in page
        assert reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk]) in page
    assert WebhookEndpoint.objects.count() == 1 and WebhookEndpoint.objects.get().secret == endpoint.secret

    rolled = roll_in_the_admin(client, endpoint)
    endpoint.refresh_from_db()
    assert rolled.status_code == 200 and shown_secret(rolled) == endpoint.secret
    assert endpoint.secret not in str(dict(client.session)) and endpoint.secret not in str(client.cookies)

    pages = [
        reverse("admin:requests_app_webhookendpoint_change", args=[endpoint.pk]),
        reverse("admin:requests_app_webhookendpoint_changelist"),
        reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk]),
        reverse("admin:requests_app_webhookendpoint_expire_old_secret", args=[endpoint.pk]),
        reverse("staff:webhooks"),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200 and not SECRET.search(response.content.decode()), page
    # Saving the endpoint's other fields leaves its secrets alone (they are not in the form).
    client.post(pages[0], {"organisation": operator.pk, "url": "https://portal.example.com/hooks2", "active": "on"})
    assert WebhookEndpoint.objects.get().secret == endpoint.secret


@pytest.mark.django_db
def test_the_add_form_sent_twice_adds_one_endpoint_and_leads_to_its_secret(client, operator):
    """A double click: the same form (its submission key) sent again adds nothing and shows the first secret."""
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    form = endpoint_form(client, operator)
    add_url = reverse("admin:requests_app_webhookendpoint_add")

    first, second = client.post(add_url, form), client.post(add_url, form)

    assert first.status_code == second.status_code == 302 and first["Location"] == second["Location"]
    endpoint = WebhookEndpoint.objects.get()
    assert AuditEvent.objects.filter(action="webhookendpoint_saved").count() == 1
    assert shown_secret(client.get(second["Location"])) == endpoint.secret
    assert client.post(add_url, endpoint_form(client, operator)).status_code == 302  # a new blank form: a new endpoint
    assert WebhookEndpoint.objects.count() == 2


@pytest.mark.parametrize("role", ["DPO", "Auditor", "Handler"])
@pytest.mark.django_db
def test_only_the_dpo_who_added_an_endpoint_sees_its_secret(client, operator, role):
    from django.test import Client

    login_staff(client, staff_in_role("DPO", username="dpo1"))
    issued_url = client.post(reverse("admin:requests_app_webhookendpoint_add"), endpoint_form(client, operator))["Location"]

    other = login_staff(Client(), staff_in_role(role, username=f"other-{role.lower()}"))
    answer = other.get(issued_url)
    if role == "DPO":  # the secret waits in the session of the DPO who added the endpoint, not in another's
        assert answer.status_code == 200 and b"secret-shown-already" in answer.content
    else:
        assert answer.status_code == 403
    assert shown_secret(client.get(issued_url)) == WebhookEndpoint.objects.get().secret  # still there for its DPO


def test_an_admin_save_does_not_undo_a_roll_committed_after_its_page_loaded_the_endpoint(operator, rf):
    from django.contrib import admin

    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    dpo = staff_in_role("DPO")
    model_admin = admin.site._registry[WebhookEndpoint]
    request = rf.post("/")
    request.user = dpo
    # The admin has loaded the endpoint for a save; the DPO rolls its secret in another tab meanwhile.
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    new_secret = webhooks.roll_secret(endpoint=endpoint, actor=Actor.staff(dpo), secret_seen_at=endpoint.secret_created_at)
    form = model_admin.get_form(request, stale)(
        {"organisation": operator.pk, "url": "https://portal.example.com/hooks2", "active": "on"}, instance=stale
    )
    assert form.is_valid(), form.errors
    model_admin.save_model(request, form.save(commit=False), form, change=True)

    endpoint.refresh_from_db()
    assert endpoint.url == "https://portal.example.com/hooks2"
    assert endpoint.secret == new_secret and endpoint.previous_secret == stale.secret
    assert AuditEvent.objects.filter(action="webhookendpoint_saved").count() == 1


@pytest.mark.parametrize("role", ["Handler", "Auditor"])
@pytest.mark.django_db
def test_only_the_dpo_rolls_or_expires_a_secret(client, operator, role):
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    webhooks.roll_secret(
        endpoint=endpoint, actor=Actor.staff(staff_in_role("DPO", username="dpo1")), secret_seen_at=endpoint.secret_created_at
    )
    endpoint.refresh_from_db()
    before = (endpoint.secret, endpoint.previous_secret)
    roll = reverse("admin:requests_app_webhookendpoint_roll_secret", args=[endpoint.pk])
    expire = reverse("admin:requests_app_webhookendpoint_expire_old_secret", args=[endpoint.pk])
    assert client.post(roll, {"secret_seen_at": endpoint.secret_created_at.isoformat()}).status_code == 302  # to sign in

    login_staff(client, staff_in_role(role, username=f"{role.lower()}1"))
    assert client.get(roll).status_code == 403
    assert client.post(roll, {"secret_seen_at": endpoint.secret_created_at.isoformat()}).status_code == 403
    assert client.get(expire).status_code == 403
    assert client.post(expire).status_code == 403
    # Nor through the service, whatever calls it.
    from requests_app.lifecycle import NotAllowed

    someone = Actor.staff(staff_in_role(role, username=f"{role.lower()}2"))
    for actor in (someone, Actor.system()):
        with pytest.raises(NotAllowed):
            webhooks.roll_secret(endpoint=endpoint, actor=actor, secret_seen_at=endpoint.secret_created_at)
        with pytest.raises(NotAllowed):
            webhooks.expire_previous_secret(endpoint=endpoint, actor=actor)
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == before
    assert AuditEvent.objects.filter(action__startswith="webhook_").count() == 1  # the DPO's roll only
    if role == "Auditor":  # reads the configuration: when the secret was rolled, never the secret
        page = client.get(reverse("staff:webhooks")).content.decode()
        assert "the old one also signs until" in page and not SECRET.search(page)


@pytest.mark.django_db
def test_rolls_and_early_expiries_are_audited_without_the_secrets(client, operator, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    old = endpoint.secret
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    new = shown_secret(roll_in_the_admin(client, endpoint))
    client.post(reverse("admin:requests_app_webhookendpoint_expire_old_secret", args=[endpoint.pk]))

    rolled, expired = AuditEvent.objects.filter(action__startswith="webhook_").order_by("sequence")
    assert (rolled.action, rolled.actor_label, expired.action, expired.actor_label) == (
        "webhook_secret_rolled", "dpo1", "webhook_old_secret_expired", "dpo1",
    )
    assert rolled.data["endpoint"] == expired.data["endpoint"] == str(endpoint.public_id)
    assert rolled.data["name"] == "https://portal.example.com/hooks"
    assert rolled.data["old_secret_signs_until"] == expired.data["was_to_sign_until"]
    trail = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert old not in trail and new not in trail and "whsec_" not in trail
    assert "secret rolled" in caplog.text and old not in caplog.text and new not in caplog.text


@pytest.mark.django_db
def test_the_job_forgets_old_secrets_once_their_overlap_is_over(operator):
    dpo = Actor.staff(staff_in_role("DPO", username="dpo1"))
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    webhooks.roll_secret(endpoint=endpoint, actor=dpo, secret_seen_at=endpoint.secret_created_at)
    tasks.dispatch_due_webhooks()
    endpoint.refresh_from_db()
    assert endpoint.previous_secret  # still signing
    with time_machine.travel(endpoint.previous_secret_expires_at):
        assert endpoint.signing_secrets() == [endpoint.secret]  # over, whether or not the job has run
        tasks.dispatch_due_webhooks()
        tasks.dispatch_due_webhooks()  # twice = once
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)


# --- Times in the body -------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "offset"), [("2026-01-15T09:30:00", "+01:00"), ("2026-07-15T09:30:00", "+02:00")])
@pytest.mark.django_db(transaction=True)
def test_times_in_the_body_are_written_as_the_api_writes_them(operator, receiver, moment, offset):
    """One format for a portal: ISO 8601 in Brussels time, with its offset (summer time included). The
    signature's `t` stays Unix seconds."""
    WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
    api = client_with(key_for(operator))
    # On a whole second: DRF's own field then left the microseconds out, which the API's and this body's never do.
    with time_machine.travel(datetime.fromisoformat(moment).replace(tzinfo=UTC), tick=False):
        created = api.post(URL, BODY, format="json").json()
        (headers, body), = receiver.received
        sent_at = time.time()
    event = json.loads(body)
    delivery = WebhookDelivery.objects.get()
    assert event["created_at"].endswith(".000000" + offset) and created["created_at"].endswith(".000000" + offset)
    assert datetime.fromisoformat(event["created_at"]) == delivery.occurred_at
    # The very representation the API's serializers give a moment.
    assert event["created_at"] == MomentField().to_representation(delivery.occurred_at) == created["updated_at"]
    timestamp = int(dict(item.split("=", 1) for item in headers["Webhook-Signature"].split(","))["t"])
    assert abs(timestamp - sent_at) < 5


# --- Retention of the delivery log --------------------------------------------------------


def queued(endpoint, status, age, **fields) -> WebhookDelivery:
    """A delivery to `endpoint` in `status`, queued `age` ago."""
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="request.status_changed", payload={}, status=status, **fields)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - age)
    return delivery


@pytest.mark.django_db
def test_the_nightly_purge_deletes_deliveries_done_before_the_retention_and_keeps_the_rest(operator, settings):
    """The log kept every delivery for good."""
    settings.WEBHOOK_DELIVERY_RETENTION = timedelta(days=90)
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    old, recent = timedelta(days=90, minutes=1), timedelta(days=89, hours=23)
    queued(endpoint, "delivered", old)
    queued(endpoint, "failed", old)
    kept = {
        queued(endpoint, "delivered", recent).pk,
        queued(endpoint, "failed", recent).pk,
        # Still being sent, however old: its row is what sends it, and the redelivery guard reads it.
        queued(endpoint, "pending", old, next_attempt_at=timezone.now()).pk,
    }

    assert tasks.purge_webhook_deliveries() == 2
    assert tasks.purge_webhook_deliveries() == 0  # twice = once
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == kept
    assert "purge-webhook-deliveries" in settings.CELERY_BEAT_SCHEDULE


@pytest.mark.django_db
def test_a_backlog_is_purged_a_batch_at_a_time_to_the_end(operator, settings):
    settings.WEBHOOK_DELIVERY_RETENTION = timedelta(days=90)
    endpoint = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    for days in range(91, 96):
        queued(endpoint, "delivered", timedelta(days=days))
    recent = queued(endpoint, "delivered", timedelta(days=1))

    assert webhooks.purge_deliveries(batch_size=2) == 5
    assert list(WebhookDelivery.objects.all()) == [recent]


@pytest.mark.django_db
def test_the_purge_keeps_what_disabling_an_endpoint_reads(operator, settings):
    """A delivery fails for good after the retry window, and switches its endpoint off only if the endpoint took
    no event since it was queued. An event it took then may have been queued a window (and its last backoff)
    earlier still: with the log kept as briefly as the settings allow (test_settings), it is kept."""
    settings.WEBHOOK_DELIVERY_RETENTION = timedelta(days=3)  # the least WEBHOOK_DELIVERY_LOG_DAYS allows with a day's window
    window, last_backoff = settings.WEBHOOK_RETRY_WINDOW, webhooks.MAX_BACKOFF
    receiver = Receiver(statuses=[500])
    try:
        endpoint = WebhookEndpoint.objects.create(organisation=operator, url=receiver.url)
        failing = queued(endpoint, "pending", window + last_backoff, next_attempt_at=timezone.now())
        # Taken at its last try, just after the failing one was queued.
        taken = queued(endpoint, "delivered", 2 * (window + last_backoff), delivered_at=timezone.now() - window - last_backoff)

        tasks.purge_webhook_deliveries()
        webhooks.deliver(delivery_id=failing.id)

        failing.refresh_from_db()
        endpoint.refresh_from_db()
        assert failing.status == "failed" and endpoint.active
        assert WebhookDelivery.objects.filter(pk=taken.pk).exists()
    finally:
        receiver.server.shutdown()
