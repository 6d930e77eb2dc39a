import base64
import io
import logging
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from privacy_portal.logging import RedactSecretLinks
from requests_app.audit import Actor
from requests_app.models import AuditEvent, Status
from requests_app.services import staff_setup
from tests.conftest import login_staff
from tests.factories import UserFactory, request_in_status, staff_in_role

PASSWORD = "correct-horse-battery"


def current_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def sign_in_with_password(client, username, password=PASSWORD, next_url=""):
    return client.post(reverse("staff:login"), {"username": username, "password": password, "next": next_url})


@pytest.mark.django_db
def test_anonymous_staff_pages_go_to_the_login(client):
    response = client.get(reverse("staff:queue"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("staff:login"))


def setup_link_from(email) -> str:
    (link,) = re.findall(r"http://\S+/staff/setup/\S+/", email.body)
    return link.removeprefix(settings.SITE_URL)


def code_on_page(page) -> str:
    """The current code of the authenticator whose key the setup page shows, as the app would compute it."""
    (secret,) = re.findall(r'<code id="totp-secret">([A-Z2-7]+)</code>', page.content.decode())
    return f"{TOTP(base64.b32decode(secret + '=' * (-len(secret) % 8))).token():06d}"


def a_wrong_code(page) -> str:
    return "000000" if code_on_page(page) != "000000" else "111111"


def open_setup_page(client, link):
    opened = client.get(link)
    assert opened.url == reverse("staff:setup")  # the token leaves the address bar at once
    return client.get(reverse("staff:setup"))


def set_up(client, code, password=PASSWORD):
    return client.post(reverse("staff:setup"), {"new_password1": password, "new_password2": password, "token": code})


@pytest.fixture
def invited(django_capture_on_commit_callbacks):
    """A handler invited to set up their account, and the link emailed to them."""
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        staff_setup.invite(user=handler, actor=Actor.system(), language="en")
    return handler, setup_link_from(mail.outbox[-1])


@pytest.mark.django_db
def test_an_invited_user_sets_up_password_and_authenticator_through_the_link(client, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo1")
    login_staff(client, dpo)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            reverse("staff:user_new"),
            {"username": "newbie", "email": "newbie@example.com", "role": "Handler", "is_active": "on"},
        )
    assert created.status_code == 302
    newbie = get_user_model().objects.get(username="newbie")
    assert not newbie.has_usable_password()  # nobody, the DPO included, knows a password for it
    (invitation,) = mail.outbox
    assert invitation.to == ["newbie@example.com"]
    link = setup_link_from(invitation)
    client.post(reverse("staff:logout"))

    page = open_setup_page(client, link)
    assert "<svg" in page.content.decode() and "viewBox" in page.content.decode()  # scaled by the stylesheet, never cropped
    weak = set_up(client, code_on_page(page), password="123")
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    wrong = set_up(client, a_wrong_code(page))
    assert "not right" in wrong.content.decode()
    newbie.refresh_from_db()
    assert not newbie.has_usable_password() and not TOTPDevice.objects.filter(user=newbie).exists()

    setup_code = code_on_page(page)
    done = set_up(client, setup_code)
    assert done.url == reverse("staff:login")
    device = TOTPDevice.objects.get(user=newbie)
    assert device.confirmed
    assert AuditEvent.objects.get(action="staff_setup_completed").actor == newbie

    # The link worked once.
    client.get(link)
    assert client.get(reverse("staff:setup")).status_code == 400

    # The account now signs in like any other: the password, then a code (not the one setup used).
    sign_in_with_password(client, "newbie")
    assert "already used" in client.post(reverse("staff:otp"), {"token": setup_code}).content.decode()
    with time_machine.travel(timezone.now() + timedelta(seconds=60)):
        assert client.post(reverse("staff:otp"), {"token": current_code(device)}).url == reverse("staff:home")
        assert client.get(reverse("staff:home")).status_code == 200


@pytest.mark.django_db
def test_each_browser_opening_the_link_is_shown_its_own_key(invited):
    """Someone who saw the page (a forwarded email, a look over the shoulder) holds no copy of the key confirmed."""
    handler, link = invited
    onlooker, owner = Client(), Client()
    onlooker_page = open_setup_page(onlooker, link)
    owner_page = open_setup_page(owner, link)
    assert set_up(owner, code_on_page(owner_page)).url == reverse("staff:login")
    device = TOTPDevice.objects.get(user=handler)
    assert code_on_page(owner_page) == current_code(device)
    assert re.search(r'id="totp-secret">(\w+)<', onlooker_page.content.decode())[1] not in device.config_url
    # And the onlooker's tab can no longer set anything up.
    assert set_up(onlooker, code_on_page(onlooker_page)).status_code == 400


@pytest.mark.django_db
def test_a_wrong_code_keeps_the_password_chosen_without_sending_it_back(client, invited):
    handler, link = invited
    page = open_setup_page(client, link)
    wrong = set_up(client, a_wrong_code(page))
    html = wrong.content.decode()
    assert "not right" in html and "The password you chose is kept" in html
    assert PASSWORD not in html  # never echoed into the page
    assert PASSWORD not in str(dict(client.session))  # nor kept in clear
    assert code_on_page(wrong) == code_on_page(page)  # the key already scanned still counts
    handler.refresh_from_db()
    assert not handler.has_usable_password() and not TOTPDevice.objects.filter(user=handler).exists()

    # Only the code this time: the password chosen before is set.
    done = client.post(reverse("staff:setup"), {"new_password1": "", "new_password2": "", "token": code_on_page(page)})
    assert done.url == reverse("staff:login")
    handler.refresh_from_db()
    assert handler.check_password(PASSWORD)
    assert "staff_setup" not in client.session


@pytest.mark.django_db
def test_after_a_wrong_code_another_password_may_still_be_chosen(client, invited):
    handler, link = invited
    page = open_setup_page(client, link)
    set_up(client, a_wrong_code(page))
    # Typed in one field only: refused, not half-checked.
    half = client.post(
        reverse("staff:setup"), {"new_password1": "plum-kettle-harbour-47", "new_password2": "", "token": code_on_page(page)}
    )
    assert half.status_code == 200 and "This field is required" in half.content.decode()
    assert set_up(client, code_on_page(page), password="plum-kettle-harbour-47").url == reverse("staff:login")
    handler.refresh_from_db()
    assert handler.check_password("plum-kettle-harbour-47")


@pytest.mark.django_db
def test_the_password_kept_belongs_to_the_link_it_was_chosen_through(client, invited, django_capture_on_commit_callbacks):
    handler, link = invited
    set_up(client, a_wrong_code(open_setup_page(client, link)))
    with django_capture_on_commit_callbacks(execute=True):
        staff_setup.invite(user=handler, actor=Actor.system(), language="en")
    # The old link's page forgets it...
    assert client.get(reverse("staff:setup")).status_code == 400
    assert "staff_setup" not in client.session
    # ...and the new link's page asks for a password again.
    page = open_setup_page(client, setup_link_from(mail.outbox[-1]))
    assert "The password you chose is kept" not in page.content.decode()
    only_code = client.post(reverse("staff:setup"), {"new_password1": "", "new_password2": "", "token": code_on_page(page)})
    assert only_code.status_code == 200 and "This field is required" in only_code.content.decode()
    handler.refresh_from_db()
    assert not handler.has_usable_password()


@pytest.mark.django_db
def test_of_two_tabs_using_one_link_only_the_first_sets_up(invited):
    handler, link = invited
    first, second = Client(), Client()
    open_setup_page(first, link)
    open_setup_page(second, link)
    # Both pages were valid when the forms were sent; the second finds the link used under the lock.
    uid, token = link.strip("/").split("/")[-2:]
    for tab in (first, second):
        tab.device = staff_setup.authenticator(handler, tab.session["staff_setup"]["key"])
    staff_setup.complete_setup(uid=uid, token=token, password_hash=make_password(PASSWORD), device=second.device)
    with pytest.raises(staff_setup.LinkUsed):
        staff_setup.complete_setup(
            uid=uid, token=token, password_hash=make_password("another-long-passphrase"), device=first.device
        )
    assert TOTPDevice.objects.filter(user=handler).count() == 1
    handler.refresh_from_db()
    assert handler.check_password(PASSWORD)


@pytest.mark.parametrize("change", [{"is_active": False}, {"is_staff": False}, "no role"])
@pytest.mark.django_db
def test_a_link_of_an_account_that_may_no_longer_sign_in_does_not_work(client, invited, change):
    handler, link = invited
    if change == "no role":
        handler.groups.clear()
    else:
        get_user_model().objects.filter(pk=handler.pk).update(**change)
    assert open_setup_page(client, link).status_code == 400


@pytest.mark.django_db
def test_a_new_invitation_ends_the_sessions_of_the_account(client, django_capture_on_commit_callbacks):
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    login_staff(client, handler)
    assert client.get(reverse("staff:home")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        staff_setup.invite(user=handler, actor=Actor.system(), language="en")
    assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_switching_an_account_off_ends_its_sessions_for_good(client):
    """Django refuses an inactive account's session but keeps it: switched back on, it was signed in again
    without a password or code (a stolen session too)."""
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    handler_client = login_staff(Client(), handler)
    assert handler_client.get(reverse("staff:home")).status_code == 200
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    fields = {"username": "h1", "email": "h1@example.com", "role": "Handler"}

    client.post(reverse("staff:user_edit", args=[handler.pk]), fields)  # is_active unticked
    client.post(reverse("staff:user_edit", args=[handler.pk]), {**fields, "is_active": "on"})

    assert get_user_model().objects.get(pk=handler.pk).is_active
    assert handler_client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))
    assert client.get(reverse("staff:home")).status_code == 200  # the DPO's own session stays


