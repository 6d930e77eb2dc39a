"""Requests filed by someone acting for the data subject: an authorised agent (CCPA Regulations § 7063), a parent
or guardian of a child, a lawyer or other legal representative.

Whoever filed gets our emails (PrivacyRequest.correspondence_email). Until staff confirm the agent's authority,
nothing is disclosed, erased, rectified or restricted for the request: a stranger claiming to act for someone must
not receive their data or change it. The gates call `authority_refusal`; staff confirm with
`agent_authority_confirm`, or ask the agent for the subject's signed permission with Request information, saying that
it asks for it (Message.asks_agent_authority), and may reject the request on RejectionGround.AGENT_AUTHORITY_NOT_SHOWN
once they asked so. Staff may also ask the subject, at the email address they gave, to confirm it directly (CCPA
Regulations § 7063(a)(2)): subject_confirmation_send, answered through subject_confirmation_answer. While the subject's
latest answer is "I did not allow the agent" (subject_denied_agent), staff may confirm the authority only on proof that
does not rest on the subject's word (a power of attorney, a court order, parental responsibility), and may reject the
request on the authority not shown without asking the agent first. An authority confirmed may be withdrawn while the
request is open (agent_authority_withdraw): the gates close again. Staff may correct who makes a web request, the
subject or an agent, when the form's answer was wrong (requester_correct).
"""

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app import emails, lifecycle, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActorKind,
    AgentAuthorityMethod,
    AgentCapacity,
    Channel,
    ExportStatus,
    IdentityKind,
    InternalNote,
    PrivacyRequest,
    RejectionGround,
    VerificationMethod,
    new_nonce,
    normalised_identifier,
)

AUTHORITY_UNCONFIRMED = gettext_lazy(
    "An agent filed this request, and their authority to act for the subject is not confirmed yet: confirm it "
    "(“Confirm the agent's authority”) once you hold the subject's signed permission or other proof, or ask the "
    "agent for it with Request information. Until then, no data is disclosed, erased, rectified or restricted."
)
# Refusing for lack of authority, as for an unverified identity (handling.identity_refusal), only once the agent was
# asked for the proof on this request and did not give it (CCPA Regulations § 7063(a)).
AUTHORITY_NEVER_ASKED = gettext_lazy(
    "The agent was never asked on this request for proof that the subject allowed them to act: ask for it first "
    "with Request information, ticking “It asks the agent for proof of their authority” (the subject's signed "
    "permission, a power of attorney, proof of parental responsibility)."
)
# What the audit event of a request for information that asks the agent for that proof says it asks (its data's
# "asks"): a code, as the trail keeps them.
ASKS_AGENT_AUTHORITY = "agent_authority"
AUTHORITY_REFUSES_THE_WHOLE_REQUEST = gettext_lazy(
    "An agent's authority not shown refuses the whole request, not one right of it: reject the request instead."
)
# What the rejection letter adds: the door stays open, to the subject and to an agent who gets their permission.
AUTHORITY_NOT_SHOWN_IN_LETTER = gettext_lazy(
    "The person the data is about may make the request themselves at any time, or you may make it again for them "
    "with proof of your authority to act for them: their signed permission, a power of attorney, or proof of "
    "parental responsibility or guardianship."
)
# Any letter that closes the request tells its reader something of the subject's data: a refusal its reasons (we
# must keep their call records), a forwarding the operator they are a customer of. Until the agent's authority is
# confirmed, the only letter that closes it is the rejection for its lack.
AUTHORITY_UNCONFIRMED_FOR_CLOSING = gettext_lazy(
    "An agent filed this request, and their authority to act for the subject is not confirmed yet: any letter that "
    "closes it would tell them something of the subject's data (what we hold, why we keep it, which customer of ours "
    "processes it). Confirm their authority first, or reject the request on “%(ground)s” once you have asked them "
    "for proof of it."
)
NO_AGENT = gettext_lazy("No agent filed this request: choose another ground.")
# How staff may confirm an agent's authority against the subject's own "I did not allow the agent": on proof of an
# authority that does not rest on the subject's say (a court order, a child's parent or guardian). Their signed
# permission, or their word to us, is contradicted by that answer: to change their mind they answer a new link.
METHODS_AGAINST_THE_SUBJECTS_DENIAL = (AgentAuthorityMethod.POWER_OF_ATTORNEY, AgentAuthorityMethod.PARENTAL_RESPONSIBILITY)
SUBJECT_DENIED_THE_AGENT = gettext_lazy(
    "The subject told us, through the link asking them to confirm the agent, that they did not allow the agent: their "
    "signed permission or their word to us cannot be recorded against that answer. If they changed their mind, ask "
    "them again (“Ask the subject to confirm”). Otherwise confirm only a power of attorney, a court order or parental "
    "responsibility, which do not rest on the subject's say, or reject the request on “%(ground)s”."
)
AUTHORITY_CONFIRMED_ALREADY = gettext_lazy("The agent's authority was confirmed already: nothing changed.")


