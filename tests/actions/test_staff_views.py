"""The request page's "Actions in source systems" panel, through the Django test client,
against a real SQLite source database: planning, dry run, approval, execution,
refusals, roles, corrected values, Art. 19 notices and the progress endpoint."""

import html
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from requests_app import roles
from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    NoticeStatus,
    PrivacyRequest,
    Recipient,
    RequestType,
    SourceAction,
    SourceSystem,
    Status,
)
from requests_app.services import actions, certificate, handling, intake, notices, routing
from requests_app.wording import date_in_words
from tests.actions.conftest import ANA_EMAIL, ANA_PHONE, verified_request
from tests.conftest import login_staff
from tests.factories import identity_proof_asked, released_package, staff_in_role

# The views do not depend on the source's engine; the services' tests cover PostgreSQL.
sqlite_source = pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)


@pytest.fixture
def client_dpo(client, dpo):
    return login_staff(client, dpo)


def _page(client, request):
    return client.get(reverse("staff:request", args=[request.reference]))


def _step(client, action, step, **data):
    return client.post(reverse("staff:source_action", args=[action.public_id, step]), data)


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@sqlite_source
def test_the_panel_shows_only_for_erasure_rectification_or_restriction(client_dpo, crm):
    access = verified_request(RequestType.ACCESS)
    assert "Actions in source systems" not in _page(client_dpo, access).content.decode()
    erasure = verified_request(RequestType.ERASURE)
    page = _page(client_dpo, erasure).content.decode()
    assert "Actions in source systems" in page and "Plan actions" in page
    assert "has not been planned in the source systems" in page  # what blocks completion


def test_the_complete_form_lists_what_is_still_to_do(client_dpo, db):
    access = verified_request(RequestType.ACCESS)
    blocker = "Access (Art. 15): no data package has been released to the subject yet."
    assert blocker in _page(client_dpo, access).content.decode()
    released_package(access)
    page = _page(client_dpo, access).content.decode()
    assert "Preview the letter, then complete" in page and blocker not in page and "Still to do" not in page


def test_the_complete_form_lists_a_rectification_that_corrected_nothing_as_still_to_do(client_dpo, db):
    blocker = "No data has been corrected. Enter the corrected values under “Actions in source systems”"
    rectification = verified_request(RequestType.RECTIFICATION)
    assert blocker in html.unescape(_page(client_dpo, rectification).content.decode())
    assert "no data has been corrected" not in _page(client_dpo, verified_request(RequestType.RESTRICTION)).content.decode().lower()


def test_a_refused_completion_keeps_the_letter_that_was_typed(client_dpo, db):
    access = verified_request(RequestType.ACCESS)  # no package released: completion is refused
    url = reverse("staff:request_action", args=[access.reference, "complete"])
    response = client_dpo.post(url, {"letter": "Here is everything we hold about you.", "expected_status": access.status})
    page = response.content.decode()
    assert response.status_code == 409
    assert "The request cannot be completed yet" in page
    assert "Here is everything we hold about you.</textarea>" in page
    assert '<details open><summary>Complete</summary>' in page
    access.refresh_from_db()
    assert access.status == "in_progress" and not access.messages.exists()


@sqlite_source
def test_planning_and_dry_run_list_each_action_with_its_counts(
    client_dpo, crm, cdr, erasure_request, django_capture_on_commit_callbacks
):
    response = client_dpo.post(reverse("staff:source_actions_plan", args=[erasure_request.reference]))
    assert response.status_code == 302 and response.url.endswith("#source-actions")
    assert _messages(response) == ["Planned 2 actions."]
    for action in erasure_request.source_actions.all():
        with django_capture_on_commit_callbacks(execute=True):
            _step(client_dpo, action, "dry_run")

    page = _page(client_dpo, erasure_request).content.decode()
    assert page.count("Dry run ready: awaiting approval") == 2
    assert "subscribers: 2 rows, 5 fields" in page
    assert "calls: 2 rows, 8 fields" in page
    assert page.count(">Approve<span") == 2 and ">Execute<" not in page


@sqlite_source
def test_plan_actions_is_offered_only_while_planning_would_add_something(client_dpo, crm, erasure_request, dpo_actor):
    """It stayed on the page once every source had its action: clicking it again planned nothing."""
    plan_button = ">Plan actions</button>"
    all_planned = "Every source has its actions planned: planning again would add nothing."
    page = _page(client_dpo, erasure_request).content.decode()
    assert plan_button in page and all_planned not in page
    response = client_dpo.post(reverse("staff:source_actions_plan", args=[erasure_request.reference]))
    assert _messages(response) == ["Planned 1 action."]

    page = _page(client_dpo, erasure_request).content.decode()
    assert plan_button not in page and all_planned in page
    # A page loaded before is refused, with nothing changed.
    planned = list(erasure_request.source_actions.values_list("pk", flat=True))
    response = client_dpo.post(reverse("staff:source_actions_plan", args=[erasure_request.reference]))
    assert response.status_code == 302 and _messages(response) == [all_planned]
    assert list(erasure_request.source_actions.values_list("pk", flat=True)) == planned

    # A source made active since calls for an action: the button is back, and plans it.
    SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    page = _page(client_dpo, erasure_request).content.decode()
    assert plan_button in page and f'<p class="help">{all_planned}' not in page  # the refusal's message shows once, above
    response = client_dpo.post(reverse("staff:source_actions_plan", args=[erasure_request.reference]))
    assert _messages(response) == ["Planned 1 action."]


def test_every_source_is_not_said_planned_while_a_rectification_waits_for_its_values(client_dpo, crm, dpo_actor):
    """With the erasure planned, the page said every source had its actions planned, while the table of corrected
    values above it said to enter them before planning the rectification."""
    request = verified_request(RequestType.ERASURE, RequestType.RECTIFICATION)
    actions.plan_actions(request=request, actor=dpo_actor)
    page = _page(client_dpo, request).content.decode()
    assert "No corrected value yet: enter them before planning the rectification." in page
    assert "Every source has its actions planned" not in page