@pytest.mark.django_db
def test_sign_in_never_sets_up_an_authenticator(client):
    """Whoever learnt the password of an account without one must not bind their own."""
    staff_in_role("Handler", username="no-device")  # a password, no authenticator
    response = sign_in_with_password(client, "no-device")
    refused = client.get(response.url)
    assert refused.status_code == 403
    assert "no authenticator" in refused.content.decode()
    assert not TOTPDevice.objects.exists()
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_a_setup_link_expires_and_a_newer_invitation_replaces_it(client, settings, invited, django_capture_on_commit_callbacks):
    handler, first = invited
    with django_capture_on_commit_callbacks(execute=True):
        staff_setup.invite(user=handler, actor=Actor.system(), language="en")
    second = setup_link_from(mail.outbox[-1])
    assert open_setup_page(client, first).status_code == 400
    assert open_setup_page(client, second).status_code == 200
    # Django's token clock is naive local time: go past the lifetime by more than any UTC offset.
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT, hours=3)):
        expired = open_setup_page(client, second)
        assert expired.status_code == 400
        assert "no longer works" in expired.content.decode()


@pytest.mark.django_db
def test_a_setup_link_that_no_longer_works_is_titled_as_its_heading_says(client, invited):
    """Titled "Set up your account", a tab or a screen reader's list of windows promised what the page refused."""
    _handler, link = invited
    refused = open_setup_page(client, link.rstrip("/") + "x/")  # a wrong token, as a used or expired one is
    assert refused.status_code == 400
    assert re.search(r"<title>\s*This link no longer works ·", refused.content.decode())


@pytest.mark.django_db
def test_a_setup_link_in_a_log_line_is_blanked():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/staff/setup/MQ/abc-123/x/",), None)
    RedactSecretLinks().filter(record)
    assert record.getMessage() == "Not Found: /staff/setup/MQ/[secret]/x/"


@pytest.mark.django_db
def test_invite_staff_command_sets_up_the_first_dpo(django_capture_on_commit_callbacks):
    root = UserFactory(username="root", is_superuser=True, email="")
    root.set_password(PASSWORD)
    root.save()
    with pytest.raises(CommandError, match="no email address"):
        call_command("invite_staff", "root")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("invite_staff", "root", "--print-link", stdout=out)
    root.refresh_from_db()
    assert not root.has_usable_password()
    link = out.getvalue().splitlines()[-1].removeprefix(settings.SITE_URL)
    assert staff_setup.user_for_link(*link.strip("/").split("/")[-2:]) == root
    with pytest.raises(CommandError, match="not an active staff account"):
        call_command("invite_staff", "nobody")


