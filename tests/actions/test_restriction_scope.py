"""Which source systems a restriction covers (Art. 18): staff choose them when planning, the default follows
the data the ground concerns, the choice is kept when planning again, and a restriction not yet run in a
system left out goes, with the Art. 19 notices only it needed; the letter and the certificate name only the
systems restricted."""

import html
import importlib
import re

import pytest
from django.apps import apps
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse

from requests_app import roles
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AuditEvent,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    NoticeStatus,
    Recipient,
    RequestedRight,
    RequestType,
    RestrictionGround,
    SourceSystem,
)
from requests_app.services import actions, certificate
from tests.actions.conftest import verified_request
from tests.conftest import login_staff
from tests.factories import staff_in_role

# Staff's reason for leaving a system out of a restriction planned there (actions._choose_restriction_sources).
LEFT_OUT_BECAUSE = "Only the CRM holds the address whose accuracy is contested."

# Which sources are planned does not depend on the source's engine; test_source_actions covers PostgreSQL.
pytestmark = pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)


@pytest.fixture
def cdr_restrictable(cdr):
    """The call records, restricted by a restriction list (the fixture's have no means to restrict)."""
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    cdr.refresh_from_db()
    return cdr


@pytest.fixture
def partners(crm, cdr_restrictable):
    """A recipient of each source: the CRM's billing partner, the call records' network operators."""
    return {
        "crm": Recipient.objects.create(source=crm, name="Billing partner", country="BE", notification_email="art19@billing.example"),
        "cdr": Recipient.objects.create(
            source=cdr_restrictable, name="Interconnected network operators", country="FR", notification_email="art19@operators.example"
        ),
    }


def contested_address_request(crm, actor):
    """The QA case: a correction of the CRM's city, and a restriction while its accuracy is checked (Art. 18(1)(a))."""
    request = verified_request(RequestType.RECTIFICATION, RequestType.RESTRICTION)
    RequestedRight.objects.filter(request=request, right=RequestType.RESTRICTION).update(
        restriction_ground=RestrictionGround.ACCURACY_CONTESTED
    )
    actions.rectification_change_set(request=request, actor=actor, category=crm.categories.get(), field="city", value="Antwerpen")
    return request


def planned(request) -> set[tuple[str, str]]:
    return set(request.source_actions.values_list("source__slug", "kind"))


def carry_out(request, actor, run):
    for action in request.source_actions.all():
        done = run(action.id, "dry_run", "approve", "execute", actor=actor)
        assert done.status == ActionStatus.DONE, done.error


# --- The default and the choice ----------------------------------------------


def test_a_restriction_while_accuracy_is_checked_covers_by_default_only_the_corrected_values_sources(crm, partners, dpo_actor):
    request = contested_address_request(crm, dpo_actor)

    actions.plan_actions(request=request, actor=dpo_actor)

    assert planned(request) == {("crm", ActionKind.RECTIFY), ("crm", ActionKind.RESTRICT)}
    assert [notice.recipient for notice in request.recipient_notices.all()] == [partners["crm"]]
    event = AuditEvent.objects.get(request=request, action="restriction_sources_chosen")
    assert event.data == {"sources": ["crm"], "left_out": []}


def test_a_restriction_on_another_ground_covers_every_active_source_by_default(crm, cdr_restrictable, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)

    actions.plan_actions(request=request, actor=dpo_actor)

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    assert set(actions.restriction_sources(request)) == {cdr_restrictable, crm}  # recorded


def test_staff_choose_the_sources_and_planning_again_keeps_their_choice(crm, cdr_restrictable, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[cdr_restrictable])
    with pytest.raises(RequestError, match="planning again would add nothing"):  # the choice kept: no CRM to add
        actions.plan_actions(request=request, actor=dpo_actor)

    assert planned(request) == {("cdr", ActionKind.RESTRICT)}
    assert actions.restriction_sources(request) == [cdr_restrictable]


def test_a_restriction_covering_no_source_is_refused(crm, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)

    with pytest.raises(RequestError, match="Choose at least one source system"):
        actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[])

    assert not request.source_actions.exists() and actions.restriction_sources(request) == [crm]  # still the default


# --- Leaving out a restriction planned before ----------------------------------


