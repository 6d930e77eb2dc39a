"""The staff page of one request: what it points out to whoever checks it."""

import pytest
from django.urls import reverse

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