def asking_for_authority_refusal(request: PrivacyRequest) -> str | None:
    """Why a request for information cannot ask for proof of the agent's authority on `request`, or None: an agent
    filed it and their authority is unconfirmed."""
    if not request.filed_by_agent:
        return _("No agent filed this request: there is no authority to ask for.")
    if request.agent_authority_confirmed_at is not None:
        return _("The agent's authority was confirmed already: there is no proof to ask for.")
    return None


def subject_denied_agent(request: PrivacyRequest) -> bool:
    """Did the subject's latest answer to a link asking them to confirm the agent (subject_confirmation_answer) say
    they did not allow them? A later "yes" through a new link replaces it; nothing else does. A correction of who
    makes the request does not either: requester_correct refuses to make the request the subject's own while the
    answer is no, so that correcting back and forth cannot make it vanish, and an answer about an earlier agent
    holds for the next one (the subject says yes to them through a new link)."""
    answers = request.events.filter(actor_kind=ActorKind.SUBJECT, action__in=("agent_authority_denied", "agent_authority_confirmed"))
    latest = answers.order_by("-sequence").values_list("action", flat=True).first()
    return latest == "agent_authority_denied"


def authority_refusal(request: PrivacyRequest) -> str | None:
    """Why the request's data may not be disclosed or changed now (a package released, a completion letter with
    data, an erasure, rectification or restriction carried out), or None: an agent filed it and their authority is
    not confirmed."""
    return str(AUTHORITY_UNCONFIRMED) if request.agent_authority_unconfirmed else None


def closing_refusal(request: PrivacyRequest, *, ground: str = "") -> str | None:
    """Why the request may not be closed now with a letter (a completion, a forwarding, or a rejection on `ground`),
    or None: an agent filed it, their authority is unconfirmed, and the letter is not the rejection for its lack
    (AUTHORITY_UNCONFIRMED_FOR_CLOSING)."""
    if request.agent_authority_unconfirmed and ground != RejectionGround.AGENT_AUTHORITY_NOT_SHOWN:
        return str(AUTHORITY_UNCONFIRMED_FOR_CLOSING) % {"ground": RejectionGround.AGENT_AUTHORITY_NOT_SHOWN.label}
    return None


def rejection_refusal(request: PrivacyRequest, ground: str) -> str | None:
    """Why `ground` cannot reject `request` now, or None: the lack of an agent's authority refuses only a request an
    agent filed, whose authority is unconfirmed, once the agent was asked for proof of it with a request for
    information that said so (Message.asks_agent_authority); any other question, a clarification say, does not count.
    As for an unverified identity (handling.identity_refusal), whether the answer (or the silence) leaves the
    authority unshown is staff's judgment, given in the letter's reasons.

    The subject saying they did not allow the agent (subject_denied_agent) opens it too, unasked: that answer shows
    the authority is lacking more surely than an agent's silence, and asking the agent first would only keep writing
    to someone the subject disowned while the clock runs."""
    if ground != RejectionGround.AGENT_AUTHORITY_NOT_SHOWN:
        return None
    if not request.filed_by_agent:
        return str(NO_AGENT)
    if request.agent_authority_confirmed_at is not None:
        return str(AUTHORITY_CONFIRMED_ALREADY)
    if not request.messages.filter(asks_agent_authority=True).exists() and not subject_denied_agent(request):
        return str(AUTHORITY_NEVER_ASKED)
    return None