@sqlite_source
def test_the_panel_writes_one_row_and_one_field_in_the_singular(client_dpo, crm, cdr, erasure_request, dpo, dpo_actor):
    """It said "1 rows" (French "1 lignes"): each count is its own plural form."""
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    counted, manual = erasure_request.source_actions.order_by("source__name")
    SourceAction.objects.filter(pk=counted.pk).update(
        dry_run_at=timezone.now(),
        dry_run={"identities": 1, "categories": [{"category": "subscribers", "rows": 1, "fields": 1}]},
        result={"categories": [{"category": "subscribers", "rows": 1, "fields": 3}]},
    )
    SourceAction.objects.filter(pk=manual.pk).update(result={"categories": [], "rows": 1, "manual": True}, done_by=dpo)

    url = reverse("staff:request", args=[erasure_request.reference])
    english = client_dpo.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "subscribers: 1 row, 1 field<br>" in english  # the dry run
    assert "subscribers: 1 row, 3 fields<br>" in english  # the result
    assert "1 row, confirmed by dpo<br>" in english  # the manual source's owner
    french = client_dpo.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert french.count("1 ligne,") == 3 and "1 lignes" not in french


@sqlite_source
def test_dry_run_approve_and_execute_through_the_page(
    client_dpo, crm, erasure_request, dpo_actor, source_db, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    for step, message in (
        ("dry_run", "Dry run started."),
        ("approve", "Approved: the action can now be executed."),
        ("execute", "Execution started."),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_dpo.post(reverse("staff:source_action", args=[action.public_id, step]), follow=True)
        assert response.redirect_chain == [(reverse("staff:request", args=[erasure_request.reference]) + "#source-actions", 302)]
        assert message in response.content.decode()

    action.refresh_from_db()
    assert action.status == ActionStatus.DONE, action.error
    assert action.approved_by.username == "dpo"
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 0}]
    page = _page(client_dpo, erasure_request).content.decode()
    assert "Done" in page and "dpo, " in page  # approved by whom


@sqlite_source
def test_executing_an_action_with_no_verified_identifier_to_search_by_says_it_changes_nothing(
    client_dpo, cdr, dpo_actor, source_db, django_capture_on_commit_callbacks
):
    """The erasure of an access-and-erasure request runs although its package could not search the call records:
    staff are told on the spot that the data stays there, and how to act on it."""
    request = verified_request(RequestType.ERASURE, RequestType.ACCESS)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    package = released_package(request)  # which could not search the call records: no verified phone number
    package.manifest = {"sources_not_searched": [{"source": cdr.slug, "reason": "no_verified_identifier", "kind": "phone"}]}
    package.save(update_fields=["manifest"])
    actions.plan_actions(request=request, actor=dpo_actor)
    action = request.source_actions.get()
    for step in ("dry_run", "approve"):
        with django_capture_on_commit_callbacks(execute=True):
            _step(client_dpo, action, step)
    assert "Nothing to search by: verify an identifier of the kind this source uses first." in _page(client_dpo, request).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = _step(client_dpo, action, "execute")
    assert _messages(response) == [
        "Execution started. There is no verified phone number to search Call records by: it changes nothing there, and the "
        "letter will say that system could not be searched. To act on its data, verify one and run the dry run again."
    ]
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.DONE
    assert len(source_db("SELECT id FROM calls")) == 3


def _action_cells(page: str, source_name: str) -> list[str]:
    """The cells of the panel's row for the action on `source_name`, as text is read (entities unescaped)."""
    row = re.search(rf"<tr data-action-progress[^>]*>\s*<td>{re.escape(source_name)}</td>.*?</tr>", page, re.S).group(0)
    return [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]


def _restriction_left_out_since_loaded(crm, cdr, dpo_actor):
    """A restriction planned in every source, then narrowed to the CRM by a colleague: the actions of the page
    loaded before (call records, and the paper files' manual one), as that page still shows them."""
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    stale = {action.source_id: action for action in request.source_actions.select_related("request", "source")}
    actions.plan_actions(request=request, actor=dpo_actor, restriction_sources=[crm], leave_out_reason="Only the CRM holds it.")
    return request, stale[cdr.pk], stale[paper.pk]


@sqlite_source
def test_a_click_on_a_restriction_left_out_since_the_page_was_loaded_says_so(client_dpo, dpo, crm, cdr, dpo_actor):
    """A colleague left the call records and the paper files out of the restriction while the page was open: a
    click on their buttons lands back on that page with the reason, not on a "page not found"."""
    request, calls, paper = _restriction_left_out_since_loaded(crm, cdr, dpo_actor)
    page_url = reverse("staff:request", args=[request.reference])

    for action, step, data in ((calls, "dry_run", {}), (calls, "approve", {}), (calls, "execute", {}),
                               (paper, "done", {"rows": 2})):
        response = client_dpo.post(
            reverse("staff:source_action", args=[action.public_id, step]), data, HTTP_REFERER=f"http://testserver{page_url}"
        )
        assert response.status_code == 302, step
        assert response.url == page_url, step
        page = client_dpo.get(response.url).content.decode()  # shows the message, as for any refused step
        assert page.count(
            "This action no longer exists: it was left out of the restriction, or replaced when the actions were planned "
            "again after who makes the request was corrected."
        ) == 1, step
    assert set(request.source_actions.values_list("source__slug", flat=True)) == {"crm"}


@sqlite_source
def test_a_step_on_a_restriction_left_out_while_the_click_was_read_is_refused(crm, cdr, dpo_actor):
    """The click read the action just before a colleague's choice deleted it: the step finds it gone when it
    takes its lock, and is refused as any other step, not with a server error."""
    request, calls, paper = _restriction_left_out_since_loaded(crm, cdr, dpo_actor)

    for step in (actions.dry_run_start, actions.approve, actions.execute):
        with pytest.raises(RequestError, match="This action no longer exists: it was left out of the restriction, or replaced"):
            step(action=calls, actor=dpo_actor)
    with pytest.raises(RequestError, match="This action no longer exists"):
        actions.manual_action_done(action=paper, actor=dpo_actor, rows=2)
    assert set(request.source_actions.values_list("source__slug", flat=True)) == {"crm"}


