"""The staff sign-in lockout across addresses, beside django-axes' lockout of a username from one address.

django-axes counts a username's wrong passwords from each address apart (LOGIN_FAILURE_LIMIT from one address lock
the username out from there): a guesser spreading theirs over many addresses was never locked out. Here every
address counts together too: LOGIN_USERNAME_FAILURE_LIMIT wrong passwords within LOGIN_USERNAME_LOCKOUT_MINUTES lock
the username out from everywhere for as many minutes, with the same lockout page, whether or not an account has that
username. The account's owner and the DPO are emailed once for each such lockout.

The trade-off: anyone who knows a username could keep its owner out, a few guesses every quarter of an hour. So an
address the account signed in from with its password (django-axes' log of sign-ins, kept LOGIN_ATTEMPT_LOG_DAYS) is
neither counted nor locked out here: its owner at the office or at home still signs in, with the password and a
code, while a guesser there still meets the lockout from one address. Someone new to an address (travelling) waits
for the lockout to end, or asks the DPO to unlock the account (staff_setup.unlock_sign_in).
"""

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessLog
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from requests_app.models import UsernameLockout


def _familiar(username: str, ip_address) -> bool:
    """Whether the account `username` signed in from this address with its password (within the log's retention)."""
    return AccessLog.objects.filter(username=username, ip_address=ip_address).exists()


def locked_everywhere(username) -> bool:
    """Whether `username` is locked out from every address it never signed in from."""
    return UsernameLockout.objects.filter(username=username, locked_until__gt=timezone.now()).exists()


def count_failure(username: str) -> UsernameLockout | None:
    """Count a wrong password for `username` from an address it never signed in from; the lockout when this one
    began it, else None. The row is locked while counting: two failures at once both count, and only one of them
    begins the lockout (and its email)."""
    now = timezone.now()
    window = settings.LOGIN_USERNAME_LOCKOUT
    with transaction.atomic():
        counter, _ = UsernameLockout.objects.select_for_update().get_or_create(
            username=username, defaults={"window_started_at": now}
        )
        if counter.locked_until is not None and counter.locked_until > now:
            return None  # begun by an attempt at the same moment, which refused this one too late
        if counter.window_started_at <= now - window:
            counter.window_started_at, counter.failures = now, 0
        counter.failures += 1
        began = counter.failures >= settings.LOGIN_USERNAME_FAILURE_LIMIT
        if began:
            # The failures that began it are forgotten: after it, counting starts again from none.
            counter.locked_until, counter.window_started_at, counter.failures = now + window, now, 0
        tell = began and get_user_model().objects.filter(username=username).exists()
        if tell:
            counter.alert_queued_at = now
        counter.save()
        if tell:
            from requests_app import tasks  # imported here: tasks imports the services, which import this module

            tasks.queue_after_commit(tasks.send_username_locked_out_email, counter.pk)
    return counter if began else None


class StaffSignInHandler(AxesDatabaseHandler):
    """django-axes' database handler, with the lockout across addresses (the module's docstring) added to its own."""

    def is_locked(self, request, credentials=None) -> bool:
        if super().is_locked(request, credentials):
            return True
        username = get_client_username(request, credentials)
        return (
            isinstance(username, str)
            and locked_everywhere(username)
            and not _familiar(username, request.axes_ip_address)
        )

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        refused_unchecked = request is not None and getattr(request, "axes_locked_out", False)
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or refused_unchecked:
            return  # no password was checked: nothing to count
        username = get_client_username(request, credentials)
        if not isinstance(username, str) or not username or _familiar(username, request.axes_ip_address):
            return
        if count_failure(username) is None or request.axes_locked_out:
            return  # not begun here, or django-axes' own lockout began with this failure and said so
        # The lockout page for this attempt, and the audit trail's "locked out" (staff.sign_in_trail), as when
        # django-axes' own lockout begins.
        request.axes_locked_out = True
        request.axes_credentials = credentials
        user_locked_out.send("axes", request=request, username=username, ip_address=request.axes_ip_address)

