"""A right refused on completion and the work in the source systems: the refused right's actions neither block
completion nor run after it, nor hold back a recipient's notice; a granted right's still block; a right carried
out cannot be refused."""

import datetime

import pytest
from django.core import mail
from django.utils import timezone

from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind, ActionStatus, ErasureException, LegalHold, NoticeStatus, PrivacyRequest, Recipient, RequestType, SourceAction, Status,
)
from requests_app.services import actions, certificate, handling, notices
from requests_app.services.handling import RightRefusal
from requests_app.wording import date_in_words
from tests.actions.conftest import verified_request
from tests.actions.test_notices import carry_out_actions

TELECOM_LAW = "The electronic communications law makes us keep your subscriber record for 12 months."
ERASURE_REFUSED = RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW)


@pytest.fixture
def correction_and_erasure(crm, dpo_actor, django_capture_on_commit_callbacks):
    """A rectification of the CRM's city and an erasure, both planned there; the CRM has a recipient. A legal hold
    keeps the CRM whole, as the erasure's dry run shows: refusing the erasure on it needs that (actions.beyond_the_holds)."""
    request = verified_request(RequestType.RECTIFICATION, RequestType.ERASURE)
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    LegalHold.objects.create(source=crm, ground=ErasureException.LEGAL_OBLIGATION, basis=TELECOM_LAW, until=datetime.date(2099, 12, 31))
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="city", value="Antwerpen")
    actions.plan_actions(request=request, actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=True):
        actions.dry_run_start(action=request.source_actions.get(kind=ActionKind.ERASE), actor=dpo_actor)
    return request


def test_a_granted_rights_unfinished_action_still_blocks_the_completion(correction_and_erasure, dpo_actor):
    with pytest.raises(RequestError) as refusal:
        handling.request_complete(
            request=correction_and_erasure, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED]
        )
    assert "Rectification in CRM: planned: dry run needed." in str(refusal.value)
    assert "Erasure in CRM" not in str(refusal.value)  # refused: it needs no doing
    correction_and_erasure.refresh_from_db()
    assert correction_and_erasure.status == Status.IN_PROGRESS and correction_and_erasure.refused_rights == []


def test_the_refused_rights_unfinished_action_neither_blocks_nor_runs_nor_holds_back_the_notice(
    crm, correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks
):
    request = correction_and_erasure
    rectification = request.source_actions.get(kind=ActionKind.RECTIFY)
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=rectification.pk), actor=dpo_actor)
    erasure = request.source_actions.get(kind=ActionKind.ERASE)
    notice = request.recipient_notices.get()
    assert notice.status == NoticeStatus.PENDING  # it waits for everything planned in the CRM, the erasure too
    with pytest.raises(RequestError, match="Erasure in CRM: dry run ready: awaiting approval"):
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS)

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED])

    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    body = request.messages.get().body
    assert "We corrected the following in CRM: city." in body
    assert "We erased" not in body
    assert f"We cannot grant this part of your request: “Erase my data”. The reason: Legal obligation to retain the data (Art. 17(3)(b) GDPR).\n\n{TELECOM_LAW}" in body
    # The letter is written before the notice it queues goes out: it names the recipient as being told.
    assert "We are telling the following recipients of your data about these changes (Article 19 GDPR): Billing partner." in body
    assert "We told the following recipients" not in body
    # The recipient hears of the correction, the one change made, now that nothing else is to come.
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT
    [told] = [message for message in mail.outbox if "art19@partner.example" in message.to]
    assert "- Rectified (" in told.body and "Antwerpen" in told.body and "Erased" not in told.body
    # The erasure was never carried out, and cannot be now: the request is closed.
    assert SourceAction.objects.get(pk=erasure.pk).status == ActionStatus.AWAITING_APPROVAL  # as its dry run left it
    with pytest.raises(RequestError, match="Only an open, verified request can be acted on."):
        actions.dry_run_start(action=erasure, actor=dpo_actor)
    # The certificate says so, beside the right refused and its ground.
    html = certificate.render_certificate_html(request)
    day = date_in_words(request.closed_at)
    assert f"<dd>Not carried out: its right was refused when the request was completed on {day}.</dd>" in html
    assert "Planned: dry run needed" not in html
    assert "Correct or complete their data (granted), Erase their data (refused: Legal obligation to retain the data (Art. 17(3)(b)))" in html


def test_under_another_law_the_letter_names_the_recipient_being_told_without_citing_the_gdpr(
    correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks
):
    request = correction_and_erasure
    PrivacyRequest.objects.filter(pk=request.pk).update(regime="ccpa")
    rectification = request.source_actions.get(kind=ActionKind.RECTIFY)
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=rectification.pk), actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED])

    body = request.messages.get().body
    # The CCPA Regulations' duty to instruct those who hold the data corrected (wording.CITATIONS).
    assert "We are telling the following recipients of your data about these changes (Cal. Code Regs. tit. 11, § 7023(c)): Billing partner." in body
    assert "Article 19" not in body