@sqlite_source
def test_an_action_that_could_search_nothing_is_not_shown_as_done_with_0_rows(
    client_dpo, cdr, dpo_actor, django_capture_on_commit_callbacks
):
    """No phone number is verified: the erasure of the call records ran, searched nobody and changed nothing. An
    ordinary "Done" with "calls: 0 rows" would read as a source searched that held nothing of theirs; the panel
    and the trail say instead, as the letter does, that it could not be searched and why, and the panel what to do."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    action = _approved_through_the_page(client_dpo, request, dpo_actor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        _step(client_dpo, action, "execute")
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.DONE

    page = _page(client_dpo, request).content.decode()
    status, result = _action_cells(page, "Call records")[2], _action_cells(page, "Call records")[5]
    assert ">Done: not searched</span>" in status
    assert result.startswith(
        '<strong class="error">Could not be searched: no verified phone number was available to search it by, so nothing '
        "changed there.</strong>"
    )
    assert "To act on its data, verify one and run the dry run again." in result
    assert "row" not in result  # no "calls: 0 rows, 0 fields"
    timeline = page[page.index('class="list timeline"'):]
    assert "Source action done, but the source could not be searched: no verified phone number" in timeline
    assert "Source action done<" not in timeline
    progress = client_dpo.get(reverse("staff:source_action_progress", args=[action.public_id])).json()
    assert progress["label"] == "Done: not searched"

    # Verified since: the dry run is offered again, and the panel says that is what is left to do.
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    result = _action_cells(_page(client_dpo, request).content.decode(), "Call records")[5]
    assert "One is verified now: run the dry run again to act on its data." in result and "verify one" not in result

    # Closed, nothing more can be done under this request: the fact stays, the advice goes.
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    PrivacyRequest.objects.filter(pk=request.pk).update(status=Status.COMPLETED, closed_at=timezone.now())
    result = _action_cells(_page(client_dpo, request).content.decode(), "Call records")[5]
    assert "Could not be searched: no verified phone number" in result and "dry run again" not in result


@sqlite_source
def test_a_lifting_that_could_search_nothing_is_not_offered_a_dry_run_the_service_refuses(
    client_dpo, cdr, dpo_actor, django_capture_on_commit_callbacks
):
    """A lifting is never run again (dry_run_start): once a phone number is verified after it ran without one,
    the panel offers no "Dry run again" button for it, as it does for an erasure."""
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    action = _approved_through_the_page(client_dpo, request, dpo_actor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        _step(client_dpo, action, "execute")
    SourceAction.objects.filter(pk=action.pk).update(
        kind=ActionKind.LIFT_RESTRICTION, lift_not_before=timezone.localdate(), lift_reason="Accuracy checked."
    )
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now())

    assert not actions.searched_too_early(SourceAction.objects.get(pk=action.pk), {IdentityKind.PHONE})
    row = _action_cells(_page(client_dpo, request).content.decode(), "Call records")
    assert "Done: not searched" in row[2]
    assert "Dry run" not in row[6]


COPY_FIRST = "Compile the access (Art. 15) package first, with this system searched: the subject asked for a copy of this data too."


def _approved_through_the_page(client, request, dpo_actor, django_capture_on_commit_callbacks):
    actions.plan_actions(request=request, actor=dpo_actor)
    action = request.source_actions.get()
    for step in ("dry_run", "approve"):
        with django_capture_on_commit_callbacks(execute=True):
            _step(client, action, step)
    return action


@sqlite_source
@pytest.mark.parametrize("step", ["execute", "retry"])
def test_an_erasure_waiting_for_the_subjects_copy_says_so_where_its_button_would_be(
    client_dpo, crm, dpo_actor, django_capture_on_commit_callbacks, step
):
    """Execute (or Retry) was offered, and the DPO read only after clicking it that the copy had to be compiled
    first: the page now says what to do instead of offering a step the service refuses."""
    request = verified_request(RequestType.ERASURE, RequestType.ACCESS)
    action = _approved_through_the_page(client_dpo, request, dpo_actor, django_capture_on_commit_callbacks)
    if step == "retry":  # the same rule holds a failed run back (its copy expired unreleased since, say)
        SourceAction.objects.filter(pk=action.pk).update(status=ActionStatus.FAILED, error="The source timed out.")

    page = html.unescape(_page(client_dpo, request).content.decode())
    assert COPY_FIRST in page
    assert reverse("staff:source_action", args=[action.public_id, step]) not in page
    assert reverse("staff:source_action_confirm", args=[action.public_id, step]) not in page
    # The service still refuses it: the page only says so first.
    assert _messages(_step(client_dpo, action, step)) == [COPY_FIRST]


@sqlite_source
def test_once_the_copy_is_compiled_the_note_gives_way_to_the_execute_button(
    client_dpo, crm, dpo_actor, django_capture_on_commit_callbacks
):
    request = verified_request(RequestType.ERASURE, RequestType.ACCESS)
    action = _approved_through_the_page(client_dpo, request, dpo_actor, django_capture_on_commit_callbacks)
    execute_url = reverse("staff:source_action_confirm", args=[action.public_id, "execute"])  # asks first
    page = html.unescape(_page(client_dpo, request).content.decode())
    assert COPY_FIRST in page and execute_url not in page

    released_package(request)  # which searched every system
    page = html.unescape(_page(client_dpo, request).content.decode())
    assert execute_url in page and '>Execute<span class="visually-hidden">: CRM</span></button>' in page and COPY_FIRST not in page


@sqlite_source
def test_with_four_eyes_someone_else_approves_the_dry_run(
    client, client_dpo, crm, erasure_request, dpo, dpo_actor, settings, django_capture_on_commit_callbacks
):
    settings.SOURCE_ACTION_FOUR_EYES = True
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    with django_capture_on_commit_callbacks(execute=True):
        _step(client_dpo, action, "dry_run")

    page = _page(client_dpo, erasure_request).content.decode()
    assert "Another staff member approves the dry run you started." in page
    assert reverse("staff:source_action", args=[action.public_id, "approve"]) not in page
    response = _step(client_dpo, action, "approve")
    assert _messages(response) == [
        "Another staff member must approve this dry run: you started it, and changes to source systems need two people."
    ]
    action.refresh_from_db()
    assert action.status == ActionStatus.AWAITING_APPROVAL and action.approved_by is None

    colleague = staff_in_role("DPO", username="second-dpo")
    second = login_staff(Client(), colleague)
    assert reverse("staff:source_action", args=[action.public_id, "approve"]) in _page(second, erasure_request).content.decode()
    assert _messages(_step(second, action, "approve")) == ["Approved: the action can now be executed."]
    action.refresh_from_db()
    assert (action.status, action.dry_run_by, action.approved_by) == (ActionStatus.APPROVED, dpo, colleague)
    # The trail, and so the certificate, show the two people.
    trail = erasure_request.events.filter(action__startswith="source_action_").order_by("sequence")
    assert [(event.action, event.actor_id) for event in trail] == [
        ("source_action_dry_run_started", dpo.pk), ("source_action_approved", colleague.pk)
    ]
    assert "Dry run of a source action started" in _page(second, erasure_request).content.decode()


@sqlite_source
def test_without_four_eyes_whoever_ran_the_dry_run_approves_it(
    client_dpo, crm, erasure_request, dpo_actor, settings, django_capture_on_commit_callbacks
):
    settings.SOURCE_ACTION_FOUR_EYES = False
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    with django_capture_on_commit_callbacks(execute=True):
        _step(client_dpo, action, "dry_run")
    assert _messages(_step(client_dpo, action, "approve"))[-1] == "Approved: the action can now be executed."
    action.refresh_from_db()
    assert action.approved_by == action.dry_run_by


@sqlite_source
def test_execute_without_approval_is_refused_and_changes_nothing(
    client_dpo, crm, erasure_request, dpo_actor, source_db, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _step(client_dpo, action, "execute")

    assert response.status_code == 302
    assert _messages(response) == ["The action needs a dry run and an approval first."]
    assert callbacks == []  # no task queued
    action.refresh_from_db()
    assert action.status == ActionStatus.PLANNED and action.attempts == 0
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]


@sqlite_source
def test_an_auditor_or_an_unassigned_handler_gets_403_and_nothing_changes(
    client, crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    notice = erasure_request.recipient_notices.create(recipient=Recipient.objects.create(source=crm, name="Mailer", country="BE"))
    for role in (roles.AUDITOR, roles.HANDLER):
        client.logout()
        login_staff(client, staff_in_role(role))
        assert _page(client, erasure_request).status_code == 200  # reading is allowed
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            responses = [
                client.post(reverse("staff:source_actions_plan", args=[erasure_request.reference])),
                _step(client, action, "dry_run"),
                client.post(
                    reverse("staff:rectification_change", args=[erasure_request.reference]),
                    {"field": crm.categories.get().fields.get(name="city").pk, "value": "Brugge"},
                ),
                client.post(reverse("staff:notice", args=[notice.public_id, "waive"]), {"reason": "impossible", "note": "x"}),
                client.post(reverse("staff:notice", args=[notice.public_id, "resend"])),
            ]
        assert [r.status_code for r in responses] == [403] * 5
        assert callbacks == []

    action.refresh_from_db()
    notice.refresh_from_db()
    assert action.status == ActionStatus.PLANNED and action.dry_run_at is None
    assert notice.status == NoticeStatus.PENDING
    assert not erasure_request.rectification_changes.exists()
    assert erasure_request.source_actions.count() == 1


@sqlite_source
def test_the_rectification_form_checks_the_value_against_the_field_type(client_dpo, crm):
    request = verified_request(RequestType.RECTIFICATION)
    url = reverse("staff:rectification_change", args=[request.reference])
    crm.categories.get().fields.filter(name="name").update(rectifiable=False)
    fields = {field.name: field for field in crm.categories.get().fields.all()}

    response = client_dpo.post(url, {"field": fields["birth_year"].pk, "value": "abc"})
    assert response.status_code == 400
    assert "Enter a whole number." in response.content.decode()
    response = client_dpo.post(url, {"field": fields["name"].pk, "value": "x"})  # not one staff may correct
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert not request.rectification_changes.exists()

    response = client_dpo.post(url, {"field": fields["birth_year"].pk, "value": "1981"})
    assert response.status_code == 302 and _messages(response) == ["Corrected value saved."]
    assert request.rectification_changes.get().value == "1981"
    page = _page(client_dpo, request).content.decode()
    assert "<td>year of birth (birth_year)</td><td>1981</td>" in page


@sqlite_source
def test_the_rectification_form_offers_the_fields_staff_may_correct_by_their_names(client_dpo, crm):
    """Staff had to type the source's column name: "postal address" was refused, only "billing_address" passed."""
    request = verified_request(RequestType.RECTIFICATION)
    category = crm.categories.get()
    category.fields.filter(name="city").update(label="town of residence")
    category.fields.filter(name="name").update(rectifiable=False)
    page = html.unescape(_page(client_dpo, request).content.decode())
    options = re.findall(r'<option value="\d+">([^<]*)</option>', page[page.index('id="rectification-field"'):])
    assert "CRM · subscribers · town of residence (city)" in options
    rectifiable = category.fields.filter(rectifiable=True).count()
    assert 0 < rectifiable < category.fields.count() and len(options) == rectifiable  # the name is not offered


