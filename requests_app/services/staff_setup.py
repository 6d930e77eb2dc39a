"""Staff accounts are set up by invitation, never by a password someone else chose.

A DPO creates an account (or, for a lost phone, invites its owner again);
that blanks the account's password and authenticator and emails its owner a
one-time link. Through the link the owner chooses a password and scans the
authenticator's QR code, both in one step; the account is usable only once the
authenticator's first code is confirmed. Sign-in itself never sets up an
authenticator: whoever learnt a password could otherwise bind their own.

The link's token is Django's password-reset token under another salt. It
covers the password hash, so it stops working once used or once a newer
invitation replaces the password; it expires after STAFF_INVITATION_HOURS
(PASSWORD_RESET_TIMEOUT).
"""

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import transaction
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from requests_app import roles, tasks
from requests_app.audit import Actor, record_event
from requests_app.models import UsernameLockout
from requests_app.purging import delete_in_batches
from requests_app.staff import lockout


class SetupTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "requests_app.services.staff_setup"


setup_tokens = SetupTokenGenerator()


def email_shared(email: str, *, account=None) -> bool:
    """Whether a staff account other than `account` uses `email`, in any case: the setup link goes to the
    address, so the owner of a mailbox two accounts share could set up the other's account too."""
    others = get_user_model().objects.filter(is_staff=True, email__iexact=email.strip())
    if account is not None and account.pk is not None:
        others = others.exclude(pk=account.pk)
    return bool(email.strip()) and others.exists()


def invite(*, user, actor: Actor, language: str) -> None:
    """Invite an existing account's owner to set up again (a lost phone or password)."""
    with transaction.atomic():
        send_invitation(user, language=language)
        record_event(None, "staff_invited", actor=actor, data={"user": user.get_username()})


def send_invitation(user, *, language: str) -> None:
    """Blank the account's password and authenticator and email its owner a setup link, written in
    `language` (one of LANGUAGES: staff accounts hold no language, so whoever invites chooses it).
    The caller records the audit event (a new account's is the creation's own)."""
    user.set_unusable_password()
    user.save(update_fields=["password"])
    TOTPDevice.objects.filter(user=user).delete()
    tasks.queue_after_commit(tasks.send_staff_invitation, user.id, language)


def setup_path(user) -> str:
    """The path of the account's current setup link (made when the email is sent)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("staff:setup_link", args=[uid, setup_tokens.make_token(user)])


def user_for_link(uid: str, token: str, *, for_update: bool = False):
    """The active staff account the link belongs to, or None if the link is wrong, used or expired.
    `for_update` locks the account's row, so that two tabs cannot both use one link."""
    accounts = get_user_model().objects.select_for_update() if for_update else get_user_model().objects
    try:
        user = accounts.get(pk=force_str(urlsafe_base64_decode(uid)), is_staff=True, is_active=True)
    except (ValueError, TypeError, OverflowError, get_user_model().DoesNotExist):
        return None
    if roles.role_of(user) is None or not setup_tokens.check_token(user, token):
        return None
    return user


def new_authenticator_key() -> str:
    """A fresh TOTP secret for one setup page. Each browser that opens the link gets its own, kept in
    its session: one who merely saw the page cannot hold a copy of the key its owner confirms."""
    return random_hex(20)


def authenticator(user, key: str) -> TOTPDevice:
    """The device for `key`, not saved: its QR code to scan, its codes to check."""
    return TOTPDevice(user=user, key=key, name="authenticator", confirmed=True)


def code_matches(device: TOTPDevice, code: str) -> bool:
    """Whether `code` is the authenticator's current one (a step either side, for clock drift). A match
    is noted on the device (last_t, as django-otp does), so the same code cannot also sign in."""
    code = code.strip()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if not code.isdigit() or not totp.verify(int(code), tolerance=1):
        return False
    device.last_t = totp.t()
    return True