def test_a_notice_whose_task_was_lost_after_the_refusal_is_queued_again(correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks):
    """The refused erasure, left unexecuted, must not keep the sweep from sending what the correction changed."""
    request = correction_and_erasure
    rectification = request.source_actions.get(kind=ActionKind.RECTIFY)
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=rectification.pk), actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=False):  # the broker loses the notice's task
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED])
    notice = request.recipient_notices.get()
    assert notice.status == NoticeStatus.PENDING and notice.queued_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        assert notices.requeue_lost_notices(now=timezone.now() + datetime.timedelta(hours=3)) == 1
    notice.refresh_from_db()
    assert notice.status == NoticeStatus.SENT


def test_an_erasure_carried_out_cannot_be_refused(crm, correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks):
    carry_out_actions(correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks)
    with pytest.raises(RequestError, match="“Erase their data” cannot be refused: Erasure in CRM: done."):
        handling.request_complete(
            request=correction_and_erasure, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED]
        )
    correction_and_erasure.refresh_from_db()
    assert correction_and_erasure.status == Status.IN_PROGRESS and not correction_and_erasure.messages.exists()


@pytest.mark.parametrize("stopped", [ActionStatus.FAILED, ActionStatus.STALE])
def test_an_erasure_that_stopped_part_way_having_erased_rows_cannot_be_refused(correction_and_erasure, dpo_actor, stopped):
    """An HTTP source has no rollback: rows erased before the run stopped are erased, and a letter refusing the
    erasure would deny it."""
    erasure = correction_and_erasure.source_actions.get(kind=ActionKind.ERASE)
    SourceAction.objects.filter(pk=erasure.pk).update(
        status=stopped, result={"categories": [{"category": "profile", "rows": 3, "deleted": True}]}
    )
    with pytest.raises(RequestError, match="“Erase their data” cannot be refused: Erasure in CRM"):
        handling.request_complete(
            request=correction_and_erasure, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED]
        )
    correction_and_erasure.refresh_from_db()
    assert correction_and_erasure.refused_rights == [] and not correction_and_erasure.messages.exists()


def test_a_refused_rights_manual_action_is_not_offered_for_confirmation_once_the_request_closed(
    client, correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks
):
    """A system owner's task of a refused right stays waiting, but confirming it would be refused (the request is
    closed): the page offers no button only for the service to refuse it."""
    from django.urls import reverse

    from tests.conftest import login_staff

    request = correction_and_erasure
    rectification = request.source_actions.get(kind=ActionKind.RECTIFY)
    for service in (actions.dry_run_start, actions.approve, actions.execute):
        with django_capture_on_commit_callbacks(execute=True):
            service(action=SourceAction.objects.get(pk=rectification.pk), actor=dpo_actor)
    erasure = request.source_actions.get(kind=ActionKind.ERASE)
    SourceAction.objects.filter(pk=erasure.pk).update(status=ActionStatus.MANUAL)  # as a manual source's would be
    confirm = reverse("staff:source_action", args=[erasure.public_id, "done"])
    login_staff(client, dpo_actor.user)
    assert confirm in client.get(reverse("staff:request", args=[request.reference])).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS, refused=[ERASURE_REFUSED])
    assert confirm not in client.get(reverse("staff:request", args=[request.reference])).content.decode()


def test_every_right_refused_each_on_its_own_ground_runs_no_action_and_tells_no_recipient(
    crm, correction_and_erasure, dpo_actor, django_capture_on_commit_callbacks
):
    """Nothing was erased or corrected: the planned actions never run, and no recipient has anything to be told (Art. 19)."""
    request = correction_and_erasure
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(
            request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS,
            refused=[ERASURE_REFUSED, RightRefusal(RequestType.RECTIFICATION, "other", "Antwerpen is your employer's address.")],
        )

    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.granted_rights == []
    # The correction as planned, the erasure as its dry run left it.
    assert set(request.source_actions.values_list("status", flat=True)) == {ActionStatus.PLANNED, ActionStatus.AWAITING_APPROVAL}
    assert request.recipient_notices.get().status == NoticeStatus.NOT_NEEDED
    assert not [message for message in mail.outbox if "art19@partner.example" in message.to]
    body = request.messages.get().body
    assert "recipients" not in body and "We erased" not in body and "We corrected" not in body
    assert "The reason: Antwerpen is your employer's address." in body
    html = certificate.render_certificate_html(request)
    assert "Every right asked was refused, each on its own ground: none was carried out." in html
    assert html.count("<dd>Not carried out: its right was refused when the request was completed on ") == 2
    assert "(granted)" not in html and "Recipients told" not in html