@sqlite_source
def test_once_the_rectification_ran_its_values_are_shown_read_only_and_no_longer_taken(client_dpo, crm, dpo_actor, run):
    """The form to enter corrected values stayed after the run, as if they could still change: the service refused them."""
    request = verified_request(RequestType.RECTIFICATION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    assert 'id="rectification-field"' in _page(client_dpo, request).content.decode()

    rectify = run(request.source_actions.get().id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert rectify.status == ActionStatus.DONE and rectify.changed_anything()

    page = html.unescape(_page(client_dpo, request).content.decode())
    assert 'id="rectification-field"' not in page and "Save the corrected value" not in page
    assert f"<td>city (city)</td><td>Antwerpen</td>\n      <td>Corrected on {date_in_words(rectify.finished_at)}</td>" in page
    assert "The rectification has been carried out: its corrected values can no longer be changed." in page
    # A form loaded before the run is refused, with nothing changed.
    url = reverse("staff:rectification_change", args=[request.reference])
    response = client_dpo.post(url, {"field": crm.categories.get().fields.get(name="city").pk, "value": "Brugge"})
    assert response.status_code == 302 and _messages(response) == ["The rectification in CRM has already been carried out."]
    assert request.rectification_changes.get().value == "Antwerpen"


@sqlite_source
def test_a_rectification_that_failed_takes_corrected_values_before_its_retry(client_dpo, crm, cdr, dpo_actor):
    """A failed run is retried after a new dry run, so a value may still be corrected there (one the source refused,
    say); a source whose rectification ran elsewhere has its fields left out of the form."""
    calls = cdr.categories.get()
    calls.fields.create(name="callee", label="number called", rectifiable=True)
    request = verified_request(RequestType.RECTIFICATION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Gent")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=calls, field="callee", value="+3225550000")
    actions.plan_actions(request=request, actor=dpo_actor)
    request.source_actions.filter(source=crm).update(status=ActionStatus.DONE, finished_at=timezone.now(), result={"categories": []})
    request.source_actions.filter(source=cdr).update(status=ActionStatus.FAILED, error="cdr: the database refused it")

    page = html.unescape(_page(client_dpo, request).content.decode())
    options = re.findall(r'<option value="\d+">([^<]*)</option>', page[page.index('id="rectification-field"'):])
    assert options == ["Call records · calls · number called (callee)"]
    assert "The fields of a system where the rectification was carried out are not offered." in page
    assert "Carried out on " in page and ", changing nothing: see the action's result" in page  # the CRM's matched no row
    response = client_dpo.post(
        reverse("staff:rectification_change", args=[request.reference]), {"field": calls.fields.get().pk, "value": "+3225550001"}
    )
    assert _messages(response) == ["Corrected value saved."]
    assert request.source_actions.get(source=cdr).status == ActionStatus.PLANNED  # its retry starts with a new dry run


@sqlite_source
def test_a_rectification_that_searched_nothing_takes_corrected_values_once_it_can_search(
    client_dpo, cdr, dpo_actor, run, source_db
):
    """No phone number was verified: the correction of the call records ran, searched nobody and wrote nothing ("Done:
    not searched"), yet its values were refused as carried out. Once one is verified, the panel offers the dry run again
    and the values may change until it runs; the trail shows the value set between the run that searched nothing and
    the one that wrote it, and the source's recipient hears of the change made."""
    calls = cdr.categories.get()
    field = calls.fields.create(name="callee", label="number called", rectifiable=True)
    Recipient.objects.create(source=cdr, name="Roaming partner", country="Belgium", notification_email="p@example.net")
    request = verified_request(RequestType.RECTIFICATION)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=calls, field="callee", value="+3225550000")
    actions.plan_actions(request=request, actor=dpo_actor)
    rectify = run(request.source_actions.get().id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert certificate.done_without_searching(rectify)
    assert request.recipient_notices.get().status == NoticeStatus.NOT_NEEDED
    url = reverse("staff:rectification_change", args=[request.reference])

    # Still none: it would search nobody again. Refused, saying why, not that it was carried out.
    response = client_dpo.post(url, {"field": field.pk, "value": "+3225550001"})
    assert _messages(response) == [
        "The rectification in Call records searched nothing there: no phone number was verified. Once one is, its "
        "corrected values may be changed, and its dry run run again."
    ]
    assert 'id="rectification-field"' not in _page(client_dpo, request).content.decode()

    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    page = html.unescape(_page(client_dpo, request).content.decode())
    options = re.findall(r'<option value="\d+">([^<]*)</option>', page[page.index('id="rectification-field"'):])
    assert options == ["Call records · calls · number called (callee)"]
    assert "<td>+3225550000</td>\n      <td>—</td>" in page  # not "Carried out on …": nothing was written
    response = client_dpo.post(url, {"field": field.pk, "value": "+3225550001"})
    assert _messages(response) == ["Corrected value saved."]
    # Left as it is until its dry run is run again, which sees it searched too early and sends the notice back to pending.
    assert request.source_actions.get().status == ActionStatus.DONE

    rectify = run(rectify.id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert rectify.status == ActionStatus.DONE and not certificate.done_without_searching(rectify)
    assert source_db("SELECT callee FROM calls WHERE caller = :phone", phone=ANA_PHONE) == [{"callee": "+3225550001"}] * 2
    assert request.recipient_notices.get().status == NoticeStatus.SENT
    trail = [(action, "not_searched" in data) for action, data in request.events.order_by("pk").values_list("action", "data")]
    done = [index for index, (action, _) in enumerate(trail) if action == "source_action_done"]
    assert [trail[index] for index in done] == [("source_action_done", True), ("source_action_done", False)]
    assert ("rectification_value_set", False) in trail[done[0] : done[1]]


@sqlite_source
def test_the_corrected_values_name_their_fields_as_the_form_does_without_a_query_per_row(client_dpo, crm, dpo_actor):
    """The table showed "billing_address" where the form offers "billing address (billing_address)"."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    request = verified_request(RequestType.RECTIFICATION)
    category = crm.categories.get()
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Antwerpen")
    with CaptureQueriesContext(connection) as one_row:
        page = _page(client_dpo, request).content.decode()
    assert "<td>city (city)</td><td>Antwerpen</td>" in page

    category.fields.filter(name="city").update(label="town of residence")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="birth_year", value="1981")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="name", value="Ana Diaz")
    with CaptureQueriesContext(connection) as three_rows:
        page = _page(client_dpo, request).content.decode()
    assert "<td>town of residence (city)</td><td>Antwerpen</td>" in page
    assert "<td>year of birth (birth_year)</td><td>1981</td>" in page
    assert len(three_rows) == len(one_row)

    category.fields.filter(name="name").delete()  # removed from the inventory since: its name is all that is left
    assert "<td>name</td><td>Ana Diaz</td>" in _page(client_dpo, request).content.decode()


@sqlite_source
def test_the_export_page_names_the_sources_in_the_staff_readers_language_not_the_requests(client_dpo, cdr):
    """The manifest names them as the French subject's report does: an English reader saw "Relevés d'appels"."""
    from requests_app.models import SourceSystemTranslation

    SourceSystemTranslation.objects.create(source=cdr, language="fr", name="Relevés d'appels", purposes="x", retention="x", origin="x")
    request = verified_request(RequestType.ACCESS, language="fr")
    package = released_package(request)
    package.manifest = {
        "sources_not_searched": [{"source": cdr.slug, "name": "Relevés d'appels", "reason": "no_verified_identifier", "kind": "phone"}],
        "categories_left_out": [
            {"source": cdr.slug, "name": "Relevés d'appels", "category": "electronic_communications", "reason": "not_provided"},
            {"source": "gone", "name": "Ancien système", "category": "other", "reason": "not_provided"},  # deleted since
        ],
    }
    package.save()
    page = html.unescape(client_dpo.get(reverse("staff:export", args=[package.public_id])).content.decode())
    assert "Not searched: Call records (no verified phone number)" in page
    assert "<li>Call records, " in page and "<li>Ancien système, " in page
    assert "Relevés d'appels" not in page


@sqlite_source
def test_waiving_a_notice_requires_a_note(client_dpo, crm, erasure_request, dpo_actor):
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    notice = erasure_request.recipient_notices.get()
    url = reverse("staff:notice", args=[notice.public_id, "waive"])

    response = client_dpo.post(url, {"reason": "disproportionate", "note": "  "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.PENDING

    response = client_dpo.post(url, {"reason": "disproportionate", "note": "The mailer closed its account with us."})
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.WAIVED and notice.waived_by.username == "dpo"
    page = _page(client_dpo, erasure_request).content.decode()
    assert "Disproportionate effort: The mailer closed its account with us." in page


@sqlite_source
def test_a_notice_to_a_recipient_with_no_address_says_from_the_start_it_cannot_be_sent(client_dpo, crm, erasure_request, dpo_actor):
    """Sending it once the actions are done would only fail: the panel and the completion blockers say so at once, and
    what to do. The notice is still owed (Art. 19): it stays until an address is added or staff record why not."""
    Recipient.objects.create(source=crm, name="Authorities", country="BE")  # neither email nor webhook URL
    Recipient.objects.create(source=crm, name="Mailer", country="BE", notification_email="privacy@mailer.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)

    page = html.unescape(_page(client_dpo, erasure_request).content.decode())
    [authorities] = re.findall(r"<td>Authorities</td>(.*?)</tr>", page, re.DOTALL)
    assert "Cannot be sent: no email address or webhook URL. Add one to this recipient in the inventory, or waive this notice." in authorities
    assert "To send once the actions are done" not in authorities and "Waive" in authorities
    [mailer] = re.findall(r"<td>Mailer</td>(.*?)</tr>", page, re.DOTALL)
    assert "To send once the actions are done" in mailer
    assert (
        "Recipient Authorities cannot be notified (Art. 19): it has no email address or webhook URL. Add one in the inventory, "
        "or waive the notice."
    ) in actions.completion_blockers(erasure_request)


@sqlite_source
def test_the_waiver_note_says_it_is_quoted_to_the_subject_in_the_requests_language(client_dpo, crm, dpo_actor):
    """The letter quotes the note as typed: a French letter would otherwise carry an English staff note."""
    request = verified_request(RequestType.ERASURE, language="fr")
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=request, actor=dpo_actor)
    page = html.unescape(_page(client_dpo, request).content.decode())
    assert "Explanation (quoted in the letter to the subject)" in page
    assert "Write it in French, the language of the request. The supervisory authority may also ask to see it." in page
    assert "Never received this person's data" in page  # a reason to choose besides Art. 19's exceptions


@sqlite_source
def test_a_failed_notice_can_be_sent_again(client_dpo, crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks):
    recipient = Recipient.objects.create(source=crm, name="Mailer", country="BE")  # no address yet: sending fails
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    erasure_request.source_actions.update(status=ActionStatus.DONE)  # notices go once their source is done
    notice = erasure_request.recipient_notices.get()
    notice.status, notice.error = NoticeStatus.FAILED, "No email address or webhook URL is recorded for this recipient."
    notice.save()
    page = _page(client_dpo, erasure_request).content.decode()
    assert "Send again" not in page  # it would only fail again:
    assert "Add an email address or a webhook URL to this recipient in the inventory" in page

    recipient.notification_email = "privacy@mailer.example"
    recipient.save()
    assert "Send again" in _page(client_dpo, erasure_request).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_dpo.post(reverse("staff:notice", args=[notice.public_id, "resend"]))
    assert _messages(response) == ["The notice is being sent again."]
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT


@sqlite_source
def test_opening_an_action_or_notice_step_address_leads_to_its_request_page(client_dpo, crm, erasure_request, dpo_actor):
    """A form re-shown with its errors stays at its step's address, which takes only forms: signing in again
    after the session expired there, or reloading it from history, must land on the request page, not a blank 405."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action, notice = erasure_request.source_actions.get(), erasure_request.recipient_notices.get()
    page = reverse("staff:request", args=[erasure_request.reference])
    for address in (
        reverse("staff:source_action", args=[action.public_id, "done"]),
        reverse("staff:notice", args=[notice.public_id, "waive"]),
    ):
        response = client_dpo.get(address)
        assert (response.status_code, response.url) == (302, page), address
    action.refresh_from_db()
    notice.refresh_from_db()
    assert (action.status, notice.status) == (ActionStatus.PLANNED, NoticeStatus.PENDING)  # nothing done


@sqlite_source
def test_a_failed_notices_error_is_shown_in_the_readers_language(client_dpo, crm, erasure_request, dpo_actor):
    """The worker stores its own error messages in English, whatever language it runs in (an eager task
    has the staff member's); the dashboard showed them in English to a French reader."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE")  # no address: sending fails for good
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    erasure_request.source_actions.update(status=ActionStatus.DONE)  # notices go once their source is done
    notice = erasure_request.recipient_notices.get()
    with translation.override("fr"):
        notices.deliver(notice_id=notice.pk)
    notice.refresh_from_db()
    assert (notice.status, notice.error) == (NoticeStatus.FAILED, "No email address or webhook URL is recorded for this recipient.")

    url = reverse("staff:request", args=[erasure_request.reference])
    french = html.unescape(client_dpo.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    in_french = "Aucune adresse e-mail ni URL de webhook n'est enregistrée pour ce destinataire."
    assert f'<span class="error">{in_french}</span>' in french  # the notices panel
    assert french.count(in_french) == 2  # and the trail's "notice to a recipient failed" event
    assert notice.error not in french
    english = html.unescape(client_dpo.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode())
    assert f'<span class="error">{notice.error}</span>' in english and in_french not in english


@sqlite_source
def test_the_progress_endpoint_returns_the_status_as_json(client_dpo, crm, erasure_request, dpo_actor):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    actions.dry_run_start(action=action, actor=dpo_actor)  # the task is not run: the dry run stays under way
    url = reverse("staff:source_action_progress", args=[action.public_id])

    assert client_dpo.get(url).json() == {
        "status": "dry_running", "label": "Dry run in progress", "progress": {}, "working": True
    }
    assert f'data-action-progress="{url}"' in _page(client_dpo, erasure_request).content.decode()
    SourceAction.objects.filter(pk=action.pk).update(status=ActionStatus.AWAITING_APPROVAL)
    assert client_dpo.get(url).json()["working"] is False


def test_only_the_owner_or_the_dpo_confirms_a_manual_action(client, dpo, erasure_request, dpo_actor):
    owner = staff_in_role(roles.HANDLER, username="owen")
    SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=owner,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    routing.request_assign(request=erasure_request, assignee=staff_in_role(roles.HANDLER), actor=Actor.staff(dpo))
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    assert action.status == ActionStatus.MANUAL

    login_staff(client, staff_in_role(roles.HANDLER, username="other"))
    assert _step(client, action, "done", rows="3").status_code == 403
    client.logout()
    login_staff(client, owner)
    assert "Confirm done" in _page(client, erasure_request).content.decode()
    assert _step(client, action, "done", rows="-1").status_code == 400
    response = _step(client, action, "done", rows="3")
    assert _messages(response) == ["Recorded as done."]
    action.refresh_from_db()
    assert action.status == ActionStatus.DONE and action.done_by == owner and action.result["rows"] == 3


@sqlite_source
def test_the_completion_certificate_as_html_and_pdf(
    client_dpo, crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    for step in ("dry_run", "approve", "execute"):
        with django_capture_on_commit_callbacks(execute=True):
            _step(client_dpo, action, step)
    handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    page = _page(client_dpo, erasure_request).content.decode()
    html_url = reverse("staff:certificate", args=[erasure_request.reference])
    pdf_url = reverse("staff:certificate_pdf", args=[erasure_request.reference])
    assert html_url in page and pdf_url in page

    response = client_dpo.get(html_url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert erasure_request.reference in response.content.decode()
    response = client_dpo.get(pdf_url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="certificate-{erasure_request.reference}.pdf"'
    assert response.content.startswith(b"%PDF")
    assert "in the subject's language" not in page  # the subject wrote in English, as the DPO reads

    # A French subject's certificate, for staff to send them: in French on request, in the reader's language otherwise.
    type(erasure_request).objects.filter(pk=erasure_request.pk).update(language="fr")
    page = _page(client_dpo, erasure_request).content.decode()
    assert f'<a href="{pdf_url}?language=fr" hreflang="fr">PDF in the subject\'s language (French)</a>' in page
    assert '<html lang="fr">' in client_dpo.get(html_url + "?language=fr").content.decode()
    assert '<html lang="en">' in client_dpo.get(html_url).content.decode()
    assert client_dpo.get(html_url + "?language=xx").status_code == 200  # not one of ours: the reader's


@sqlite_source
def test_a_rejected_request_links_its_certificate_too(client_dpo, crm, erasure_request, dpo):
    """Only a completed request's page linked it: the record of a rejection is owed to an authority as much."""
    identity_proof_asked(erasure_request, dpo)
    assert reverse("staff:certificate", args=[erasure_request.reference]) not in _page(client_dpo, erasure_request).content.decode()
    handling.request_reject(
        request=erasure_request, actor=Actor.staff(dpo), ground="identity_not_verified",
        explanation="The document was illegible.", expected_status=erasure_request.status,
    )
    page = _page(client_dpo, erasure_request).content.decode()
    assert "Request handling certificate: <a href=\"" + reverse("staff:certificate", args=[erasure_request.reference]) in page
    assert "Completion certificate" not in page


def test_the_audit_trail_shows_status_labels_and_readable_data(client_dpo, db):
    request = verified_request(RequestType.ACCESS)
    page = _page(client_dpo, request).content.decode()
    assert "→ In progress" in page and "→ in_progress" not in page
    assert "channel: Web form · rights: Access a copy of their data" in page and "{&#x27;channel&#x27;" not in page


def test_no_action_is_offered_before_the_request_is_in_progress(client_dpo, db):
    from requests_app.models import Status
    from requests_app.services.intake import RightDetails
    from tests.factories import request_in_status

    new = request_in_status(Status.NEW, rights=[RightDetails(RequestType.ERASURE)])
    page = _page(client_dpo, new).content.decode()
    assert "The source systems are acted on once the request is in progress, after the identity check." in page
    assert "Plan actions" not in page


@sqlite_source
def test_a_corrected_value_sent_after_the_request_closed_is_refused_with_a_message(client_dpo, crm):
    """QA: saved from a page loaded before completion, it answered 409 with the request page, which no longer shows the
    panel's forms: the refusal, written on the hidden form, was shown nowhere."""
    request = verified_request(RequestType.RECTIFICATION)
    PrivacyRequest.objects.filter(pk=request.pk).update(status=Status.COMPLETED)
    url = reverse("staff:rectification_change", args=[request.reference])

    response = client_dpo.post(url, {"field": crm.categories.get().fields.get(name="city").pk, "value": "Gent"}, follow=True)
    assert "Only an open, verified request can be acted on." in response.content.decode()
    assert not request.rectification_changes.exists()


@sqlite_source
def test_waiving_a_notice_waived_since_the_page_was_loaded_says_why_it_is_refused(client_dpo, crm, erasure_request, dpo_actor):
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    notice = erasure_request.recipient_notices.get()
    notices.waive(notice=notice, actor=dpo_actor, reason="impossible", note="The mailer no longer exists.")  # another tab
    url = reverse("staff:notice", args=[notice.public_id, "waive"])

    response = client_dpo.post(url, {"reason": "disproportionate", "note": "Too costly."}, follow=True)
    assert "This recipient has already been notified or excused." in response.content.decode()
    notice.refresh_from_db()
    assert notice.waiver_note == "The mailer no longer exists."


@sqlite_source
def test_waiving_a_notice_of_a_withdrawn_request_is_refused_with_a_message(client_dpo, crm, erasure_request, dpo_actor):
    """QA: the waiver was recorded on the closed request, with its audit events."""
    Recipient.objects.create(source=crm, name="Mailer", country="BE")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    notice = erasure_request.recipient_notices.get()
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())
    events = erasure_request.events.count()

    url = reverse("staff:notice", args=[notice.public_id, "waive"])
    response = client_dpo.post(url, {"reason": "disproportionate", "note": "Too costly."}, follow=True)
    page = html.unescape(response.content.decode())
    assert "This request is withdrawn: its notices to recipients can no longer be waived or sent again." in page
    assert "Recorded: this recipient will not be notified." not in page
    [mailer] = re.findall(r"<td>Mailer</td>(.*?)</tr>", page, re.DOTALL)
    assert "Not needed: nothing changed in this source" in mailer and "Waive" not in mailer
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.NOT_NEEDED and erasure_request.events.count() == events


def test_confirming_a_manual_action_with_a_wrong_count_after_a_withdrawal_says_so(client_dpo, dpo, erasure_request, dpo_actor):
    """The form is no longer on the page once the request is closed: its error is a message there instead."""
    SourceSystem.objects.create(
        slug="paper", name="Paper files", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL, owner=dpo,
        purposes="Archive", legal_basis=LegalBasis.CONTRACT, retention="5 years", origin="The subject",
    )
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    intake.request_withdraw(request=erasure_request, actor=Actor.subject())

    response = client_dpo.post(reverse("staff:source_action", args=[action.public_id, "done"]), {"rows": "-1"}, follow=True)
    assert "Ensure this value is greater than or equal to 0." in response.content.decode()
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.MANUAL


@sqlite_source
def test_executing_an_erasure_asks_first_with_what_the_dry_run_found_and_changes_nothing_until_confirmed(
    client_dpo, crm, erasure_request, dpo_actor, source_db, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    for step in ("dry_run", "approve"):
        with django_capture_on_commit_callbacks(execute=True):
            _step(client_dpo, action, step)
    confirm_url = reverse("staff:source_action_confirm", args=[action.public_id, "execute"])
    panel = _page(client_dpo, erasure_request).content.decode()
    assert f'<form method="get" action="{confirm_url}"><button class="danger">Execute<span class="visually-hidden">: CRM</span>' in panel
    events = erasure_request.events.count()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_dpo.get(confirm_url)

    page = html.unescape(response.content.decode())
    assert response.status_code == 200
    assert "<h1>Carry out the erasure in CRM?</h1>" in page and "<dd>Erasure</dd>" in page
    assert "subscribers: 2 rows, 5 fields" in page and "Searched by 1 verified identifier." in page
    assert f'action="{reverse("staff:source_action", args=[action.public_id, "execute"])}"' in page
    assert ">Carry out the erasure in CRM</button>" in page
    assert callbacks == [] and erasure_request.events.count() == events
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.APPROVED
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]  # nothing erased yet

    with django_capture_on_commit_callbacks(execute=True):
        response = _step(client_dpo, action, "execute")  # the page's button: the step's own checks, unchanged
    assert _messages(response) == ["Execution started."]
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.DONE
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 0}]


@sqlite_source
def test_executing_a_rectification_asks_first_with_the_corrected_values_it_writes(client_dpo, crm, dpo_actor, run):
    """The confirmation page of a rectification answered 500: the only way to carry one out (and to retry it)."""
    request = verified_request(RequestType.RECTIFICATION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    action = run(request.source_actions.get().id, "dry_run", "approve", actor=dpo_actor)

    response = client_dpo.get(reverse("staff:source_action_confirm", args=[action.public_id, "execute"]))

    page = html.unescape(response.content.decode())
    assert response.status_code == 200
    assert "<td>subscribers</td><td>city (city)</td><td>Antwerpen</td>" in page
    assert ">Carry out the rectification in CRM</button>" in page
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.APPROVED


@sqlite_source
def test_the_execute_confirmation_is_refused_to_an_auditor_and_sends_back_an_action_not_approved(
    client, client_dpo, crm, erasure_request, dpo_actor, django_capture_on_commit_callbacks
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = erasure_request.source_actions.get()
    confirm_url = reverse("staff:source_action_confirm", args=[action.public_id, "execute"])

    response = client_dpo.get(confirm_url)  # no dry run, no approval
    assert response.status_code == 302 and response.url.endswith("#source-actions")
    assert _messages(response) == ["This action is not waiting to be executed: see its status below."]

    auditor = Client()
    login_staff(auditor, staff_in_role("Auditor", username="auditor-confirm"))
    assert auditor.get(confirm_url).status_code == 403
    assert SourceAction.objects.get(pk=action.pk).status == ActionStatus.PLANNED


@sqlite_source
def test_an_action_a_rejection_left_undone_says_it_will_not_be_carried_out_and_offers_no_step(
    client_dpo, crm, cdr, erasure_request, dpo, dpo_actor, run
):
    """Approved, then the request was rejected: the panel read "Approved", as if it were about to run."""
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    approved = run(erasure_request.source_actions.get(source=crm).id, "dry_run", "approve", actor=dpo_actor)
    identity_proof_asked(erasure_request, dpo)
    handling.request_reject(
        request=erasure_request, actor=dpo_actor, ground="identity_not_verified",
        explanation="The document was illegible.", expected_status=erasure_request.status,
    )
    erasure_request.refresh_from_db()

    page = _page(client_dpo, erasure_request).content.decode()
    said = f"Not carried out: the request was rejected on {date_in_words(erasure_request.closed_at)}."
    for source in ("CRM", "Call records"):
        cells = _action_cells(page, source)
        assert f'<span class="action-status" aria-live="polite">{said}</span>' in cells[2]
        assert "<form" not in cells[6] and "<button" not in cells[6]
    assert "dpo, " in _action_cells(page, "CRM")[4]  # the approval stands, as a fact
    assert "polite\">Approved<" not in page and "Planned: dry run needed" not in page
    progress = client_dpo.get(reverse("staff:source_action_progress", args=[approved.public_id])).json()
    assert progress["status"] == "approved" and progress["label"] == said