def agent_authority_confirm(*, request: PrivacyRequest, actor: Actor, method: str) -> PrivacyRequest:
    """Record that staff confirmed the agent's authority to act for the subject, and how (`method`, an
    AgentAuthorityMethod): the audit event `agent_authority_confirmed` says who, when and how.

    Open, email-verified requests filed by an agent only; refused once confirmed (a second click changes nothing).
    While the subject's latest answer says they did not allow the agent (subject_denied_agent), staff may confirm only
    with METHODS_AGAINST_THE_SUBJECTS_DENIAL. Lifts the gate of `authority_refusal`; the identity check of the subject
    is a separate step. `actor` is staff who may work the request, or the subject answering the link of
    subject_confirmation_send.
    """
    if method not in AgentAuthorityMethod.values:
        raise RequestError(_("Choose how you confirmed the agent's authority."))
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        # The subject's own answer (never the agent's, who shares the subject's kind of actor: Actor.agent) needs no
        # staff role; anyone else does.
        if actor != Actor.subject():
            roles.require_can_work(actor, locked)
        if locked.status not in lifecycle.VERIFIED_OPEN:
            raise RequestError(_("The agent's authority can be confirmed on open, email-verified requests only."))
        if not locked.filed_by_agent:
            raise RequestError(_("No agent filed this request: there is no authority to confirm."))
        if locked.agent_authority_confirmed_at is not None:
            raise RequestError(str(AUTHORITY_CONFIRMED_ALREADY))
        if (
            actor != Actor.subject()
            and method not in METHODS_AGAINST_THE_SUBJECTS_DENIAL
            and subject_denied_agent(locked)
        ):
            raise RequestError(str(SUBJECT_DENIED_THE_AGENT) % {"ground": RejectionGround.AGENT_AUTHORITY_NOT_SHOWN.label})
        locked.agent_authority_confirmed_at = timezone.now()
        locked.save(update_fields=["agent_authority_confirmed_at", "updated_at"])
        record_event(locked, "agent_authority_confirmed", actor=actor, data={"method": method})
    request.agent_authority_confirmed_at = locked.agent_authority_confirmed_at
    return locked


