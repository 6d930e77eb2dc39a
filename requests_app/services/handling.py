"""Working a request: messages and letters, notes, identity checks, completion,
rejection, forwarding to the controller and bulk actions.

Every function here checks the actor's role (requests_app.roles), changes
status only through lifecycle.transition, and writes its audit event in the
same transaction as the change.
"""

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app import emails, letters, lifecycle, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import (
    GROUNDS_AGAINST_A_MARKETING_OBJECTION,
    REFUSABLE_GROUNDS,
    RIGHTS_THE_SUBJECT_ASKS,
    TEXT_MAX_CHARS,
    Attachment,
    IdentityKind,
    InternalNote,
    Message,
    MessageDirection,
    PrivacyRequest,
    Regime,
    RejectionGround,
    RequestedRight,
    RequestType,
    ResponseTemplate,
    SourceAction,
    Status,
    SubjectIdentity,
    TemplatePurpose,
    VerificationMethod,
    method_proves,
    proving_methods,
    ground_can_refuse,
    no_email_to_write_to,
    refuses_only_the_whole_request,
    rights_mask,
)
from requests_app.services import deadlines as deadline_service
from requests_app.services import agents, intake
from requests_app.services.actions import answered_already, completion_blockers, prefetch_for_completion, retention_refusal
from requests_app.services.certificate import answered_in_part, categories_instead_of_pieces, outcome_summary
from requests_app.wording import (
    amount_in_words,
    citation,
    cites_gdpr_articles,
    date_in_words,
    in_sentence,
    label_citing_its_law,
    label_in_letter,
    with_full_stop,
)

logger = logging.getLogger(__name__)

# Where a subject may complain, per regime (GDPR Art. 12(4) and 77).
# Named in the subject's language in every rejection (Art. 12(4)), after "in particular", alone or two together
# (supervisory_authorities): translators decline them to fit (German: dative, "bei der Datenschutzbehörde").
SUPERVISORY_AUTHORITIES = {
    # Translators: the remark on the languages is for readers of other languages; leave it out in French, Dutch and
    # German, the languages it names.
    "gdpr": gettext_lazy(
        "the Data Protection Authority (Autorité de protection des données / Gegevensbeschermingsautoriteit), "
        "Rue de la Presse 35, 1000 Brussels, www.dataprotectionauthority.be, which takes complaints in French, Dutch or "
        "German"
    ),
    "uk_gdpr": gettext_lazy(
        "the Information Commissioner's Office (ICO), Wycliffe House, Water Lane, Wilmslow SK9 5AF, ico.org.uk"
    ),
    "ccpa": gettext_lazy("the California Privacy Protection Agency, cppa.ca.gov, or the California Attorney General"),
    "lgpd": gettext_lazy("the Autoridade Nacional de Proteção de Dados (ANPD), www.gov.br/anpd"),
}


def supervisory_authorities(regime: str) -> list:
    """Where the subject of a request under `regime` may complain: the authority of their regime, and the
    Belgian one too where it is another. The controller is established in Brussels, so the GDPR applies to every
    request whatever its regime (Art. 3(1)), as its deadline does (deadlines.due_date), and with it the right to
    complain to a supervisory authority of the Union (Art. 77): the controller's own is named."""
    belgian = SUPERVISORY_AUTHORITIES["gdpr"]
    if regime == "gdpr" or regime not in SUPERVISORY_AUTHORITIES:
        return [belgian]
    return [SUPERVISORY_AUTHORITIES[regime], belgian]


def supervisory_authorities_in_words(regime: str) -> str:
    """supervisory_authorities(regime) named in a sentence, in the active language, as letters and emails name them
    after "in particular" or "complain to"."""
    authorities = [str(authority) for authority in supervisory_authorities(regime)]
    if len(authorities) == 1:
        return authorities[0]
    # Translators: two supervisory authorities, each already declined as the sentence needs (see SUPERVISORY_AUTHORITIES).
    return _("%(authority)s, or %(belgian_authority)s") % {"authority": authorities[0], "belgian_authority": authorities[1]}


# Wording used when the DPO has not written a template for the purpose and language: Django
# templates, translated into the subject's language (translators keep the {{ }} placeholders).
DEFAULT_TEMPLATES = {
    TemplatePurpose.MESSAGE: ("", "{{ body }}"),
    TemplatePurpose.INFORMATION_REQUEST: (
        gettext_lazy("We need more information about your request {{ reference }}"),
        # The clock stops only where the regime allows it and the answer is not late (pause_refusal).
        # A subject with no email address (a request recorded from a letter) gets the text by post: no status page.
        gettext_lazy(
            "{{ body }}\n\n{% if by_post %}Please reply by letter, quoting the reference {{ reference }}.{% else %}Please "
            "reply on your request's status page.{% endif %}{% if clock_paused %} The time we have to answer is paused "
            "until you reply.{% endif %}"
        ),
    ),
    TemplatePurpose.COMPLETION: (
        gettext_lazy("Your privacy request {{ reference }} is complete"),
        gettext_lazy("We have completed your request {{ reference }} ({{ rights }}).\n\n{{ body }}"),
    ),
    TemplatePurpose.REJECTION: (
        gettext_lazy("Your privacy request {{ reference }}"),
        gettext_lazy("We cannot grant your request {{ reference }} ({{ rights }}).\n\nThe reason: {{ reason }}\n\n{{ body }}"),
    ),
    # Told before anything is charged, with the choice to withdraw instead (EDPB Guidelines 01/2022 on the
    # right of access, para. 192). How to pay is the controller's own business: staff send it once accepted.
    TemplatePurpose.FEE: (
        gettext_lazy("A fee for your privacy request {{ reference }}"),
        gettext_lazy(
            "We consider your request {{ reference }} ({{ rights }}) manifestly unfounded or excessive. As the law "
            "allows for such a request, we intend to charge a reasonable fee, based on our administrative costs, for "
            "answering it: {{ fee }}.\n\n{{ body }}\n\nIf you do not want to pay it, you may withdraw your request"
            "{% if by_post %} by letter{% else %} on its status page{% endif %}, and nothing will be charged. If you "
            "accept it, {% if by_post %}tell us by letter, quoting the reference {{ reference }}{% else %}reply on "
            "your request's status page{% endif %}, and we will tell you how to pay."
        ),
    ),
    # Art. 18(3): told before the restriction is lifted, with the day and the reason, while there is time to object.
    # How to object, and the right to complain, end every such notice, a DPO's wording too (lifting.objection_paragraph).
    TemplatePurpose.RESTRICTION_LIFT: (
        gettext_lazy("The restriction of your data in {{ source }} will be lifted"),
        gettext_lazy(
            "Following your request {{ reference }}, we restricted the processing of your data in {{ source }}. We will "
            "lift that restriction on {{ lift_on }} at the earliest, because: {{ body }}\n\nFrom then on, we may process "
            "that data again as before the restriction."
        ),
    ),
    # The lifting announced above is called off before it ran: the restriction stays, and the subject
    # hears of any later lifting before it too.
    TemplatePurpose.RESTRICTION_LIFT_CANCELLED: (
        gettext_lazy("The restriction of your data in {{ source }} stays in force"),
        gettext_lazy(
            "Following your request {{ reference }}, we restricted the processing of your data in {{ source }}, and "
            "wrote to you that we would lift that restriction on {{ lift_on }} at the earliest. We will not lift it: "
            "the restriction stays in force, because: {{ body }}\n\nIf we decide to lift it later, we will write to you "
            "again before we do."
        ),
    ),
}
# DEFAULT_TEMPLATES that speak to the subject of their own data, as they go to an agent who filed for the subject
# (services.agents): of the data of the person they act for. A DPO's template tests {% if to_agent %} for the same.
DEFAULT_TEMPLATES_TO_AN_AGENT = {
    TemplatePurpose.RESTRICTION_LIFT: (
        gettext_lazy("The restriction of the data of the person you are acting for in {{ source }} will be lifted"),
        gettext_lazy(
            "Following your request {{ reference }}, we restricted the processing of the data of the person you are "
            "acting for in {{ source }}. We will lift that restriction on {{ lift_on }} at the earliest, because: "
            "{{ body }}\n\nFrom then on, we may process that data again as before the restriction."
        ),
    ),
    TemplatePurpose.RESTRICTION_LIFT_CANCELLED: (
        gettext_lazy("The restriction of the data of the person you are acting for in {{ source }} stays in force"),
        gettext_lazy(
            "Following your request {{ reference }}, we restricted the processing of the data of the person you are "
            "acting for in {{ source }}, and wrote to you that we would lift that restriction on {{ lift_on }} at the "
            "earliest. We will not lift it: the restriction stays in force, because: {{ body }}\n\nIf we decide to "
            "lift it later, we will write to you again before we do."
        ),
    ),
}