def code_already_used(device: TOTPDevice, code: str) -> bool:
    """Whether `code`, which the device refused, is one of its codes (within its tolerance for clock drift)
    of a time step already used: django-otp accepts a code once (TOTPDevice.last_t), even within its 30
    seconds, so the only reason to refuse a code that matches is that it was used."""
    code = code.strip()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return code.isdigit() and totp.verify(int(code), tolerance=device.tolerance)


class LinkUsed(Exception):
    """The link was used (or replaced) while its page was open."""


def complete_setup(*, uid: str, token: str, password_hash: str, device: TOTPDevice) -> None:
    """Set the chosen password (hashed by make_password: the setup page keeps it so, across a wrong code)
    and the authenticator scanned; the link stops working (the token covers the password). The account's
    row is locked and the link checked again: of two tabs, one wins."""
    with transaction.atomic():
        user = user_for_link(uid, token, for_update=True)
        if user is None:
            raise LinkUsed
        user.password = password_hash
        user.save(update_fields=["password"])
        TOTPDevice.objects.filter(user=user).delete()
        device.user = user
        device.save()
        record_event(None, "staff_setup_completed", actor=Actor.staff(user), data={"user": user.get_username()})


def end_sessions(user, *, keep: str | None) -> int:
    """Delete the account's sessions, so that none is signed in again when the account is switched back on
    (Django refuses an inactive account's session, but keeps it). Staff sessions end after 30 minutes idle:
    few to read. Returns how many ended.

    `keep`: the key of the session the caller's request runs in, if any. Deleting it under the request
    would make Django answer a bare 400 (SessionInterrupted) after the change was saved."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).exclude(pk=keep)
    ended = [session.pk for session in live if session.get_decoded().get(SESSION_KEY) == str(user.pk)]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


def sign_in_locked_out(user) -> bool:
    """Whether the account's username is locked out: by django-axes from some address (LOGIN_FAILURE_LIMIT wrong
    passwords from it within LOGIN_LOCKOUT_MINUTES), or from every address (staff.lockout)."""
    if lockout.locked_everywhere(user.get_username()):
        return True
    recent = AccessAttempt.objects.filter(username=user.get_username(), attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME)
    per_address = recent.values("ip_address").annotate(failures=Sum("failures_since_start"))
    return per_address.filter(failures__gte=settings.AXES_FAILURE_LIMIT).exists()


def unlock_sign_in(*, user, actor: Actor) -> None:
    """End the account's lockouts, from every address, so that its owner may try their password again at once;
    recorded in the audit trail. The DPO's way to unlock: django-axes' own admin pages, which showed what was
    typed as usernames (a password in the wrong box too) and deleted records unaudited, are off."""
    with transaction.atomic():
        axes_reset(username=user.get_username())
        UsernameLockout.objects.filter(username=user.get_username()).delete()
        record_event(None, "staff_sign_in_unlocked", actor=actor, data={"user": user.get_username()})


def purge_sign_in_records(*, batch_size: int = 1000) -> int:
    """Delete django-axes' records (the username typed, the address and browser it came from) older than
    LOGIN_ATTEMPT_RETENTION; returns how many.

    Its failed attempts: a lockout counts only those of the last LOGIN_LOCKOUT_MINUTES, and the retention is never
    shorter (checked at start), so none ends early. They go a batch at a time, as someone trying names from many
    addresses leaves one for each. Its log of sign-ins (a row per staff sign-in) through django-axes' own
    reset_logs. Safe to run twice: the second run finds nothing older.
    """
    cutoff = timezone.now() - settings.LOGIN_ATTEMPT_RETENTION
    old_attempts = AccessAttempt.objects.filter(attempt_time__lt=cutoff)
    purged = delete_in_batches(old_attempts, order_by=("attempt_time", "id"), batch_size=batch_size)
    # The counts across addresses (staff.lockout) go with them, once their window and any lockout ended before.
    old_counts = UsernameLockout.objects.filter(window_started_at__lt=cutoff).filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=cutoff)
    )
    purged += delete_in_batches(old_counts, order_by=("window_started_at", "id"), batch_size=batch_size)
    return purged + AxesProxyHandler.reset_logs(age_days=settings.LOGIN_ATTEMPT_RETENTION.days)
