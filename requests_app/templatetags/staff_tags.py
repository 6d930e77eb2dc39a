import datetime
import re

from django import template
from django.urls import reverse
from django.utils import formats
from django.utils.html import conditional_escape, format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from requests_app import lifecycle, roles
from requests_app.audit import AGENT_LABEL, ORGANISATION_LABEL_PREFIX
from requests_app.services.routing import DEFAULT_RULE
from requests_app.services.agents import ASKS_AGENT_AUTHORITY
from requests_app.wording import citation, cites_gdpr_articles, in_sentence, label_in_letter
from requests_app.models import (
    LEGAL_BASIS_NOT_PORTABLE,
    RIGHTS_THE_SUBJECT_ASKS,
    ActionKind,
    ActorKind,
    AgentAuthorityMethod,
    AgentCapacity,
    Channel,
    DataCategory,
    ErasureException,
    ExportKind,
    IdentityKind,
    LegalBasis,
    RejectionGround,
    Status,
    VerificationMethod,
)

register = template.Library()


@register.filter
def bdi(text) -> str:
    """Text the subject wrote, isolated from the page's direction (<bdi>), escaped and safe: a translated sentence
    places it ({% blocktranslate with value=...|bdi %}) without escaping the element."""
    return format_html("<bdi>{}</bdi>", text)


@register.filter
def rights_list(request) -> str:
    """The rights asked, as staff read them, from the request's bitmask (no query per row)."""
    return ", ".join(right_label(right) for right in request.requested_rights)


@register.filter
def right_label(right: str) -> str:
    """A right's code as staff read it, of the subject (models.RIGHTS_THE_SUBJECT_ASKS); "" for none."""
    return str(RIGHTS_THE_SUBJECT_ASKS.get(right, right or ""))


@register.simple_tag(takes_context=True)
def edit_link(context, url_name: str, pk, label) -> str:
    """`label` linked to its edit page for a DPO; plain text for the roles that only read it."""
    if not context.get("is_dpo"):
        return conditional_escape(label)
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[pk]), label)


@register.filter
def role_label(role: str | None) -> str:
    """A role (roles.ROLES) as staff read it, in their language; "" for none."""
    return str(roles.ROLE_LABELS.get(role, role or ""))


# The queue's rows read their labels through these rather than get_status_display(): that one hashes every
# choice's lazy label, translating each, for every row.
@register.filter
def status_label(code: str) -> str:
    """A status code as staff read it ("awaiting_subject" -> "Awaiting the subject")."""
    try:
        return str(Status(code).label)
    except ValueError:  # not a status (an event that changed none)
        return code


@register.filter
def channel_label(code: str) -> str:
    """A channel code as staff read it ("post" -> "Post")."""
    try:
        return str(Channel(code).label)
    except ValueError:
        return code


