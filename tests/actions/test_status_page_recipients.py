"""Art. 19: the subject's status page names the recipients of the data acted on, and whether
each was told of the erasure, rectification or restriction."""

import datetime
import re

from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import (
    ActionStatus,
    ErasureException,
    LegalHold,
    NoticeStatus,
    Recipient,
    RequestType,
    Status,
)
from requests_app.services import actions, handling, intake, notices
from requests_app.services.handling import RightRefusal
from tests.actions.conftest import verified_request
from tests.actions.test_notices import carry_out_actions
from tests.factories import released_package


def _status_page(client, request) -> str:
    response = client.get(reverse("status", args=[request.reference, request.secret]))
    assert response.status_code == 200
    return response.content.decode()


def _recipient_lines(html: str) -> list[str]:
    """The recipient list's items, whitespace collapsed."""
    [items] = re.findall(r'<ul class="recipients">(.*?)</ul>', html, re.DOTALL)
    return [" ".join(item.split()) for item in re.findall(r"<li>(.*?)</li>", items, re.DOTALL)]


def test_the_status_page_lists_the_recipients_and_whether_each_was_told(
    crm, cdr, erasure_request, dpo_actor, client, django_capture_on_commit_callbacks
):
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    excused = Recipient.objects.create(source=crm, name="Old reseller", country="France")
    # The call records are all kept: their recipient has nothing to be told.
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=30)
    )
    Recipient.objects.create(source=cdr, name="Interconnect partner", country="Netherlands", notification_email="x@ic.example")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)

    html = _status_page(client, erasure_request)
    assert "Who receives data from the systems concerned" in html
    assert _recipient_lines(html) == [
        "Billing partner (Belgium): not told yet",
        "Interconnect partner (Netherlands): not told yet",
        "Old reseller (France): not told yet",
    ]

    carry_out_actions(erasure_request, dpo_actor, django_capture_on_commit_callbacks)
    notices.waive(
        notice=erasure_request.recipient_notices.get(recipient=excused), actor=dpo_actor,
        reason="disproportionate", note="Contract ended in 2019.",
    )
    html = _status_page(client, erasure_request)
    sent_on = erasure_request.recipient_notices.get(status=NoticeStatus.SENT).sent_at
    assert _recipient_lines(html) == [
        f"Billing partner (Belgium): told on {timezone.localtime(sent_on):%-d %B %Y}",
        "Interconnect partner (Netherlands): nothing to tell: we changed none of your data in the system it receives data from",
        "Old reseller (France): not told (disproportionate effort)",
    ]
    assert "Contract ended in 2019." not in html  # staff's note is for the letter, not the page


def test_a_request_without_recipient_notices_shows_no_recipient_section(crm, dpo_actor, client):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)  # the CRM has no recipients
    html = _status_page(client, request)
    assert "Who receives data from the systems concerned" not in html


def test_a_recipient_of_a_system_that_could_not_be_searched_is_not_said_to_hold_unchanged_data(
    cdr, dpo_actor, client, django_capture_on_commit_callbacks
):
    request = verified_request(RequestType.ERASURE)
    request.identities.filter(kind="phone").update(verified_at=None)  # the call records are found by phone number
    Recipient.objects.create(source=cdr, name="Interconnect partner", country="Netherlands", notification_email="x@ic.example")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)

    assert _recipient_lines(_status_page(client, request)) == [
        "Interconnect partner (Netherlands): nothing to tell: we could not search the system it receives data "
        "from, so we changed nothing there"
    ]


def test_withdrawing_after_part_of_an_erasure_says_what_it_does_not_undo(client, crm, cdr, dpo_actor, django_capture_on_commit_callbacks):
    """The web logs were erased, the rest only approved, then the subject withdrew: the page said "Nothing more
    will happen", never that some data was gone, and called the untouched systems' recipients "not told yet"."""
    request = verified_request(RequestType.ERASURE)
    Recipient.objects.create(source=cdr, name="Interconnect partner", country="Netherlands", notification_email="x@ic.example")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks, sources=[crm])

    before = _status_page(client, request)
    assert "Some of what you asked for has been done already, and withdrawing will not undo it:" in before
    assert "<li>We erased your data in CRM: contact information.</li>" in before

    client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "on"})
    after = _status_page(client, request)
    assert "Before you withdrew it, we had already done this, which withdrawing does not undo:" in after
    assert "<li>We erased your data in CRM: contact information.</li>" in after
    assert "Interconnect partner (Netherlands): nothing to tell: the request closed before we changed anything" in " ".join(
        _recipient_lines(after)
    )


