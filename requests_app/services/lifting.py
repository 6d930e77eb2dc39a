"""Lifting a restriction (GDPR Art. 18(3)): a restriction that was temporary (accuracy contested,
Art. 18(1)(a); an objection pending, Art. 18(1)(d)) ends once staff decide, but the subject is told
before it does.

Planning the lifting sends the subject a letter, in the request's thread and language, naming the
system, the reason and the first day it may be lifted (RESTRICTION_LIFT_NOTICE_DAYS from now), and
creates the action that lifts it: an ordinary source action (services/actions.py) of the kind
"lift_restriction", with its dry run, approval and execution, which is refused before that day. It
may be planned whatever the request's status: restrictions outlive the requests that asked for them.
"""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app import roles
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import ActionKind, ActionStatus, ConnectorKind, PrivacyRequest, SourceAction, TemplatePurpose
from requests_app.services.actions import action_summary, purged_before_lifting
from requests_app.services.handling import render_letter, write_to_subject


def lift_refusal(restriction: SourceAction) -> str | None:
    """Why the restriction `restriction` (an action of the kind "restrict") cannot be lifted, or None."""
    if restriction.kind != ActionKind.RESTRICT or restriction.status != ActionStatus.DONE:
        return _("Only a restriction that was carried out can be lifted.")
    if not restriction.changed_anything():
        return _("This restriction found nothing to restrict: there is nothing to lift.")
    if restriction.request.personal_data_purged_at is not None:
        return purged_before_lifting()
    if SourceAction.objects.filter(
        request_id=restriction.request_id, source_id=restriction.source_id, kind=ActionKind.LIFT_RESTRICTION
    ).exists():
        return _("The lifting of this restriction is already planned.")
    return None


def plan_lift(*, restriction: SourceAction, actor: Actor, reason: str) -> SourceAction:
    """Plan the lifting of a restriction carried out in one source, and tell the subject (Art. 18(3)).

    Allowed to whoever may work the request (as planning the restriction was), whatever its status,
    once the restriction is done and while no lifting is planned for it. Sends the letter (a message in
    the request's thread, emailed on commit), records it and the planning in the audit trail (not the
    reason: staff's words stay on the action, purged with the request). The action may be executed from
    `lift_not_before` on, RESTRICTION_LIFT_NOTICE_DAYS days from today.
    """
    reason = reason.strip()
    if not reason:
        raise RequestError(_("Say why the restriction is lifted: the subject is told."))
    roles.require_can_work(actor, restriction.request)
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=restriction.request_id)
        locked = SourceAction.objects.select_related("request", "source").get(pk=restriction.pk)
        refusal = lift_refusal(locked)
        if refusal:
            raise RequestError(refusal)
        source = locked.source
        not_before = timezone.localdate() + datetime.timedelta(days=settings.RESTRICTION_LIFT_NOTICE_DAYS)
        subject, text = render_letter(
            request, TemplatePurpose.RESTRICTION_LIFT, body=reason,
            source=source.texts_in(request.language)["name"], lift_on=not_before,
        )
        notice = write_to_subject(request, actor=actor, subject=subject, body=text, action="restriction_lift_notice_sent")
        # The owner of a manual source lifts it by hand, as they restricted it.
        status = ActionStatus.MANUAL if source.connector == ConnectorKind.MANUAL else ActionStatus.PLANNED
        lift = SourceAction.objects.create(
            request=request, source=source, kind=ActionKind.LIFT_RESTRICTION, status=status,
            lift_reason=reason, lift_not_before=not_before, lift_notice=notice,
        )
        record_event(
            request, "restriction_lift_planned", actor=actor,
            data={**action_summary(lift), "not_before": not_before.isoformat(), "message": str(notice.public_id)},
        )
    return lift