# What the request page's timeline calls each action of a request's audit events. The trail
# keeps the codes (they never change with the language); staff read these.
EVENT_LABELS = {
    "submitted": _("Request received"),
    "verify_email": _("Email address confirmed"),
    # A request received directly: its address confirmed through the link staff sent (intake.email_confirmation_send).
    "email_confirmation_sent": _("Link to confirm the email address sent"),
    "email_confirmed": _("Email address confirmed"),
    "expire": _("Expired unconfirmed"),
    "start_identity_check": _("Identity check started"),
    "return_to_new": _("Back to new"),
    "start_work": _("Work started"),
    "await_subject": _("Waiting for the subject"),
    "complete": _("Completed"),
    "reject": _("Rejected"),
    "withdraw": _("Withdrawn"),
    "forward": _("Forwarded to the controller"),
    "routed": _("Routed"),
    "assigned": _("Assigned"),
    "attachment_added": _("Attachment added"),
    "attachment_downloaded": _("Attachment downloaded"),
    "attachment_deleted": _("Attachment deleted"),
    "clock_paused": _("Clock paused"),
    "clock_resumed": _("Clock resumed"),
    "deadline_extended": _("Deadline extended"),
    "identity_verified": _("Identifier verified"),
    "agent_authority_confirmed": _("The agent's authority to act for the subject confirmed"),
    "subject_confirmation_sent": _("Subject asked to confirm that they allowed the agent"),
    "agent_authority_denied": _("The subject said they did not allow the agent"),
    "agent_authority_withdrawn": _("The agent's authority to act for the subject withdrawn"),
    "requester_corrected": _("Who makes the request corrected"),
    "postal_address_corrected": _("Postal address for letters recorded or corrected"),
    "postal_address_removed": _("Postal address for letters removed"),
    "receipt_confirmed": _("Receipt confirmed to the subject by staff"),
    "note_added": _("Note added"),
    "message_sent": _("Message sent to the subject"),
    "information_requested": _("Information asked of the subject"),
    "subject_replied": _("The subject replied"),
    "subject_email_rejected": _("Email to the subject refused by their mail server"),
    "verification_resent": _("Verification email sent again"),
    "status_link_resent": _("Status page link sent again"),
    "status_link_replaced": _("Status page link sent again opened: the earlier links no longer work"),
    "completion_letter_sent": _("Completion letter sent"),
    "rejection_letter_sent": _("Rejection letter sent"),
    "forwarding_letter_sent": _("Letter sent: forwarded to the controller"),
    "fee_proposed": _("Fee proposed (Art. 12(5))"),
    "fee_letter_sent": _("Fee letter sent"),
    "fee_paid": _("Fee paid"),
    "export_started": _("Export started"),
    "manual_extract_uploaded": _("Manual extract uploaded"),
    "export_compiled": _("Export compiled"),
    "export_failed": _("Export failed"),
    "export_retried": _("Export started again"),
    "export_released": _("Export released to the subject"),
    "export_password_sent": _("Package password texted"),
    "export_previewed": _("Export's first rows viewed"),
    "export_downloaded": _("Export downloaded"),
    "export_download_resumed": _("Export download resumed"),
    "export_transmitted": _("Portability package sent to the organisation the subject named"),
    "transmission_letter_sent": _("Letter sent: data sent to the organisation the subject named"),
    "transmission_declined": _("Sending the data to the organisation the subject named declined"),
    "transmission_decline_letter_sent": _("Letter sent: data not sent to the organisation the subject named"),
    "export_downloaded_by_recipient": _("Export downloaded by the organisation the subject named"),
    "transmission_email_rejected": _("Email to the organisation the subject named refused by its mail server"),
    "transmission_resent": _("Portability package sent again to the organisation the subject named, at a corrected address"),
    "transmission_resend_letter_sent": _("Letter sent: data sent again to the organisation the subject named"),
    "export_deleted": _("Export deleted"),
    "source_actions_planned": _("Actions on source systems planned"),
    "source_action_dry_run_started": _("Dry run of a source action started"),
    "source_action_approved": _("Source action approved"),
    "source_action_started": _("Source action started"),
    "source_action_done": _("Source action done"),
    "source_action_failed": _("Source action failed"),
    "source_action_stale": _("Source action stopped: the source changed since the dry run"),
    "rectification_value_set": _("Corrected value set"),
    "restriction_sources_chosen": _("Systems the restriction covers chosen"),
    "restriction_lift_planned": _("Lifting of a restriction planned"),
    # Its provision is cited as the request's own law has it (EVENT_LABELS_CITING_THE_LAW).
    "restriction_lift_notice_sent": _("Subject told before a restriction is lifted"),
    "restriction_lift_notice_posted": _("Notice before lifting a restriction recorded as posted"),
    "restriction_lift_cancelled": _("Lifting of a restriction cancelled: the restriction stays in force"),
    "restriction_lift_cancellation_sent": _("Subject told a restriction stays in force"),
    "recipient_notified": _("Recipient notified (Art. 19)"),
    "recipient_notice_failed": _("Notice to a recipient failed"),
    "recipient_notice_resent": _("Notice to a recipient sent again"),
    "recipient_notice_waived": _("Notice to a recipient waived"),
    "suppression_added": _("Added to the suppression lists"),
    "suppression_not_applied": _("Recorded why a suppression list cannot be applied"),
    "suppression_uncovered": _("A suppression list removed from what a right covers"),
    "personal_data_purged": _("Personal data deleted at the end of retention"),
}
# The same steps taken again once the subject answered a question (their reply moves the request back).
EVENT_LABELS_RESUMED = {
    "start_identity_check": _("Identity check resumed"),
    "start_work": _("Work resumed"),
}


# Events whose label cites a provision that each law numbers its own way, or has not at all: the label with the
# citation of the request's law (wording.CITATIONS), the plain one above where the law has no such provision.
EVENT_LABELS_CITING_THE_LAW = {
    "restriction_lift_notice_sent": ("restriction_lift_notice", _("Subject told before a restriction is lifted (%(law)s)")),
}


@register.filter
def event_label(action: str) -> str:
    """An audit event's action as staff read it; an action without a label shows its code."""
    return str(EVENT_LABELS.get(action, action))