def agent_authority_withdraw(*, request: PrivacyRequest, actor: Actor, reason: str) -> PrivacyRequest:
    """Withdraw the confirmation of the agent's authority (the subject told us they never gave it, the proof turned
    out false): the request is back to the agent's authority unconfirmed, and the gates of `authority_refusal` and
    `closing_refusal` close again. What went out meanwhile (a package released, an erasure carried out, a letter) is
    not called back: the request page says so.

    Open requests filed by an agent whose authority is confirmed, by staff who may work the request (as
    agent_authority_confirm). `reason` is required; it is kept as an internal note (purged with the request's
    personal data), the audit event `agent_authority_withdrawn` naming the note, not saying it. A link asking the
    subject to confirm the agent, still unanswered, stops working: a new one may be sent. The assignee (or the DPO)
    is told by email, as when the subject says no, unless they withdrew it themselves.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why you withdraw the agent's authority."))
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if not locked.is_open:
            raise RequestError(
                _("This request is closed: the agent's authority can no longer be withdrawn. What was sent or done for "
                  "it stands; record what you learned as a note.")
            )
        if not locked.filed_by_agent:
            raise RequestError(_("No agent filed this request: there is no authority to withdraw."))
        if locked.agent_authority_confirmed_at is None:
            raise RequestError(_("The agent's authority is not confirmed: there is nothing to withdraw."))
        if locked.subject_confirmation_nonce:  # its email, if still unsent, would ask about an authority withdrawn
            emails.forgive(locked.id, "subject_confirmation", locked.subject_confirmation_nonce)
        locked.agent_authority_confirmed_at = None
        locked.subject_confirmation_nonce = ""
        locked.save(update_fields=["agent_authority_confirmed_at", "subject_confirmation_nonce", "updated_at"])
        # Staff text may name people, and the chain is never purged: the reason is a note, which is.
        note = InternalNote.objects.create(request=locked, author=actor.user, body=reason)
        event = record_event(locked, "agent_authority_withdrawn", actor=actor, data={"note": note.id})
        if locked.assignee_id != actor.user.pk:
            emails.owe(locked, "agent_authority_withdrawn", str(event.pk))
            tasks.queue_after_commit(tasks.send_agent_authority_withdrawn_notification, locked.id, event.pk)
    request.agent_authority_confirmed_at = None
    return locked


# The verification methods that rest on whoever filed: the link reached their mailbox, the call-back their phone, the
# identity document was the one they sent. Once we learn that an agent filed, none of them proves an identifier the
# subject's. The account records and the customer organisation's word do not rest on the filer: they stay.
METHODS_RESTING_ON_THE_FILER = (VerificationMethod.EMAIL_LINK, VerificationMethod.CALLBACK, VerificationMethod.DOCUMENT)


def requester_correct(
    *,
    request: PrivacyRequest,
    actor: Actor,
    by_agent: bool,
    agent_name: str = "",
    agent_email: str = "",
    agent_capacity: str = "",
    reason: str,
) -> PrivacyRequest:
    """Correct who makes a web request, the answer to the form's "Who is making this request?": an agent
    (`by_agent`, with their name, email address and capacity) or the subject. Whoever filed confirmed their own
    mailbox through the verification link.

    - To an agent: the link proved the filer's mailbox, the agent's, not the subject's. The agent's address must be
      that one, the only address its owner confirmed: letters, the status page link and an unencrypted package go
      there, and another one, typed by staff, would be read by whoever owns it. Every identifier verified by a method
      that rests on the filer (METHODS_RESTING_ON_THE_FILER) is unverified (the source systems would be searched by
      it, subject_confirmation_send would ask the agent to confirm themselves, a package's password would be texted
      to the agent's phone); the subject's address, the agent's own, is cleared and its identity dropped. Their
      authority is unconfirmed: the gates of authority_refusal close.
    - To the subject: the agent's address, which the link proved, becomes the subject's, verified by that link as on
      any subject's web request, and the only identifier left verified: staff verified the others as identifiers of
      the person the agent named, and that the filer is that person is only the filer's word. The agent's details and
      a confirmed authority are cleared. Refused while the subject's answer to a link asking them to confirm the agent
      is that they did not allow the agent (subject_denied_agent), and while such a link is unanswered: the filer's
      word would otherwise cancel the question put to the subject (a link the authority confirmed otherwise made dead
      is cleared). Allowed after the subject's yes: they allowed the filer to act for them, and the request made the
      filer's own is searched by the filer's mailbox only.

    Either way the identifiers the sources are searched by change: the request's packages not released are ended
    (exports.delete_export: their data was searched for by the identifiers of before), the dry runs of its actions
    not carried out are voided (actions.dry_runs_void), and its actions waiting for a manual source's owner are
    cancelled, for staff to plan again (actions.manual_actions_void). Refused while a package is being compiled, or
    another transaction holds one (a release, an upload): staff try again once it finished.

    Open, email-verified web requests only, by staff who may work them (as agent_authority_confirm); refused once
    data was sent or changed for whoever made it (actions.answered_already: a package released, an action run in a
    source, a suppression list applied). `reason` is kept as an internal note; the audit event `requester_corrected`
    says {"to": "agent" | "subject", "note": its id}, the actions whose dry run was voided ("dry_runs_voided",
    actions.action_summary, when any) and the manual ones cancelled ("manual_actions_voided", when any); each package
    ended has its `export_deleted` event. All or nothing, in one
    transaction.
    """
    from requests_app.services import actions, exports  # imported here: both import this module

    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why you correct who makes this request."))
    agent_name, agent_email = agent_name.strip(), agent_email.strip()
    if by_agent and not (agent_name and agent_email and agent_capacity in AgentCapacity.values):
        raise RequestError(_("Give the agent's name, email address and capacity."))
    if by_agent:
        try:
            validate_email(agent_email)
        except ValidationError:
            raise RequestError(_("Enter a valid email address for the agent.")) from None
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if locked.channel != Channel.WEB:
            raise RequestError(_("Only a request made on our web form can have who makes it corrected here."))
        if locked.status not in lifecycle.VERIFIED_OPEN:
            raise RequestError(_("Who makes a request can be corrected on open, email-verified requests only."))
        if by_agent == locked.filed_by_agent:
            raise RequestError(
                _("An agent makes this request already: nothing changed.") if by_agent
                else _("The subject makes this request already: nothing changed.")
            )
        if actions.answered_already(locked, set(locked.requested_rights)):
            raise RequestError(
                _(
                    "Who makes this request can no longer be corrected: data was already sent or changed for it (a "
                    "package released, an action carried out in a source, a suppression list applied). Record what "
                    "you learned as a note."
                )
            )
        if by_agent and agent_email.casefold() != locked.subject_email.casefold():
            raise RequestError(
                _(
                    "The agent's email address must be the one that confirmed this request: it is the mailbox of "
                    "whoever filed, and the only address its owner confirmed. Our letters, the status page link and "
                    "the data would otherwise go to an address nobody confirmed. If the agent wants our emails "
                    "elsewhere, they may make the request again from that address."
                )
            )
        if not by_agent and subject_denied_agent(locked):
            raise RequestError(
                _(
                    "The subject answered the link asking them to confirm the agent that they did not allow the agent: "
                    "this request cannot be made the subject's own, which would give the data to the address that "
                    "confirmed it, the agent's, on the agent's word. If the subject filed after all, ask them to "
                    "confirm again (“Ask the subject to confirm”); otherwise reject the request on “%(ground)s”."
                )
                % {"ground": RejectionGround.AGENT_AUTHORITY_NOT_SHOWN.label}
            )
        # The question is the subject's, at an address proven theirs: the filer's word that they are the subject must
        # not take it away. A link staff made dead by confirming the authority otherwise asks nothing any more.
        if not by_agent and locked.subject_confirmation_nonce and locked.agent_authority_confirmed_at is None:
            raise RequestError(
                _(
                    "The subject has not yet answered the link asking them to confirm the agent: this request cannot "
                    "be made the subject's own before they do, or the word of whoever filed would cancel the question "
                    "put to the subject. If whoever filed is the subject, they can answer that link themselves, and "
                    "the request can be corrected once they did. If the link expired, send a new one (“Ask the "
                    "subject to confirm”)."
                )
            )
        try:
            # Not waited for: a release or an upload locks its package before the request, which this holds.
            with transaction.atomic():
                packages = list(
                    locked.exports.select_for_update(nowait=True).exclude(
                        status__in=(ExportStatus.RELEASED, ExportStatus.EXPIRED)
                    )
                )
        except DatabaseError:
            packages = None
        if packages is None or any(package.status == ExportStatus.RUNNING for package in packages):
            raise RequestError(
                _(
                    "A data package of this request is being compiled or worked on right now: correct who makes the "
                    "request once that is finished. The correction then deletes the packages not released, whose "
                    "data was searched for by the identifiers of before."
                )
            )
        for package in packages:
            package.request = locked
            exports.delete_export(package)
        voided = actions.dry_runs_void(locked)
        manual_voided = actions.manual_actions_void(locked, actor)
        fields = ["agent_capacity", "agent_name", "agent_email", "agent_authority_confirmed_at", "subject_email", "updated_at"]
        if by_agent:
            # The link reached the filer, the agent, as the call-back did; the document was theirs to send.
            locked.identities.filter(verification_method__in=METHODS_RESTING_ON_THE_FILER).update(
                verified_at=None, verification_method="", verified_by=None
            )
            # The address that confirmed the request, as the subject's, is the agent's own: not the subject's.
            locked.identities.filter(
                kind=IdentityKind.EMAIL, value=normalised_identifier(IdentityKind.EMAIL, locked.subject_email)
            ).delete()
            locked.agent_capacity, locked.agent_name, locked.agent_email = agent_capacity, agent_name, locked.subject_email
            locked.subject_email = ""
        else:
            # The filer confirmed this mailbox through our link: as on any subject's web request, that proves it theirs.
            locked.subject_email = locked.agent_email
            identity, _created = locked.identities.get_or_create(
                kind=IdentityKind.EMAIL, value=normalised_identifier(IdentityKind.EMAIL, locked.agent_email)
            )
            if identity.verified_at is None:  # one staff verified already, by a method of their choosing, stays
                identity.verified_at = locked.verified_at or timezone.now()
                identity.verification_method = VerificationMethod.EMAIL_LINK
                identity.save(update_fields=["verified_at", "verification_method"])
            # What staff verified while an agent made the request, they verified as the identifiers of the person the
            # agent named: that the filer is that person is only the filer's word. Their mailbox is all they proved;
            # staff verify the rest again for them, or the sources would be searched by someone else's identifiers.
            locked.identities.exclude(pk=identity.pk).update(verified_at=None, verification_method="", verified_by=None)
            if locked.subject_confirmation_nonce:  # its email, if still unsent, would ask about an agent no longer there
                emails.forgive(locked.id, "subject_confirmation", locked.subject_confirmation_nonce)
            locked.subject_confirmation_nonce = ""
            fields.append("subject_confirmation_nonce")
            locked.agent_capacity = locked.agent_name = locked.agent_email = ""
        locked.agent_authority_confirmed_at = None
        locked.save(update_fields=fields)
        # Staff text may name people, and the chain is never purged: the reason is a note, which is.
        note = InternalNote.objects.create(request=locked, author=actor.user, body=reason)
        data = {"to": "agent" if by_agent else "subject", "note": note.id}
        if voided:
            data["dry_runs_voided"] = voided
        if manual_voided:
            data["manual_actions_voided"] = manual_voided
        record_event(locked, "requester_corrected", actor=actor, data=data)
    return locked


SUBJECT_CONFIRMATION_SALT = "requests_app.agent-confirmation"


class SubjectConfirmationLinkError(Exception):
    """A link asking the subject to confirm the agent that can no longer be used: said on the page it opens."""


def subject_confirmation_token(request: PrivacyRequest) -> str:
    """The signed token of the latest link asking the subject to confirm the agent: the request's opaque id and the
    link's nonce, nobody's name or address."""
    return signing.dumps({"r": str(request.public_id), "n": request.subject_confirmation_nonce}, salt=SUBJECT_CONFIRMATION_SALT)


def subject_confirmation_send(*, request: PrivacyRequest, actor: Actor) -> PrivacyRequest:
    """Email the subject, at the address they gave of their own, a link to confirm that they allowed the agent to make
    the request for them, or to say they did not (CCPA Regulations § 7063(a)(2)).

    Open, email-verified requests filed by an agent whose authority is unconfirmed, with the subject's own address
    only, proven theirs (the account records): an address the agent typed may be the agent's. The link is signed, valid for VERIFICATION_LINK_MAX_AGE, used once, and replaced by the next one sent (the
    nonce). The email is owed in this transaction and queued on commit (emails.requeue_owed_emails).
    """
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if locked.status not in lifecycle.VERIFIED_OPEN:
            raise RequestError(_("The subject can be asked to confirm the agent on open, email-verified requests only."))
        if not locked.filed_by_agent:
            raise RequestError(_("No agent filed this request: there is no authority to confirm."))
        if locked.agent_authority_confirmed_at is not None:
            raise RequestError(str(AUTHORITY_CONFIRMED_ALREADY))
        if not locked.subject_email:
            raise RequestError(
                _("The agent gave no email address of the subject's: ask the subject another way (phone, post).")
            )
        # The agent typed the subject's address: it may be their own, or another mailbox of theirs, and a yes from it
        # would be the agent confirming themselves. Only an address proven the subject's (the account records, on an
        # agent's request: models.proving_methods) reaches the subject.
        if not locked.identities.searchable().filter(kind=IdentityKind.EMAIL).exists():
            raise RequestError(
                _(
                    "The agent typed the subject's email address, which may be their own: a confirmation from it would "
                    "prove nothing. Verify the address against the account records first (Verify identity), or ask "
                    "the subject another way (phone, post)."
                )
            )
        if locked.subject_confirmation_nonce:  # the link replaced, if its email is still unsent
            emails.forgive(locked.id, "subject_confirmation", locked.subject_confirmation_nonce)
        locked.subject_confirmation_nonce = new_nonce()
        locked.save(update_fields=["subject_confirmation_nonce", "updated_at"])
        emails.owe(locked, "subject_confirmation", locked.subject_confirmation_nonce)
        record_event(locked, "subject_confirmation_sent", actor=actor)
        tasks.queue_after_commit(tasks.send_subject_confirmation, locked.id)
    return locked


def request_for_subject_confirmation(token: str) -> PrivacyRequest:
    """The request the link is for, if it can still be used: signed, not expired, the latest sent and not answered,
    the request open and the agent's authority unconfirmed. Raises SubjectConfirmationLinkError otherwise."""
    invalid = _("This link is not valid. Please copy the whole link from the email.")
    try:
        payload = signing.loads(token, salt=SUBJECT_CONFIRMATION_SALT, max_age=settings.VERIFICATION_LINK_MAX_AGE)
    except signing.SignatureExpired:
        raise SubjectConfirmationLinkError(
            _("This link has expired. If you still want to answer, write to our data protection officer.")
        ) from None
    except signing.BadSignature:
        raise SubjectConfirmationLinkError(invalid) from None
    request = PrivacyRequest.objects.filter(public_id=payload.get("r")).first()
    if request is None or not request.filed_by_agent:
        raise SubjectConfirmationLinkError(invalid)
    _check_subject_confirmation_link(request, payload.get("n"))
    return request


