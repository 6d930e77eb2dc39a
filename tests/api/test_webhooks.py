"""Webhooks against a real HTTP server on 127.0.0.1, signatures checked by an independent implementation."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from requests_app.services import webhooks
from tests.api.conftest import client_with, key_for
from tests.conftest import login_staff
from tests.factories import staff_in_role

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
    """How a portal checks a delivery, written from the README, not from the app's code."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    signed = f"{parts['t']}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(timezone.now().timestamp() - int(parts["t"])) < tolerance
    return fresh and hmac.compare_digest(expected, parts["v1"])


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
    request = PrivacyRequest.objects.get(public_id=created["id"])
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
        # A disabled endpoint gets no new events.
        client_with(key_for(operator)).post(URL, BODY, format="json")
        assert WebhookDelivery.objects.count() == 1
    finally:
        receiver.server.shutdown()


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
