"""Requests filed by someone acting for the data subject: an authorised agent (CCPA Regulations § 7063), a parent
or guardian of a child, a lawyer or other legal representative.

Whoever filed gets our emails (PrivacyRequest.correspondence_email). Until staff confirm the agent's authority,
nothing is disclosed, erased, rectified or restricted for the request: a stranger claiming to act for someone must
not receive their data or change it. The gates call `authority_refusal`; staff confirm with
`agent_authority_confirm`, or ask the agent for the subject's signed permission with Request information, and may
reject the request on RejectionGround.AGENT_AUTHORITY_NOT_SHOWN once they asked.
"""

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app import lifecycle, roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import AgentAuthorityMethod, PrivacyRequest, RejectionGround

AUTHORITY_UNCONFIRMED = gettext_lazy(
    "An agent filed this request, and their authority to act for the subject is not confirmed yet: confirm it "
    "(“Confirm the agent's authority”) once you hold the subject's signed permission or other proof, or ask the "
    "agent for it with Request information. Until then, no data is disclosed, erased, rectified or restricted."
)
# Refusing for lack of authority, as for an unverified identity (handling.identity_refusal), only once the agent was
# asked for the proof on this request and did not give it (CCPA Regulations § 7063(a)).
AUTHORITY_NEVER_ASKED = gettext_lazy(
    "The agent was never asked on this request for proof that the subject allowed them to act: ask for it first "
    "with Request information (the subject's signed permission, a power of attorney, proof of parental "
    "responsibility)."
)
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
AUTHORITY_CONFIRMED_ALREADY = gettext_lazy("The agent's authority was confirmed already: nothing changed.")


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
    agent filed, whose authority is unconfirmed, once the agent was asked for proof (information_requested)."""
    if ground != RejectionGround.AGENT_AUTHORITY_NOT_SHOWN:
        return None
    if not request.filed_by_agent:
        return str(NO_AGENT)
    if request.agent_authority_confirmed_at is not None:
        return str(AUTHORITY_CONFIRMED_ALREADY)
    if not request.events.filter(action="information_requested").exists():
        return str(AUTHORITY_NEVER_ASKED)
    return None


def agent_authority_confirm(*, request: PrivacyRequest, actor: Actor, method: str) -> PrivacyRequest:
    """Record that staff confirmed the agent's authority to act for the subject, and how (`method`, an
    AgentAuthorityMethod): the audit event `agent_authority_confirmed` says who, when and how.

    Open, email-verified requests filed by an agent only; refused once confirmed (a second click changes nothing).
    Lifts the gate of `authority_refusal`; the identity check of the subject is a separate step.
    """
    if method not in AgentAuthorityMethod.values:
        raise RequestError(_("Choose how you confirmed the agent's authority."))
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        roles.require_can_work(actor, locked)
        if locked.status not in lifecycle.VERIFIED_OPEN:
            raise RequestError(_("The agent's authority can be confirmed on open, email-verified requests only."))
        if not locked.filed_by_agent:
            raise RequestError(_("No agent filed this request: there is no authority to confirm."))
        if locked.agent_authority_confirmed_at is not None:
            raise RequestError(str(AUTHORITY_CONFIRMED_ALREADY))
        locked.agent_authority_confirmed_at = timezone.now()
        locked.save(update_fields=["agent_authority_confirmed_at", "updated_at"])
        record_event(locked, "agent_authority_confirmed", actor=actor, data={"method": method})
    request.agent_authority_confirmed_at = locked.agent_authority_confirmed_at
    return locked
