"""Sending a portability package directly to another organisation (GDPR Art. 20(2)), or declining to.

The subject names the organisation and its email address on the request form (RequestedRight.recipient_name and
recipient_email). Once the package is released to the subject, staff either send it there, which emails the
organisation a link of its own, or decline with the reason, where sending is not technically feasible or the address
looks wrong. Either way the subject is told, in the thread (emailed) and on the status page's timeline, and keeps their
own copy. The organisation's link is signed for that one purpose, names the package by its opaque id only, expires
with the package and counts its downloads apart from the subject's (ExportPackage.recipient_download_count).
"""

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from requests_app import emails, roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import ActorKind, ExportKind, ExportPackage, PrivacyRequest, RequestedRight, RequestType
from requests_app.services import agents, exports
from requests_app.wording import CITATIONS, date_in_words

TRANSMISSION_SALT = "requests_app.export-transmission"
# Who downloads through the emailed link, in the trail: a role, never a name (the trail holds no personal data).
RECIPIENT_LABEL = "organisation the subject asked us to send the data to"
REASON_MAX_CHARS = 2000


def recipient_actor() -> Actor:
    return Actor(kind=ActorKind.ORGANISATION, label=RECIPIENT_LABEL)


def portability_right(request: PrivacyRequest) -> RequestedRight | None:
    """The request's portability right if it names an organisation to send the data to."""
    return request.rights.filter(right=RequestType.PORTABILITY).exclude(recipient_email="").first()


def transmission_token(export: ExportPackage) -> str:
    """The organisation's link's secret: the package's opaque id, signed for this purpose only (the subject's
    download link has another salt, so neither opens the other's door)."""
    return signing.dumps({"t": str(export.public_id)}, salt=TRANSMISSION_SALT)


def _request_refusal(request: PrivacyRequest, right: RequestedRight | None, *, after_rejection: bool = False) -> str:
    """What forbids sending or declining, whatever the package: "" when nothing does. Once the data was sent, only
    what the organisation's mail server refusing its address allows (`after_rejection`: declining, sending again)."""
    if right is None:
        return _("The subject did not ask for their data to be sent to another organisation.")
    if not request.is_open:
        return _("This request is closed: nothing more is sent for it.")
    if right.transmission_declined_at is not None:
        return _("Sending the data to %(organisation)s was declined on %(moment)s: nothing changed.") % {
            "organisation": right.recipient_name, "moment": date_in_words(right.transmission_declined_at, "DATETIME_FORMAT"),
        }
    sent = request.exports.filter(transmitted_at__isnull=False).first()
    if sent is None:
        return ""
    if sent.transmission_rejected_at is None:
        return _("The data was sent to %(organisation)s on %(moment)s: nothing changed.") % {
            "organisation": right.recipient_name, "moment": date_in_words(sent.transmitted_at, "DATETIME_FORMAT"),
        }
    if not after_rejection:
        return _(
            "The mail server of %(organisation)s refused the address the link was sent to: correct the address and "
            "send the link again from that package's page, or decline."
        ) % {"organisation": right.recipient_name}
    return ""


def transmission_refusal(export: ExportPackage) -> str:
    """Why staff may not send `export` to the organisation the subject named, or "" when they may. The package's page
    says it instead of offering the button; export_transmit refuses with it."""
    if export.kind != ExportKind.PORTABILITY:
        return _("Only a data portability package can be sent to another organisation.")
    request = export.request
    if refusal := _request_refusal(request, portability_right(request)):
        return refusal
    if refusal := agents.authority_refusal(request):
        return refusal  # the data would go where someone not shown to act for the subject asked (declining may)
    if export.released_at is None:
        return _("Release the package to the subject first: only a released package can be sent to another organisation.")
    if not ExportPackage.objects.sendable_to_recipient().filter(pk=export.pk).exists():
        return exports.download_refusal(export, counter="recipient_download_count")
    if export.encrypted:
        return _(
            "This package is encrypted and its password goes only to the subject's phone: the organisation could not "
            "open it. Decline, saying so, or send an unencrypted package."
        )
    return ""


def decline_refusal(request: PrivacyRequest) -> str:
    """Why staff may not decline to send the data to the organisation the subject named, or "" when they may."""
    return _request_refusal(request, portability_right(request), after_rejection=True)


