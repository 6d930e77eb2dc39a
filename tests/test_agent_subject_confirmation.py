"""The subject confirms directly that they allowed the agent (CCPA Regulations § 7063(a)(2)): staff ask, the subject
answers through a signed link emailed to their own address, used once."""

import re

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AgentAuthorityMethod,
    AgentCapacity,
    AuditEvent,
    PrivacyRequest,
    RejectionGround,
    RequestType,
    Status,
    Team,
)
from requests_app.services import agents
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

AGENT = {
    "agent_capacity": AgentCapacity.AUTHORISED_AGENT,
    "agent_name": "Marc Peeters",
    "agent_email": "marc@example.org",
    "signature": "Marc Peeters",
}
ANSWER_LINK = re.compile(r"http://\S+(/verify/agent/[^/\s]+/)")


@pytest.fixture
def handler(db):
    return staff_in_role("Handler", username="handler-agents")


def agents_request(handler, **overrides) -> PrivacyRequest:
    request = request_in_status(
        Status.IN_PROGRESS, **{"rights": [RightDetails(RequestType.ACCESS)], "language": "fr", **AGENT, **overrides}
    )
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler)
    # The subject's address proven theirs: the account records show it (subject_confirmation_send asks no other).
    request.identities.filter(kind="email").update(verified_at=timezone.now(), verification_method="account_records")
    request.refresh_from_db()
    return request


def ask(client, handler, request, django_capture_on_commit_callbacks) -> str:
    """Staff press "Ask the subject to confirm"; the path of the link in the email the subject gets."""
    mail.outbox.clear()
    staff = login_staff(client, handler)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("staff:request_action", args=[request.reference, "ask_subject_to_confirm"]))
    assert response.status_code == 302
    (sent,) = mail.outbox
    assert sent.to == ["ana@example.com"]  # the subject's own address, never the agent's
    client.logout()
    return ANSWER_LINK.search(sent.body).group(1)


def test_the_subject_confirms_the_agent_through_the_link_emailed_to_their_own_address(
    client, handler, django_capture_on_commit_callbacks
):
    request = agents_request(handler)
    staff_page = login_staff(client, handler).get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Ask the subject to confirm" in staff_page
    link = ask(client, handler, request, django_capture_on_commit_callbacks)
    sent = mail.outbox[0]
    # In the request's language; the agent's name and the reference, and no address or name in the link.
    assert "Marc Peeters" in sent.body and request.reference in sent.body and "/verify/agent/" in sent.body
    assert "Délégué à la protection des données" in sent.body  # its signature, in French: the request's language
    assert not any(secret in link for secret in ("Marc", "marc@", "ana@", "Peeters", request.reference))
    assert AuditEvent.objects.filter(request=request, action="subject_confirmation_sent").count() == 1

    # Opening it (a mail scanner does) records nothing; the page names the agent and the reference, nothing else.
    page = client.get(link)
    assert page.status_code == 200
    shown = page.content.decode()
    assert "Marc Peeters" in shown and request.reference in shown
    assert "ana@example.com" not in shown and "Ana Peeters" not in shown and "marc@example.org" not in shown
    assert page["X-Robots-Tag"] == "noindex, nofollow, noarchive"
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None

    assert client.post(link, {"answer": "allowed"}).status_code == 200
    request.refresh_from_db()
    assert request.agent_authority_confirmed_at is not None and not agents.authority_refusal(request)
    confirmed = AuditEvent.objects.get(request=request, action="agent_authority_confirmed")
    assert (confirmed.actor_kind, confirmed.data) == ("subject", {"method": "subject_confirmed"})
    # Used once.
    again = client.post(link, {"answer": "not_allowed"})
    assert again.status_code == 400
    assert not AuditEvent.objects.filter(request=request, action="agent_authority_denied").exists()