def render_letter(
    request: PrivacyRequest, purpose: str, *, body: str, reason: str = "", fee: str = "", clock_paused: bool | None = None,
    source: str = "", lift_on: datetime.date | None = None, outcome: str | None = None,
) -> tuple[str, str]:
    """The subject line and text of a message or letter, from the DPO's template if there is one.

    Looked up by purpose, the request's first type and language, falling back
    to "any type", then to the built-in wording (an agent's where it has its own,
    DEFAULT_TEMPLATES_TO_AN_AGENT; a DPO's template tests {{ to_agent }}). A DPO's template that cannot be
    rendered is a RequestError, raised before anything is sent. A completion
    letter's `outcome`, the paragraphs the law requires it to say, goes where
    its template has {{ outcome }}, or at its end (letters.place_outcome).
    """
    rights = list(request.rights.all())
    refused = set(request.refused_rights)
    first_type = rights[0].right if rights else ""
    template = (
        ResponseTemplate.objects.filter(
            purpose=purpose, language=request.language, request_type__in=[first_type, ""]
        )
        .order_by("-request_type")
        .first()
    )
    try:
        with translation.override(request.language):
            if template:
                subject_source, body_source = template.subject, template.body
            elif request.filed_by_agent and purpose in DEFAULT_TEMPLATES_TO_AN_AGENT:
                subject_source, body_source = map(str, DEFAULT_TEMPLATES_TO_AN_AGENT[purpose])
            else:
                subject_source, body_source = map(str, DEFAULT_TEMPLATES[purpose])
            values = {
                "reference": request.reference,
                # While the clock is paused the saved date is behind: the date it moves to if the subject answers
                # today, as their status page says.
                "due_on": deadline_service.due_on_if_resumed_today(request),
                "clock_paused": request.clock_paused if clock_paused is None else clock_paused,
                "by_post": not request.correspondence_email,
                # The letter goes to an agent who filed for the subject: of the data of the person they act for.
                "to_agent": request.filed_by_agent,
                # A completion that refused some rights completed the others: "We have completed your request
                # (access)", then a paragraph for each right refused.
                "rights": ", ".join(right.right_for_correspondent() for right in rights if right.right not in refused),
                "reason": reason,
                "fee": fee,
                "body": body,
                "source": source,
                "lift_on": date_in_words(lift_on) if lift_on else "",
            }
            if outcome is None:
                return letters.render(subject_source, values), letters.render(body_source, values)
            text = letters.render(body_source, {**values, "outcome": letters.OUTCOME_MARK})
            return letters.render(subject_source, values), letters.place_outcome(text, outcome)
    except Exception as error:
        if template is None:
            raise  # the built-in wording: a bug, not something a DPO can correct
        # A template saved before ResponseTemplate.clean refused what fails here. The error's text may quote
        # what staff wrote: the log names only its kind. The caller's transaction rolls back: nothing is sent.
        logger.warning("Response template %s cannot be rendered: %s", template.pk, type(error).__name__)
        raise RequestError(
            _("The response template “%(template)s” cannot be used: a DPO must correct it on the Response "
              "templates page. Nothing was sent.") % {"template": template}
        ) from error


def for_whoever_filed(request: PrivacyRequest, body: str) -> str:
    """A message or letter's text as it goes out: to an agent who filed the request (services.agents), opening with
    whom it is about, in the request's language."""
    if not (request.filed_by_agent and request.subject_name):
        return body
    with translation.override(request.language):
        opening = _("This letter concerns the request you made on behalf of %(name)s.") % {"name": request.subject_name}
    return f"{opening}\n\n{body}"


def write_to_subject(
    request: PrivacyRequest, *, actor: Actor, subject: str, body: str, action: str, preview: bool = False,
    asks_agent_authority: bool = False,
) -> Message:
    """Add a message or letter to the request's thread, record it as `action` in the audit trail, and email it
    on commit when the subject has an email address (to the agent, when an agent filed: for_whoever_filed). Call
    inside the caller's transaction. `asks_agent_authority`: a request for information that asks the agent for proof
    of their authority (Message.asks_agent_authority), which its audit event says too.

    With `preview`, raises emails.LetterPreview with what the subject would get instead, which rolls the caller's
    transaction back: the letter previewed is the one its service renders, after the same checks and changes."""
    message = Message(
        request=request, direction=MessageDirection.TO_SUBJECT, author=actor.user, subject=subject,
        body=for_whoever_filed(request, body),
        queued_at=timezone.now() if request.correspondence_email else None, asks_agent_authority=asks_agent_authority,
    )
    if preview:
        raise emails.LetterPreview.of_message(message)
    message.save()
    data = {"message": str(message.public_id)}
    if asks_agent_authority:
        data["asks"] = agents.ASKS_AGENT_AUTHORITY
    record_event(request, action, actor=actor, data=data)
    if request.correspondence_email:
        tasks.queue_after_commit(tasks.send_subject_message, message.id)
    return message


def email_to_subject(*, message_id: int) -> bool:
    """The email task's work: send a message or letter to the subject, once. Returns whether it was
    sent now. Each try is noted (see requeue_unsent_messages); a mail server error propagates, and
    the task retries."""
    message = (
        Message.objects.select_related("request").filter(pk=message_id, emailed_at__isnull=True)
        .exclude(no_email_to_write_to("request__")).first()
    )
    if message is None:
        return False
    Message.objects.filter(pk=message.pk).update(queued_at=timezone.now())
    sent = emails.send_subject_message(message)  # False: an earlier try sent it and stopped short of noting it
    emailed_at = timezone.now()
    Message.objects.filter(pk=message.pk).update(emailed_at=emailed_at)
    # A notice before lifting a restriction that went late (the mail server down for days) still gives the subject
    # the whole notice period (Art. 18(3)), counted from the day it went: the lifting waits that much longer.
    first_day = timezone.localdate(emailed_at) + datetime.timedelta(days=settings.RESTRICTION_LIFT_NOTICE_DAYS)
    SourceAction.objects.filter(lift_notice=message, lift_not_before__lt=first_day).update(lift_not_before=first_day)
    return sent


def requeue_unsent_messages(*, now: datetime.datetime | None = None) -> int:
    """Queue again the messages and letters whose email task the broker lost; returns how many.
    A second task is harmless: the email goes once (emails.send_once)."""
    now = now or timezone.now()
    lost = list(
        Message.objects.filter(
            direction=MessageDirection.TO_SUBJECT,
            emailed_at__isnull=True,
            request__subject_email_rejected_at__isnull=True,
            queued_at__lt=now - emails.LOST_TASK_AFTER,
            created_at__gte=now - emails.GIVE_UP_AFTER,
        )
        .exclude(no_email_to_write_to("request__"))
        .values_list("id", flat=True)
    )
    Message.objects.filter(pk__in=lost).update(queued_at=now)
    for message_id in lost:
        tasks.queue_after_commit(tasks.send_subject_message, message_id)
    if lost:
        logger.warning("queued %d message(s) to subjects again: their email task was lost", len(lost))
    return len(lost)


def _locked_for_work(request: PrivacyRequest, actor: Actor, expected_status: str | None) -> PrivacyRequest:
    locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    roles.require_can_work(actor, locked)
    if expected_status is not None and locked.status != expected_status:
        raise lifecycle.stale(locked.reference, locked.status)
    return locked


def receipt_confirm(*, request: PrivacyRequest, actor: Actor) -> PrivacyRequest:
    """Record that staff confirmed receipt to the subject themselves, by letter or phone: a request
    with no email address gets no automatic confirmation (CCPA: within 10 business days). Open requests only."""
    with transaction.atomic():
        locked = _locked_for_work(request, actor, None)
        if not locked.is_open:
            raise RequestError(_("This request is closed: there is no receipt left to confirm."))
        if locked.acknowledgement_due_on is None:
            raise RequestError(_("This request needs no confirmation of receipt."))
        if locked.acknowledged_at is not None:
            raise RequestError(
                _("Receipt was confirmed already, on %(date)s.")
                % {"date": date_in_words(timezone.localdate(locked.acknowledged_at))}
            )
        locked.acknowledged_at = timezone.now()
        PrivacyRequest.objects.filter(pk=locked.pk).update(acknowledged_at=locked.acknowledged_at)
        record_event(locked, "receipt_confirmed", actor=actor, data={"due_on": str(locked.acknowledgement_due_on)})
    return locked


# A form sent again (the browser's Back, then Send once more; a second tab) must not send or store the same text
# twice: the same text from the same writer on the same request within this time is refused. Longer than any
# hesitation, shorter than a deliberate reminder.
SENT_AGAIN_WITHIN = datetime.timedelta(minutes=10)


def _sent_again(queryset, body: str):
    """The same text written within SENT_AGAIN_WITHIN on `queryset` (one writer's messages or notes), if any."""
    return queryset.filter(body=body, created_at__gte=timezone.now() - SENT_AGAIN_WITHIN).order_by("-created_at").first()


def _sent_again_refusal(earlier) -> str:
    # With its zone: a subject or a customer's portal abroad reads the time too ("14:03 CET").
    time = formats.time_format(timezone.localtime(earlier.created_at), "H:i T")
    if isinstance(earlier, InternalNote):  # a note is added to the file, never sent
        return _("The same note was added at %(time)s: it was not added again.") % {"time": time}
    return _("The same text was sent at %(time)s: it was not sent again.") % {"time": time}


