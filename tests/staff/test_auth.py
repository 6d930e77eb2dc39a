from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app.models import AuditEvent
from tests.conftest import login_staff
from tests.factories import UserFactory, staff_in_role

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


@pytest.mark.django_db
def test_first_sign_in_sets_up_the_authenticator(client):
    handler = staff_in_role("Handler", username="new-handler")
    response = sign_in_with_password(client, "new-handler")
    assert response.url.startswith(reverse("staff:otp"))

    # The password alone opens nothing.
    assert client.get(reverse("staff:home")).url.startswith(reverse("staff:otp"))

    setup = client.get(reverse("staff:otp"))
    assert "Set up your authenticator" in setup.content.decode()
    assert "<svg" in setup.content.decode()
    device = TOTPDevice.objects.get(user=handler)
    assert not device.confirmed

    wrong = client.post(reverse("staff:otp"), {"token": "000000" if current_code(device) != "000000" else "111111"})
    assert "not right" in wrong.content.decode()
    assert client.get(reverse("staff:home")).status_code == 302

    # django-otp throttles a device after a wrong code: the next try must wait.
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        device.refresh_from_db()
        right = client.post(reverse("staff:otp"), {"token": current_code(device)})
        assert right.url == reverse("staff:home")
        device.refresh_from_db()
        assert device.confirmed
        assert client.get(reverse("staff:home")).status_code == 200
    assert AuditEvent.objects.get(action="staff_signed_in").actor == handler


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
def test_redirects_after_sign_in_stay_on_this_site(client):
    dpo = staff_in_role("DPO", username="dpo1")
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    sign_in_with_password(client, "dpo1")
    response = client.post(reverse("staff:otp") + "?next=https://evil.example/", {"token": current_code(device)})
    assert response.url == reverse("staff:home")


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
def test_accounts_without_a_staff_role_are_refused(client):
    plain = UserFactory(username="no-role", is_staff=True)
    login_staff(client, plain)
    assert client.get(reverse("staff:home")).status_code == 403


@pytest.mark.django_db
def test_the_admin_also_requires_the_second_factor(client):
    dpo = UserFactory(username="root", is_superuser=True)
    client.force_login(dpo)
    assert client.get(reverse("admin:index")).status_code == 302
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
def test_the_dpo_can_reset_a_users_authenticator(client):
    dpo = staff_in_role("DPO", username="dpo1")
    handler = staff_in_role("Handler", username="h1")
    TOTPDevice.objects.create(user=handler, name="lost phone", confirmed=True)
    login_staff(client, dpo)
    client.post(reverse("staff:user_edit", args=[handler.pk]), {"reset_2fa": "1"})
    assert not TOTPDevice.objects.filter(user=handler).exists()
    assert AuditEvent.objects.get(action="staff_2fa_reset").data == {"user": "h1"}


@pytest.mark.django_db
def test_the_dpo_creates_a_handler_with_a_role_and_teams(client):
    from requests_app import roles
    from requests_app.models import Team

    dpo = staff_in_role("DPO", username="dpo1")
    team = Team.objects.create(name="Access desk")
    login_staff(client, dpo)
    response = client.post(
        reverse("staff:user_new"),
        {"username": "newbie", "email": "newbie@example.com", "role": "Handler", "teams": [team.pk],
         "password": "a-long-enough-passphrase-42", "is_active": "on"},
    )
    assert response.status_code == 302
    from django.contrib.auth import get_user_model

    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.is_staff and roles.role_of(newbie) == roles.HANDLER
    assert list(newbie.privacy_teams.all()) == [team]
    assert newbie.check_password("a-long-enough-passphrase-42")