@register.filter
def event_title(event) -> str:
    """An audit event as the timeline and the certificate name it: its action's label, but a source action
    done without searching its source (actions._finish records the kind of identifier it lacked) says so,
    lest its zero counts read as a source searched that held nothing."""
    kind = (event.data or {}).get("not_searched")
    if event.action == "source_action_done" and kind:
        return gettext("Source action done, but the source could not be searched: no verified %(identifier)s") % {
            "identifier": in_sentence(identity_kind_label(kind))
        }
    if event.from_status == Status.AWAITING_SUBJECT and event.action in EVENT_LABELS_RESUMED:
        return str(EVENT_LABELS_RESUMED[event.action])
    return event_label(event.action)


@register.filter
def event_title_in_law(event, regime: str) -> str:
    """event_title as a text about a request under `regime` says it: citing the request's own law where the label
    cites a provision (EVENT_LABELS_CITING_THE_LAW: "… (Article 18(3) UK GDPR)", nothing under the CCPA), and a label
    ending with a GDPR article without it under a law other than the GDPR's (wording.label_in_letter)."""
    if event.action in EVENT_LABELS_CITING_THE_LAW:
        provision, label = EVENT_LABELS_CITING_THE_LAW[event.action]
        if law := citation(regime, provision):
            return str(label) % {"law": law}
    return label_in_letter(event_title(event), regime)


SYSTEM_NOTES = {
    lifecycle.NOTE_INFORMATION_REQUESTED: _("Information requested from the subject"),
    lifecycle.NOTE_SUBJECT_REPLIED: _("The subject replied"),
    lifecycle.NOTE_WAITING_FOR_THE_SUBJECT: _("Waiting for the subject"),
    lifecycle.NOTE_IDENTITY_VERIFIED: _("Identity verified"),
}


@register.filter
def identity_kind_label(code: str) -> str:
    """An identifier's kind as staff read it ("ip_address" -> "IP address")."""
    return str(IdentityKind(code).label) if code in IdentityKind.values else code


@register.filter
def data_category_label(code: str) -> str:
    """A data category as staff read it ("website_connection" -> "Website connection data")."""
    return str(DataCategory(code).label) if code in DataCategory.values else code


@register.filter
def left_out_reason_for_staff(item: dict, regime: str) -> str:
    """Why a manifest's `categories_left_out` entry is not in the portability package, said in the inventory's
    terms, as they stood when the package was compiled (the report tells the subject in its own words), citing the
    GDPR's articles only where the request's regime numbers them so (wording.cites_gdpr_articles)."""
    gdpr_numbers = cites_gdpr_articles(regime)
    if item["reason"] == LEGAL_BASIS_NOT_PORTABLE:
        reason = (
            gettext("its source's legal basis is %(basis)s, neither consent nor a contract (Art. 20(1)(a))")
            if gdpr_numbers
            else gettext("its source's legal basis is %(basis)s, neither consent nor a contract")
        )
        return reason % {"basis": in_sentence(label_in_letter(LegalBasis(item["legal_basis"]).label, regime))}
    if gdpr_numbers:
        return gettext("not marked portable in the inventory (neither provided by the subject nor observed from their use, Art. 20(1))")
    return gettext("not marked portable in the inventory (neither provided by the subject nor observed from their use)")


@register.filter
def note_label(note: str) -> str:
    """A note on an event or a pause: the system's in the reader's language, staff's as they wrote it."""
    return str(SYSTEM_NOTES.get(note, note))


@register.filter
def actor_label(event) -> str:
    """Who acted: the system, the subject and an agent acting for them in the reader's language, staff and
    organisations by name."""
    if event.actor_kind == ActorKind.SUBJECT and event.actor_label == AGENT_LABEL:
        return gettext("Agent acting for the subject")
    if event.actor_kind in (ActorKind.SYSTEM, ActorKind.SUBJECT):
        return str(ActorKind(event.actor_kind).label)
    if event.actor_kind == ActorKind.ORGANISATION:
        return _("organisation %(name)s") % {"name": event.actor_label.removeprefix(ORGANISATION_LABEL_PREFIX)}
    return event.actor_label