def test_a_source_left_out_loses_its_planned_restriction_and_its_recipients_notice(crm, partners, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    assert request.recipient_notices.count() == 2

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)
    with pytest.raises(RequestError, match="planning again would add nothing"):  # planning again does not bring it back
        actions.plan_actions(request=request, actor=dpo_actor)

    assert planned(request) == {("crm", ActionKind.RESTRICT)}
    assert [notice.recipient for notice in request.recipient_notices.all()] == [partners["crm"]]
    event = AuditEvent.objects.filter(request=request, action="restriction_sources_chosen").latest("id")
    note = request.notes.get()
    assert event.data == {"sources": ["crm"], "left_out": ["cdr"], "note": note.id}  # the reason itself is no event's
    assert (note.body, note.author) == (LEFT_OUT_BECAUSE, dpo_actor.user)


def test_a_source_is_left_out_only_with_a_reason_and_nothing_changes_without_one(crm, partners, dpo_actor):
    """The subject asked for the restriction: the DPO must be able to show why a system where it was planned holds
    none of the data concerned (Art. 5(2))."""
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    events = AuditEvent.objects.count()

    for reason in ("", "  \n "):
        with pytest.raises(RequestError, match="Say why the restriction no longer covers Call records, where it was planned"):
            actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=reason)

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    assert request.recipient_notices.count() == 2 and not request.notes.exists()
    assert AuditEvent.objects.count() == events


def test_a_source_left_out_keeps_its_notice_for_another_action_there(crm, partners, dpo_actor, run):
    request = verified_request(RequestType.ERASURE, RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)
    carry_out(request, dpo_actor, run)

    assert planned(request) == {("crm", ActionKind.ERASE), ("crm", ActionKind.RESTRICT), ("cdr", ActionKind.ERASE)}
    operators = request.recipient_notices.get(recipient=partners["cdr"])
    assert operators.status == NoticeStatus.SENT
    [told] = [message for message in mail.outbox if message.to == ["art19@operators.example"]]
    assert "Erased" in told.body and "restricted" not in told.body.lower()  # the erasure only
    assert actions.completion_blockers(request) == []  # nothing asks for the restriction left out


def test_a_notice_reopened_for_a_restriction_left_out_is_sent_as_it_was(crm, partners, dpo_actor, run):
    """The call records' recipients were told of the erasure; a restriction planned there afterwards reopened
    their notice, and once it is left out there is nothing new to tell them."""
    request = verified_request(RequestType.ERASURE, RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)
    carry_out(request, dpo_actor, run)
    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm, partners["cdr"].source])
    operators = request.recipient_notices.get(recipient=partners["cdr"])
    assert operators.status == NoticeStatus.PENDING
    told = len(mail.outbox)

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)

    operators.refresh_from_db()
    assert operators.status == NoticeStatus.SENT and len(mail.outbox) == told
    assert actions.completion_blockers(request) == []


def test_a_restriction_carried_out_cannot_be_left_out_and_nothing_changes(crm, cdr_restrictable, partners, dpo_actor, run):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    restriction = request.source_actions.get(source=cdr_restrictable)
    run(restriction.id, "dry_run", "approve", "execute", actor=dpo_actor)

    with pytest.raises(RequestError, match="already been carried out"):
        actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    assert set(actions.restriction_sources(request)) == {cdr_restrictable, crm}
    assert request.recipient_notices.count() == 2
    assert not AuditEvent.objects.filter(request=request, action="restriction_sources_chosen", data__left_out=["cdr"]).exists()


def test_a_restriction_that_changed_rows_before_failing_cannot_be_left_out(crm, cdr_restrictable, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    request.source_actions.filter(source=cdr_restrictable).update(
        status=ActionStatus.FAILED, result={"categories": [{"category": "calls", "rows": 1, "fields": 1}], "changed_before_failing": True}
    )

    with pytest.raises(RequestError, match="changed data in the source system before it stopped"):
        actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}