def test_a_closed_requests_notice_still_pending_reads_as_nothing_changed_unless_rows_changed_part_way(client, cdr, dpo_actor):
    """A request closed before closing settled its notices (the upgrade) keeps them pending: its recipients are not
    "not told yet" for ever. One whose source's run stopped part-way after changing rows is: staff settle it."""
    request = verified_request(RequestType.ERASURE)
    Recipient.objects.create(source=cdr, name="Interconnect partner", country="Netherlands", notification_email="x@ic.example")
    actions.plan_actions(request=request, actor=dpo_actor)
    intake.request_withdraw(request=request, actor=Actor.subject())
    request.recipient_notices.update(status=NoticeStatus.PENDING)  # as closing left it before it settled notices

    assert _recipient_lines(_status_page(client, request)) == [
        "Interconnect partner (Netherlands): nothing to tell: the request closed before we changed anything in the "
        "system it receives data from"
    ]
    request.source_actions.filter(source=cdr).update(status=ActionStatus.FAILED, result={"changed_before_failing": True})
    assert _recipient_lines(_status_page(client, request)) == ["Interconnect partner (Netherlands): not told yet"]


def test_the_withdrawal_email_says_what_was_done_already_in_the_requests_language(
    crm, cdr, dpo_actor, django_capture_on_commit_callbacks
):
    """What the page says after a withdrawal, the subject reads in the email too: they may not have withdrawn it."""
    request = verified_request(RequestType.ERASURE, language="de")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks, sources=[crm])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        intake.request_withdraw(request=request, actor=Actor.subject())

    (email,) = [sent for sent in mail.outbox if sent.to == [request.subject_email]]
    assert "was die Rücknahme nicht rückgängig macht:\n- Wir haben Ihre Daten in CRM gelöscht" in email.body
    assert "<li>Wir haben Ihre Daten in CRM gelöscht" in email.alternatives[0][0]


def test_the_status_page_names_the_recipients_in_the_language_it_is_read_in(crm, erasure_request, dpo_actor, client):
    from requests_app.models import RecipientTranslation

    partner = Recipient.objects.create(source=crm, name="Group companies", country="Belgium")
    RecipientTranslation.objects.create(recipient=partner, language="fr", name="Sociétés du groupe", country="Belgique")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)

    assert _recipient_lines(_status_page(client, erasure_request))[0].startswith("Group companies (Belgium):")
    client.cookies["django_language"] = "fr"
    # The colon spaced as French writes it (a no-break space, which the collapsing makes a space).
    assert _recipient_lines(_status_page(client, erasure_request))[0].startswith("Sociétés du groupe (Belgique) :")


def test_a_system_whose_only_action_answered_a_refused_right_is_not_said_to_have_been_acted_on(
    crm, cdr, dpo_actor, client, django_capture_on_commit_callbacks
):
    """The erasure planned in the CRM was refused on completion and never ran: its recipient's system was not
    acted on for the request, and the page must not list it as one."""
    request = verified_request(RequestType.ACCESS, RequestType.ERASURE)
    released_package(request)
    Recipient.objects.create(source=crm, name="Billing partner", country="Belgium", notification_email="art19@partner.example")
    for source in (crm, cdr):  # kept whole, as the dry runs show: what refusing the erasure on the hold needs
        LegalHold.objects.create(source=source, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law.", until=datetime.date(2099, 12, 31))
    actions.plan_actions(request=request, actor=dpo_actor)
    for erasure in request.source_actions.all():
        with django_capture_on_commit_callbacks(execute=True):
            actions.dry_run_start(action=erasure, actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(
            request=request, actor=dpo_actor, letter="", expected_status=Status.IN_PROGRESS,
            refused=[RightRefusal(RequestType.ERASURE, "legal_obligation", "Telecom law.")],
        )

    html = _status_page(client, request)
    assert "Your request is complete, but we could not grant all of it" in html
    assert "Who receives data from the systems concerned" not in html
    assert "systems we acted on" not in html and "Billing partner" not in html
