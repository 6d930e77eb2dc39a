"""The staff sign-in lockout across addresses (staff.lockout): a guesser spreading wrong passwords over many
addresses, each below django-axes' limit from one address, locks the username out from everywhere."""

import logging
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from requests_app import tasks
from requests_app.audit import Actor
from requests_app.models import AuditEvent, UsernameLockout
from requests_app.services import staff_setup
from tests.factories import staff_in_role

PASSWORD = "correct-horse-battery"
LOCKED = "Signing in to this account is refused for a while. Try again later, or ask the DPO to unlock it."


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = 5
    settings.LOGIN_USERNAME_FAILURE_LIMIT = 6
    settings.LOGIN_USERNAME_LOCKOUT = timedelta(minutes=15)
    settings.DPO_EMAIL = "dpo@example.com"


@pytest.fixture
def target(db):
    user = staff_in_role("Handler", username="target", email="target@example.com")
    user.set_password(PASSWORD)
    user.save()
    return user


def sign_in(address: str, username: str = "target", password: str = "wrong-password"):
    return Client(REMOTE_ADDR=address).post(reverse("staff:login"), {"username": username, "password": password})


def spread_guesses(username: str = "target", count: int = 6):
    """Wrong passwords, two from each address: never django-axes' five from one."""
    return [sign_in(f"198.51.100.{n // 2 + 1}", username) for n in range(count)]


def refused(response) -> bool:
    return response.status_code == 429 and LOCKED in response.content.decode()


@pytest.mark.django_db
def test_wrong_passwords_spread_over_addresses_lock_the_username_out_from_everywhere(target):
    *before, last = spread_guesses()
    assert not any(refused(response) for response in before)
    assert refused(last)  # the guess that reaches the limit gets the lockout page

    locked = sign_in("203.0.113.50", password=PASSWORD)  # the right password, from yet another address
    assert refused(locked)
    assert "_auth_user_id" not in locked.wsgi_request.session
    assert staff_setup.sign_in_locked_out(target)
    assert AuditEvent.objects.filter(action="staff_locked_out", data={"user": "target"}).count() == 1


@pytest.mark.django_db
def test_a_username_of_no_account_is_locked_out_alike(target):
    """The lockout must not tell a guesser which usernames are accounts'."""
    spread_guesses("nobody")
    assert refused(sign_in("203.0.113.50", "nobody"))
    assert not refused(sign_in("203.0.113.50", "target", PASSWORD))  # another username is not touched


@pytest.mark.django_db
def test_the_owner_and_the_dpo_are_emailed_once_per_lockout_without_addresses(target, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        spread_guesses()
        for _ in range(3):
            sign_in("203.0.113.50")  # refused unchecked: no second email

    assert sorted(message.to[0] for message in mail.outbox) == ["dpo@example.com", "target@example.com"]
    body = mail.outbox[0].body
    assert "target" in mail.outbox[0].subject and "6 wrong passwords" in body
    assert "198.51.100" not in body and "203.0.113" not in body and "wrong-password" not in body
    lockout = UsernameLockout.objects.get(username="target")
    assert tasks.send_username_locked_out_email(lockout.pk) is False  # a redelivered task sends nothing
    assert len(mail.outbox) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("failures", "minutes", "said"),
    [
        (1, 1, "After 1 wrong password for the staff account target within 1 minute, from an address it has not"),
        (6, 15, "After 6 wrong passwords for the staff account target within 15 minutes, from addresses it has not"),
    ],
)
def test_the_lockout_email_counts_its_passwords_and_minutes_in_the_singular_or_the_plural(
    target, settings, django_capture_on_commit_callbacks, failures, minutes, said
):
    settings.LOGIN_USERNAME_FAILURE_LIMIT, settings.LOGIN_USERNAME_LOCKOUT = failures, timedelta(minutes=minutes)
    with django_capture_on_commit_callbacks(execute=True):
        spread_guesses(count=failures)
    html = mail.outbox[0].alternatives[0][0]
    assert said in mail.outbox[0].body and said in html


@pytest.mark.django_db
def test_no_email_for_a_username_of_no_account(target, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        spread_guesses("nobody")
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_lockout_ends_and_counting_starts_again(target, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        spread_guesses()
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        signed_in = sign_in("203.0.113.50", password=PASSWORD)
        assert signed_in.status_code == 302 and signed_in.url.startswith(reverse("staff:otp"))
        assert not refused(sign_in("203.0.113.51"))  # the failures that began it no longer count
        with django_capture_on_commit_callbacks(execute=True):
            spread_guesses(count=6)
    assert len(mail.outbox) == 4  # a new lockout, a new email


@pytest.mark.django_db
def test_an_address_the_account_signed_in_from_still_signs_in_during_the_lockout(target):
    """Anyone who knows a username could otherwise keep its owner out for good, a few guesses at a time."""
    assert sign_in("192.0.2.10", password=PASSWORD).status_code == 302  # the office, last week
    spread_guesses()
    assert refused(sign_in("203.0.113.50", password=PASSWORD))

    office = sign_in("192.0.2.10", password=PASSWORD)
    assert office.status_code == 302 and office.url.startswith(reverse("staff:otp"))
    # Guessing from there still meets django-axes' lockout from one address.
    for _ in range(5):
        sign_in("192.0.2.10")
    assert refused(sign_in("192.0.2.10", password=PASSWORD))


@pytest.mark.django_db
def test_the_dpo_unlocks_a_lockout_across_addresses(target):
    spread_guesses()
    assert staff_setup.sign_in_locked_out(target)
    staff_setup.unlock_sign_in(user=target, actor=Actor.system())
    assert not staff_setup.sign_in_locked_out(target)
    assert sign_in("203.0.113.50", password=PASSWORD).status_code == 302


@pytest.mark.django_db
def test_sign_in_log_lines_name_neither_the_username_nor_the_address(target, caplog):
    """django-axes masks both (AXES_SENSITIVE_PARAMETERS); the lockout across addresses logs nothing of its own."""
    with caplog.at_level(logging.INFO):
        spread_guesses()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "AXES" in logged  # django-axes did log the failures
    assert "target" not in logged and "198.51.100" not in logged


@pytest.mark.django_db
def test_a_lockout_alert_whose_task_was_lost_is_queued_again_and_sent_once(target, django_capture_on_commit_callbacks):
    """Queued after commit but not owed, a task lost with the broker left the owner and the DPO unaware that someone
    was guessing the password."""
    from requests_app import emails

    spread_guesses()  # its task queued on commit, never run: lost
    assert mail.outbox == []
    assert emails.requeue_owed_alerts() == 0  # queued just now: a worker may yet take it
    later = timezone.now() + timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.requeue_owed_alerts(now=later) == 1
    assert sorted(email.to[0] for email in mail.outbox) == ["dpo@example.com", "target@example.com"]
    assert emails.requeue_owed_alerts(now=later + timedelta(hours=3)) == 0  # sent: never again

    spread_guesses("nobody")  # no account: nothing owed
    assert emails.requeue_owed_alerts(now=later + timedelta(hours=3)) == 0