def test_a_manual_sources_restriction_is_left_out_while_it_waits_for_its_owner_not_once_confirmed(crm, dpo_actor):
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    waiting = verified_request(RequestType.RESTRICTION)
    confirmed = verified_request(RequestType.RESTRICTION)
    for request in (waiting, confirmed):
        actions.plan_actions(request=request, actor=dpo_actor)
    actions.manual_action_done(action=confirmed.source_actions.get(source=paper), actor=dpo_actor, rows=2)

    actions.plan_actions(request=waiting, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)
    with pytest.raises(RequestError, match="already been carried out"):
        actions.plan_actions(request=confirmed, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)

    assert planned(waiting) == {("crm", ActionKind.RESTRICT)}
    assert planned(confirmed) == {("crm", ActionKind.RESTRICT), ("paper", ActionKind.RESTRICT)}


def test_a_restriction_done_without_searching_its_source_is_left_out_as_a_planned_one(crm, partners, dpo_actor, run):
    """No phone number verified: the call records' restriction ran, searched nobody and restricted nothing. Leaving
    it out denies nothing done: it goes, with the notice of its recipients, who have nothing to be told."""
    request = verified_request(RequestType.RESTRICTION)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    calls = run(request.source_actions.get(source=partners["cdr"].source).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert certificate.done_without_searching(calls)

    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason=LEFT_OUT_BECAUSE)
    carry_out(request, dpo_actor, run)

    assert planned(request) == {("crm", ActionKind.RESTRICT)}
    assert [notice.recipient for notice in request.recipient_notices.all()] == [partners["crm"]]
    assert actions.completion_blockers(request) == []
    assert "Call records" not in certificate.outcome_summary(request)
    assert [message.to for message in mail.outbox] == [["art19@billing.example"]]


def _planned_before_the_choice_was_recorded(request):
    """As a request planned before migration 0060: its restrictions, and no choice recorded."""
    request.rights.get(right=RequestType.RESTRICTION).restriction_sources.clear()


def test_upgrading_records_the_sources_a_restriction_was_planned_in(crm, cdr_restrictable, dpo_actor):
    migration = importlib.import_module("requests_app.migrations.0060_restriction_sources")
    request = contested_address_request(crm, dpo_actor)
    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm, cdr_restrictable])
    _planned_before_the_choice_was_recorded(request)

    migration.record_planned_restrictions(apps, None)

    assert set(request.rights.get(right=RequestType.RESTRICTION).restriction_sources.all()) == {crm, cdr_restrictable}


def test_with_no_choice_recorded_the_default_is_the_restrictions_already_planned(crm, cdr_restrictable, partners, dpo_actor):
    """Not the corrected values' sources alone: planning again would delete the call records' restriction and
    its recipients' notice."""
    request = contested_address_request(crm, dpo_actor)
    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm, cdr_restrictable])
    _planned_before_the_choice_was_recorded(request)

    assert set(actions.restriction_sources(request)) == {crm, cdr_restrictable}
    actions.plan_actions(request=request, actor=dpo_actor)

    assert planned(request) == {("crm", ActionKind.RECTIFY), ("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    assert request.recipient_notices.filter(recipient=partners["cdr"]).exists()


def test_a_restriction_in_a_source_made_inactive_is_not_left_out(crm, cdr_restrictable, partners, dpo_actor):
    """The form does not offer an inactive source, so its box was never unticked: the restriction planned there
    stays, with its notice, and stays in the choice for when the source is active again."""
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    SourceSystem.objects.filter(pk=cdr_restrictable.pk).update(active=False)

    with pytest.raises(RequestError, match="planning again would add nothing"):  # nothing left out, nothing to add
        actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm])

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    assert request.recipient_notices.filter(recipient=partners["cdr"]).exists()
    SourceSystem.objects.filter(pk=cdr_restrictable.pk).update(active=True)
    assert set(actions.restriction_sources(request)) == {crm, cdr_restrictable}


# --- What the subject and the certificate are told ------------------------------


def test_the_letter_and_the_certificate_name_only_the_systems_restricted(crm, partners, dpo_actor, run):
    request = contested_address_request(crm, dpo_actor)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor, run)

    summary = certificate.outcome_summary(request)
    assert "We restricted the processing of your data in CRM." in summary
    assert "Call records" not in summary and "Interconnected network operators" not in summary
    html = certificate.render_certificate_html(request)
    assert "<h3>Restriction: CRM</h3>" in html and "Call records" not in html
    assert [message.to for message in mail.outbox] == [["art19@billing.example"]]  # the call records' recipients hear nothing


