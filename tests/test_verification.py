import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail, signing
from django.urls import reverse
from django.utils import timezone

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.models import ExportPackage, IdentityKind, PrivacyRequest, Status, VerificationMethod
from requests_app.services.intake import request_resend_link, verification_token
from tests.factories import released_package, request_in_status, submit_request

# Emails are sent by tasks queued on commit, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def link_path_from_last_email() -> str:
    return re.search(r"https?://[^/]+(/verify/[^\s\"]+/)", mail.outbox[-1].body).group(1)


def test_opening_the_link_asks_for_confirmation_and_changes_nothing(client):
    request = submit_request()
    response = client.get(link_path_from_last_email())
    assert response.status_code == 200
    assert "Confirm my request" in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.AWAITING_VERIFICATION


def test_confirming_verifies_the_email_and_opens_the_status_page(client):
    request = submit_request()
    response = client.post(link_path_from_last_email())

    assert response.url == reverse("status", args=[request.reference, request.secret])
    request.refresh_from_db()
    assert request.status == Status.NEW and request.verified_at is not None
    email_identity = request.identities.get(kind=IdentityKind.EMAIL)
    assert email_identity.is_verified
    assert email_identity.verification_method == VerificationMethod.EMAIL_LINK
    assert request.events.filter(action="verify_email", actor_kind="subject").count() == 1
    # The confirmation email carries the status page link.
    assert mail.outbox[-1].subject.endswith("is confirmed")
    assert request.secret in mail.outbox[-1].body


def test_a_used_link_gets_a_clear_page_and_changes_nothing(client):
    request = submit_request()
    path = link_path_from_last_email()
    client.post(path)
    events = request.events.count()

    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 400
        assert "already been used" in response.content.decode()
    assert request.events.count() == events


@pytest.mark.parametrize(
    ("close", "closed_status", "says"),
    [
        ("expire", Status.EXPIRED, "not confirmed in time. Please send a new request."),
        ("withdraw", Status.WITHDRAWN, "withdrawn before it was confirmed"),
    ],
)
def test_a_link_to_a_request_closed_unconfirmed_says_so_and_offers_the_form(client, close, closed_status, says):
    request = submit_request()
    path = link_path_from_last_email()
    lifecycle.transition(request, close, actor=Actor.system())

    response = client.post(path)
    page = response.content.decode()
    assert response.status_code == 400
    assert says in page and "already been used" not in page
    assert f'href="{reverse("submit")}"' in page and "Ask for a new link" not in page
    request.refresh_from_db()
    assert request.status == closed_status