# The keys of audit events' data, as staff read them; an unlisted key shows as written.
DATA_LABELS = {
    "action": _("action"),
    "actions": _("actions"),
    "active": _("active"),
    "agent": _("filed by an agent, as"),
    "amount": _("amount"),
    "asks": _("asks for"),
    "assignee": _("assignee"),
    "attachment": _("attachment"),
    "attempt": _("attempt"),
    "attempts": _("attempts"),
    "basis": _("basis"),
    "bytes": _("bytes"),
    "categories": _("categories"),
    "category": _("category"),
    "changes": _("changes"),
    "channel": _("channel"),
    "content_type": _("file type"),
    "count": _("count"),
    "currency": _("currency"),
    "dated_by": _("dated by"),
    "delivery": _("delivery"),
    "dry_runs_voided": _("dry runs to run again"),  # who makes the request corrected (agents.requester_correct)
    "due_on": _("due"),
    "email": _("email"),
    "error": _("error"),
    "export": _("export"),
    "field": _("field"),
    "fields": _("fields"),
    "first_byte": _("from byte"),
    "forwarded_on": _("forwarded on"),
    "from": _("from"),
    "ground": _("ground"),
    "held": _("kept"),
    "id": _("id"),
    "invited": _("invited"),
    "keep_months": _("months kept"),
    "kept_from": _("kept from"),
    "kind": _("kind"),
    "kinds": _("identifiers"),
    "left_out": _("left out"),
    "list_entries": _("list entries"),
    # Who makes the request corrected (agents.requester_correct): manual sources' actions, to plan again.
    "manual_actions_voided": _("manual actions cancelled, to plan again"),
    "message": _("message"),
    "method": _("method"),
    "name": _("name"),
    "not_before": _("not before"),
    "note": _("note"),
    "pause": _("pause"),
    "paused_days": _("days paused"),
    "purpose": _("purpose"),
    "purposes": _("purposes"),
    "reason": _("reason"),
    "recipient": _("recipient"),
    "refused": _("refused"),
    "right": _("right"),
    "rights": _("rights"),
    "role": _("role"),
    "rows": _("rows"),
    "rule": _("rule"),
    "sha256": _("SHA-256"),
    "size": _("size"),
    "smtp_code": _("SMTP code"),
    "source": _("source"),
    "sources": _("sources"),
    "team": _("team"),
    "to": _("to"),
    "unavailable": _("passed over, cannot work requests"),
    "until": _("until"),
    "user": _("user"),
}
# Keys whose values are codes of a choice: shown by the first of their labels that has the code.
DATA_VALUES = {
    "channel": (dict(Channel.choices),),
    "rights": (RIGHTS_THE_SUBJECT_ASKS,),
    "right": (RIGHTS_THE_SUBJECT_ASKS,),
    "kinds": (dict(IdentityKind.choices),),
    "method": (dict(VerificationMethod.choices), dict(AgentAuthorityMethod.choices)),  # an identity's, an agent's
    "agent": (dict(AgentCapacity.choices),),
    "asks": ({ASKS_AGENT_AUTHORITY: _("proof of the agent's authority")},),  # a request for information's
    # Who makes the request, corrected (agents.requester_correct); an assignment's "to" is a username, shown as it is.
    "to": ({"agent": _("an agent for the subject"), "subject": _("the subject themselves")},),
    "ground": (dict(RejectionGround.choices), dict(ErasureException.choices)),  # a rejection's, a legal hold's
    "kind": (dict(ActionKind.choices), dict(ExportKind.choices)),  # a source action's, an export package's
}
# Keys kept for the machine, not for reading: a hold's basis in every language (the basis itself is shown), a
# pause's row id (its reason stays on the pause: staff text may name people, and the chain is never purged), a
# source action's not_searched (its title says it, event_title).
DATA_HIDDEN = {"basis_translations", "pause", "not_searched"}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@register.filter
def event_data(data: dict) -> str:
    """An audit event's data as "key: value · key: value" in the reader's language (lists joined, codes
    of channels, rights, identifiers and methods named, dates written as the language writes them)."""

    def shown(key, value):
        if key == "changes":  # a settings form's {field: [before, after]} (audit.form_changes)
            return "; ".join(
                f"{label(field)} {shown(field, before)} → {shown(field, after)}" for field, (before, after) in sorted(value.items())
            ) or "—"
        if isinstance(value, list):
            return ", ".join(shown(key, item) for item in value) or "—"
        if isinstance(value, dict):
            return ", ".join(f"{label(k)} {shown(k, item)}" for k, item in value.items() if k not in DATA_HIDDEN)
        if value is None:
            return "—"
        for labels in DATA_VALUES.get(key, ()):
            if value in labels:
                return str(labels[value])
        if key == "rule" and value == DEFAULT_RULE:
            return str(_("default: the DPO"))
        if key == "error" and value:
            return gettext(value)  # one of our messages, stored in English (a notice's), else left as it is
        if isinstance(value, str) and ISO_DATE.fullmatch(value):
            return formats.date_format(datetime.date.fromisoformat(value), "SHORT_DATE_FORMAT")
        return str(value)

    def label(key):
        return DATA_LABELS.get(key, key.replace("_", " "))

    # Sorted: PostgreSQL's jsonb keeps its own key order.
    return " · ".join(
        gettext("%(key)s: %(value)s") % {"key": label(key), "value": shown(key, value)}
        for key, value in sorted((data or {}).items())
        if key not in DATA_HIDDEN
    )