def export_transmit(*, export: ExportPackage, actor: Actor) -> ExportPackage:
    """Send a released portability package to the organisation the subject named: its link emailed there (once, on
    commit, re-queued if the broker loses the task), the subject told in a letter and on the timeline.

    Allowed once per request, on an open request, for a released, unencrypted package still deliverable; refused with
    nothing changed otherwise. The claim is a conditional update, so two staff sending at once send it once."""
    from requests_app.services import handling  # handling imports the services that import this one

    roles.require_can_work(actor, export.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=export.request_id)
        locked = ExportPackage.objects.select_for_update(of=("self",)).select_related("request").get(pk=export.pk)
        if refusal := transmission_refusal(locked):
            raise RequestError(refusal)
        right = portability_right(request)
        now = timezone.now()
        if not ExportPackage.objects.sendable_to_recipient().filter(pk=locked.pk).update(transmitted_at=now, transmitted_by=actor.user):
            raise RequestError(exports.download_refusal(locked, counter="recipient_download_count"))
        locked.transmitted_at, locked.transmitted_by = now, actor.user
        record_event(request, "export_transmitted", actor=actor, data={"export": str(locked.public_id)})
        emails.owe(request, "portability_transmission", str(locked.public_id))
        tasks.queue_after_commit(tasks.send_transmission_email, locked.id)
        with translation.override(request.language):
            # To an agent who filed: of the data of the person they act for, not of their own (certificate._to_whoever_filed).
            if request.filed_by_agent:
                subject = _("We sent the data of the person you are acting for to %(organisation)s")
                body = _(
                    "As you asked in request %(reference)s, on %(moment)s we sent %(organisation)s (%(email)s) a link to "
                    "download the copy of the data of the person you are acting for that their right to data "
                    "portability covers. The link works until %(expires)s. The copy on the request's status page stays "
                    "there until then too."
                )
            else:
                subject = _("We sent your data to %(organisation)s")
                body = _(
                    "As you asked in request %(reference)s, on %(moment)s we sent %(organisation)s (%(email)s) a link to "
                    "download the copy of your data that your right to data portability covers. The link works until "
                    "%(expires)s. Your own copy stays on your request's status page until then too."
                )
            subject %= {"organisation": right.recipient_name}
            body %= {
                "reference": request.reference, "moment": date_in_words(now, "DATETIME_FORMAT"),
                "organisation": right.recipient_name, "email": right.recipient_email,
                "expires": date_in_words(locked.expires_at, "DATETIME_FORMAT"),
            }
        handling.write_to_subject(request, actor=actor, subject=subject, body=body, action="transmission_letter_sent")
    return locked


def transmission_decline(*, request: PrivacyRequest, actor: Actor, reason: str) -> RequestedRight:
    """Decline to send the data to the organisation the subject named, with the reason they are told (sending it is
    not technically feasible, or the address looks wrong). They keep their own copy. Open requests only, once, and
    not once it was sent, unless the organisation's mail server refused the address; refused with nothing changed
    otherwise."""
    from requests_app.services import handling

    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why the data cannot be sent to the organisation: the subject is told."))
    if len(reason) > REASON_MAX_CHARS:
        raise RequestError(_("Keep the reason to %(limit)s characters at most.") % {"limit": REASON_MAX_CHARS})
    roles.require_can_work(actor, request)
    with transaction.atomic():
        locked = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        right = portability_right(locked)
        # After the organisation's mail server refused its address too: the subject is then told it was not sent.
        if refusal := decline_refusal(locked):
            raise RequestError(refusal)
        right.transmission_declined_at, right.transmission_decline_reason = timezone.now(), reason
        right.save(update_fields=["transmission_declined_at", "transmission_decline_reason"])
        # The reason is staff's words about the subject's choice: on the right (purged with it), not in the trail.
        record_event(locked, "transmission_declined", actor=actor, data={})
        with translation.override(locked.language):
            if locked.filed_by_agent:
                subject = _("We could not send the data of the person you are acting for to %(organisation)s")
                body = _(
                    "You asked in request %(reference)s that we send the data of the person you are acting for directly "
                    "to %(organisation)s (%(email)s). We could not do so, for this reason:\n\n%(reason)s\n\nThe copy of "
                    "their data is still on the request's status page."
                )
            else:
                subject = _("We could not send your data to %(organisation)s")
                body = _(
                    "You asked in request %(reference)s that we send your data directly to %(organisation)s (%(email)s). "
                    "We could not do so, for this reason:\n\n%(reason)s\n\nYou still get your own copy of your data on "
                    "your request's status page, and may give it to them yourself."
                )
            subject %= {"organisation": right.recipient_name}
            body %= {
                "reference": locked.reference, "organisation": right.recipient_name, "email": right.recipient_email,
                "reason": reason,
            }
        handling.write_to_subject(locked, actor=actor, subject=subject, body=body, action="transmission_decline_letter_sent")
    return right


