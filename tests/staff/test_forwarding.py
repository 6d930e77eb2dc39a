"""Closing a request as forwarded to the controller, from the request page; and how the dashboard shows it."""

import html

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import state_version
from requests_app.models import PrivacyRequest, Status
from requests_app.services import handling
from tests.conftest import login_staff, post_confirmed
from tests.factories import request_in_status, staff_in_role

CONTROLLER = "Mobile Operator SA"
CONTACT = "privacy@mobile-operator.example"


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo-forward-page")


def forward_from_the_page(client, request, **changes):
    data = {
        "controller": CONTROLLER, "contact": CONTACT, "forwarded_on": timezone.localdate().isoformat(),
        "expected_status": request.status, "expected_version": state_version(request), **changes,
    }
    return post_confirmed(client, reverse("staff:request_action", args=[request.reference, "forward"]), data)


@pytest.mark.django_db
def test_the_request_page_offers_forwarding_today_and_closes_the_request_with_it(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    url = reverse("staff:request_action_preview", args=[request.reference, "forward"])
    form = page[page.index(f'action="{url}"'):]
    form = form[: form.index("</form>")]
    assert 'name="controller"' in form and 'name="contact"' in form
    assert f'name="forwarded_on" value="{timezone.localdate().isoformat()}"' in form  # today, unless changed

    response = forward_from_the_page(client, request)

    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.forwarded_to, request.forwarded_to_contact) == (Status.FORWARDED, CONTROLLER, CONTACT)
    page = html.unescape(client.get(reverse("staff:request", args=[request.reference])).content.decode())
    assert '<span class="status">Forwarded to the controller</span>' in page
    assert "<dt>Forwarded to</dt>" in page and CONTROLLER in page and CONTACT in page
    assert "Letter sent: forwarded to the controller" in page  # the timeline
    assert "This request is closed." in page and f'action="{url}"' not in page


@pytest.mark.django_db
def test_forwarding_a_closed_request_from_the_page_is_refused_with_the_form_kept(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, dpo)
    expected_version = state_version(request)
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="excessive", explanation="The tenth request this week.",
        expected_status=Status.IN_PROGRESS,
    )

    response = forward_from_the_page(client, request, expected_status=Status.IN_PROGRESS, expected_version=expected_version)

    assert response.status_code == 409
    page = html.unescape(response.content.decode())
    assert "has changed since you loaded it" in page
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.REJECTED


@pytest.mark.django_db
def test_a_handler_not_working_the_request_cannot_forward_it(client, dpo):
    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=dpo)
    login_staff(client, staff_in_role("Handler", username="handler-forward-page"))
    response = forward_from_the_page(client, request)
    assert response.status_code == 403
    assert PrivacyRequest.objects.get(pk=request.pk).status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_the_queue_lists_a_forwarded_request_with_the_closed_ones_under_its_own_status(client, dpo):
    forwarded = request_in_status(Status.IN_PROGRESS)
    handling.request_forward(
        request=forwarded, actor=Actor.staff(dpo), controller=CONTROLLER, contact=CONTACT, expected_status=Status.IN_PROGRESS
    )
    open_request = request_in_status(Status.NEW)
    login_staff(client, dpo)

    default = client.get(reverse("staff:queue"))
    closed = client.get(reverse("staff:queue"), {"scope": "closed", "status": "forwarded"})

    assert [r.reference for r in default.context["page"].object_list] == [open_request.reference]
    assert [r.reference for r in closed.context["page"].object_list] == [forwarded.reference]
    page = html.unescape(closed.content.decode())
    assert "<td>Forwarded to the controller</td>" in page
    assert '<option value="forwarded" selected>Forwarded to the controller (1)</option>' in page
