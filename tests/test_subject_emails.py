"""Who the emails to a subject say is writing."""

import pytest
from django.core import mail

from requests_app import emails
from requests_app.models import Message, MessageDirection
from tests.factories import submit_request

pytestmark = pytest.mark.django_db

def _html(message) -> str:
    [(html, _mimetype)] = message.alternatives
    return html


def _signature_lines(settings):
    return [
        f"Data controller: {settings.CONTROLLER_NAME}, {settings.CONTROLLER_ADDRESS}.",
        f"Data protection officer: {settings.DPO_CONTACT_EMAIL}",
    ]


@pytest.fixture
def controller(settings):
    settings.CONTROLLER_NAME = "Example Carrier SA"
    settings.CONTROLLER_ADDRESS = "Rue de l'Exemple 1, 1000 Brussels"
    settings.DPO_CONTACT_EMAIL = "dpo@carrier.example"
    return settings


def _letter(request):
    message = Message.objects.create(request=request, direction=MessageDirection.TO_SUBJECT, body="We cannot grant your request.")
    emails.send_subject_message(message)


@pytest.mark.parametrize(
    "send",
    [emails.send_verification_email, emails.send_request_confirmed_email, lambda request: emails.send_status_link_email(request, 1), _letter],
)
def test_an_email_to_the_subject_ends_with_who_the_controller_is_and_its_dpo(controller, send):
    request = submit_request()
    send(request)
    [message] = mail.outbox
    assert message.body.rstrip().endswith("\n".join(_signature_lines(controller)))
    html = _html(message)
    assert "Data controller: Example Carrier SA, Rue de l&#x27;Exemple 1, 1000 Brussels." in html
    assert "Data protection officer: dpo@carrier.example</p>\n</body></html>" in html


def test_the_signature_is_in_the_subjects_language(controller):
    request = submit_request(language="fr")
    emails.send_request_confirmed_email(request)
    [message] = mail.outbox
    assert "Responsable du traitement\u00a0: Example Carrier SA, Rue de l'Exemple 1, 1000 Brussels." in message.body


def test_a_staff_email_carries_no_signature(controller):
    request = submit_request()
    emails.send_reply_notification(request, 1)
    [message] = mail.outbox
    assert "Data controller" not in message.body
