"""The session engine (SESSION_ENGINE): Django's database sessions, which end after SESSION_IDLE_TIMEOUT_SECONDS
without activity, and also SESSION_ABSOLUTE_TIMEOUT_HOURS after signing in, however active; and the dashboard's
progress polls, which are no activity.

A request page polls an export's or an action's progress every two seconds while it runs: renewed by each poll
(SESSION_SAVE_EVERY_REQUEST), a session left open on such a page would never end, nobody at the keyboard. And a
session kept busy, or its cookie, must not last for ever either.

Both ends are the session's expiry date in the database (and its cookie's): a session past either is gone, as
after an idle timeout (signed out, its data deleted by the hourly clear_expired_sessions). A session signed in
before this engine has no sign-in time: its absolute end counts from the first time this engine loads it."""

import datetime
import functools

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends import db
from django.dispatch import receiver
from django.utils import timezone

# When the session's user signed in, as an ISO 8601 string: stamped by their password, so that a session half signed
# in ends too, and again by the code step (staff.views.otp), which completes the sign-in.
SIGNED_IN_AT = "signed_in_at"


class SessionStore(db.SessionStore):
    # Set by not_activity: this answer saves nothing unless it changed the session, so its expiry in the database
    # stays. (SessionMiddleware still renews the cookie's; the database's is the one that counts.)
    not_activity = False

    def load(self) -> dict:
        data = super().load()
        if SESSION_KEY in data and SIGNED_IN_AT not in data:
            # Signed in before this engine stamped sign-ins: without a start it would have no absolute end, and a
            # session kept busy would last for ever. (Set on the loaded data: setting an item here would load again.)
            data[SIGNED_IN_AT] = timezone.now().isoformat()
            self.modified = True
        return data

    def absolute_end(self) -> datetime.datetime | None:
        """When the session ends however active it is; None before anyone signed in."""
        signed_in_at = self.get(SIGNED_IN_AT)
        if signed_in_at is None:
            return None
        return datetime.datetime.fromisoformat(signed_in_at) + settings.SESSION_ABSOLUTE_TIMEOUT

    def get_expiry_date(self, **kwargs) -> datetime.datetime:
        idle_end = super().get_expiry_date(**kwargs)
        end = self.absolute_end()
        return idle_end if end is None else min(idle_end, end)

    def get_expiry_age(self, **kwargs) -> int:
        age = super().get_expiry_age(**kwargs)
        end = self.absolute_end()
        if end is None:
            return age
        left = end - kwargs.get("modification", timezone.now())
        return max(0, min(age, int(left.total_seconds())))

    def ends_before_idle(self) -> bool:
        """Whether the session ends at its absolute end before an idle timeout could end it."""
        return self.get_expiry_age() < settings.SESSION_COOKIE_AGE

    def save(self, must_create=False):
        if self.not_activity and not self.modified and not must_create:
            return
        super().save(must_create=must_create)


@receiver(user_logged_in)
def stamp_sign_in(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        # A password typed again in a session signed in keeps its time until the code step stamps a new one:
        # the password alone must not put off the session's end.
        request.session.setdefault(SIGNED_IN_AT, timezone.now().isoformat())


def stamp_code_step(request) -> None:
    """The sign-in completed with the code: the session's absolute end counts from now."""
    request.session[SIGNED_IN_AT] = timezone.now().isoformat()


def not_activity(view):
    """For what the page asks by itself (a progress poll): answering it does not renew the idle session."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        request.session.not_activity = True
        return view(request, *args, **kwargs)

    return wrapper