def message_send(*, request: PrivacyRequest, actor: Actor, body: str, subject: str = "", preview: bool = False) -> Message:
    """Send the subject a message on an open request; it is emailed and shown on their status page.

    `preview`: emails.LetterPreview is raised with the message instead of sending it, and nothing changes."""
    body = body.strip()
    if not body:
        raise RequestError(_("Write a message first."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, None)
        if not locked.is_open:
            raise RequestError(_("The request is closed; write to the subject outside the portal."))
        if locked.status == Status.AWAITING_VERIFICATION:
            # Nobody has confirmed the address yet: the message (and its status page link) could reach a stranger.
            raise RequestError(_("The subject has not confirmed their email address yet: nothing can be sent to it."))
        default_subject, text = render_letter(locked, TemplatePurpose.MESSAGE, body=body)
        earlier = _sent_again(
            locked.messages.filter(direction=MessageDirection.TO_SUBJECT, author=actor.user), for_whoever_filed(locked, text)
        )
        if earlier:
            raise RequestError(_sent_again_refusal(earlier))
        return write_to_subject(
            locked, actor=actor, subject=subject or default_subject, body=text, action="message_sent", preview=preview
        )


def request_information(
    *, request: PrivacyRequest, actor: Actor, body: str, expected_status: str, preview: bool = False,
    asks_agent_authority: bool = False,
) -> Message:
    """Ask the subject for information (identity proof, clarification) and pause the clock.

    `asks_agent_authority`: the question asks the agent who filed for proof of their authority to act for the subject,
    which lets staff reject the request on its lack afterwards (agents.rejection_refusal); only on a request an agent
    filed whose authority is unconfirmed.

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and nothing changes (the clock
    is not paused)."""
    body = body.strip()
    if not body:
        raise RequestError(_("Say what information you need."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        if asks_agent_authority and (refusal := agents.asking_for_authority_refusal(locked)):
            raise RequestError(refusal)
        # The state first, as the transition below would refuse it: a preview stops at the letter, before it.
        lifecycle.require_allowed(locked.status, "await_subject")
        # The letter goes before the transition that stops the clock: it says whether the clock will be
        # stopped (already, or by this question: lifecycle.transition's rule), not whether it is yet.
        will_be_paused = locked.clock_paused or deadline_service.pause_refusal(locked) is None
        subject, text = render_letter(locked, TemplatePurpose.INFORMATION_REQUEST, body=body, clock_paused=will_be_paused)
        # The question first, then the wait: the subject's timeline reads "We asked you for more information",
        # then "We are waiting for your reply".
        message = write_to_subject(
            locked, actor=actor, subject=subject, body=text, action="information_requested", preview=preview,
            asks_agent_authority=asks_agent_authority,
        )
        lifecycle.transition(locked, "await_subject", actor=actor, note=lifecycle.NOTE_INFORMATION_REQUESTED)
        return message


def clock_pause(*, request: PrivacyRequest, actor: Actor, question: str, preview: bool = False) -> Message:
    """Stop the clock while waiting for something from the subject, the request staying where it is (work on
    other parts may go on). The subject is sent what we wait for, as a request for information: a pause is
    never silent, and the days it adds to the deadline rest on a question the subject was asked (Art. 12(3)).

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and the pause it was written
    after is rolled back with the rest: nothing changes."""
    question = question.strip()
    if not question:
        raise RequestError(_("Say what we need from the subject."))
    with transaction.atomic():
        # Checks the request may be paused and stops the clock, under the row lock this transaction keeps.
        deadline_service.clock_pause(request=request, actor=actor, reason=question)
        subject, text = render_letter(request, TemplatePurpose.INFORMATION_REQUEST, body=question, clock_paused=True)
        return write_to_subject(request, actor=actor, subject=subject, body=text, action="information_requested", preview=preview)


RESUME_TRANSITION = {
    Status.NEW: "return_to_new",
    Status.IDENTITY_CHECK: "start_identity_check",
    Status.IN_PROGRESS: "start_work",
}


# Documents a subject may send with their replies to one request (a copy of an ID, a bill): enough
# for any identity check, and a bound on what one status link can store.
SUBJECT_DOCUMENTS_MAX = 10


def subject_reply(
    *, request: PrivacyRequest, body: str, actor: Actor | None = None, document=None, identity_document: bool = False
) -> Message:
    """The subject answers on their status page (or their organisation's portal, over the API).

    Allowed on open requests, and on a closed one while the lifting of a restriction the subject was told of is
    pending (PrivacyRequest.takes_subject_messages), so that they may object before it runs: a message then, not a
    document (an identity document is deleted when the request closes: one sent after would stay). A reply to a request awaiting the subject
    moves it back to where it was, and any paused clock restarts. The
    assignee is told. `document`, a file already checked by forms.validate_attachment
    (the status page's upload), is stored with the reply; a reply may be the document alone.
    With `identity_document` the subject sent it as proof of identity: it is deleted once the check ends
    (delete_identity_documents).
    """
    # Browsers send line breaks as CRLF but count them as one character against the
    # form's maxlength: count (and keep) them as the subject saw them.
    body = body.replace("\r\n", "\n").strip()
    if not body and document is None:
        raise RequestError(_("Write your message first."))
    if len(body) > TEXT_MAX_CHARS:
        raise RequestError(
            _("Your reply is too long: keep it to %(limit)s characters at most.")
            % {"limit": formats.number_format(TEXT_MAX_CHARS, force_grouping=True)}
        )
    if "\x00" in body:
        raise RequestError(_("Your reply contains a null character, which cannot be stored: remove it and send again."))
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if not locked.is_open and locked.takes_subject_messages and document is not None:
            raise RequestError(_("This request is closed: write to us in words, without a document."))
        if not locked.takes_subject_messages:
            # Someone contesting our answer must not be sent off to ask again: the DPO is who they write to.
            raise RequestError(
                _("This request is closed, so your message was not added to it. Write to our data protection officer at "
                  "%(address)s, or submit a new request.") % {"address": settings.DPO_CONTACT_EMAIL}
            )
        actor = actor or Actor.requester(locked)
        # The limit bounds what is kept: a document staff deleted (an ID once checked) leaves room for another.
        kept = locked.attachments.filter(message__isnull=False, deleted_at__isnull=True)
        if document is not None and kept.count() >= SUBJECT_DOCUMENTS_MAX:
            raise RequestError(
                _("You have sent us %(count)s documents for this request, the most it takes: write to us instead.")
                % {"count": SUBJECT_DOCUMENTS_MAX}
            )
        # A document makes a reply new even with the same words ("Here it is" twice, with two files).
        earlier = document is None and body and _sent_again(locked.messages.filter(direction=MessageDirection.FROM_SUBJECT), body)
        if earlier:
            raise RequestError(_sent_again_refusal(earlier))
        message = Message.objects.create(request=locked, direction=MessageDirection.FROM_SUBJECT, body=body)
        record_event(locked, "subject_replied", actor=actor, data={"message": str(message.public_id)})
        if document is not None:
            intake.attachment_add(request=locked, file=document, actor=actor, message=message, identity_document=identity_document)
        if locked.status == Status.AWAITING_SUBJECT:
            paused_from = (
                locked.events.filter(action="await_subject").order_by("-sequence").values_list("from_status", flat=True).first()
            )
            resume = RESUME_TRANSITION[paused_from]
            lifecycle.transition(locked, resume, actor=actor, note=lifecycle.NOTE_SUBJECT_REPLIED)
        # A clock staff paused without changing the status (waiting for proof
        # of identity, say) restarts on the reply too: the subject has answered.
        pause = deadline_service.open_pause(locked)
        if pause is not None:
            deadline_service.end_pause(locked, pause, actor=actor, note=lifecycle.NOTE_SUBJECT_REPLIED)
        emails.owe(locked, "subject_replied", str(message.id))
        tasks.queue_after_commit(tasks.send_reply_notification, locked.id, message.id)
    return message


def note_add(*, request: PrivacyRequest, actor: Actor, body: str) -> InternalNote:
    body = body.strip()
    if not body:
        raise RequestError(_("Write a note first."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, None)
        earlier = _sent_again(locked.notes.filter(author=actor.user), body)
        if earlier:
            raise RequestError(_sent_again_refusal(earlier))
        note = InternalNote.objects.create(request=locked, author=actor.user, body=body)
        record_event(locked, "note_added", actor=actor, data={"note": note.id})
    return note


def postal_address_correct(*, request: PrivacyRequest, actor: Actor, postal_address: str) -> PrivacyRequest:
    """Record, correct or (empty) remove the address we post letters to: whoever filed's (PrivacyRequest.postal_address),
    as staff learn it from a letter or a call. Cleaned by forms.PostalAddressField.

    Any request whose personal data is not purged, open or closed: a closed request may still have letters to post (a
    notice before a restriction is lifted). Only staff who may work the request. The same address again changes
    nothing and is refused. The event says who changed it and when, never the address: the chain is never purged."""
    with transaction.atomic():
        locked = _locked_for_work(request, actor, None)
        if locked.personal_data_purged_at is not None:
            raise RequestError(_("The personal data of this request was deleted: there is no one left to write to."))
        if locked.postal_address == postal_address:
            raise RequestError(_("This is the postal address recorded already: nothing changed."))
        locked.postal_address = postal_address
        locked.save(update_fields=["postal_address", "updated_at"])
        if postal_address:
            record_event(locked, "postal_address_corrected", actor=actor)
        else:
            record_event(locked, "postal_address_removed", actor=actor)
    return locked


def unproven_identity_refusal(*, kind: str, method: str, request: PrivacyRequest) -> str | None:
    """Why `method` cannot verify the subject's identifier of `kind` (IDENTITY_PROVING_METHODS), naming the methods
    staff may record for it on `request` instead; None when it can."""
    if method_proves(kind, method, filed_by_agent=request.filed_by_agent):
        return None
    methods = [
        VerificationMethod(proving).label
        for proving in proving_methods(kind, filed_by_agent=request.filed_by_agent)
        # The link is the subject's own doing, never staff's; nobody asserted anything on a request no organisation filed.
        if proving != VerificationMethod.EMAIL_LINK
        and (proving != VerificationMethod.ASSERTED_BY_ORGANISATION or request.organisation_id is not None)
    ]
    return _(
        "“%(method)s” does not prove that the %(kind)s is the subject's: it could be someone else's, whose data the "
        "source systems would then give. Verify it by one of these: %(methods)s."
    ) % {
        "method": VerificationMethod(method).label,
        "kind": in_sentence(IdentityKind(kind).label),
        "methods": ", ".join(f"“{label}”" for label in methods),
    }


def identity_verify(
    *, request: PrivacyRequest, actor: Actor, identity_ids: list[int], method: str, expected_status: str,
    delete_documents: bool = False,
) -> PrivacyRequest:
    """Record that staff verified some of the subject's identifiers, and how.

    Refused, with nothing recorded, when the method does not prove that one of them is the subject's
    (IDENTITY_PROVING_METHODS: an identity document proves who the subject is, not that a phone number is theirs),
    naming each such identifier's kind and the methods that would.

    Whatever the method, the documents the subject sent as proof of identity are deleted in the same transaction
    (delete_identity_documents): a copy of an identity document is kept no longer than the check it was sent for
    (GDPR Art. 5(1)(c) and (e); EDPB Guidelines 01/2022 para. 78), as the request form's notice promises. With
    `delete_documents`, every other document the subject sent with their replies and not deleted yet goes too
    (attachment_delete's tombstone and audit event for each). The dashboard offers it with the method "document".

    A request in "new", "identity check" or "awaiting the subject" then moves to "in progress", and a clock
    paused while we waited for the subject restarts, the days paused added to the deadline. Nothing records
    whether we waited for proof of identity or for something else: the proof is taken as the subject's answer,
    as their reply is (subject_reply). Restarting early shortens only the controller's time, never the
    subject's; staff who still need something from them ask again with request_information.
    Only verified identifiers are used to search source systems (SubjectIdentityQuerySet.searchable).
    """
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        if locked.status not in lifecycle.VERIFIED_OPEN:
            raise RequestError(_("Identity can be verified on open, email-verified requests only."))
        identities = list(SubjectIdentity.objects.filter(request=locked, id__in=identity_ids))
        if not identities:
            raise RequestError(_("Choose at least one identifier you verified."))
        if method == VerificationMethod.ASSERTED_BY_ORGANISATION and locked.organisation_id is None:
            # No organisation vouched for anything here; and the method ties a phone number to the subject's line
            # (LINE_PROVING_METHODS), so a package's password would be texted to it.
            raise RequestError(_("No customer organisation filed this request: choose how you checked the identifiers yourself."))
        refusals = {
            kind: unproven_identity_refusal(kind=kind, method=method, request=locked)
            for kind in sorted({identity.kind for identity in identities})
        }
        if any(refusals.values()):
            raise RequestError(" ".join(refusal for refusal in refusals.values() if refusal))
        SubjectIdentity.objects.filter(id__in=[i.id for i in identities]).update(
            verified_at=timezone.now(), verification_method=method, verified_by=actor.user
        )
        record_event(
            locked,
            "identity_verified",
            actor=actor,
            data={"kinds": sorted(i.kind for i in identities), "method": method},
        )
        if delete_documents:
            _delete_attachments(locked, locked.attachments.filter(message__isnull=False), actor=actor)
        else:
            delete_identity_documents(locked, actor=actor)
        if locked.status in (Status.NEW, Status.IDENTITY_CHECK, Status.AWAITING_SUBJECT):
            # From "awaiting the subject" the transition also ends the pause (lifecycle._move_the_clock).
            lifecycle.transition(locked, "start_work", actor=actor, note=lifecycle.NOTE_IDENTITY_VERIFIED)
        # A clock staff paused without changing the status (clock_pause: waiting for a copy of an ID, say).
        pause = deadline_service.open_pause(locked)
        if pause is not None:
            deadline_service.end_pause(locked, pause, actor=actor, note=lifecycle.NOTE_IDENTITY_VERIFIED)
        _auto_start_export(locked)
    return locked


def attachment_delete(*, attachment: Attachment, actor: Actor) -> None:
    """Delete a document the subject sent (a copy of an ID once checked, a scanned letter), before the request's
    data is purged: by anyone who may work the request, open or closed. The row stays as a tombstone (no file, no
    name; when and by whom), with an audit event. Refused for a document deleted already."""
    with transaction.atomic():
        locked = _locked_for_work(attachment.request, actor, None)
        if not _delete_attachments(locked, locked.attachments.filter(pk=attachment.pk), actor=actor):
            raise RequestError(_("This document was deleted already."))


def delete_identity_documents(request: PrivacyRequest, *, actor: Actor) -> int:
    """Delete the documents the subject sent as proof of identity (Attachment.identity_document) and not deleted
    yet, as attachment_delete does (tombstone, audit event each, files removed on commit), in the caller's
    transaction with the request locked. Called when the identity check ends: an identifier verified
    (identity_verify, any method), or the request closed, verified or not (lifecycle.transition). Returns how many.

    Only those marked so: another document (proof for a correction, a bill) may be what the answer rests on, and
    the model cannot tell an unmarked copy of an ID from it; staff delete those by hand, or the purge does."""
    return _delete_attachments(request, request.attachments.filter(identity_document=True), actor=actor)


def _delete_attachments(request: PrivacyRequest, attachments, *, actor: Actor) -> int:
    """Turn those of `attachments` (of the locked `request`) not deleted yet into tombstones, with an audit event
    each, in the caller's transaction; their files are removed from storage once it commits. Returns how many.

    The event names the attachment by its public id, never by its file name, which may hold personal data. Files
    are not transactional: removing one before the commit would lose it to a rollback. A removal that fails after
    the commit is logged (robust) and leaves a file nothing refers to, which services.orphans.delete_orphan_files
    removes the next night."""
    deleted = list(attachments.filter(deleted_at__isnull=True))
    if not deleted:
        return 0
    Attachment.objects.filter(pk__in=[a.pk for a in deleted]).update(
        file="", original_name="", deleted_at=timezone.now(), deleted_by=actor.user
    )
    for attachment in deleted:
        record_event(request, "attachment_deleted", actor=actor, data={"attachment": str(attachment.public_id)})
        transaction.on_commit(lambda file=attachment.file: file.storage.delete(file.name), robust=True)
    return len(deleted)


def _auto_start_export(request: PrivacyRequest) -> None:
    """With EXPORT_AUTO_START, an access or portability request's package starts compiling
    as soon as the identity is verified."""
    from requests_app.services import exports

    if not settings.EXPORT_AUTO_START or request.exports.exists():
        return
    if exports.default_kind(request):
        exports.export_start(request=request, actor=Actor.system())


PLAIN_TRANSITIONS = ("start_identity_check", "start_work")


def request_transition(
    *, request: PrivacyRequest, actor: Actor, name: str, expected_status: str | None, note: str = ""
) -> PrivacyRequest:
    """A plain status change from the dashboard (start identity check, start work). The others have
    an action of their own, which sends a letter or records why."""
    if name not in PLAIN_TRANSITIONS:
        raise RequestError(_("Use the dedicated action for this step."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        return lifecycle.transition(locked, name, actor=actor, note=note)


@dataclass(frozen=True)
class RightRefusal:
    """One right asked that a completion refuses: its ground, one of REFUSABLE_GROUNDS, and the reasons the
    letter gives the subject, which the grounds of GROUNDS_TO_EXPLAIN need."""

    right: str
    ground: str
    explanation: str = ""


def request_complete(
    *, request: PrivacyRequest, actor: Actor, letter: str, expected_status: str, refused: Sequence[RightRefusal] = (),
    preview: bool = False,
) -> PrivacyRequest:
    """Close a request as done and send the completion letter.

    Refused while an erasure, rectification or restriction is unfinished in
    a source system, or a recipient has not been told (Art. 19), and for a
    rectification granted that corrected nothing: refuse it instead, with the
    reasons (actions.completion_blockers says what is left to do). The letter
    ends with what was erased, kept, rectified and restricted, and who was told,
    and says when a data package found nothing and which sources it could not search.

    Some of the rights asked, or all of them, may be `refused`, each on its ground (_refuse_rights says when they
    may not be): completion then waits for none of their work, and the letter gives, for each, the ground and the
    reasons, and the right to complain (Art. 12(4)); with every right refused, it opens by saying so
    (every_right_refused_letter). The completion's audit event names them and their grounds.

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and nothing changes."""
    refusals_by_right = {refusal.right: refusal for refusal in refused}
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        # The state first: a withdrawn or already closed request is refused as such, not for a blocker
        # (a package not released) that nobody should now work to clear.
        lifecycle.require_allowed(locked.status, "complete")
        prefetch_for_completion([locked])
        if refusals_by_right:
            # Recorded before the blockers are read, which then leave out the refused rights' work; any
            # refusal below rolls them back with the rest.
            _refuse_rights(locked, refusals_by_right)
        refusals = completion_blockers(locked)
        if refusals:
            raise RequestError(_("The request cannot be completed yet: %(reasons)s") % {"reasons": " ".join(refusals)})
        grounds = [{"right": right, "ground": refusals_by_right[right].ground} for right in locked.refused_rights]
        # A recipient's notice that waited only for a refused right's action, which will never run, goes now (the
        # transition queues it): once committed, after the letter, which says its recipient is being told (outcome_summary).
        lifecycle.transition(locked, "complete", actor=actor, data={"refused": grounds} if grounds else None)
        if locked.granted_rights:
            # What was done in the source systems, and what a package found, is stated from the actions and the
            # manifests themselves, so the letter cannot omit a kept category and its Art. 17(3) reason, or
            # that no data was found, whatever the DPO wrote; nor a right refused, and why.
            paragraphs = [
                outcome_summary(locked), refusals_in_letter(locked, refusals_by_right), ccpa_deletion_record_paragraph(locked)
            ]
        else:
            # Every right refused, each on its own ground: nothing was done (none of them was answered already,
            # _refuse_rights), so there is no outcome to tell, only each refusal and its reasons.
            paragraphs = [refusals_in_letter(locked, refusals_by_right), ccpa_deletion_record_paragraph(locked)]
        if answered_in_part(locked) or grounds:
            # Refusing a right (a correction found not due among them), or keeping data asked to be erased, is a
            # refusal in part; finding
            # no data, or not searching a source, an answer the subject may challenge: they may complain (Art. 12(4)).
            paragraphs.append(rejection_rights_paragraph(locked))
        outcome = "\n\n".join(paragraph for paragraph in paragraphs if paragraph)
        if locked.granted_rights:
            # Where the DPO's template places {{ outcome }}: before its "Kind regards", not after.
            subject, text = render_letter(locked, TemplatePurpose.COMPLETION, body=letter.strip(), outcome=outcome)
        else:
            subject, text = every_right_refused_letter(locked, body=letter.strip())
            text = "\n\n".join(part for part in (text, outcome) if part)
        write_to_subject(locked, actor=actor, subject=subject, body=text, action="completion_letter_sent", preview=preview)
        if grounds:
            # A package of a refused right is never delivered: its data goes now, not at the hourly clean-up.
            # Last, so the letter above was written from the packages as they were.
            from requests_app.services import exports  # exports imports tasks, which imports this module

            exports.end_packages_of_refused_rights(locked)
    return locked


# A completion that refuses every right asked, each on its own ground: it cannot open as the completion letter does
# ("We have completed your request (…)", naming the rights granted), nor as a rejection's, which gives one reason for
# the whole request. Built-in: a DPO's completion template is written for rights granted.
EVERY_RIGHT_REFUSED_LETTER = (
    gettext_lazy("Your privacy request {{ reference }}"),
    gettext_lazy(
        "We have examined each part of your request {{ reference }} ({{ rights }}), and we cannot grant any of them. "
        "We give the reason for each below."
    ),
)


def _rights_for_correspondent(request: PrivacyRequest) -> str:
    """The rights asked, in the order asked, as whoever filed reads them (RequestedRight.right_for_correspondent: an
    agent reads "their data", not the subject's "my data"), in the active language."""
    asked = {right.right: right for right in request.rights.all()}
    return ", ".join(asked[right].right_for_correspondent() for right in request.requested_rights)


def every_right_refused_letter(request: PrivacyRequest, *, body: str) -> tuple[str, str]:
    """The subject line and opening of the completion letter of a request whose every right is refused, in the
    subject's language, with what the DPO wrote (request_complete adds a paragraph per right refused)."""
    with translation.override(request.language):
        values = {
            "reference": request.reference,
            "rights": _rights_for_correspondent(request),
        }
        subject_source, opening_source = map(str, EVERY_RIGHT_REFUSED_LETTER)
        text = "\n\n".join(part for part in (letters.render(opening_source, values), body) if part)
        return letters.render(subject_source, values), text


def _refuse_rights(request: PrivacyRequest, refusals_by_right: dict[str, RightRefusal]) -> None:
    """Check the refusals of some of the request's rights and record them (request_complete, under its lock).

    Each right must be asked, on a refusable ground with its reasons; an objection to direct marketing only on
    the grounds any request may be refused on (Art. 21(3)), a ground that answers one right only (Art. 21(1),
    17(3)(e), CCPA Regulations § 7027(f)) only that right (models.ground_can_refuse); an unverified identity none
    alone, unless the request asks what needs none (models.refuses_only_the_whole_request). Every right may be
    refused, each on the ground that answers it (an erasure for a legal duty to keep the data, an objection for
    compelling grounds), but not all on one ground: that refuses the request whole, which Reject does (request_reject
    offers that ground then), and its letter says the request is refused. A right answered already cannot be refused
    (actions.answered_already), nor an erasure on a legal hold that its dry runs do not show keeping all they found
    (actions.retention_refusal)."""
    rights = {right.right: right for right in request.rights.all()}
    for right, refusal in refusals_by_right.items():
        if right not in rights:
            raise RequestError(_("This request does not ask for %(right)s.") % {"right": right})
        label = RIGHTS_THE_SUBJECT_ASKS[right]
        if refusal.ground not in dict(REFUSABLE_GROUNDS):
            raise RequestError(_("Choose the legal reason for refusing “%(right)s”.") % {"right": label})
        if refusal.ground == RejectionGround.AGENT_AUTHORITY_NOT_SHOWN:
            raise RequestError(str(agents.AUTHORITY_REFUSES_THE_WHOLE_REQUEST))
        if refuses_only_the_whole_request(refusal.ground, rights.values()):
            raise RequestError(
                _("An identity that could not be verified refuses the whole request, not “%(right)s” alone: reject "
                  "the request instead.") % {"right": label}
            )
        if refusal.ground == RejectionGround.IDENTITY_NOT_VERIFIED and not refusal.explanation.strip():
            raise RequestError(identity_to_explain(request.regime))
        if refusal.ground in GROUNDS_TO_EXPLAIN and not refusal.explanation.strip():
            to_explain = (
                _("Explain to the subject why “%(ground)s” applies to “%(right)s”: the letter must give the reasons (Art. 12(4)).")
                if cites_gdpr_articles(request.regime)
                else _("Explain to the subject why “%(ground)s” applies to “%(right)s”: the letter must give the reasons.")
            )
            raise RequestError(
                to_explain % {"ground": label_in_letter(RejectionGround(refusal.ground).label, request.regime), "right": label}
            )
        if rights[right].direct_marketing and refusal.ground not in GROUNDS_AGAINST_A_MARKETING_OBJECTION:
            raise RequestError(marketing_objection_refusal(request.regime))
        if not ground_can_refuse(refusal.ground, rights[right]):
            raise RequestError(ground_for_another_right(refusal.ground, rights[right]))
        never_asked = identity_refusal(request, refusal.ground)
        if never_asked:
            raise RequestError(never_asked)
    # First: what was done cannot be refused, by Reject either (request_reject), which the next rule points to.
    answered = answered_already(request, set(refusals_by_right))
    if answered:
        raise RequestError(" ".join(answered))
    if set(refusals_by_right) == set(rights) and len({refusal.ground for refusal in refusals_by_right.values()}) == 1:
        raise RequestError(
            _("Every right asked would be refused on the same ground: that is a rejection. Use Reject instead, with "
              "that reason, so that the letter tells the subject their request is refused.")
        )
    if RequestType.ERASURE in refusals_by_right:
        beyond_the_holds = retention_refusal(request, refusals_by_right[RequestType.ERASURE].ground, whole_request=False)
        if beyond_the_holds:
            raise RequestError(beyond_the_holds)
    for right, refusal in refusals_by_right.items():
        RequestedRight.objects.filter(pk=rights[right].pk).update(refusal_ground=refusal.ground)
    request.refused_rights_mask = rights_mask(refusals_by_right)
    PrivacyRequest.objects.filter(pk=request.pk).update(refused_rights_mask=request.refused_rights_mask)


def refusals_in_letter(request: PrivacyRequest, refusals_by_right: dict[str, RightRefusal]) -> str:
    """What the completion letter says of each right it refuses, in the subject's language: the right, the
    ground (ground_in_letter: its GDPR article only under the GDPR) and the reasons, as a rejection gives them."""
    paragraphs = []
    asked = {right.right: right for right in request.rights.all()}
    with translation.override(request.language):
        for right in request.refused_rights:
            refusal = refusals_by_right[right]
            reason = ground_in_letter(refusal.ground, request.regime)
            explanation = refusal.explanation.strip()
            if refusal.ground == RejectionGround.OTHER:
                reason, explanation = explanation, ""  # "The reason: Other" says nothing: their words are the reason
            paragraphs.append(
                _("We cannot grant this part of your request: “%(right)s”. The reason: %(reason)s")
                % {"right": asked[right].right_for_correspondent(), "reason": with_full_stop(reason)}
            )
            paragraphs.extend(part for part in (explanation, identity_paragraph(request, refusal.ground)) if part)
    return "\n\n".join(paragraphs)


def identity_paragraph(request: PrivacyRequest, ground: str) -> str:
    """What a letter refusing on an unverified identity adds after the reasons, in the subject's language: they may
    still identify themselves, or ask again (IDENTITY_NOT_VERIFIED_IN_LETTER); on an agent's authority not shown, who
    may ask again (agents.AUTHORITY_NOT_SHOWN_IN_LETTER). Empty for any other ground."""
    if ground == RejectionGround.AGENT_AUTHORITY_NOT_SHOWN:
        with translation.override(request.language):
            return str(agents.AUTHORITY_NOT_SHOWN_IN_LETTER)
    if ground != RejectionGround.IDENTITY_NOT_VERIFIED:
        return ""
    with translation.override(request.language):
        # A CCPA request to know is then answered with the categories instead (CCPA Regulations § 7024(a)).
        not_verified = IDENTITY_NOT_VERIFIED_IN_LETTER_TO_AN_AGENT if request.filed_by_agent else IDENTITY_NOT_VERIFIED_IN_LETTER
        return "\n\n".join(part for part in (categories_instead_of_pieces(request), str(not_verified)) if part)


def rejection_rights_paragraph(request: PrivacyRequest) -> str:
    """Art. 12(4): the right to complain (supervisory_authorities) and to a judicial remedy, in every rejection,
    refusal in part and fee letter, and in the letter of a request forwarded to its controller: we did not answer it."""
    with translation.override(request.language):
        authority = supervisory_authorities_in_words(request.regime)
        if request.filed_by_agent:
            # The rights are the subject's, whoever exercised them for them.
            return _(
                "The person you are acting for has the right to lodge a complaint with a supervisory authority, in "
                "particular %(authority)s, and to seek a judicial remedy before the courts."
            ) % {"authority": authority}
        return _(
            "You have the right to lodge a complaint with a supervisory authority, in particular %(authority)s, "
            "and to seek a judicial remedy before the courts."
        ) % {"authority": authority}


def ccpa_deletion_record_paragraph(request: PrivacyRequest) -> str:
    """The CCPA's statement in any answer to a request to delete, granted, refused in part or rejected: "In
    responding to a request to delete, a business shall inform the consumer whether it has complied with the
    consumer's request. The business shall also inform the consumer that it will maintain a record of the request as
    required by section 7101, subdivision (a)" (CCPA Regulations, Cal. Code Regs. tit. 11, § 7022(e); § 7101(a) keeps
    the records of consumer requests, and how they were answered, for at least 24 months). Empty for any other
    request: another regime's subject is not told of a Californian rule."""
    if request.regime != Regime.CCPA or RequestType.ERASURE not in request.requested_rights:
        return ""
    with translation.override(request.language):
        return _("We will keep a record of your request, as the law requires (Cal. Code Regs. tit. 11, § 7101(a)).")


# The label alone does not say why: which request is excessive and how (the controller must be
# able to show it, Art. 12(5)), which law keeps the data and how long, whose rights and how, which
# interest overrides the subject's objection and why (the controller must demonstrate it, Art. 21(1)),
# which claim needs the data, why the request is believed fraudulent (the business "shall provide to the requestor
# an explanation why", CCPA Regulations § 7027(f)), what was asked to identify the subject and why what came is not
# enough (Art. 12(2), 12(6); EDPB Guidelines 01/2022, paras 65-68), how the data contested was found accurate (against
# what record or document) and why no correction is due.
GROUNDS_TO_EXPLAIN = frozenset(
    {
        RejectionGround.IDENTITY_NOT_VERIFIED,
        RejectionGround.AGENT_AUTHORITY_NOT_SHOWN,
        RejectionGround.MANIFESTLY_UNFOUNDED,
        RejectionGround.EXCESSIVE,
        RejectionGround.LEGAL_OBLIGATION,
        RejectionGround.RIGHTS_OF_OTHERS,
        RejectionGround.COMPELLING_GROUNDS,
        RejectionGround.LEGAL_CLAIMS,
        RejectionGround.FRAUDULENT,
        RejectionGround.DATA_ACCURATE,
        RejectionGround.OTHER,
    }
)


# An identity that could not be verified refuses a request only once the subject was asked for information that
# identifies them and did not give enough (Art. 11(2), 12(2), 12(6); EDPB Guidelines 01/2022, paras 65-68).
IDENTITY_NEVER_ASKED = gettext_lazy(
    "The subject was never asked for information that identifies them on this request: ask for it first with Request "
    "information, saying what you need and why. An identity can be found not verified only once "
    "what they sent, or their silence, leaves it in reasonable doubt."
)
IDENTITY_TO_EXPLAIN = gettext_lazy(
    "Explain to the subject why their identity could not be verified: what we asked them for, and why what they "
    "sent (or did not send) is not enough. The letter must give the reasons (Art. 12(4))."
)
# The same for a request whose law does not number its articles as the GDPR does (wording.cites_gdpr_articles).
IDENTITY_TO_EXPLAIN_WITHOUT_ARTICLE = gettext_lazy(
    "Explain to the subject why their identity could not be verified: what we asked them for, and why what they "
    "sent (or did not send) is not enough. The letter must give the reasons."
)


def identity_to_explain(regime: str) -> str:
    """IDENTITY_TO_EXPLAIN as staff of a request under `regime` read it."""
    return str(IDENTITY_TO_EXPLAIN if cites_gdpr_articles(regime) else IDENTITY_TO_EXPLAIN_WITHOUT_ARTICLE)

# The letter of a request refused for an unverified identity: the door stays open (Art. 11(2), 12(2)). A new request,
# since the refused one is closed and its status page takes no more replies.
IDENTITY_NOT_VERIFIED_IN_LETTER = gettext_lazy(
    "You may make a new request at any time, with information that identifies you: once we can verify who you are, "
    "we will answer it."
)
# The same to an agent who filed for the subject: the identity not verified is the subject's.
IDENTITY_NOT_VERIFIED_IN_LETTER_TO_AN_AGENT = gettext_lazy(
    "You may make a new request at any time, with information that identifies the person you are acting for: once we "
    "can verify who they are, we will answer it."
)


def identity_refusal(request: PrivacyRequest, ground: str) -> str | None:
    """Why `ground` cannot refuse `request` (or a right of it) now, or None: an unverified identity needs a request
    for information sent to the subject on this request first (information_requested in its audit trail)."""
    if ground != RejectionGround.IDENTITY_NOT_VERIFIED or request.events.filter(action="information_requested").exists():
        return None
    return str(IDENTITY_NEVER_ASKED)


# Refusing an objection to direct marketing, whole (request_reject) or in part (request_complete), on another ground.
MARKETING_OBJECTION_REFUSAL = gettext_lazy(
    "The subject objects to direct marketing, which cannot be refused (Art. 21(3)): add them to the "
    "suppression list of each marketing purpose and complete the request. Only an identity that could "
    "not be verified, an agent who made the request without showing their authority to act for the subject, or a "
    "manifestly unfounded or excessive request is a ground to reject it."
)
MARKETING_OBJECTION_REFUSAL_WITHOUT_ARTICLE = gettext_lazy(
    "The subject objects to direct marketing, which cannot be refused: add them to the "
    "suppression list of each marketing purpose and complete the request. Only an identity that could "
    "not be verified, an agent who made the request without showing their authority to act for the subject, or a "
    "manifestly unfounded or excessive request is a ground to reject it."
)


def marketing_objection_refusal(regime: str) -> str:
    """MARKETING_OBJECTION_REFUSAL as staff of a request under `regime` read it (wording.cites_gdpr_articles)."""
    return str(MARKETING_OBJECTION_REFUSAL if cites_gdpr_articles(regime) else MARKETING_OBJECTION_REFUSAL_WITHOUT_ARTICLE)



# Refusing a right, whole (request_reject) or in part (request_complete), on a ground that cannot refuse it
# (models.ground_can_refuse): one that answers another right only (models.GROUNDS_FOR_SOME_RIGHTS), and the grounds
# a CCPA request to limit does and does not give (models.is_ccpa_limit_request). An objection to direct marketing is
# refused as such first.
GROUND_FOR_ANOTHER_RIGHT = {
    RejectionGround.LEGAL_OBLIGATION: gettext_lazy(
        "A legal obligation to retain the data (Art. 17(3)(b)) can refuse only an erasure, not “%(right)s”."
    ),
    RejectionGround.RIGHTS_OF_OTHERS: gettext_lazy(
        "The rights and freedoms of others (Art. 20(4)) can refuse only the data ported, not “%(right)s”."
    ),
    RejectionGround.COMPELLING_GROUNDS: gettext_lazy(
        "Compelling legitimate grounds (Art. 21(1)) can refuse only an objection to processing other than direct "
        "marketing, not “%(right)s”."
    ),
    RejectionGround.LEGAL_CLAIMS: gettext_lazy("Legal claims (Art. 17(3)(e)) can refuse only an erasure, not “%(right)s”."),
    RejectionGround.DATA_ACCURATE: gettext_lazy(
        "Data found accurate and complete (Art. 16) can refuse only a request to correct or complete data, not “%(right)s”."
    ),
    RejectionGround.IDENTITY_NOT_VERIFIED: gettext_lazy(
        "A request to limit the use of sensitive personal information under the CCPA needs no verified identity (CCPA "
        "Regulations § 7027(e)): an identity that could not be verified cannot refuse “%(right)s”. Ask the subject only "
        "for what is needed to apply it; if you believe in good faith that the request is fraudulent, refuse it on that "
        "ground and explain why (§ 7027(f))."
    ),
    RejectionGround.FRAUDULENT: gettext_lazy(
        "A documented good-faith belief that the request is fraudulent (CCPA Regulations § 7027(f)) can refuse only a "
        "request to limit the use of sensitive personal information under the CCPA, not “%(right)s”."
    ),
}
# The same for a request whose law does not number its articles as the GDPR does (wording.cites_gdpr_articles): the
# grounds cited by a GDPR article. The CCPA's own keep their citations.
GROUND_FOR_ANOTHER_RIGHT_WITHOUT_ARTICLES = {
    RejectionGround.LEGAL_OBLIGATION: gettext_lazy("A legal obligation to retain the data can refuse only an erasure, not “%(right)s”."),
    RejectionGround.RIGHTS_OF_OTHERS: gettext_lazy("The rights and freedoms of others can refuse only the data ported, not “%(right)s”."),
    RejectionGround.COMPELLING_GROUNDS: gettext_lazy(
        "Compelling legitimate grounds can refuse only an objection to processing other than direct marketing, not “%(right)s”."
    ),
    RejectionGround.LEGAL_CLAIMS: gettext_lazy("Legal claims can refuse only an erasure, not “%(right)s”."),
    RejectionGround.DATA_ACCURATE: gettext_lazy(
        "Data found accurate and complete can refuse only a request to correct or complete data, not “%(right)s”."
    ),
}
# Refusing a withdrawal of consent on a ground other than who asks or how (models.ground_can_refuse): who asks is
# the subject, whose identity is not verified, or an agent, whose authority is not shown (services.agents).
CONSENT_WITHDRAWAL_REFUSAL = gettext_lazy(
    "Consent can be withdrawn at any time (Art. 7(3)): only an identity that could not be verified, an agent who made "
    "the request without showing their authority to act for the subject, or a manifestly unfounded or excessive "
    "request is a ground to refuse “%(right)s”. Stop what was done on consent and complete the "
    "request; if nothing was, say so in the letter."
)
CONSENT_WITHDRAWAL_REFUSAL_WITHOUT_ARTICLE = gettext_lazy(
    "Consent can be withdrawn at any time: only an identity that could not be verified, an agent who made the "
    "request without showing their authority to act for the subject, or a manifestly unfounded or excessive request "
    "is a ground to refuse “%(right)s”. Stop what was done on consent and complete the "
    "request; if nothing was, say so in the letter."
)
# Refusing a CCPA request to limit on “Other” (models.GROUNDS_AGAINST_A_CCPA_LIMIT).
CCPA_LIMIT_REFUSAL = gettext_lazy(
    "A request to limit the use of sensitive personal information under the CCPA can be refused only for a "
    "documented good-faith belief that it is fraudulent (CCPA Regulations § 7027(f)), as manifestly unfounded or "
    "excessive, or when an agent made it without showing their authority to act for the consumer, not on "
    "“%(ground)s”."
)
# Art. 15(4) limits the copy of Art. 15(3) only, and "should not be a refusal to provide all information" (recital 63):
# refusing access for other people's data would deny the subject the confirmation and the Art. 15(1) and 15(2)
# information too. Their data is masked in the package (SourceCategory.masked_fields), which its report tells the
# subject (exports/report.html).
OTHERS_DATA_IN_AN_ACCESS_COPY = gettext_lazy(
    "The rights and freedoms of others (Art. 15(4)) limit only the copy of the data, never access itself: the subject "
    "is still owed confirmation that we process their data and the information of Art. 15(1) and 15(2). Mask the other "
    "people's data in the package instead: add the fields that identify them to “Masked fields” of the category in the "
    "data inventory before the package is compiled (its report tells the subject what was masked), and say in the "
    "letter what was left out and why."
)
OTHERS_DATA_IN_AN_ACCESS_COPY_WITHOUT_ARTICLES = gettext_lazy(
    "The rights and freedoms of others limit only the copy of the data, never access itself: the subject "
    "is still owed confirmation that we process their data and what the law says we must tell them of its use. Mask "
    "the other people's data in the package instead: add the fields that identify them to “Masked fields” of the "
    "category in the data inventory before the package is compiled (its report tells the subject what was masked), "
    "and say in the letter what was left out and why."
)


def ground_for_another_right(ground: str, right: RequestedRight) -> str:
    """Why `ground` cannot refuse the right asked `right` (models.ground_can_refuse said so), and what to do instead,
    citing the GDPR's articles only where the request's law numbers them so (wording.cites_gdpr_articles).
    An objection to direct marketing is answered before (MARKETING_OBJECTION_REFUSAL)."""
    label = RIGHTS_THE_SUBJECT_ASKS[right.right]
    gdpr_numbers = cites_gdpr_articles(right.request.regime)
    if ground == RejectionGround.RIGHTS_OF_OTHERS and right.right == RequestType.ACCESS:
        return str(OTHERS_DATA_IN_AN_ACCESS_COPY if gdpr_numbers else OTHERS_DATA_IN_AN_ACCESS_COPY_WITHOUT_ARTICLES)
    if right.right == RequestType.WITHDRAW_CONSENT:
        refusal = CONSENT_WITHDRAWAL_REFUSAL if gdpr_numbers else CONSENT_WITHDRAWAL_REFUSAL_WITHOUT_ARTICLE
        return refusal % {"right": label}
    if ground not in GROUND_FOR_ANOTHER_RIGHT:  # a ground every other right takes ("Other"): a CCPA request to limit
        return CCPA_LIMIT_REFUSAL % {"ground": label_in_letter(RejectionGround(ground).label, right.request.regime)}
    messages = GROUND_FOR_ANOTHER_RIGHT if gdpr_numbers else {**GROUND_FOR_ANOTHER_RIGHT, **GROUND_FOR_ANOTHER_RIGHT_WITHOUT_ARTICLES}
    return messages[ground] % {"right": label}


# The rights and freedoms of others now refuse only the data ported (Art. 20(4); models.GROUNDS_FOR_SOME_RIGHTS): access
# is never refused for them, the other people's data is masked in its copy instead (Art. 15(4)). The ground's label
# still cites both articles, so that requests refused on it for access before read as they did; a letter cites the
# one rule it applies now: a portability refusal citing Art. 15(4) would point the subject to the wrong rule.
GROUND_IN_LETTER = {
    RejectionGround.RIGHTS_OF_OTHERS: gettext_lazy("The rights and freedoms of others (Art. 20(4))"),
}


# The provision (wording.CITATIONS) a ground cites under a law that does not number its articles as the GDPR does,
# whose labels leave the GDPR's article out: where that law has one for the ground, the letter cites it instead.
GROUND_PROVISIONS = {
    RejectionGround.MANIFESTLY_UNFOUNDED: "unfounded_or_excessive",
    RejectionGround.EXCESSIVE: "unfounded_or_excessive",
    RejectionGround.UNFOUNDED_OR_EXCESSIVE: "unfounded_or_excessive",
}


def ground_in_letter(ground: str, regime: str) -> str:
    """A ground as the letter refusing a right on it names it, in the active language (GROUND_IN_LETTER): under the
    GDPR and the UK GDPR with its article, naming the law (wording.label_citing_its_law); under another law without
    it, citing that law's own provision for the ground where it has one (GROUND_PROVISIONS)."""
    label = GROUND_IN_LETTER.get(ground, RejectionGround(ground).label)
    if cites_gdpr_articles(regime):
        return label_citing_its_law(label, regime)
    law = citation(regime, GROUND_PROVISIONS.get(ground, ""))
    text = label_in_letter(label, regime)
    return f"{text} ({law})" if law else text


def request_reject(
    *, request: PrivacyRequest, actor: Actor, ground: str, explanation: str, expected_status: str, preview: bool = False
) -> PrivacyRequest:
    """Refuse a request with a legal ground, and send the letter that says why and how to complain.

    The ground must be able to refuse every right asked (models.ground_can_refuse): a request that asks an
    objection to direct marketing only on the grounds any request may be refused on (Art. 21(3)), an access request
    never for other people's data (it is masked in the copy instead: Art. 15(4)), a CCPA request to limit never on
    an unverified identity (CCPA Regulations § 7027(e)); one that asks a right besides the one a ground answers is
    refused in part on completion instead. Nor is an erasure on a legal hold that its dry runs do not show keeping all
    they found (actions.retention_refusal), nor a request that was answered in part (actions.answered_already), nor
    one refused for an unverified identity before the subject was asked for information that identifies them
    (identity_refusal); that letter says they may still identify themselves or ask again (identity_paragraph).

    A rejection after the original due date (the first month, moved on by the days paused) is late whatever the
    extension (Art. 12(4)): it is still sent, the request page having warned (deadline_service.late_refusal_warning),
    and the certificate says so (certificate.refused_late).

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and nothing changes."""
    if ground not in dict(REFUSABLE_GROUNDS):
        raise RequestError(_("Choose the legal reason for the rejection."))
    explanation = explanation.strip()
    if ground == RejectionGround.IDENTITY_NOT_VERIFIED and not explanation:
        # Both of what is missing in one answer: the question to the subject too, when none was asked. Staff fixed
        # the reasons, then learned they could not refuse yet, one try each.
        raise RequestError(" ".join(filter(None, [identity_refusal(request, ground), identity_to_explain(request.regime)])))
    if ground in GROUNDS_TO_EXPLAIN and not explanation:
        to_explain = (
            _("Explain to the subject why “%(ground)s” applies: the letter must give the reasons (Art. 12(4)).")
            if cites_gdpr_articles(request.regime)
            else _("Explain to the subject why “%(ground)s” applies: the letter must give the reasons.")
        )
        raise RequestError(to_explain % {"ground": label_in_letter(RejectionGround(ground).label, request.regime)})
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        rights = list(locked.rights.all())
        if ground not in GROUNDS_AGAINST_A_MARKETING_OBJECTION and any(right.direct_marketing for right in rights):
            raise RequestError(marketing_objection_refusal(locked.regime))
        not_refusable = [right for right in rights if not ground_can_refuse(ground, right)]
        if not_refusable:
            refusal = ground_for_another_right(ground, not_refusable[0])
            if len(not_refusable) < len(rights):
                # The request asks the ground's right too: that right alone is refused on it, the others answered.
                refusable = next(right for right in rights if ground_can_refuse(ground, right))
                way = _("To refuse “%(right)s” on it, complete the request and refuse that right there.") % {
                    "right": RIGHTS_THE_SUBJECT_ASKS[refusable.right]
                }
                refusal = f"{refusal} {way}"
            raise RequestError(refusal)
        # A request answered in part (a package released, an erasure carried out) cannot be refused whole: the
        # letter would deny what was done, and the released package would be ended as a rejected request's.
        answered = answered_already(locked, set(locked.requested_rights))
        if answered:
            raise RequestError(" ".join(answered))
        beyond_the_holds = retention_refusal(locked, ground, whole_request=True)
        if beyond_the_holds:
            raise RequestError(beyond_the_holds)
        never_asked = (
            identity_refusal(locked, ground) or agents.rejection_refusal(locked, ground)
            or agents.closing_refusal(locked, ground=ground)
        )
        if never_asked:
            raise RequestError(never_asked)
        lifecycle.transition(locked, "reject", actor=actor, data={"ground": ground})
        PrivacyRequest.objects.filter(pk=locked.pk).update(rejection_ground=ground)
        locked.rejection_ground = ground
        with translation.override(locked.language):
            reason = ground_in_letter(ground, locked.regime)
        if ground == RejectionGround.OTHER:
            reason, explanation = explanation, ""  # "The reason: Other" says nothing: their words are the reason
        body = "\n\n".join(
            part
            for part in (
                explanation, identity_paragraph(locked, ground), ccpa_deletion_record_paragraph(locked),
                rejection_rights_paragraph(locked),
            )
            if part
        )
        # The ground ends the sentence "The reason: …", and the staff's explanation follows: its full stop is added
        # to the value, so that the translated wording and a DPO's template stay as they are.
        subject, text = render_letter(locked, TemplatePurpose.REJECTION, body=body, reason=with_full_stop(reason))
        write_to_subject(locked, actor=actor, subject=subject, body=text, action="rejection_letter_sent", preview=preview)
    return locked


# Built-in, as EVERY_RIGHT_REFUSED_LETTER: what it must say (who decides, why we cannot answer, when and to whom the
# request went, how to reach them) is the same for every request, and a DPO's rejection template would call it a
# refusal. Not a refusal: the controller answers, or refuses (Art. 28(3)(e) obliges the processor to help it).
FORWARDED_LETTER = (
    # Without the controller's name: with it (200 characters) the subject line would outgrow Message.subject.
    gettext_lazy("Your privacy request {{ reference }} was forwarded to the controller of the data"),
    gettext_lazy(
        "Your request {{ reference }} ({{ rights }}) concerns personal data that we process on behalf of {{ controller }}, "
        "which decides why and how that data is used. For that data we are a processor acting on its instructions"
        "{% if cites_articles %} (Art. 28){% endif %}, not its controller, so we cannot answer your request ourselves."
        "\n\nWe forwarded your request to {{ controller }} on {{ forwarded_on }}. {{ controller }} will answer you. You can "
        "contact them at:\n{{ contact }}\n\nIf you think that we also hold personal data about you for our own purposes, "
        "as its controller (for example because you are a customer of ours, or a contact at one), you may submit a new "
        "request to us about that data."
    ),
)
# Its text as it goes to an agent who filed for the subject: the data we may also hold is the subject's.
FORWARDED_LETTER_TO_AN_AGENT = gettext_lazy(
    "Your request {{ reference }} ({{ rights }}) concerns personal data that we process on behalf of {{ controller }}, "
    "which decides why and how that data is used. For that data we are a processor acting on its instructions"
    "{% if cites_articles %} (Art. 28){% endif %}, not its controller, so we cannot answer your request ourselves."
    "\n\nWe forwarded your request to {{ controller }} on {{ forwarded_on }}. {{ controller }} will answer you. You can "
    "contact them at:\n{{ contact }}\n\nIf you think that we also hold, for our own purposes, personal data about the "
    "person you are acting for, as its controller (for example because they are a customer of ours, or a contact at "
    "one), you may submit a new request to us about that data."
)


def forwarded_letter(request: PrivacyRequest) -> tuple[str, str]:
    """The subject line and text of the letter telling the subject that their request went to the controller of the
    data (request_forward), in their language: the GDPR's article only where the letter cites them."""
    with translation.override(request.language):
        values = {
            "reference": request.reference,
            "rights": _rights_for_correspondent(request),
            "controller": request.forwarded_to,
            "contact": request.forwarded_to_contact,
            "forwarded_on": date_in_words(request.forwarded_on),
            "cites_articles": cites_gdpr_articles(request.regime),
        }
        subject_source, body_source = map(str, FORWARDED_LETTER)
        if request.filed_by_agent:
            body_source = str(FORWARDED_LETTER_TO_AN_AGENT)
        return letters.render(subject_source, values), letters.render(body_source, values)


def request_forward(
    *, request: PrivacyRequest, actor: Actor, controller: str, contact: str, forwarded_on: datetime.date | None = None,
    expected_status: str, preview: bool = False,
) -> PrivacyRequest:
    """Close a request about data the carrier processes on a customer's behalf: its controller must answer it, and
    staff forwarded it there on `forwarded_on` (today by default). The subject gets a letter, not a refusal, naming the
    controller, the day and how to reach it, and their right to complain (Art. 12(4)): we did not answer it.

    Allowed where a rejection is (the verified open states), for whoever may work the request. Refused once we
    answered part of it ourselves (actions.answered_already): then we acted as the controller of that data. The
    audit event holds the day only; the controller's name and contact, staff's free text, stay on the request.

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and nothing changes."""
    controller, contact = controller.strip(), contact.strip()
    if not controller:
        raise RequestError(_("Name the controller the request was forwarded to."))
    if not contact:
        raise RequestError(_("Say how the subject can contact the controller: a postal address, an email address or a website."))
    today = timezone.localdate()
    forwarded_on = forwarded_on or today
    if forwarded_on > today:
        raise RequestError(_("Give the day the request was forwarded: it cannot be in the future."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        # The state first: a closed request is refused as such, whatever else it lacks.
        lifecycle.require_allowed(locked.status, "forward")
        if refusal := agents.closing_refusal(locked):
            raise RequestError(refusal)
        if forwarded_on < timezone.localdate(locked.received_at):
            raise RequestError(
                _("The request was received on %(date)s: it cannot have been forwarded before.")
                % {"date": date_in_words(timezone.localdate(locked.received_at))}
            )
        if answered_already(locked, set(locked.requested_rights)):
            raise RequestError(
                _("We answered part of this request ourselves (a data package released, an action carried out in a source "
                  "system, or a suppression list applied), as the controller of that data: it cannot be forwarded to "
                  "another controller. Complete it instead, and tell the subject in the letter whom to ask for the rest.")
            )
        lifecycle.transition(locked, "forward", actor=actor, data={"forwarded_on": forwarded_on.isoformat()})
        locked.forwarded_to, locked.forwarded_to_contact, locked.forwarded_on = controller, contact, forwarded_on
        PrivacyRequest.objects.filter(pk=locked.pk).update(
            forwarded_to=controller, forwarded_to_contact=contact, forwarded_on=forwarded_on
        )
        subject, text = forwarded_letter(locked)
        text = f"{text}\n\n{rejection_rights_paragraph(locked)}"
        write_to_subject(locked, actor=actor, subject=subject, body=text, action="forwarding_letter_sent", preview=preview)
    return locked


def fee_in_words(request: PrivacyRequest) -> str:
    """The request's fee as its subject reads it: "1.250,00 EUR" in Dutch."""
    with translation.override(request.language):
        return amount_in_words(request.fee_amount, settings.FEE_CURRENCY)


def fee_refusal(request: PrivacyRequest) -> str | None:
    """Why no fee may be proposed for the request under its regime, or None (the request page offers the fee form
    only then). The GDPR applies to every request (Art. 3(1)) and allows a fee (Art. 12(5)), as the UK GDPR and the
    CCPA (Civ. Code 1798.145(h)(3)) do; the LGPD does not: a request is answered free of charge ("sem custos para o
    titular", Art. 18 §5), and with both laws applying, the stricter one holds."""
    if request.regime == "lgpd":
        return _("Under the LGPD a request is answered free of charge (Art. 18 §5): no fee can be charged for it.")
    return None


def fee_propose(
    *, request: PrivacyRequest, actor: Actor, amount: Decimal, explanation: str, expected_status: str, preview: bool = False
) -> PrivacyRequest:
    """Tell the subject of the reasonable fee we intend to charge for a manifestly unfounded or excessive
    request (Art. 12(5)), and why, before charging it: they may withdraw instead. The clock runs on (nothing in
    the GDPR stops it for a fee); a fee proposed again replaces the first, until one is paid. Never under a
    regime that makes the answer free of charge (fee_refusal). The same letter from the same writer within
    SENT_AGAIN_WITHIN is refused: a form sent twice must not read to the subject as two decisions.

    `preview`: emails.LetterPreview is raised with the letter instead of sending it, and nothing changes."""
    explanation = explanation.strip()
    if not explanation:
        # The controller must be able to show why the request is excessive (Art. 12(5)), and the subject to judge the amount.
        raise RequestError(_("Explain to the subject why the request is manifestly unfounded or excessive, and how the fee was worked out."))
    amount = amount.quantize(Decimal("0.01"))  # in cents, as stored and as the audit event records it
    if amount <= 0:
        raise RequestError(_("A fee is an amount above zero."))
    with transaction.atomic():
        locked = _locked_for_work(request, actor, expected_status)
        if not locked.is_open or locked.status == Status.AWAITING_VERIFICATION:
            raise RequestError(_("A fee can be proposed only for an open request whose email address is confirmed."))
        refusal = fee_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        if locked.fee_paid_at is not None:
            raise RequestError(
                _("The fee was paid on %(date)s: it cannot be changed.") % {"date": date_in_words(timezone.localdate(locked.fee_paid_at))}
            )
        locked.fee_amount, locked.fee_proposed_at = amount, timezone.now()
        # A decision on the request under Art. 12(5): the subject may complain of it as of a refusal (Art. 12(4)).
        body = f"{explanation}\n\n{rejection_rights_paragraph(locked)}"
        subject, text = render_letter(locked, TemplatePurpose.FEE, body=body, fee=fee_in_words(locked))
        # The letter names the amount and the reason: a fee deliberately changed reads otherwise, and goes.
        earlier = _sent_again(
            locked.messages.filter(direction=MessageDirection.TO_SUBJECT, author=actor.user), for_whoever_filed(locked, text)
        )
        if earlier:
            raise RequestError(_sent_again_refusal(earlier))
        PrivacyRequest.objects.filter(pk=locked.pk).update(fee_amount=locked.fee_amount, fee_proposed_at=locked.fee_proposed_at)
        record_event(locked, "fee_proposed", actor=actor, data={"amount": str(amount), "currency": settings.FEE_CURRENCY})
        write_to_subject(locked, actor=actor, subject=subject, body=text, action="fee_letter_sent", preview=preview)
    return locked


def fee_record_paid(*, request: PrivacyRequest, actor: Actor, expected_amount: Decimal | None = None) -> PrivacyRequest:
    """Record that the subject paid the fee proposed (paid outside the portal: an invoice, a transfer).
    `expected_amount` is the fee the page showed: another proposed since is not the one that was paid."""
    with transaction.atomic():
        locked = _locked_for_work(request, actor, None)
        if locked.fee_proposed_at is None:
            raise RequestError(_("No fee was proposed for this request."))
        if expected_amount is not None and locked.fee_amount != expected_amount:
            raise lifecycle.StaleRequest(
                _("Another fee was proposed since you loaded the page: %(fee)s. Check what the subject paid.") % {"fee": fee_in_words(locked)}
            )
        if locked.fee_paid_at is not None:
            raise RequestError(
                _("The fee was recorded as paid already, on %(date)s.") % {"date": date_in_words(timezone.localdate(locked.fee_paid_at))}
            )
        if not locked.is_open:
            raise RequestError(_("This request is closed: record the payment in a note instead."))
        locked.fee_paid_at = timezone.now()
        PrivacyRequest.objects.filter(pk=locked.pk).update(fee_paid_at=locked.fee_paid_at)
        record_event(locked, "fee_paid", actor=actor, data={"amount": str(locked.fee_amount), "currency": settings.FEE_CURRENCY})
    return locked


@dataclass
class BulkResult:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def bulk_apply(requests, action) -> BulkResult:
    """Apply `action(request)` to each request in its own transaction.

    One refusal (a state that does not allow it, a role that may not) skips
    that request with its reason and never undoes the others.
    """
    result = BulkResult()
    for request in requests:
        try:
            action(request)
        except RequestError as error:
            result.skipped.append((request.reference, str(error)))
        else:
            result.done.append(request.reference)
    return result