@pytest.mark.django_db
def test_invite_staff_command_writes_in_the_language_asked(django_capture_on_commit_callbacks):
    staff_in_role("DPO", username="root", email="root@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("invite_staff", "root", "--language", "fr", stdout=io.StringIO())
        call_command("invite_staff", "root", stdout=io.StringIO())  # the site's language
    assert [email.subject for email in mail.outbox] == [
        "Configurez votre compte du personnel sur le Privacy Portal",
        "Set up your Privacy Portal staff account",
    ]


@pytest.mark.django_db
def test_a_returning_user_must_give_the_code(client):
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    sign_in_with_password(client, "dpo1", next_url=reverse("staff:queue"))
    page = client.get(reverse("staff:otp"))
    assert "Enter your code" in page.content.decode()
    response = client.post(reverse("staff:otp") + f"?next={reverse('staff:queue')}", {"token": current_code(device)})
    assert response.url == reverse("staff:queue")


@pytest.mark.django_db
def test_the_code_step_gives_a_new_session_so_a_planted_half_signed_in_one_stays_half_signed_in():
    """Whoever knows a password, not the code, could plant their half-signed-in session cookie in its owner's
    browser: the owner's code must not turn the cookie the planter kept into a signed-in session."""
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    planter = Client()
    sign_in_with_password(planter, "dpo1")
    planted = planter.cookies[settings.SESSION_COOKIE_NAME].value
    owner = Client()
    owner.cookies[settings.SESSION_COOKIE_NAME] = planted
    assert owner.post(reverse("staff:otp"), {"token": current_code(device)}).url == reverse("staff:home")
    assert owner.cookies[settings.SESSION_COOKIE_NAME].value != planted
    assert owner.get(reverse("staff:home")).status_code == 200
    assert planter.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_after_wrong_codes_the_right_one_is_refused_with_how_long_to_wait(client):
    """django-otp refuses every code for a while after wrong ones; "not right" would send staff hunting."""
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    sign_in_with_password(client, "dpo1")
    for _ in range(3):
        client.post(reverse("staff:otp"), {"token": "000000"})
    refused = client.post(reverse("staff:otp"), {"token": current_code(device)})
    assert refused.status_code == 200 and not client.session.get("otp_device_id")
    assert re.search(r"Too many wrong codes: wait \d+ seconds?, then enter the current code", refused.content.decode())


@pytest.mark.django_db
def test_a_code_used_once_is_refused_as_already_used_and_a_wrong_one_as_not_right(client):
    """django-otp accepts each code once, even within its 30 seconds: "not right" would have staff retype it."""
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)  # the start of a 30-second step
    with time_machine.travel(start + timedelta(seconds=1), tick=False):
        code = current_code(device)
        sign_in_with_password(client, "dpo1")
        assert client.post(reverse("staff:otp"), {"token": code}).url == reverse("staff:home")
        other_browser = Client()
        sign_in_with_password(other_browser, "dpo1")
        refused = other_browser.post(reverse("staff:otp"), {"token": code}).content.decode()
    assert "That code was already used. Wait for your authenticator to show a new one, then enter it." in refused
    assert "not right" not in refused
    with time_machine.travel(start + timedelta(seconds=5), tick=False):  # past the one-second wait a refusal sets
        wrong = other_browser.post(reverse("staff:otp"), {"token": "000000" if code != "000000" else "111111"})
    assert "That code is not right, or it expired. Try the current one." in wrong.content.decode()
    assert not other_browser.session.get("otp_device_id")


@pytest.mark.django_db
def test_redirects_after_sign_in_stay_on_this_site(client):
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    sign_in_with_password(client, "dpo1")
    response = client.post(reverse("staff:otp") + "?next=https://evil.example/", {"token": current_code(device)})
    assert response.url == reverse("staff:home")


@pytest.mark.django_db
@pytest.mark.parametrize("next_url", ["foo", "staff:queue", "..", "//evil.example/x"])
def test_a_next_that_is_not_a_path_here_leads_home_not_to_an_error(client, next_url):
    """redirect() would read "foo" as a URL pattern's name and fail with a 500."""
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    sign_in_with_password(client, "dpo1")
    assert client.get(reverse("staff:otp"), {"next": next_url}).status_code == 200
    response = client.post(reverse("staff:otp") + "?" + urlencode({"next": next_url}), {"token": current_code(device)})
    assert response.url == reverse("staff:home")
    assert client.get(reverse("staff:otp"), {"next": next_url}).url == reverse("staff:home")  # signed in already


@pytest.mark.django_db
def test_repeated_failures_lock_the_account_out(client, settings):
    staff_in_role("Handler", username="target")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_with_password(client, "target", password="wrong-password")
    locked = sign_in_with_password(client, "target")  # even the right password
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_sign_in_records_are_deleted_after_their_retention_and_a_lockout_runs_its_course(client, settings):
    """django-axes kept each failed attempt (the username typed, the address and browser it came from) until that
    username signed in from there, which a mistyped one never does, and each sign-in for good."""
    from axes.models import AccessAttempt, AccessLog

    from requests_app import tasks

    settings.LOGIN_ATTEMPT_RETENTION = timedelta(days=30)
    staff_in_role("Handler", username="target")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_with_password(client, "target", password="wrong-password")
    for address in ("198.51.100.7", "203.0.113.9"):
        sign_in_with_password(Client(REMOTE_ADDR=address), "dpo-1")  # a mistyped username
    device = TOTPDevice.objects.create(user=staff_in_role("DPO", username="dpo1"), name="phone", confirmed=True)
    for _ in range(2):
        signing_in = Client()
        sign_in_with_password(signing_in, "dpo1")
        signing_in.post(reverse("staff:otp"), {"token": current_code(device)})
    old, recent = timedelta(days=30, minutes=1), timedelta(days=29, hours=23)
    kept = []
    for records in (AccessAttempt.objects.filter(username="dpo-1"), AccessLog.objects.filter(username="dpo1")):
        first, second = records.order_by("id")
        records.filter(pk=first.pk).update(attempt_time=timezone.now() - old)
        records.filter(pk=second.pk).update(attempt_time=timezone.now() - recent)
        kept.append(second.pk)

    assert tasks.purge_sign_in_records() == 2
    assert tasks.purge_sign_in_records() == 0  # twice = once

    target = AccessAttempt.objects.get(username="target").pk
    assert set(AccessAttempt.objects.values_list("pk", flat=True)) == {target, kept[0]}
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [kept[1]]
    locked = sign_in_with_password(client, "target")  # the lockout being served is not cut short
    assert locked.status_code == 429
    assert "purge-sign-in-records" in settings.CELERY_BEAT_SCHEDULE


UNLOCK = "Unlock sign-in"


@pytest.mark.django_db
def test_the_dpo_unlocks_a_locked_out_account_on_its_page_with_an_audit_event(client, settings):
    """The lockout page tells staff to ask the DPO to unlock it; django-axes' admin pages, which did it unaudited, are off."""
    target = staff_in_role("Handler", username="target")
    guesser = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_with_password(guesser, "target", password="wrong-password")
    assert sign_in_with_password(guesser, "target").status_code == 429
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = reverse("staff:user_edit", args=[target.pk])
    assert UNLOCK in client.get(page).content.decode()

    unlocked = client.post(page, {"unlock": "1"}, follow=True).content.decode()

    assert "Unlocked: target may sign in again." in unlocked and UNLOCK not in unlocked
    event = AuditEvent.objects.get(action="staff_sign_in_unlocked")
    assert (event.actor_label, event.data) == ("dpo1", {"user": "target"})
    assert sign_in_with_password(guesser, "target").url.startswith(reverse("staff:otp"))