def resend_refusal(export: ExportPackage) -> str:
    """Why staff may not correct the organisation's address and send `export`'s link again, or "" when they may:
    only after its mail server refused the address the link was last sent to, the package still downloadable there."""
    request = export.request
    if refusal := _request_refusal(request, portability_right(request), after_rejection=True):
        return refusal
    if refusal := agents.authority_refusal(request):
        return refusal
    if export.transmission_rejected_at is None:
        return _("The link is sent again only after the organisation's mail server refused its address: nothing changed.")
    if not ExportPackage.objects.downloadable_by_recipient().filter(pk=export.pk).exists():
        return exports.download_refusal(export, counter="recipient_download_count")
    return ""


def _corrected_address(request: PrivacyRequest, right: RequestedRight, address: str) -> str:
    """`address`, checked as the form checks the organisation's (forms.RequestForm._check_transmission): a valid
    address we can write to, not one of the request's own, and not the one refused. RequestError otherwise."""
    from django.core.exceptions import ValidationError

    from requests_app.forms import EMAIL_ERRORS, RoutableEmailField

    try:
        address = RoutableEmailField(max_length=254, required=False, error_messages=EMAIL_ERRORS).clean(address.strip())
    except ValidationError as error:
        raise RequestError(" ".join(error.messages)) from None
    if not address:
        raise RequestError(_("Give the organisation's corrected email address."))
    if address.casefold() == right.recipient_email.casefold():
        raise RequestError(_("This is the address its mail server refused: give the corrected one."))
    if address.casefold() in {own.casefold() for own in (request.subject_email, request.agent_email) if own}:
        raise RequestError(
            _("This is the address we write to about the request: the subject gets their own copy. Give the other organisation's address.")
        )
    return address


def transmission_resend(*, export: ExportPackage, actor: Actor, recipient_email: str) -> ExportPackage:
    """Correct the address of the organisation the subject named, after its mail server refused the one the link was
    sent to for good (send_transmission_email), and email the link there again, once; the subject is told the new
    address in a letter, and on the timeline. The address goes on the right (purged with it), not in the trail.

    Allowed once per refusal, on an open request not declined, for a package still downloadable there; refused with
    nothing changed otherwise. The claim is a conditional update on the refusal, so two staff correcting at once
    send it once."""
    from requests_app.services import handling

    roles.require_can_work(actor, export.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=export.request_id)
        locked = ExportPackage.objects.select_for_update(of=("self",)).select_related("request").get(pk=export.pk)
        if refusal := resend_refusal(locked):
            raise RequestError(refusal)
        right = portability_right(request)
        address = _corrected_address(request, right, recipient_email)
        now = timezone.now()
        claimed = ExportPackage.objects.downloadable_by_recipient().filter(
            pk=locked.pk, transmission_rejected_at__isnull=False
        ).update(transmitted_at=now, transmitted_by=actor.user, transmission_rejected_at=None)
        if not claimed:
            raise RequestError(exports.download_refusal(locked, counter="recipient_download_count"))
        refused_address = right.recipient_email
        right.recipient_email = address
        right.save(update_fields=["recipient_email"])
        locked.transmitted_at, locked.transmitted_by, locked.transmission_rejected_at = now, actor.user, None
        record_event(request, "transmission_resent", actor=actor, data={"export": str(locked.public_id)})
        # The same email, owed again: the refusal forgave the first (emails.send_once), so it goes out once more.
        emails.owe(request, "portability_transmission", str(locked.public_id))
        tasks.queue_after_commit(tasks.send_transmission_email, locked.id)
        with translation.override(request.language):
            if request.filed_by_agent:
                subject = _(
                    "We sent the link to the data of the person you are acting for to %(organisation)s again, at a "
                    "corrected address"
                )
                body = _(
                    "As you asked in request %(reference)s, we emailed %(organisation)s a link to download the data of "
                    "the person you are acting for, but its mail server refused the address %(refused)s, so the link "
                    "never arrived. On %(moment)s we sent it again to %(email)s. The link works until %(expires)s. If "
                    "this address is wrong too, tell us in a reply. The copy on the request's status page stays there "
                    "until then."
                )
            else:
                subject = _("We sent the link to your data to %(organisation)s again, at a corrected address")
                body = _(
                    "As you asked in request %(reference)s, we emailed %(organisation)s a link to download your data, but "
                    "its mail server refused the address %(refused)s, so the link never arrived. On %(moment)s we sent it "
                    "again to %(email)s. The link works until %(expires)s. If this address is wrong too, tell us in a "
                    "reply. Your own copy stays on your request's status page until then."
                )
            subject %= {"organisation": right.recipient_name}
            body %= {
                "reference": request.reference, "organisation": right.recipient_name, "refused": refused_address,
                "moment": date_in_words(now, "DATETIME_FORMAT"), "email": address,
                "expires": date_in_words(locked.expires_at, "DATETIME_FORMAT"),
            }
        handling.write_to_subject(request, actor=actor, subject=subject, body=body, action="transmission_resend_letter_sent")
    return locked


