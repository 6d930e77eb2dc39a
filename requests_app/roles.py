"""Staff roles, enforced on the server for every view and action.

- DPO: everything, including assignment rules, response templates and users.
- Handler: works the requests assigned to them or to one of their teams; reads the others.
- Auditor: reads everything, the audit trail and the configuration included; changes nothing.

A role is membership of the Django group of the same name (superusers are
DPOs). Services call `require_can_work`, so the rule holds whatever the entry
point: dashboard, bulk action or API.
"""

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from requests_app.lifecycle import NotAllowed

DPO, HANDLER, AUDITOR = "DPO", "Handler", "Auditor"
ROLES = (DPO, HANDLER, AUDITOR)
# A role's code is its group's name, stored and never translated; people read its label, in their language.
ROLE_LABELS = {DPO: gettext_lazy("DPO"), HANDLER: gettext_lazy("Handler"), AUDITOR: gettext_lazy("Auditor")}
# Who reads the configuration (rules, templates, teams, staff, inventory, webhooks); only DPOs change it.
CONFIGURATION_READERS = (DPO, AUDITOR)
# Who records requests that arrived by email, post or phone (staff intake).
INTAKE_ROLES = (DPO, HANDLER)


def role_of(user) -> str | None:
    """The user's role, or None for anyone who may not use the dashboard."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return None
    return assigned_role(user)


def assigned_role(user) -> str | None:
    """The role an account holds, whether or not it may sign in now (a deactivated account keeps it)."""
    if user.is_superuser:
        return DPO
    # Cached on the user object: a page asks many times.
    if not hasattr(user, "_privacy_role"):
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._privacy_role = next((role for role in ROLES if role in names), None)
    return user._privacy_role


def active_dpos():
    """The accounts that may sign in as a DPO (role_of), as a query: superusers among them."""
    return get_user_model().objects.filter(Q(is_superuser=True) | Q(groups__name=DPO), is_active=True, is_staff=True)


def is_dpo(user) -> bool:
    return role_of(user) == DPO


def team_ids(user) -> set[int]:
    if not hasattr(user, "_privacy_team_ids"):
        user._privacy_team_ids = set(user.privacy_teams.values_list("id", flat=True))
    return user._privacy_team_ids


def can_work(user, request) -> bool:
    """May `user` act on `request` (as opposed to only reading it)?"""
    role = role_of(user)
    if role == DPO:
        return True
    if role == HANDLER:
        return request.assignee_id == user.id or (request.team_id is not None and request.team_id in team_ids(user))
    return False


def reads_files(user, request) -> bool:
    """May `user` open the request's attachments (a scanned ID) and its export packages' contents?
    Those who work it, and the DPO and auditors; other handlers see that they exist, not what is in them."""
    return role_of(user) in (DPO, AUDITOR) or can_work(user, request)


def workable(user, requests):
    """The requests among `requests` (a queryset) that `user` may act on: can_work, as a query."""
    role = role_of(user)
    if role == DPO:
        return requests
    if role == HANDLER:
        return requests.filter(Q(assignee_id=user.id) | Q(team_id__in=team_ids(user)))
    return requests.none()


def require_can_work(actor, request) -> None:
    """Raise NotAllowed unless the staff actor may act on the request."""
    if not can_work(actor.user, request):
        raise NotAllowed(_("You may not act on request %(reference)s.") % {"reference": request.reference})


def require_dpo(actor, refusal: str) -> None:
    """Raise NotAllowed(refusal) unless the staff actor is a DPO, whatever page or script calls the service."""
    if not is_dpo(actor.user):
        raise NotAllowed(refusal)


def is_owner_or_dpo(user, owner_id) -> bool:
    """May `user` act for a manual source (upload its extract, confirm a change made in it by hand):
    its owner, if they may act at all (a Handler), or a DPO."""
    role = role_of(user)
    return role == DPO or (role == HANDLER and owner_id is not None and user.pk == owner_id)
