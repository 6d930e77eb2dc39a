"""Sign-ins refused, lockouts and sign-outs in the audit trail, beside the sign-ins (staff.views.otp): who
tried which account, and when, stays when django-axes forgets a failure at the next success.

A refused password is recorded only for an account that exists, and named: what someone typed as a username
may be anything, a password typed in the wrong box too, and the trail keeps what it is given for good. A
lockout is recorded once, when it begins, and only for an account that exists; an attempt refused because of
it, whose password was never checked, is not recorded at all. Each event takes the chain's lock, which intake
and every transition need: a guesser going on at a locked-out account must not be able to add to the trail."""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from requests_app.audit import Actor, record_event


def _account(username) -> str | None:
    """The username of the account `username` names, or None when none does."""
    if not isinstance(username, str) or not username:
        return None
    return get_user_model().objects.filter(username=username).values_list("username", flat=True).first()


def _refused_by_lockout(request) -> bool:
    """Whether django-axes refused this attempt because of a lockout already in force, unchecked.

    Its backend marks such a request locked out before authentication fails (with the setting
    AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT off), and its failure handler then counts nothing; a failure
    that begins a lockout is counted first, then marked. So the answer does not depend on whether a
    user_login_failed receiver runs before or after that handler."""
    return getattr(request, "axes_locked_out", False) and getattr(request, "axes_failures_since_start", None) is None


@receiver(user_login_failed)
def password_refused(sender, credentials, request=None, **kwargs):
    if _refused_by_lockout(request):
        return
    account = _account(credentials.get("username"))
    if account is None:
        # Anyone may try names by the thousand: each would be an event for good, and the chain's lock for all.
        return
    with transaction.atomic():
        record_event(None, "staff_sign_in_refused", actor=Actor.system(), data={"user": account})


@receiver(user_locked_out)
def locked_out(sender, request, username, ip_address, **kwargs):
    if _refused_by_lockout(request):  # django-axes signals a lockout at every attempt it refuses: recorded already
        return
    account = _account(username)
    if account is None:  # as for a refused password
        return
    with transaction.atomic():
        record_event(None, "staff_locked_out", actor=Actor.system(), data={"user": account})


@receiver(user_logged_out)
def signed_out(sender, request, user, **kwargs):
    if user is None:  # the session had ended already
        return
    with transaction.atomic():
        record_event(None, "staff_signed_out", actor=Actor.staff(user), data={})