def _check_subject_confirmation_link(request: PrivacyRequest, nonce) -> None:
    if not request.subject_confirmation_nonce or not constant_time_compare(request.subject_confirmation_nonce, str(nonce)):
        raise SubjectConfirmationLinkError(
            _("This link was used already, or a newer one replaced it. Thank you: there is nothing more to do here.")
        )
    if not request.is_open or request.agent_authority_confirmed_at is not None:
        raise SubjectConfirmationLinkError(_("This request needs no answer from you any more. Thank you."))


def subject_confirmation_answer(*, token: str, allowed: bool) -> PrivacyRequest:
    """The subject's answer through the link of subject_confirmation_send, which it uses up.

    `allowed`: the agent's authority is confirmed (agent_authority_confirm, method SUBJECT_CONFIRMED, the subject
    the actor). Otherwise the audit event `agent_authority_denied` records it, nothing is confirmed, and the assignee
    (or the DPO) is told by email. Of two answers at once, the row lock lets one win; the other finds the link used.
    """
    request = request_for_subject_confirmation(token)
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _check_subject_confirmation_link(locked, request.subject_confirmation_nonce)
        locked.subject_confirmation_nonce = ""
        locked.save(update_fields=["subject_confirmation_nonce", "updated_at"])
        if allowed:
            return agent_authority_confirm(request=locked, actor=Actor.subject(), method=AgentAuthorityMethod.SUBJECT_CONFIRMED)
        event = record_event(locked, "agent_authority_denied", actor=Actor.subject())
        emails.owe(locked, "agent_authority_denied", str(event.pk))
        tasks.queue_after_commit(tasks.send_agent_authority_denied_notification, locked.id, event.pk)
    return locked