def send_transmission_email(*, export_id: int) -> bool:
    """The email task's work: email the organisation the link to the package, once (emails.send_once). Not once the
    package can no longer be downloaded there (expired, used up, its request closed without its data): the email is
    then forgiven. A mail server error propagates, for the task to retry."""
    export = ExportPackage.objects.select_related("request").filter(pk=export_id, transmitted_at__isnull=False).first()
    if export is None:
        return False
    request = export.request
    right = portability_right(request)
    if right is None or not ExportPackage.objects.downloadable_by_recipient().filter(pk=export.pk).exists():
        emails.forgive(request.id, "portability_transmission", str(export.public_id))
        return False
    from django.urls import reverse

    context = {
        "request": request,
        "export": export,
        "right": right,
        "link": emails.absolute_url(reverse("transmission", args=[transmission_token(export)])),
        # Lazy, to be cited in the request's language as the email renders; none where the law has no such right.
        "law": CITATIONS[request.regime].get("portability_transmission", ""),
    }
    message = emails.render_email("portability-transmission", context, to=[right.recipient_email], language=request.language)
    try:
        return emails.send_once(request, "portability_transmission", str(export.public_id), message)
    except emails.EmailRejected as rejected:
        # No retry can help (send_once forgave it): staff see it on the package's page, to correct the address and
        # send the link again, or decline (transmission_resend, transmission_decline).
        with transaction.atomic():
            ExportPackage.objects.filter(pk=export.pk).update(transmission_rejected_at=timezone.now())
            record_event(
                request, "transmission_email_rejected", actor=Actor.system(),
                data={"export": str(export.public_id), "smtp_code": rejected.smtp_code},
            )
        return False


def _export_for_token(token: str) -> ExportPackage:
    """The package a link names, if its signature holds and it is younger than a package lives; RequestError else."""
    try:
        payload = signing.loads(token, salt=TRANSMISSION_SALT, max_age=settings.EXPORT_LINK_LIFETIME)
    except signing.SignatureExpired:
        raise RequestError(_("This download link has expired.")) from None
    except signing.BadSignature:
        raise RequestError(_("This download link is not valid.")) from None
    export = ExportPackage.objects.select_related("request").filter(public_id=payload.get("t"), transmitted_at__isnull=False).first()
    if export is None:
        raise RequestError(_("This download link is not valid."))
    return export


def _require_authority(request: PrivacyRequest) -> None:
    """RequestError while an agent filed `request` and their authority is unconfirmed (withdrawn after the link was
    sent, say): the organisation was named by someone not shown to act for the subject. Said without why, as the
    organisation is no party to the request; the link works again if staff confirm the authority again."""
    if agents.authority_refusal(request):
        raise RequestError(
            _("This package cannot be downloaded for now: the request it answers is being checked again. The link "
              "works again if the check allows it, until it expires.")
        )


def transmitted_package(token: str) -> ExportPackage:
    """The package the organisation's link opens, for its page: RequestError saying why when it cannot be
    downloaded any more, or not now."""
    export = _export_for_token(token)
    if not ExportPackage.objects.downloadable_by_recipient().filter(pk=export.pk).exists():
        raise RequestError(exports.download_refusal(export, counter="recipient_download_count"))
    _require_authority(export.request)
    return export


def transmission_download(token: str) -> tuple[ExportPackage, File]:
    """The organisation's download through its link: valid, not expired, not used up, the agent's authority not
    withdrawn; counted apart from the subject's and audited as export_downloaded_by_recipient
    (exports.count_download)."""
    export = _export_for_token(token)
    with transaction.atomic():
        # The request's row lock, which agents.agent_authority_withdraw takes too: no download counts once the
        # withdrawal commits.
        request = PrivacyRequest.objects.select_for_update().get(pk=export.request_id)
        _require_authority(request)
        return exports.count_download(
            {"public_id": export.public_id}, request=request, actor=recipient_actor(), by_recipient=True
        )