def test_the_subject_saying_no_confirms_nothing_and_alerts_the_assignee(
    client, handler, settings, django_capture_on_commit_callbacks
):
    handler.email = "handler@example.org"
    handler.save()
    request = agents_request(handler)
    link = ask(client, handler, request, django_capture_on_commit_callbacks)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(link, {"answer": "not_allowed"})

    assert response.status_code == 200
    request.refresh_from_db()
    assert request.agent_authority_confirmed_at is None and agents.authority_refusal(request)
    denied = AuditEvent.objects.get(request=request, action="agent_authority_denied")
    assert (denied.actor_kind, denied.data) == ("subject", {})
    (alert,) = mail.outbox
    assert alert.to == ["handler@example.org"]
    assert request.reference in alert.body and "did not allow the agent" in alert.body
    assert "Marc Peeters" not in alert.body and "ana@example.com" not in alert.body  # no personal data to staff mail
    assert client.post(link, {"answer": "allowed"}).status_code == 400  # used once
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None


@pytest.mark.parametrize("assigned", [True, False])
def test_the_subject_saying_no_alerts_the_members_of_the_requests_team_who_may_act_on_it(
    client, handler, settings, django_capture_on_commit_callbacks, assigned
):
    settings.DPO_EMAIL = "dpo@example.org"
    handler.email = "Handler@Example.org"
    handler.save()
    colleague = staff_in_role("Handler", username="colleague", email="colleague@example.org")
    auditor = staff_in_role("Auditor", username="auditor", email="auditor@example.org")  # reads, may not act
    gone = staff_in_role("Handler", username="gone", email="gone@example.org", is_active=False)
    no_address = staff_in_role("Handler", username="no-address", email="")
    team = Team.objects.create(name="Agents")
    team.members.add(handler, colleague, auditor, gone, no_address)
    request = agents_request(handler)
    link = ask(client, handler, request, django_capture_on_commit_callbacks)
    PrivacyRequest.objects.filter(pk=request.pk).update(team=team, assignee=handler if assigned else None)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(link, {"answer": "not_allowed"})

    (alert,) = mail.outbox  # one email, each address once: the assignee is a member of the team too
    if assigned:
        assert alert.to == ["Handler@Example.org", "colleague@example.org"]
    else:
        assert alert.to == ["dpo@example.org", "Handler@Example.org", "colleague@example.org"]
    assert "did not allow the agent" in alert.body


def test_a_new_link_replaces_the_earlier_one_and_a_link_expires(client, handler, settings, django_capture_on_commit_callbacks):
    request = agents_request(handler)
    first = ask(client, handler, request, django_capture_on_commit_callbacks)
    second = ask(client, handler, request, django_capture_on_commit_callbacks)
    assert client.get(first).status_code == 400
    assert client.post(first, {"answer": "allowed"}).status_code == 400
    with time_machine.travel(timezone.now() + settings.VERIFICATION_LINK_MAX_AGE + timezone.timedelta(minutes=1)):
        assert client.post(second, {"answer": "allowed"}).status_code == 400
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None
    tampered = second[:-3] + ("A" if second[-3] != "A" else "B") + second[-2:]
    assert client.get(tampered).status_code == 400


@pytest.mark.django_db
def test_only_an_agents_unconfirmed_request_with_the_subjects_own_address_is_asked(client, handler):
    no_address = agents_request(handler, subject_email="")
    with pytest.raises(RequestError, match="no email address of the subject's"):
        agents.subject_confirmation_send(request=no_address, actor=Actor.staff(handler))
    page = login_staff(client, handler).get(reverse("staff:request", args=[no_address.reference])).content.decode()
    assert "Ask the subject to confirm" not in page

    own = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=own.pk).update(assignee=handler)
    with pytest.raises(RequestError, match="No agent filed this request"):
        agents.subject_confirmation_send(request=own, actor=Actor.staff(handler))

    # An address the agent typed, not proven the subject's, may be the agent's: its yes would prove nothing.
    typed = agents_request(handler, subject_email="marc.second@example.org")
    typed.identities.filter(kind="email").update(verification_method="document")
    with pytest.raises(RequestError, match="may be their own: a confirmation from it would prove nothing"):
        agents.subject_confirmation_send(request=typed, actor=Actor.staff(handler))
    typed.identities.filter(kind="email").update(verified_at=None, verification_method="")
    with pytest.raises(RequestError, match="may be their own"):
        agents.subject_confirmation_send(request=typed, actor=Actor.staff(handler))

    confirmed = agents_request(handler, subject_email="ana2@example.com")
    PrivacyRequest.objects.filter(pk=confirmed.pk).update(agent_authority_confirmed_at=timezone.now())
    with pytest.raises(RequestError, match="confirmed already"):
        agents.subject_confirmation_send(request=confirmed, actor=Actor.staff(handler))
    assert not AuditEvent.objects.filter(action="subject_confirmation_sent").exists()