@pytest.mark.django_db
def test_an_account_not_locked_out_offers_no_unlocking(client, settings):
    target = staff_in_role("Handler", username="target")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in_with_password(Client(), "target", password="wrong-password")
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    assert UNLOCK not in client.get(reverse("staff:user_edit", args=[target.pk])).content.decode()


@pytest.mark.django_db
def test_django_axes_admin_pages_are_off(client):
    """They showed what was typed as a username (a password in the wrong box) and deleted lockouts unaudited."""
    login_staff(client, staff_in_role("DPO", username="dpo1", is_superuser=True))
    assert "axes" not in client.get(reverse("admin:index")).content.decode().lower()
    for model in ("accessattempt", "accesslog", "accessfailurelog"):
        assert client.get(f"/admin/axes/{model}/").status_code == 404


@pytest.mark.django_db
def test_behind_a_proxy_the_lockout_holds_the_guessers_address_not_everyones(client, settings):
    """Five wrong passwords for "dpo" from one client must not lock the DPO out of signing in from another:
    behind a proxy every call has the proxy's REMOTE_ADDR, and the lockout read only that."""
    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_REAL_IP"
    staff_in_role("DPO", username="dpo1")
    guesser = {"HTTP_X_REAL_IP": "198.51.100.66", "REMOTE_ADDR": "127.0.0.1"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("staff:login"), {"username": "dpo1", "password": "wrong-password"}, **guesser)
    assert client.post(reverse("staff:login"), {"username": "dpo1", "password": PASSWORD}, **guesser).status_code == 429

    dpo_client = Client(HTTP_X_REAL_IP="192.0.2.10", REMOTE_ADDR="127.0.0.1")
    response = dpo_client.post(reverse("staff:login"), {"username": "dpo1", "password": PASSWORD})
    assert response.status_code == 302 and response.url.startswith(reverse("staff:otp"))


@pytest.mark.django_db
def test_an_ipv6_guesser_changing_address_within_their_64_is_still_locked_out(client, settings):
    """The forms' rate limits counted an IPv6 client by its /64, the lockout by its whole address: a new address
    every four guesses, and the password could be guessed for ever."""
    settings.CLIENT_ADDRESS_HEADER = "HTTP_X_REAL_IP"
    staff_in_role("Handler", username="target")
    for guess in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("staff:login"), {"username": "target", "password": "wrong-password"},
            HTTP_X_REAL_IP=f"2001:db8:1:2::{guess + 1:x}", REMOTE_ADDR="127.0.0.1",
        )
    response = client.post(
        reverse("staff:login"), {"username": "target", "password": PASSWORD}, HTTP_X_REAL_IP="2001:db8:1:2::ff", REMOTE_ADDR="127.0.0.1"
    )
    assert response.status_code == 429
    # Another /64, another client.
    other = Client(HTTP_X_REAL_IP="2001:db8:1:3::1", REMOTE_ADDR="127.0.0.1")
    assert other.post(reverse("staff:login"), {"username": "target", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
def test_accounts_without_a_staff_role_are_refused(client):
    plain = UserFactory(username="no-role", is_staff=True)
    login_staff(client, plain)
    assert client.get(reverse("staff:home")).status_code == 403


@pytest.mark.django_db
def test_the_admin_also_requires_the_second_factor(client):
    dpo = UserFactory(username="root", is_superuser=True)
    client.force_login(dpo)
    assert client.get(reverse("admin:index")).url.startswith(reverse("admin:login"))  # the password alone is not enough
    login_staff(client, dpo)
    assert client.get(reverse("admin:index")).status_code == 200


@pytest.mark.django_db
def test_idle_sessions_time_out(client, settings):
    dpo = staff_in_role("DPO", username="dpo1")
    login_staff(client, dpo)
    assert client.get(reverse("staff:home")).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60)):
        assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_progress_polls_do_not_keep_an_idle_session_alive(client, settings):
    """A request page left open while an export compiles or an action runs polls for ever: the session must still
    end once nobody has done anything for SESSION_IDLE_TIMEOUT_SECONDS."""
    from requests_app.models import ActionKind, ActionStatus, ExportPackage, SourceAction, SourceSystem

    request = request_in_status(Status.IN_PROGRESS)
    export = ExportPackage.objects.create(request=request, kind="access", status="queued")
    source = SourceSystem.objects.create(slug="crm", name="CRM", connector="manual", identity_kind="email")
    action = SourceAction.objects.create(request=request, source=source, kind=ActionKind.ERASE, status=ActionStatus.RUNNING)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    urls = [reverse("staff:export_progress", args=[export.public_id]), reverse("staff:source_action_progress", args=[action.public_id])]
    assert f'data-export-progress="{urls[0]}"' in client.get(reverse("staff:request", args=[request.reference])).content.decode()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for minute in range(1, settings.SESSION_COOKIE_AGE // 60):
            clock.move_to(start + timedelta(minutes=minute))
            assert all(client.get(url).status_code == 200 for url in urls)
        clock.move_to(start + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))
        assert client.get(urls[0]).url.startswith(reverse("staff:login"))
        assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_what_staff_do_keeps_their_session_alive(client, settings):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for minute in range(0, 2 * settings.SESSION_COOKIE_AGE // 60, 10):
            clock.move_to(start + timedelta(minutes=minute))
            assert client.get(reverse("staff:home")).status_code == 200
        assert client.get(reverse("staff:keep_alive")).json() == {"seconds": settings.SESSION_COOKIE_AGE, "final": False}


@pytest.mark.django_db
def test_a_session_ends_hours_after_signing_in_however_active(client, settings):
    settings.SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=2)
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        sign_in_with_password(client, "dpo1")
        client.post(reverse("staff:otp"), {"token": current_code(device)})
        for minute in range(10, 110, 10):
            clock.move_to(start + timedelta(minutes=minute))
            assert client.get(reverse("staff:home")).status_code == 200
        # Within an idle timeout of the end, the page says how long is left and offers no "Stay signed in".
        clock.move_to(start + timedelta(minutes=115))
        page = client.get(reverse("staff:home")).content.decode()
        assert 'data-session-seconds="300" data-session-final' in page
        assert client.get(reverse("staff:keep_alive")).json() == {"seconds": 300, "final": True}
        clock.move_to(start + timedelta(hours=2, seconds=1))
        assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_a_password_typed_again_in_a_signed_in_session_starts_a_new_sign_in_code_and_all(client, settings):
    """Django keeps a session's data when its own user signs in again, django-otp's note of the code with it: the
    password alone went straight to the dashboard, unaudited, and put off the session's absolute end."""
    settings.SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=2)
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    password_only = Client()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for browser in (client, password_only):
            sign_in_with_password(browser, "dpo1")
            assert browser.post(reverse("staff:otp"), {"token": current_code(device)}).url == reverse("staff:home")
            clock.shift(device.step)  # a code is taken once

        for minutes in (20, 40, 60, 80, 100):
            clock.move_to(start + timedelta(minutes=minutes))
            for browser in (client, password_only):
                assert browser.get(reverse("staff:home")).status_code == 200
        for browser in (client, password_only):
            assert sign_in_with_password(browser, "dpo1").url.startswith(reverse("staff:otp"))
            assert browser.get(reverse("staff:home")).url.startswith(reverse("staff:otp"))
        assert "Enter your code" in client.get(reverse("staff:otp")).content.decode()

        clock.move_to(start + timedelta(minutes=110))
        assert client.post(reverse("staff:otp"), {"token": current_code(device)}).url == reverse("staff:home")
        assert AuditEvent.objects.filter(action="staff_signed_in").count() == 3  # audited as any sign-in

        # The code step restarted the session's clock; the password alone did not.
        clock.move_to(start + timedelta(hours=2, minutes=1))
        assert client.get(reverse("staff:home")).status_code == 200
        assert password_only.get(reverse("staff:otp")).url == reverse("staff:login")
        for minutes in (145, 170, 195, 220, 229):
            clock.move_to(start + timedelta(minutes=minutes))
            assert client.get(reverse("staff:home")).status_code == 200
        clock.move_to(start + timedelta(minutes=230, seconds=1))
        assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_a_session_signed_in_before_sign_ins_were_stamped_ends_hours_after_its_first_use(client, settings):
    from django.contrib.sessions.models import Session

    from requests_app.staff.sessions import SIGNED_IN_AT, SessionStore

    settings.SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=2)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    stored = SessionStore(session_key=key)
    data = Session.objects.get(session_key=key).get_decoded()
    del data[SIGNED_IN_AT]
    Session.objects.filter(session_key=key).update(session_data=stored.encode(data))
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        assert client.get(reverse("staff:home")).status_code == 200
        assert SIGNED_IN_AT in Session.objects.get(session_key=key).get_decoded()
        for minute in range(10, 120, 10):
            clock.move_to(start + timedelta(minutes=minute))
            assert client.get(reverse("staff:home")).status_code == 200
        clock.move_to(start + timedelta(hours=2, seconds=1))
        assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


