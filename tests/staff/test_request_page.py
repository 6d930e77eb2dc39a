"""The staff page of one request: what it points out to whoever checks it."""

import html

import pytest
from django.urls import reverse

from requests_app.audit import Actor
from requests_app.models import Channel, Organisation
from tests.conftest import login_staff
from tests.factories import staff_in_role, submit_request


@pytest.mark.parametrize(
    ("signature", "pointed_out"),
    [("Ana Peeters", False), ("  ana   PEETERS. ", False), ("Anà Peéters", False), ("A. Peeters", True), ("Bob Smith", True)],
)
@pytest.mark.django_db
def test_the_request_page_points_out_a_signature_that_is_not_the_name(client, signature, pointed_out):
    """The subject confirms they are the person concerned: another name in the signature is worth a look."""
    request = submit_request(subject_name="Ana Peeters", signature=signature)
    login_staff(client, staff_in_role("DPO", username="dpo-signature"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert ("The signature is not the name given" in page) == pointed_out


@pytest.mark.django_db
def test_the_request_page_says_which_organisation_asserted_an_identifier_still_to_verify(client):
    """An identifier an organisation filed over the API is not verified, but staff see where it came from."""
    operator = Organisation.objects.create(name="Mobile Operator SA")
    request = submit_request(
        subject_phone="+32475123456", organisation=operator, channel=Channel.API,
        actor=Actor.organisation(operator), identities_asserted=True,
    )
    login_staff(client, staff_in_role("DPO", username="dpo-asserted"))
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert "asserted by Mobile Operator SA, not verified" in phone_row

    from_the_subject = submit_request(subject_phone="+32475123456")
    page = client.get(reverse("staff:request", args=[from_the_subject.reference])).content.decode()
    phone_row = next(row for row in page.split("<tr>") if "+32475123456" in row)
    assert "not verified" in phone_row and "asserted by" not in phone_row