# --- The planning form on the request page ---------------------------------------


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _offered(page: str) -> dict[str, bool]:
    """The sources the plan form offers for the restriction, and whether each is ticked."""
    boxes = re.findall(r'<input type="checkbox" name="restriction_sources" value="\d+" id="[^"]+"( checked)?>\s*([^<]+)</label>', page)
    return {name.strip(): bool(checked) for checked, name in boxes}


def test_the_plan_form_offers_the_sources_ticked_as_the_default_and_plans_what_is_ticked(client, dpo, crm, cdr_restrictable, dpo_actor):
    login_staff(client, dpo)
    request = contested_address_request(crm, dpo_actor)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "Restrict processing in" in page
    assert _offered(page) == {"CRM": True, "Call records": False}

    url = reverse("staff:source_actions_plan", args=[request.reference])
    response = client.post(url, {"restriction_sources": [cdr_restrictable.pk, crm.pk]})

    assert response.status_code == 302
    assert _messages(response)[0] == "Planned 3 actions."
    assert _messages(response)[1] in ("The restriction covers: Call records, CRM.", "The restriction covers: CRM, Call records.")
    assert planned(request) == {("crm", ActionKind.RECTIFY), ("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert _offered(page) == {"CRM": True, "Call records": True}  # the choice, shown

    response = client.post(url, {"restriction_sources": [crm.pk], "leave_out_reason": LEFT_OUT_BECAUSE})
    assert _messages(response) == ["The restriction covers: CRM."]
    assert planned(request) == {("crm", ActionKind.RECTIFY), ("crm", ActionKind.RESTRICT)}


def test_the_plan_form_asks_why_only_once_a_restriction_is_planned_and_refuses_to_leave_one_out_without(
    client, dpo, crm, cdr_restrictable, dpo_actor
):
    login_staff(client, dpo)
    request = verified_request(RequestType.RESTRICTION)
    page_url = reverse("staff:request", args=[request.reference])
    assert "Why a system you untick holds none of the data concerned" not in client.get(page_url).content.decode()
    actions.plan_actions(request=request, actor=dpo_actor)
    assert "Why a system you untick holds none of the data concerned" in client.get(page_url).content.decode()
    url = reverse("staff:source_actions_plan", args=[request.reference])

    response = client.post(url, {"restriction_sources": [crm.pk]})
    assert response.status_code == 400  # the page again, the choice as sent, the refusal on the reason's field
    page = html.unescape(response.content.decode())
    assert "Say why the restriction no longer covers Call records, where it was planned: the reason is kept in the request's notes." in page
    assert _offered(response.content.decode()) == {"CRM": True, "Call records": False}
    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}

    response = client.post(url, {"restriction_sources": [crm.pk], "leave_out_reason": LEFT_OUT_BECAUSE})
    assert _messages(response) == ["The restriction covers: CRM."]
    assert planned(request) == {("crm", ActionKind.RESTRICT)}
    assert LEFT_OUT_BECAUSE in client.get(page_url).content.decode()  # with the request's notes


def test_the_plan_form_with_no_source_ticked_says_why_and_plans_nothing(client, dpo, crm):
    login_staff(client, dpo)
    request = verified_request(RequestType.RESTRICTION)

    response = client.post(reverse("staff:source_actions_plan", args=[request.reference]), {})

    assert response.status_code == 400
    assert "Choose at least one source system for the restriction to cover" in response.content.decode()
    assert not request.source_actions.exists()


def test_only_who_may_work_the_request_may_choose_what_the_restriction_covers(client, crm, cdr_restrictable, dpo_actor):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    url = reverse("staff:source_actions_plan", args=[request.reference])
    for role in (roles.AUDITOR, roles.HANDLER):
        client.logout()
        login_staff(client, staff_in_role(role))
        assert client.post(url, {"restriction_sources": [crm.pk]}).status_code == 403
        assert client.post(url, {}).status_code == 403  # refused before the form is read

    assert planned(request) == {("crm", ActionKind.RESTRICT), ("cdr", ActionKind.RESTRICT)}