LOST_ACTION = "Your session had expired, so your last action was not sent. Do it again."


@pytest.mark.django_db
def test_a_form_sent_after_the_session_expired_leads_back_to_its_page_once_signed_in(client, settings):
    """The note's address takes only forms: landing there with a GET after signing in was a blank 405."""
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    request = request_in_status(Status.IN_PROGRESS)
    page = reverse("staff:request", args=[request.reference])
    login_staff(client, dpo)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 60)):
        sent = client.post(
            reverse("staff:request_action", args=[request.reference, "note"]), {"body": "Called the subject."},
            HTTP_REFERER=f"http://testserver{page}",
        )
        assert sent.url == f"{reverse('staff:login')}?{urlencode({'next': page})}"
        signed_in = sign_in_with_password(client, "dpo1", next_url=page)
        landed = client.post(signed_in.url, {"token": current_code(device)}, follow=True)
    assert landed.redirect_chain[-1] == (page, 302)
    assert landed.status_code == 200
    assert LOST_ACTION in landed.content.decode()
    assert not request.notes.exists()
    assert LOST_ACTION not in client.get(page).content.decode()  # said once


@pytest.mark.django_db
@pytest.mark.parametrize(
    "referer", ["", "https://evil.example/staff/requests/", "http://testserver/status/", "http://testserver/staff/requests/?status=new"]
)
def test_a_form_sent_signed_out_leads_to_a_dashboard_page_it_came_from_or_home(client, referer):
    """Only a page of this dashboard is gone back to, never another site's (an open redirect)."""
    request = request_in_status(Status.IN_PROGRESS)
    expected = "/staff/requests/?status=new" if referer.endswith("?status=new") else reverse("staff:home")
    sent = client.post(reverse("staff:request_action", args=[request.reference, "note"]), {"body": "x"}, HTTP_REFERER=referer)
    assert sent.url == f"{reverse('staff:login')}?{urlencode({'next': expected})}"


@pytest.mark.django_db
def test_opening_an_address_that_takes_only_forms_leads_to_the_page_of_its_form(client):
    """A bookmark or a page reloaded from history must not end on a blank 405."""
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    addresses = {
        reverse("staff:request_action", args=[request.reference, "note"]): reverse("staff:request", args=[request.reference]),
        reverse("staff:export_start", args=[request.reference]): reverse("staff:request", args=[request.reference]),
        reverse("staff:bulk"): reverse("staff:queue"),
        reverse("staff:webhook_redeliver", args=["00000000-0000-0000-0000-000000000000"]): reverse("staff:home"),
    }
    for address, page in addresses.items():
        response = client.get(address, follow=True)
        assert response.redirect_chain == [(page, 302)], address
        assert "That address only takes a form sent from the dashboard, so nothing was done." in response.content.decode()
    assert client.get(reverse("staff:home")).status_code == 200  # still signed in, nothing else changed


