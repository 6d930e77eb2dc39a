"""The other organisation a portability request may name, to send the data to directly (GDPR Art. 20(2)): asked on
the public form and at staff intake, validated, stored on the right, shown back to the subject and to staff, purged."""

import pytest
from django.urls import reverse

from requests_app.forms import StaffIntakeForm
from requests_app.models import PrivacyRequest, RequestType, Status
from requests_app.services.intake import RightDetails, purge_personal_data
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role
from tests.test_public_form import VALID, post_form

pytestmark = pytest.mark.django_db

NAMED = {
    "rights": ["portability"], "rectification_data": "", "rectification_value": "",
    "recipient_name": "Nova Telecom", "recipient_email": "dpo@nova.example",
}


def test_a_portability_request_stores_the_organisation_to_send_the_data_to(client):
    response = post_form(client, **NAMED)

    assert response.status_code == 302
    right = PrivacyRequest.objects.get().rights.get()
    assert (right.right, right.recipient_name, right.recipient_email) == ("portability", "Nova Telecom", "dpo@nova.example")


def test_a_portability_request_may_name_no_organisation(client):
    assert post_form(client, **{**NAMED, "recipient_name": "", "recipient_email": ""}).status_code == 302
    right = PrivacyRequest.objects.get().rights.get()
    assert (right.recipient_name, right.recipient_email) == ("", "")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"recipient_email": ""}, "recipient_email", "Give the email address of the organisation you want your data sent to."),
        ({"recipient_name": ""}, "recipient_name", "Give the name of the organisation you want your data sent to."),
        ({"recipient_email": "dpo@nova"}, "recipient_email", "Enter a valid email address."),
        (
            {"recipient_email": "Ana@Example.com"}, "recipient_email",
            "This is your own email address: you get your own copy on the status page. Give the other organisation's "
            "address, or leave both fields empty.",
        ),
        (
            {"rights": ["access"]}, "recipient_name",
            "You filled this in without ticking “Receive my data in a machine-readable format”: tick it above, or empty this field.",
        ),
    ],
)
def test_the_organisation_is_refused_unless_named_with_an_address_of_its_own(client, changes, field, message):
    response = post_form(client, **{**NAMED, **changes})

    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert PrivacyRequest.objects.count() == 0


def test_the_status_page_and_the_staff_page_show_the_organisation(client):
    request = request_in_status(
        Status.IN_PROGRESS,
        rights=[RightDetails(RequestType.PORTABILITY, recipient_name="Nova <b>Telecom</b>", recipient_email="dpo@nova.example")],
    )
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    told = page[page.index("Send the data directly to this organisation (optional)"):]
    assert "Nova &lt;b&gt;Telecom&lt;/b&gt;" in told and "dpo@nova.example" in told

    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Send the data to: <bdi>Nova &lt;b&gt;Telecom&lt;/b&gt;</bdi> (<bdi>dpo@nova.example</bdi>)" in page


def test_staff_intake_records_the_organisation_as_the_subject_gave_it():
    data = {**VALID, **NAMED, "subject_email": "", "channel": "post", "received_at": "2026-11-30T10:00", "language": "en"}
    form = StaffIntakeForm(data)
    assert form.is_valid(), form.errors
    assert form.submit_kwargs()["rights"] == [
        RightDetails(RequestType.PORTABILITY, recipient_name="Nova Telecom", recipient_email="dpo@nova.example")
    ]
    assert form["recipient_email"].label == "That organisation's email address, as the subject gave it"

    form = StaffIntakeForm({**data, "recipient_name": ""})
    assert form.errors["recipient_name"] == ["Give the name of the organisation the subject wants the data sent to."]


def test_the_purge_blanks_the_organisation():
    request = request_in_status(
        Status.COMPLETED,
        rights=[RightDetails(RequestType.PORTABILITY, recipient_name="Nova Telecom", recipient_email="dpo@nova.example")],
    )
    purge_personal_data(request)
    right = request.rights.get()
    assert (right.recipient_name, right.recipient_email) == ("", "")