def test_each_email_goes_once_when_its_task_runs_twice(client, handler, django_capture_on_commit_callbacks):
    from requests_app import tasks

    handler.email = "handler@example.org"
    handler.save()
    request = agents_request(handler)
    link = ask(client, handler, request, django_capture_on_commit_callbacks)
    tasks.send_subject_confirmation(request.id)  # redelivered
    assert mail.outbox[1:] == []
    with django_capture_on_commit_callbacks(execute=True):
        client.post(link, {"answer": "not_allowed"})
    denied = AuditEvent.objects.get(request=request, action="agent_authority_denied")
    tasks.send_agent_authority_denied_notification(request.id, denied.pk)  # redelivered
    assert [message.to for message in mail.outbox] == [["ana@example.com"], ["handler@example.org"]]


def test_after_the_subject_said_no_staff_confirm_only_an_authority_that_does_not_rest_on_their_word(
    client, handler, django_capture_on_commit_callbacks
):
    request = agents_request(handler)
    # Before any answer, staff may not reject the request on the authority unshown without asking the agent.
    assert agents.rejection_refusal(request, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN) == str(agents.AUTHORITY_NEVER_ASKED)
    link = ask(client, handler, request, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(link, {"answer": "not_allowed"})

    page = login_staff(client, handler).get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "they did not allow the agent (see the timeline)" in page
    assert 'href="#reject"' in page and "The agent did not show their authority to act for the subject" in page
    # The subject's answer is enough to reject the request: the agent need not be asked first.
    assert agents.rejection_refusal(request, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN) is None

    for method in (AgentAuthorityMethod.SUBJECT_CONFIRMED, AgentAuthorityMethod.SIGNED_PERMISSION):
        response = client.post(
            reverse("staff:request_action", args=[request.reference, "confirm_agent_authority"]), {"method": method}
        )
        assert "they did not allow the agent: their signed permission or their word to us cannot be recorded" in (
            response.content.decode() + "".join(str(m) for m in get_messages(response.wsgi_request))
        )
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is None
    assert not AuditEvent.objects.filter(request=request, action="agent_authority_confirmed").exists()

    # A court order or a guardian's authority does not rest on the subject's say.
    agents.agent_authority_confirm(request=request, actor=Actor.staff(handler), method=AgentAuthorityMethod.POWER_OF_ATTORNEY)
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None


def test_the_subjects_later_yes_replaces_their_no(client, handler, django_capture_on_commit_callbacks):
    request = agents_request(handler)
    first = ask(client, handler, request, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(first, {"answer": "not_allowed"})
    assert agents.subject_denied_agent(request)
    # The subject changes their mind: staff send a new link, which they answer yes.
    second = ask(client, handler, request, django_capture_on_commit_callbacks)
    assert client.post(second, {"answer": "allowed"}).status_code == 200
    assert not agents.subject_denied_agent(request)
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None
    # Withdrawn later, the authority may be confirmed again on the subject's word: their last answer was yes.
    agents.agent_authority_withdraw(request=request, actor=Actor.staff(handler), reason="The proof was doubtful.")
    agents.agent_authority_confirm(request=request, actor=Actor.staff(handler), method=AgentAuthorityMethod.SIGNED_PERMISSION)
    assert PrivacyRequest.objects.get(pk=request.pk).agent_authority_confirmed_at is not None