@pytest.mark.django_db
def test_the_dpo_invites_someone_who_lost_their_phone_to_set_up_again(client, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo1")
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    TOTPDevice.objects.create(user=handler, name="lost phone", confirmed=True)
    login_staff(client, dpo)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:user_edit", args=[handler.pk]), {"invite": "1"})
    handler.refresh_from_db()
    assert not TOTPDevice.objects.filter(user=handler).exists()
    assert not handler.has_usable_password()
    assert AuditEvent.objects.get(action="staff_invited").data == {"user": "h1"}
    assert mail.outbox[0].to == ["h1@example.com"]


@pytest.mark.django_db
def test_the_invitation_is_in_the_language_the_dpo_chooses_by_default_their_own(client, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo1")
    login_staff(client, dpo)
    form = client.get(reverse("staff:user_new"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert re.search(r'<option value="fr"\s+selected>', form)  # the DPO reads the dashboard in French
    fields = {"username": "newbie", "email": "newbie@example.com", "role": "Handler", "is_active": "on"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:user_new"), {**fields, "invitation_language": "nl"}, HTTP_ACCEPT_LANGUAGE="fr")
    (invitation,) = mail.outbox
    assert invitation.subject == "Stel uw medewerkersaccount op het Privacy Portal in"
    assert setup_link_from(invitation)  # the link, as in any language

    # Invited again (a lost phone), in German; a form that sends no language gets the DPO's own.
    newbie = get_user_model().objects.get(username="newbie")
    assert "invitation_language" in client.get(reverse("staff:user_edit", args=[newbie.pk])).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:user_edit", args=[newbie.pk]), {"invite": "1", "invitation_language": "de"})
        client.post(reverse("staff:user_edit", args=[newbie.pk]), {"invite": "1"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert [email.subject for email in mail.outbox[1:]] == [
        "Richten Sie Ihr Mitarbeiterkonto auf dem Privacy Portal ein",
        "Configurez votre compte du personnel sur le Privacy Portal",
    ]


@pytest.mark.django_db
def test_the_invitation_language_is_offered_only_where_saving_invites(client):
    dpo = staff_in_role("DPO", username="dpo1")
    handler = staff_in_role("Handler", username="h1", email="h1@example.com")
    login_staff(client, dpo)
    page = client.get(reverse("staff:user_edit", args=[handler.pk])).content.decode()
    # Saving an active account sends nothing: only its "invite to set up again" form asks.
    assert page.count('name="invitation_language"') == 1
    assert 'name="invitation_language"' in page.split("For a lost phone or password")[1]
    refused = client.post(
        reverse("staff:user_edit", args=[handler.pk]), {"invite": "1", "invitation_language": "xx"}, follow=True
    )
    assert "Select a valid choice" in refused.content.decode()
    handler.refresh_from_db()
    assert handler.has_usable_password()


@pytest.mark.django_db
def test_an_account_that_cannot_receive_the_invitation_is_left_as_it_is(client):
    dpo = staff_in_role("DPO", username="dpo1")
    inactive = staff_in_role("Handler", username="h1", email="h1@example.com", is_active=False)
    login_staff(client, dpo)
    refused = client.post(reverse("staff:user_edit", args=[inactive.pk]), {"invite": "1"}, follow=True)
    assert "nothing was changed" in refused.content.decode()
    inactive.refresh_from_db()
    assert inactive.has_usable_password()
    assert not AuditEvent.objects.filter(action="staff_invited").exists()


@pytest.mark.django_db
def test_the_dpo_creates_a_handler_with_a_role_and_teams(client):
    from requests_app import roles
    from requests_app.models import Team

    dpo = staff_in_role("DPO", username="dpo1")
    team = Team.objects.create(name="Access desk")
    login_staff(client, dpo)
    response = client.post(
        reverse("staff:user_new"),
        {"username": "newbie", "email": "newbie@example.com", "role": "Handler", "teams": [team.pk], "is_active": "on"},
    )
    assert response.status_code == 302
    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.is_staff and roles.role_of(newbie) == roles.HANDLER
    assert list(newbie.privacy_teams.all()) == [team]
    assert AuditEvent.objects.get(action="staff_user_saved").data == {
        "user": "newbie", "role": "Handler", "active": True, "invited": True,
        "changes": {"username": [None, "newbie"], "email": [None, "…"], "teams": [[], ["Access desk"]]},
    }


@pytest.mark.django_db
def test_an_inactive_account_shows_the_role_it_holds(client):
    """Bringing an auditor back from leave must not make them a handler by default."""
    dpo = staff_in_role("DPO", username="dpo1")
    staff_in_role("Auditor", username="ina", is_active=False)
    login_staff(client, dpo)
    ina = get_user_model().objects.get(username="ina")
    page = client.get(reverse("staff:user_edit", args=[ina.pk])).content.decode()
    assert re.search(r'<option value="Auditor"\s+selected>', page)
    assert "Auditor" in client.get(reverse("staff:users")).content.decode()
    new = client.get(reverse("staff:user_new")).content.decode()
    assert re.search(r'<option value="Handler"\s+selected>', new)  # not the DPO, the first choice


@pytest.mark.django_db
def test_an_account_created_inactive_is_invited_when_activated(client, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO", username="dpo1")
    login_staff(client, dpo)
    fields = {"username": "later", "email": "later@example.com", "role": "Handler"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:user_new"), fields)  # not active yet
    assert mail.outbox == []
    later = get_user_model().objects.get(username="later")
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(reverse("staff:user_edit", args=[later.pk]), {**fields, "is_active": "on"}, follow=True)
    assert "emailed a link" in saved.content.decode()
    assert [email.to for email in mail.outbox] == [["later@example.com"]]
    # Saving it again sends nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("staff:user_edit", args=[later.pk]), {**fields, "is_active": "on"})
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_staff_change_their_own_password_with_an_audit_event_and_other_sessions_end(client):
    handler = staff_in_role("Handler", username="h1")
    handler.set_password(PASSWORD)
    handler.save()
    other_browser = login_staff(Client(), handler)
    login_staff(client, handler)

    wrong = client.post(
        reverse("staff:password_change"),
        {"old_password": "not-it", "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()
    assert not AuditEvent.objects.filter(action="staff_password_changed").exists()

    changed = client.post(
        reverse("staff:password_change"),
        {"old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )
    assert changed.url == reverse("staff:home")
    handler.refresh_from_db()
    assert handler.check_password("a-new-long-passphrase")
    event = AuditEvent.objects.get(action="staff_password_changed")
    assert event.actor_label == "h1" and event.data == {}
    assert client.get(reverse("staff:home")).status_code == 200  # this session stays signed in
    assert other_browser.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.django_db
def test_the_admins_password_change_goes_to_the_dashboards(client):
    dpo = UserFactory(username="root", is_superuser=True)
    login_staff(client, dpo)
    assert client.get("/admin/password_change/").url == reverse("staff:password_change")


@pytest.mark.django_db
def test_staff_error_pages_are_the_dashboards_in_the_readers_language(client):
    """Not the public 404 (which offers a data subject their link again), nor a bare English 403."""
    handler = staff_in_role("Handler", username="h1")
    login_staff(client, handler)
    missing = client.get("/staff/requests/DSR-2026-99999/", HTTP_ACCEPT_LANGUAGE="fr")
    assert missing.status_code == 404
    page = missing.content.decode()
    assert '<html lang="fr">' in page and reverse("staff:queue") in page and reverse("resend_link") not in page
    refused = client.get(reverse("staff:rules"), HTTP_ACCEPT_LANGUAGE="de")
    assert refused.status_code == 403
    page = refused.content.decode()
    assert '<html lang="de">' in page and "Nicht erlaubt" in page and reverse("staff:home") in page


@pytest.mark.django_db
def test_an_expired_form_on_the_dashboard_leads_back_to_the_dashboard(client):
    """A form from a page opened before signing in again is refused (the sign-in renews the CSRF token):
    staff were offered only the public request form."""
    request = request_in_status(Status.IN_PROGRESS)
    staff = Client(enforce_csrf_checks=True)
    login_staff(staff, staff_in_role("DPO", username="dpo1"))
    refused = staff.post(reverse("staff:request_action", args=[request.reference, "note"]), {"body": "x"}, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused.status_code == 403
    page = refused.content.decode()
    assert f'<a href="{reverse("staff:home")}">Retour au tableau de bord</a>' in page and '<a href="/">' not in page
    public = Client(enforce_csrf_checks=True).post(reverse("submit"), {}).content.decode()
    assert '<a href="/">Back to the request form</a>' in public and reverse("staff:home") not in public


@pytest.mark.django_db
def test_guessing_the_current_password_on_the_change_page_ends_the_session(client):
    """The change form checks the password outside django-axes: a stolen session must not be a way to guess it."""
    handler = staff_in_role("Handler", username="h1")
    handler.set_password(PASSWORD)
    handler.save()
    login_staff(client, handler)
    wrong = {"old_password": "guess", "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"}
    for _ in range(4):
        assert client.post(reverse("staff:password_change"), wrong).status_code == 200
    signed_out = client.post(reverse("staff:password_change"), wrong)
    assert signed_out.url == reverse("staff:login")
    assert client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))
    assert AuditEvent.objects.get(action="staff_password_change_refused").data == {"attempts": 5}
    handler.refresh_from_db()
    assert handler.check_password(PASSWORD)


@pytest.mark.django_db
def test_a_new_account_needs_a_username_and_an_email_address_no_other_account_has_in_any_case(client):
    """"Handler" beside "handler" would be two people to the database and one to whoever reads the trail; two
    accounts on one address would let one mailbox's owner set up both."""
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    staff_in_role("Handler", username="handler", email="handler@example.com")
    fields = {"username": "Handler", "email": "Handler@Example.com", "role": "Handler", "is_active": "on"}

    response = client.post(reverse("staff:user_new"), fields)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert errors["username"] == ["A user with that username already exists."]
    assert errors["email"] == [
        "Another staff account uses this email address: each account needs its own, where only its owner receives the setup link."
    ]
    assert get_user_model().objects.filter(username__iexact="handler").count() == 1


@pytest.mark.django_db
def test_an_account_keeps_its_own_username_and_email_when_edited(client):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    handler = staff_in_role("Handler", username="handler", email="handler@example.com")
    fields = {"username": "Handler", "email": "HANDLER@example.com", "role": "Handler", "is_active": "on"}

    response = client.post(reverse("staff:user_edit", args=[handler.pk]), fields)

    assert response.status_code == 302
    handler.refresh_from_db()
    assert (handler.username, handler.email) == ("Handler", "HANDLER@example.com")


@pytest.mark.django_db
def test_an_account_sharing_its_email_address_is_not_invited(client):
    """Accounts saved before addresses were checked: the link would reach the other account's owner too."""
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    staff_in_role("Handler", username="ana", email="team@example.com")
    shared = staff_in_role("Handler", username="bob", email="team@example.com")

    response = client.post(reverse("staff:user_edit", args=[shared.pk]), {"invite": "1", "invitation_language": "en"})

    assert response.status_code == 302
    assert not mail.outbox
    shared.refresh_from_db()
    assert shared.has_usable_password()
    with pytest.raises(CommandError, match="another staff account uses team@example.com"):
        call_command("invite_staff", "bob", stdout=io.StringIO())
    assert not mail.outbox


@pytest.mark.django_db
def test_a_superusers_role_cannot_be_changed_to_one_it_would_not_hold(client):
    """A superuser is a DPO whatever its groups: 'Saved.', and an audit event saying Handler, would be untrue."""
    root = staff_in_role("DPO", username="root", email="root@example.com", is_superuser=True)
    login_staff(client, root)  # as the demo's dpo, editing its own account (only a superuser edits a superuser)
    fields = {"username": "root", "email": "root@example.com", "is_active": "on"}
    response = client.post(reverse("staff:user_edit", args=[root.pk]), {**fields, "role": "Handler"})
    assert response.status_code == 200
    assert response.context["form"].errors["role"] == [
        "This account is a superuser, which is always a DPO: its role cannot change here."
    ]
    assert not AuditEvent.objects.filter(action="staff_user_saved").exists()
    assert client.post(reverse("staff:user_edit", args=[root.pk]), {**fields, "role": "DPO"}).status_code == 302


SWITCH_OFF_YOURSELF = "You cannot switch off your own account: another DPO can."
DEMOTE_YOURSELF = "You cannot take the DPO role from your own account: another DPO can."
LAST_DPO = "This is the last active DPO account: make another account a DPO first."


def account_fields(user, **changes):
    """The account's fields as its page posts them, "is_active" ticked unless changed."""
    return {"username": user.username, "email": user.email, "role": "DPO", "is_active": "on", **changes}


@pytest.mark.django_db
def test_a_dpo_cannot_switch_off_their_own_account(client):
    """They would be signed out with no way back in, and, the only DPO, leave nobody to manage staff."""
    dpo = staff_in_role("DPO", username="dpo1")
    staff_in_role("DPO", username="dpo2")  # another DPO remains: the refusal is for switching off oneself
    login_staff(client, dpo)

    response = client.post(reverse("staff:user_edit", args=[dpo.pk]), account_fields(dpo, is_active=""))

    assert response.status_code == 200
    assert response.context["form"].errors == {"is_active": [SWITCH_OFF_YOURSELF]}
    assert SWITCH_OFF_YOURSELF in response.content.decode()
    dpo.refresh_from_db()
    assert dpo.is_active
    assert not AuditEvent.objects.filter(action="staff_user_saved").exists()
    assert client.get(reverse("staff:home")).status_code == 200  # still signed in


@pytest.mark.django_db
def test_a_dpo_cannot_take_the_dpo_role_from_themselves(client):
    from requests_app import roles

    dpo = staff_in_role("DPO", username="dpo1")
    staff_in_role("DPO", username="dpo2")
    login_staff(client, dpo)

    response = client.post(reverse("staff:user_edit", args=[dpo.pk]), account_fields(dpo, role="Handler"))

    assert response.status_code == 200
    assert response.context["form"].errors == {"role": [DEMOTE_YOURSELF]}
    assert roles.assigned_role(get_user_model().objects.get(pk=dpo.pk)) == roles.DPO
    assert not AuditEvent.objects.filter(action="staff_user_saved").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("change, field", [({"is_active": ""}, "is_active"), ({"role": "Auditor"}, "role")])
def test_the_last_active_dpo_cannot_be_switched_off_or_demoted(change, field):
    """Whoever does it: here a DPO whom the other switched off while their page was open (an inactive DPO
    counts for nothing). Nobody could manage staff, rules or the inventory but from a shell."""
    from requests_app import roles
    from requests_app.staff.forms import StaffUserForm

    ana = staff_in_role("DPO", username="ana")
    bob = staff_in_role("DPO", username="bob")
    get_user_model().objects.filter(pk=ana.pk).update(is_active=False)

    form = StaffUserForm(account_fields(bob, **change), instance=get_user_model().objects.get(pk=bob.pk), editor=ana)

    assert form.errors == {field: [LAST_DPO]}
    # An active DPO other than bob, if only a superuser outside the DPO group, lets it through.
    UserFactory(username="root", is_superuser=True)
    form = StaffUserForm(account_fields(bob, **change), instance=get_user_model().objects.get(pk=bob.pk), editor=ana)
    assert form.is_valid()
    assert roles.DPO not in [group.name for group in get_user_model().objects.get(username="root").groups.all()]


@pytest.mark.django_db
def test_a_dpo_switches_off_another_dpo_and_keeps_their_own_session(client):
    ana = staff_in_role("DPO", username="ana")
    bob = staff_in_role("DPO", username="bob")
    bob_client = login_staff(Client(), bob)
    login_staff(client, ana)

    response = client.post(reverse("staff:user_edit", args=[bob.pk]), account_fields(bob, is_active=""))

    assert response.status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active
    assert AuditEvent.objects.get(action="staff_user_saved").data["active"] is False
    assert bob_client.get(reverse("staff:home")).url.startswith(reverse("staff:login"))
    assert client.get(reverse("staff:users")).status_code == 200


@pytest.mark.django_db
def test_ending_an_accounts_sessions_spares_the_one_the_request_runs_in():
    """Deleting it under the request would answer a bare 400 (SessionInterrupted) over a change already saved."""
    dpo = staff_in_role("DPO", username="dpo1")
    this_browser = login_staff(Client(), dpo)
    other_browser = login_staff(Client(), dpo)

    assert staff_setup.end_sessions(dpo, keep=this_browser.session.session_key) == 1

    assert this_browser.get(reverse("staff:home")).status_code == 200
    assert other_browser.get(reverse("staff:home")).url.startswith(reverse("staff:login"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_dpos_switching_each_other_off_at_once_leave_one_of_them():
    """Each page, checked alone, sees the other DPO remain: the second check waits for the first save."""
    import threading
    import time

    from django.db import connection, transaction

    from requests_app.staff.forms import StaffUserForm

    users = get_user_model().objects
    ana = staff_in_role("DPO", username="ana")
    bob = staff_in_role("DPO", username="bob")
    ana_checked = threading.Event()
    bobs_page = {}

    def bob_switches_ana_off():
        try:
            ana_checked.wait()
            with transaction.atomic():
                form = StaffUserForm(account_fields(ana, is_active=""), instance=users.get(pk=ana.pk), editor=bob)
                bobs_page["valid"] = form.is_valid()
                if bobs_page["valid"]:
                    form.save()
        finally:
            connection.close()

    bobs_thread = threading.Thread(target=bob_switches_ana_off)
    bobs_thread.start()
    with transaction.atomic():
        form = StaffUserForm(account_fields(bob, is_active=""), instance=users.get(pk=bob.pk), editor=ana)
        assert form.is_valid()
        ana_checked.set()
        time.sleep(0.5)  # bob's check runs meanwhile, and must wait for this save
        form.save()
    bobs_thread.join()

    assert bobs_page["valid"] is False
    assert list(users.filter(is_active=True).values_list("username", flat=True)) == ["ana"]


@pytest.mark.django_db
def test_refused_sign_ins_lockouts_and_sign_outs_are_in_the_trail(client, settings):
    """django-axes forgets an account's failures at its next sign-in: the trail keeps them. It names an account
    only when one exists: what was typed as a username may be a password typed in the wrong box."""
    from requests_app.models import AuditEvent

    staff = staff_in_role("Handler", username="target")
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    sign_in_with_password(client, "target", password="wrong-password")
    sign_in_with_password(client, "correct horse battery", password="wrong-password")
    sign_in_with_password(client, "target")
    client.post(reverse("staff:otp"), {"token": "000000" if current_code(device) != "000000" else "111111"})
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):  # past django-otp's wait after a wrong code
        client.post(reverse("staff:otp"), {"token": current_code(device)})
        client.post(reverse("staff:logout"))
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_with_password(client, "target", password="wrong-password")

    trail = [(e.action, e.actor_label, e.data) for e in AuditEvent.objects.filter(action__startswith="staff_").order_by("sequence")]
    assert trail[:5] == [
        ("staff_sign_in_refused", "system", {"user": "target"}),  # no event for the name of no account
        ("staff_code_refused", "target", {}),
        ("staff_signed_in", "target", {}),
        ("staff_signed_out", "target", {}),
        ("staff_sign_in_refused", "system", {"user": "target"}),
    ]
    assert ("staff_locked_out", "system", {"user": "target"}) in trail
    assert "correct horse battery" not in str(trail)


@pytest.mark.django_db
def test_a_lockout_is_in_the_trail_once_and_attempts_it_refuses_are_not(client, settings):
    """Each event takes the audit chain's lock, which intake and every transition need, and stays for good: a
    guesser who went on at a locked-out account, or at names of no account, would otherwise flood the trail."""
    staff_in_role("DPO", username="dpo")
    for _ in range(12):
        sign_in_with_password(client, "dpo", password="wrong-password")
    for _ in range(15):
        sign_in_with_password(client, "nobody", password="wrong-password")

    trail = [(e.action, e.data) for e in AuditEvent.objects.filter(action__startswith="staff_").order_by("sequence")]
    # Each wrong password checked is there, the one that began the lockout too; and the lockout, once.
    assert trail.count(("staff_sign_in_refused", {"user": "dpo"})) == settings.AXES_FAILURE_LIMIT
    assert trail.count(("staff_locked_out", {"user": "dpo"})) == 1
    assert len(trail) == settings.AXES_FAILURE_LIMIT + 1
    assert sign_in_with_password(client, "dpo").status_code == 429  # the lockout holds all the same


@pytest.mark.django_db
def test_a_lockout_begun_again_after_it_ended_is_in_the_trail_again(client, settings):
    staff_in_role("DPO", username="dpo")
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        sign_in_with_password(client, "dpo", password="wrong-password")
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(minutes=1)):
        for _ in range(settings.AXES_FAILURE_LIMIT + 1):
            sign_in_with_password(client, "dpo", password="wrong-password")

    assert AuditEvent.objects.filter(action="staff_locked_out").count() == 2
    assert AuditEvent.objects.filter(action="staff_sign_in_refused").count() == 2 * settings.AXES_FAILURE_LIMIT