def test_a_used_or_replaced_link_answers_in_the_requests_language_not_the_browsers(client, settings):
    """As a link that still works does: the page comes from the request's email, in the request's language."""
    request = submit_request(language="de")
    replaced = link_path_from_last_email()
    request_resend_link(reference=request.reference, email=request.subject_email)
    used = link_path_from_last_email()
    for method in (client.get, client.post):
        page = method(replaced, HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "Dieser Link wurde durch einen neueren ersetzt." in page and '<html lang="de"' in page

    client.post(used)
    for method in (client.get, client.post):
        page = method(used, HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "Dieser Link wurde bereits verwendet. Ihr Antrag ist bestätigt." in page and '<html lang="de"' in page

    # A language the reader picked with the language buttons wins, as on every page the emails link to.
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert "This link has already been used." in client.get(used, HTTP_ACCEPT_LANGUAGE="de").content.decode()


def test_a_link_to_a_request_closed_unconfirmed_answers_in_the_requests_language(client):
    request = submit_request(language="fr")
    path = link_path_from_last_email()
    lifecycle.transition(request, "withdraw", actor=Actor.system())

    page = client.get(path, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Cette demande a été retirée avant d&#x27;être confirmée." in page


def test_a_link_that_names_no_request_answers_in_the_browsers_language(client):
    submit_request(language="de")
    page = client.get(reverse("verify_email", args=["garbage"]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "est pas valide" in page and '<html lang="fr"' in page


def test_a_tampered_link_is_refused(client):
    request = submit_request()
    token = verification_token(request)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for candidate in (tampered, "garbage", signing.dumps({"r": str(request.public_id)}, salt="other")):
        response = client.post(reverse("verify_email", args=[candidate]))
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.AWAITING_VERIFICATION


def test_an_expired_link_is_refused(client, settings):
    settings.VERIFICATION_LINK_MAX_AGE = timedelta(hours=48)
    request = submit_request()
    path = link_path_from_last_email()
    with time_machine.travel(timedelta(hours=49)):
        response = client.post(path)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.AWAITING_VERIFICATION


def test_resending_replaces_the_old_link(client):
    request = submit_request(subject_email="ana@example.com")
    old_path = link_path_from_last_email()

    response = client.post(reverse("resend_link"), {"reference": request.reference.lower(), "email": "ANA@example.com"})
    assert response.status_code == 200
    assert len(mail.outbox) == 2
    new_path = link_path_from_last_email()
    assert new_path != old_path

    refused = client.post(old_path)
    assert "replaced by a newer one" in refused.content.decode()
    client.post(new_path)
    assert PrivacyRequest.objects.get().status == Status.NEW


def _without_csrf_tokens(content: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b'name="csrfmiddlewaretoken"', content)


def test_resend_gives_the_same_answer_for_unknown_details(client):
    request = submit_request()
    known = client.post(reverse("resend_link"), {"reference": request.reference, "email": "ana@example.com"})
    unknown = client.post(reverse("resend_link"), {"reference": "DSR-2026-99999", "email": "x@example.com"})
    # Byte for byte, but for the CSRF token of the language switcher, masked afresh in every response.
    assert _without_csrf_tokens(known.content) == _without_csrf_tokens(unknown.content)
    assert len(mail.outbox) == 2  # the first link and one re-send, none for the unknown details


def test_resending_is_rate_limited_and_keeps_what_was_typed(client, settings):
    settings.SUBMISSION_RATE_LIMIT = "1/h"
    request = submit_request()
    details = {"reference": request.reference, "email": "ana@example.com"}
    assert client.post(reverse("resend_link"), details, REMOTE_ADDR="198.51.100.20").status_code == 200
    limited = client.post(reverse("resend_link"), details, REMOTE_ADDR="198.51.100.20")
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 3600
    assert "Too many requests" in limited.content.decode() and f'value="{request.reference}"' in limited.content.decode()
    assert len(mail.outbox) == 2  # the first link and one re-send


def test_resending_is_limited_per_email_address_from_any_network(client, settings):
    settings.SUBMISSION_EMAIL_RATE_LIMIT = "1/min"
    request = submit_request()
    details = {"reference": request.reference, "email": "ana@example.com"}
    assert client.post(reverse("resend_link"), details, REMOTE_ADDR="198.51.100.21").status_code == 200
    limited = client.post(reverse("resend_link"), {**details, "email": "Ana@Example.com"}, REMOTE_ADDR="203.0.113.21")
    assert limited.status_code == 429
    # The same refusal as the form's, with the deployment's wait (a minute here), not "an hour".
    assert (
        "We have received many submissions for this email address in a short time. Please wait 1\xa0minute and try again"
        in limited.content.decode()
    )
    assert f'value="{request.reference}"' in limited.content.decode()
    assert len(mail.outbox) == 2  # the first link and one re-send


def test_a_confirmed_request_gets_its_status_link_again(client):
    request = submit_request(subject_email="ana@example.com", language="fr")
    from requests_app.services.intake import request_verify_email

    request_verify_email(token=verification_token(request))
    mail.outbox.clear()
    response = client.post(reverse("resend_link"), {"reference": request.reference, "email": "Ana@Example.com"})
    assert response.status_code == 200
    (email,) = mail.outbox
    assert email.to == ["ana@example.com"]
    assert email.subject == f"Le lien vers votre demande {request.reference}"  # in the subject's language
    old_secret = request.secret
    request.refresh_from_db()
    new_secret = request.pending_secret
    assert new_secret != old_secret and f"/status/{request.reference}/{new_secret}/" in email.body
    # Until the new link is opened the old one works: whoever asked for it cannot end the subject's page.
    assert client.get(reverse("status", args=[request.reference, old_secret])).status_code == 200
    assert request.status == Status.NEW  # nothing else changed
    assert request.events.filter(action="status_link_resent", actor_kind="subject").count() == 1
    status_page = client.get(reverse("status", args=[request.reference, new_secret])).content.decode()
    assert "Nous vous avons renvoyé le lien vers cette page." in status_page  # in the email's language, the request's
    # Opened, the new link replaces the old one: asking again takes back a page an old email gave away.
    assert f"/status/{request.reference}/{new_secret}/withdraw/" in status_page  # the page's own forms use it
    assert client.get(reverse("status", args=[request.reference, old_secret])).status_code == 404
    assert client.get(reverse("status", args=[request.reference, new_secret])).status_code == 200
    request.refresh_from_db()
    assert (request.secret, request.pending_secret) == (new_secret, "")


def test_only_the_newest_link_sent_again_replaces_the_old_one(client):
    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    old_secret = request.secret
    ask = {"reference": request.reference, "email": "ana@example.com"}
    client.post(reverse("resend_link"), ask)
    request.refresh_from_db()
    first_sent = request.pending_secret
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        client.post(reverse("resend_link"), ask)
    request.refresh_from_db()
    newest = request.pending_secret
    assert newest not in ("", first_sent)
    # The link of the first email was never opened and is not the newest: it opens nothing, and ends nothing.
    assert client.get(reverse("status", args=[request.reference, first_sent])).status_code == 404
    assert client.get(reverse("status", args=[request.reference, old_secret])).status_code == 200
    assert client.get(reverse("status", args=[request.reference, newest])).status_code == 200
    assert client.get(reverse("status", args=[request.reference, old_secret])).status_code == 404


def test_an_email_sent_before_the_new_link_is_opened_carries_the_new_link(client):
    """The subject asked at 10:00; the DPO wrote at 11:00; the subject opened the 10:00 email at 12:00. Had the
    11:00 email carried the old link, that opening would have ended it: the newest email's link a 404."""
    from requests_app import emails

    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    client.post(reverse("resend_link"), {"reference": request.reference, "email": "ana@example.com"})
    request.refresh_from_db()
    new_secret = request.pending_secret
    mail.outbox.clear()
    emails.send_extension_email(request)  # any email to the subject that links to the page
    (email,) = mail.outbox
    assert f"/status/{request.reference}/{new_secret}/" in email.body
    assert client.get(reverse("status", args=[request.reference, new_secret])).status_code == 200
    assert request.events.filter(action="status_link_replaced", actor_kind="subject").count() == 1
    client.get(reverse("status", args=[request.reference, new_secret]))  # opened again: nothing more to record
    assert request.events.filter(action="status_link_replaced").count() == 1


def test_a_status_link_sent_again_and_delivered_twice_carries_the_link_in_force(client):
    """A redelivered task writes again after the new link was opened: it sends the link that works."""
    from requests_app import emails

    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    client.post(reverse("resend_link"), {"reference": request.reference, "email": "ana@example.com"})
    request.refresh_from_db()
    new_secret = request.pending_secret
    client.get(reverse("status", args=[request.reference, new_secret]))
    request.refresh_from_db()
    mail.outbox.clear()
    event = request.events.get(action="status_link_resent")
    emails.send_status_link_email(request, event.sequence + 1000)  # another asking's key: not deduplicated
    (email,) = mail.outbox
    assert f"/status/{request.reference}/{new_secret}/" in email.body


@pytest.mark.parametrize(
    ("status", "with_data", "says"),
    [
        (Status.WITHDRAWN, False, "The request was withdrawn. Its page shows what we did before then"),
        (Status.REJECTED, False, "We could not grant the request. Read our letter, which explains why, at:"),
        (Status.FORWARDED, False, "We forwarded the request to the controller of the data it concerns, who will answer you."),
        (Status.EXPIRED, False, "The request expired because the email address was never confirmed"),
        (Status.COMPLETED, False, "The request is complete. Read our answer and letters at:"),
        (Status.COMPLETED, True, "The request is complete. Read our answer and letters, and download the data we released to you, at:"),
    ],
)
def test_the_link_sent_again_for_a_closed_request_says_what_happened_to_it(client, status, with_data, says):
    """A closed request's page can only be read: the email must not warn that the link withdraws it, nor offer
    an answer or data that were never given (a withdrawn request got neither)."""
    import html

    request = request_in_status(status, subject_email="ana@example.com")
    if with_data:
        package = released_package(request)
        ExportPackage.objects.filter(pk=package.pk).update(expires_at=timezone.now() + timedelta(days=1))
    mail.outbox.clear()
    client.post(reverse("resend_link"), {"reference": request.reference, "email": "ana@example.com"})
    (email,) = mail.outbox
    request.refresh_from_db()
    assert f"/status/{request.reference}/{request.pending_secret}/" in email.body
    for body in (email.body, html.unescape(email.alternatives[0][0])):
        assert "Once you open this link, the earlier ones stop working." in body
        assert says in body
        assert ("download" in body) == with_data
        assert "withdraw it" not in body and "withdraw the request" not in body


def test_the_link_sent_again_for_an_open_request_warns_it_can_withdraw_it(client):
    import html

    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    mail.outbox.clear()
    client.post(reverse("resend_link"), {"reference": request.reference, "email": "ana@example.com"})
    (email,) = mail.outbox
    for body in (email.body, html.unescape(email.alternatives[0][0])):
        assert "download your data and withdraw the request." in body


def test_a_link_is_sent_again_at_most_every_ten_minutes_and_five_times_a_day(client):
    request = submit_request(subject_email="ana@example.com")
    mail.outbox.clear()
    ask = {"reference": request.reference, "email": "ana@example.com"}
    client.post(reverse("resend_link"), ask)
    client.post(reverse("resend_link"), ask)  # a minute later, say: nothing
    assert len(mail.outbox) == 1
    for minutes in (11, 22, 33, 44, 55):
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes)):
            client.post(reverse("resend_link"), ask)
    assert len(mail.outbox) == 5  # the sixth of the day is refused
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        client.post(reverse("resend_link"), ask)
    assert len(mail.outbox) == 6


def test_no_link_goes_to_another_address_or_for_a_purged_request(client):
    request = submit_request(subject_email="ana@example.com")
    from requests_app.services.intake import request_verify_email

    request_verify_email(token=verification_token(request))
    mail.outbox.clear()
    request_resend_link(reference=request.reference, email="eve@example.com")
    PrivacyRequest.objects.filter(pk=request.pk).update(subject_email="")  # purged
    request_resend_link(reference=request.reference, email="")
    assert mail.outbox == []
    assert not request.events.filter(action__in=["status_link_resent", "verification_resent"]).exists()


def test_a_link_sent_again_near_the_end_of_the_unconfirmed_week_works_as_long_as_its_email_says(client, settings):
    """Asked for on the request's seventh day, the link's 48 hours outlast the week an unconfirmed request is kept:
    the request waits for it, and expires once it has expired unused."""
    from requests_app.services.intake import expire_unverified_requests

    settings.UNVERIFIED_REQUEST_EXPIRY = timedelta(days=7)
    settings.VERIFICATION_LINK_MAX_AGE = timedelta(hours=48)
    filed_at = timezone.now()
    used, unused = submit_request(subject_email="ana@example.com"), submit_request(subject_email="bob@example.com")
    with time_machine.travel(filed_at + timedelta(days=6, hours=12)):
        paths = {}
        for request in (used, unused):
            request_resend_link(reference=request.reference, email=request.subject_email)
            assert "expires in 48 hours" in mail.outbox[-1].body
            paths[request] = link_path_from_last_email()

    with time_machine.travel(filed_at + timedelta(days=7, hours=7)):  # past the week: still open
        assert expire_unverified_requests() == 0
    with time_machine.travel(filed_at + timedelta(days=8, hours=11, minutes=59)):  # the link's last minute
        assert expire_unverified_requests() == 0
        assert client.post(paths[used]).status_code == 302
    with time_machine.travel(filed_at + timedelta(days=8, hours=12, minutes=1)):
        assert expire_unverified_requests() == 1

    used.refresh_from_db()
    unused.refresh_from_db()
    assert (used.status, unused.status) == (Status.NEW, Status.EXPIRED)
    assert unused.subject_email == ""
