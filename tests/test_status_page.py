import datetime
import html
import re

import pytest
from django.conf import settings
import time_machine
from django.core import mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation

from requests_app import selectors
from requests_app.audit import Actor
from requests_app.services import handling
from requests_app.wording import date_in_words
from requests_app.models import PrivacyRequest, RequestType, Status
from requests_app.services.intake import RightDetails
from requests_app.forms import RequestForm
from tests.factories import erasure_kept_whole, request_in_status, staff_in_role, submit_request


def status_url(request, secret=None):
    return reverse("status", args=[request.reference, secret or request.secret])


@pytest.mark.django_db
def test_status_page_shows_status_next_step_and_timeline(client):
    request = request_in_status(Status.IN_PROGRESS)
    html = client.get(status_url(request)).content.decode()
    assert request.reference in html
    assert "In progress" in html
    assert "We are collecting or changing your data" in html
    assert "We received your request." in html
    assert "You confirmed your email address." in html
    assert "We started working on your request." in html


@pytest.mark.django_db
def test_wrong_secret_is_the_same_404_as_an_unknown_reference(client):
    request = submit_request()
    wrong_secret = client.get(status_url(request, secret="x" * 43))
    unknown = client.get(reverse("status", args=["DSR-2026-99999", request.secret]))
    assert wrong_secret.status_code == unknown.status_code == 404

    def without_the_address_and_token(response) -> str:
        # The language switcher carries the page's own address and a fresh CSRF token.
        return re.sub(r'name="(next|csrfmiddlewaretoken)"[^>]*', "", response.content.decode())

    assert without_the_address_and_token(wrong_secret) == without_the_address_and_token(unknown)


@pytest.mark.django_db
def test_a_wrong_link_gets_a_page_in_the_visitors_language_that_offers_the_link_again(client):
    response = client.get(reverse("status", args=["DSR-2026-99999", "x" * 43]), HTTP_ACCEPT_LANGUAGE="fr")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Page introuvable" in page and reverse("resend_link") in page


@pytest.mark.django_db
def test_an_expired_form_is_explained_in_the_visitors_language():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(reverse("submit"), {}, HTTP_ACCEPT_LANGUAGE="nl")
    assert response.status_code == 403
    assert "Dit formulier is verlopen" in response.content.decode()


@pytest.mark.django_db
def test_no_page_holding_personal_data_is_kept_in_a_cache(client):
    """A shared computer's back button or a proxy must not show the last person's request."""
    request = request_in_status(Status.IN_PROGRESS)
    for response in (client.get(status_url(request)), client.get(reverse("submit")), client.get("/api/v1/ping/")):
        assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


@pytest.mark.django_db
def test_subject_can_withdraw_an_open_request(client):
    request = request_in_status(Status.IN_PROGRESS)
    response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"}, follow=True)
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN
    assert "has been withdrawn" in response.content.decode()
    assert request.events.get(action="withdraw").actor_kind == "subject"


@pytest.mark.django_db
def test_a_withdrawal_tells_the_assignee_to_stop(client, django_capture_on_commit_callbacks):
    handler = staff_in_role("Handler", username="handler1", email="handler1@example.com")
    request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=request.pk).update(assignee=handler, routed_at=timezone.now())
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    (email,) = [sent for sent in mail.outbox if sent.to != [request.subject_email]]  # the subject's confirmation aside
    assert email.to == ["handler1@example.com"]
    assert email.subject == f"Request {request.reference} was withdrawn"
    assert "assigned to you" in email.body and "Stop any work on it" in email.body
    assert request.subject_name not in email.body  # staff emails carry no personal data


@pytest.mark.django_db
def test_a_withdrawal_in_the_queue_unassigned_tells_the_dpo(client, settings, django_capture_on_commit_callbacks):
    request = request_in_status(Status.NEW)
    PrivacyRequest.objects.filter(pk=request.pk).update(routed_at=timezone.now())
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    (email,) = [sent for sent in mail.outbox if sent.to != [request.subject_email]]  # the subject's confirmation aside
    assert email.to == [settings.DPO_EMAIL] and "assigned to nobody" in email.body


@pytest.mark.django_db
def test_a_withdrawal_from_the_status_page_is_confirmed_to_the_subject_in_their_language(
    client, settings, django_capture_on_commit_callbacks
):
    """Anyone the status link reached can withdraw: the subject hears of it, with whom to write to if it was not them."""
    settings.DPO_CONTACT_EMAIL = "dpo@carrier.example"
    request = request_in_status(Status.IN_PROGRESS, language="de")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"}, HTTP_ACCEPT_LANGUAGE="en")

    (email,) = mail.outbox  # not in the team's queue yet: nobody else is told
    request.refresh_from_db()
    assert email.to == [request.subject_email] and request.reference in email.subject
    with translation.override("de"):
        withdrawn_at = date_in_words(request.closed_at, "DATETIME_FORMAT")
    html_body = email.alternatives[0][0]
    for body in (email.body, html_body):
        assert withdrawn_at in body and "über seine Statusseite zurückgezogen" in body  # in German
        assert "dpo@carrier.example" in body and status_url(request) in body
        assert "stellen Sie einen neuen Antrag" in body and "nicht rückgängig" not in body  # nothing was done yet
        assert request.subject_name not in body  # no more personal data than the other subject emails
    assert '<html lang="de">' in html_body
    assert request.events.filter(action="withdraw").count() == 1


@pytest.mark.django_db
def test_withdrawing_a_request_before_it_reached_the_queue_emails_nobody(client, django_capture_on_commit_callbacks):
    request = request_in_status(Status.AWAITING_VERIFICATION)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"})
    request.refresh_from_db()
    assert request.status == Status.WITHDRAWN
    assert mail.outbox == []


@pytest.mark.django_db
def test_withdrawal_needs_the_confirmation_box(client):
    request = request_in_status(Status.NEW)
    response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {})
    request.refresh_from_db()
    assert request.status == Status.NEW
    assert response.status_code == 400


@pytest.mark.django_db
def test_an_unticked_withdrawal_box_gets_its_error_beside_it_as_on_the_request_form(client):
    request = request_in_status(Status.IN_PROGRESS)
    page = client.post(reverse("withdraw", args=[request.reference, request.secret]), {}).content.decode()
    box = re.search(r'<input type="checkbox" name="confirm"[^>]*>', page).group()
    assert 'aria-invalid="true"' in box and 'aria-describedby="withdraw-confirm_error"' in box
    error = '<ul class="errorlist" id="withdraw-confirm_error"><li>Tick the box to confirm that you want to withdraw the request.</li></ul>'
    withdraw_form = page[page.index(f'action="{reverse("withdraw", args=[request.reference, request.secret])}"'):]
    assert error in withdraw_form[:withdraw_form.index("</form>")]
    # The summary takes the focus and links to the box; no message at the top of the page.
    assert '<div class="error-summary" role="alert" tabindex="-1" autofocus>' in withdraw_form
    assert 'href="#withdraw-confirm"' in withdraw_form
    assert 'role="status"' not in page


@pytest.mark.django_db
def test_a_refused_withdrawal_reached_again_by_get_shows_the_status_page(client):
    """The language buttons post back to the page's address, then go to it with a GET."""
    request = request_in_status(Status.IN_PROGRESS)
    response = client.get(reverse("withdraw", args=[request.reference, request.secret]))
    assert response.status_code == 302 and response.url == status_url(request)


@pytest.mark.django_db
def test_an_unticked_withdrawal_of_a_closed_request_says_it_is_closed(client):
    """The page of a closed request has no box to show an error by."""
    request = request_in_status(Status.COMPLETED)
    response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {}, follow=True)
    assert "This request is already closed: there is nothing left to withdraw." in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


@pytest.mark.django_db
def test_a_closed_request_cannot_be_withdrawn(client):
    request = request_in_status(Status.COMPLETED)
    page = client.get(status_url(request)).content.decode()
    assert "Withdraw the request" not in page
    response = client.post(reverse("withdraw", args=[request.reference, request.secret]), {"confirm": "1"}, follow=True)
    assert "This request is already closed: there is nothing left to withdraw." in response.content.decode()
    request.refresh_from_db()
    assert request.status == Status.COMPLETED


@pytest.mark.django_db
def test_withdraw_with_a_wrong_secret_is_a_404(client):
    request = request_in_status(Status.NEW)
    response = client.post(reverse("withdraw", args=[request.reference, "wrong"]), {"confirm": "1"})
    assert response.status_code == 404
    request.refresh_from_db()
    assert request.status == Status.NEW


@pytest.mark.django_db
def test_a_reply_with_line_breaks_counts_them_as_the_browser_does(client):
    """The browser lets 10,000 characters through its maxlength counting a line break as one,
    then sends each as CRLF: the message must be accepted, with its line breaks."""
    request = request_in_status(Status.IN_PROGRESS)
    lines = ["x" * 99] * 100  # 9,900 characters and 99 line breaks: 9,999 in the browser, 10,098 as sent
    response = client.post(reverse("reply", args=[request.reference, request.secret]), {"body": "\r\n".join(lines)})
    assert response.status_code == 302
    assert request.messages.get().body == "\n".join(lines)


@pytest.mark.django_db
def test_a_refused_reply_shows_the_page_again_with_the_text_written(client):
    request = request_in_status(Status.IN_PROGRESS)
    too_long = "My old number was +32475123456. " + "x" * 10_000
    response = client.post(reverse("reply", args=[request.reference, request.secret]), {"body": too_long})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Your reply is too long" in page
    assert f">{too_long}</textarea>" in page
    assert not request.messages.exists()


@pytest.mark.django_db
def test_a_reply_to_a_request_closed_meanwhile_keeps_the_text_written(client):
    """Written in an open tab while the request was completed: the subject sees why, and their text."""
    request = request_in_status(Status.COMPLETED)
    response = client.post(reverse("reply", args=[request.reference, request.secret]), {"body": "My new address is ..."})
    page = response.content.decode()
    assert response.status_code == 400
    assert f"This request is closed, so your message was not added to it. Write to our data protection officer at {settings.DPO_CONTACT_EMAIL}, or submit a new request." in page
    assert ">My new address is ...</textarea>" in page
    assert 'name="body"' not in page  # shown to copy, not to send again
    assert not request.messages.exists()


@pytest.mark.django_db
def test_messages_and_a_replys_error_are_announced_as_lists_with_their_items(client):
    """role="status" or "alert" on a <ul> replaces its list role: a screen reader no longer says "list, 1 item".
    The role is on a wrapper, and the field still points at the element holding the error's text."""
    request = request_in_status(Status.IN_PROGRESS)
    reply_url = reverse("reply", args=[request.reference, request.secret])
    sent = client.post(reply_url, {"body": "Thanks."}, follow=True).content.decode()
    assert re.search(r'<div role="status"><ul class="messages">\s*<li class="success">Thank you', sent)

    refused = client.post(reply_url, {"body": "x" * 10_001}).content.decode()
    assert '<div role="alert"><ul class="errorlist" id="reply-error"><li>Your reply is too long' in refused
    assert 'aria-describedby="reply-error"' in refused
    assert not re.search(r"<ul[^>]*role=", sent + refused)


@pytest.mark.django_db
def test_a_reply_with_a_null_character_is_refused_with_the_text_kept(client):
    request = request_in_status(Status.IN_PROGRESS)
    response = client.post(reverse("reply", args=[request.reference, request.secret]), {"body": "hi\x00there"})
    assert response.status_code == 400
    assert "null character" in response.content.decode()
    assert not request.messages.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/status/DSR%00x/abc/", "/status/DSR-2026-1/abc/", "/staff/requests/DSR%00/"])
def test_a_path_that_holds_no_reference_is_a_404(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.django_db
def test_a_link_from_an_email_opens_in_the_emails_language_unless_the_reader_chose_another(client):
    """The emails are in the request's language; the pages they link to opened in the browser's."""
    request = request_in_status(Status.IN_PROGRESS, language="nl")

    page = client.get(status_url(request), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="nl">' in page and f"Verzoek {request.reference}" in page

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "fr"
    page = client.get(status_url(request), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="fr">' in page and f"Demande {request.reference}" in page


@pytest.mark.django_db
def test_dates_follow_the_pages_language(client):
    import re

    request = request_in_status(Status.IN_PROGRESS)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"  # the reader chose German with the language buttons
    page = client.get(status_url(request)).content.decode()
    german_months = "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember"
    assert re.search(rf"\b{request.due_on.day}\. ({german_months}) {request.due_on.year}\b", page)  # 5. Januar 2027


@pytest.mark.django_db
def test_a_french_page_spaces_the_colon_after_a_messages_date_as_its_history_does(client):
    """French puts a no-break space before a colon: "1 décembre 2026 à 10:25 : Nous avons…"."""
    from requests_app.models import Message

    request = request_in_status(Status.IN_PROGRESS, language="fr")
    Message.objects.create(request=request, direction="to_subject", subject="Nous avons besoin d’un document", body="…")
    page = client.get(status_url(request)).content.decode()
    assert re.search(r'</time>\u00a0: <span lang="fr">Nous avons besoin', page), page
    assert "</time>: " not in page


@pytest.mark.django_db
def test_the_log_line_of_a_refused_subject_link_hides_its_secret(client):
    import io
    import logging

    request = request_in_status(Status.IN_PROGRESS)
    (console,) = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    written = io.StringIO()
    previous = console.setStream(written)
    try:
        response = client.post(reverse("reply", args=[request.reference, request.secret]), {"body": ""})
    finally:
        console.setStream(previous)
    assert response.status_code == 400
    assert f"Bad Request: /status/{request.reference}/[secret]/reply/" in written.getvalue()
    assert request.secret not in written.getvalue()


@pytest.mark.django_db
def test_the_log_line_of_a_refused_verification_link_hides_its_token(client):
    """Mail scanners fetch the link before the subject does: whoever read the line could confirm and take the status page."""
    import io
    import logging

    token = "eyJyIjoxfQ:1uXyZa:sIgNaTuRe"
    (console,) = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    written = io.StringIO()
    previous = console.setStream(written)
    try:
        response = client.post(reverse("verify_email", args=[token]))
    finally:
        console.setStream(previous)
    assert response.status_code == 400
    assert "Bad Request: /verify/[secret]/" in written.getvalue()
    assert token not in written.getvalue()


@pytest.mark.parametrize(
    "prefix",
    [
        "/verify/agent/",  # confirms an agent's authority for the subject; its first segment is a word, not the token
        "/transfer/",  # downloads a portability package sent to another organisation (Art. 20(2))
    ],
)
def test_the_log_line_of_a_token_link_hides_its_token(prefix):
    """Whoever holds one of these links may act with it: a log reader must not get it."""
    import logging

    from privacy_portal.logging import RedactSecretLinks

    token = "eyJyIjo2fQ:1xYKGD:tOkEnSiGnAtUrE"
    path = f"{prefix}{token}/"
    request_line = logging.LogRecord("django.server", logging.INFO, __file__, 1, '"%s" %s %s', (f"GET {path} HTTP/1.1", 200, 5), None)
    bad_request = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Bad Request: %s", (path,), None)
    for record in (request_line, bad_request):
        RedactSecretLinks().filter(record)
        assert token not in record.getMessage()
        assert f"{prefix}[secret]/" in record.getMessage()


def test_a_download_link_in_a_log_line_has_neither_its_secret_nor_its_token():
    """runserver logs every request line, and Django every 410 ("Gone: ..."): the token downloads the package."""
    import logging

    from privacy_portal.logging import RedactSecretLinks

    token = "eyJlIjoiMSJ9:1xYKGD:DQJLsIgNaTuRe"
    path = f"/status/DSR-2026-00014/the-secret/download/{token}/"
    request_line = logging.LogRecord("django.server", logging.INFO, __file__, 1, '"%s" %s %s', (f"GET {path} HTTP/1.1", 200, 5), None)
    gone = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Gone: %s", (path,), None)
    for record in (request_line, gone):
        RedactSecretLinks().filter(record)
        assert token not in record.getMessage()
        assert "the-secret" not in record.getMessage()
        assert "/status/DSR-2026-00014/[secret]/download/[secret]/" in record.getMessage()


def test_every_handler_of_djangos_request_lines_blanks_secrets(settings):
    """Django's default console handler (it writes when DEBUG is on) would print "Bad Request: /status/<ref>/<secret>/"."""
    import logging

    from django.utils.log import configure_logging

    from privacy_portal.logging import RedactSecretLinks

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)  # as at start-up: Django's defaults, then ours
    handlers, logger = [], logging.getLogger("django.request")
    while logger is not None:
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    assert handlers
    for handler in handlers:
        assert any(isinstance(f, RedactSecretLinks) for f in handler.filters), handler


@pytest.mark.django_db
def test_a_purged_request_says_its_personal_data_was_deleted(client):
    from requests_app.services.intake import purge_personal_data
    from tests.conftest import login_staff

    request = request_in_status(Status.COMPLETED)
    with transaction.atomic():
        purge_personal_data(request)
    page = client.get(status_url(request)).content.decode()
    assert "We deleted your personal data from this request on" in page
    login_staff(client, staff_in_role("DPO", username="dpo-purged"))
    staff_page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "The personal data of this request was deleted on" in staff_page


PDF = b"%PDF-1.4\n% a copy of an identity card\n"


def send_document(client, request, name="id-card.pdf", content=PDF, body="Here is my ID, as you asked.", identity_document=False):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"body": body, "document": SimpleUploadedFile(name, content, content_type="application/octet-stream")}
    if identity_document:
        data["identity_document"] = "on"
    return client.post(reverse("reply", args=[request.reference, request.secret]), data)


@pytest.mark.django_db
def test_the_subject_sends_the_document_staff_asked_for_with_their_reply(client):
    """Asked for a copy of an ID, the subject uploads it on the status page; staff who work the request open it."""
    from requests_app.audit import Actor
    from requests_app.services import handling
    from tests.conftest import login_staff

    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS)
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Please send a copy of your ID.", expected_status=Status.IN_PROGRESS)

    assert send_document(client, request).status_code == 302
    request.refresh_from_db()
    assert request.status == Status.IN_PROGRESS  # the reply answered the question
    reply = request.messages.get(direction="from_subject")
    document = reply.attachments.get()
    assert (document.original_name, document.content_type, document.size) == ("id-card.pdf", "application/pdf", len(PDF))
    assert request.events.filter(action="attachment_added", actor_kind="subject").exists()
    assert "Document sent: id-card.pdf" in client.get(status_url(request)).content.decode()

    staff = login_staff(client, dpo)
    page = staff.get(reverse("staff:request", args=[request.reference])).content.decode()
    link = reverse("staff:attachment", args=[document.public_id])
    assert link in page
    assert b"".join(staff.get(link).streaming_content) == PDF


@pytest.mark.django_db
def test_a_deleted_document_shows_as_deleted_on_the_status_page(client):
    """An ID copy is deleted once checked, as the upload help says: the reply shows it went, not its name."""
    from requests_app.audit import Actor
    from requests_app.services import handling

    request = request_in_status(Status.IN_PROGRESS)
    page = html.unescape(client.get(status_url(request)).content.decode())
    assert (
        "We delete a copy of an identity document once we have checked who you are, or when the request closes if that "
        "comes first; any other document we delete with your request's data." in page
    )
    send_document(client, request)
    document = request.attachments.get()
    handling.attachment_delete(attachment=document, actor=Actor.staff(staff_in_role("DPO", username="dpo-deletes")))

    page = html.unescape(client.get(status_url(request)).content.decode())
    assert f"Document sent: we deleted it on {date_in_words(timezone.localdate())}." in page
    assert "id-card.pdf" not in page and "dpo-deletes" not in page


@pytest.mark.django_db
def test_a_copy_of_an_id_sent_as_such_and_verified_by_another_method_is_deleted_as_the_form_promised(client):
    """The QA's case: id.pdf sent, the identity verified by the email link, the request withdrawn: the page said
    "Document sent: id.pdf" until the retention ended."""
    from requests_app.audit import Actor
    from requests_app.models import IdentityKind, VerificationMethod
    from requests_app.services import intake

    request = request_in_status(Status.IDENTITY_CHECK)
    page = html.unescape(client.get(status_url(request)).content.decode())
    assert "This document is a copy of an identity document: delete it once you have checked who I am." in page
    send_document(client, request, name="id.pdf", identity_document=True)
    send_document(client, request, name="bill.pdf", body="And my bill, for the correction.")
    id_copy, bill = request.attachments.order_by("id")
    assert (id_copy.identity_document, bill.identity_document) == (True, False)

    dpo = staff_in_role("DPO", username="dpo-verifies")
    email = request.identities.get(kind=IdentityKind.EMAIL)
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=[email.id], method=VerificationMethod.EMAIL_LINK,
        expected_status=Status.IDENTITY_CHECK,
    )
    intake.request_withdraw(request=request, actor=Actor.subject())

    page = html.unescape(client.get(status_url(request)).content.decode())
    assert "id.pdf" not in page
    assert f"Document sent: we deleted it on {date_in_words(timezone.localdate())}." in page
    assert "Document sent: bill.pdf" in page  # not sent as proof of identity: kept with the request's data


@pytest.mark.django_db
def test_a_refused_document_keeps_its_identity_box_ticked(client):
    request = request_in_status(Status.IN_PROGRESS)
    response = send_document(client, request, name="id.exe", content=b"MZ", identity_document=True)
    assert response.status_code == 400
    assert 'name="identity_document" checked' in response.content.decode()


@pytest.mark.django_db
def test_a_document_alone_is_a_reply(client):
    request = request_in_status(Status.IN_PROGRESS)
    assert send_document(client, request, body="").status_code == 302
    assert request.messages.get().attachments.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("id-card.exe", b"MZ\x90\x00", "Upload a PDF, PNG or JPEG file."),
        ("id-card.pdf", b"<html>not a pdf</html>", "Upload a PDF, PNG or JPEG file."),  # checked by content
    ],
)
def test_a_document_that_is_not_a_pdf_or_image_is_refused_with_the_text_kept(client, name, content, message):
    request = request_in_status(Status.IN_PROGRESS)
    response = send_document(client, request, name=name, content=content)
    page = response.content.decode()
    assert response.status_code == 400 and message in page and ">Here is my ID, as you asked.</textarea>" in page
    assert not request.messages.exists() and not request.attachments.exists()
    # Said of the file, not of the message: a screen reader takes the reader to the file to choose again.
    assert 'name="document" accept=".pdf,.png,.jpg,.jpeg" aria-invalid="true" aria-describedby="reply-error reply-document-help"' in page
    assert "aria-invalid" not in page[page.index('id="reply-body"'):page.index("</textarea>")]


@pytest.mark.django_db
def test_a_document_over_the_size_limit_is_refused(client, settings):
    settings.ATTACHMENT_MAX_BYTES = 1024 * 1024
    request = request_in_status(Status.IN_PROGRESS)
    response = send_document(client, request, content=PDF + b"x" * (1024 * 1024))
    assert response.status_code == 400 and "The file is too large: the limit is 1 MB." in response.content.decode()
    assert not request.attachments.exists()


@pytest.mark.django_db
def test_one_request_takes_ten_documents_at_most(client, settings):
    from requests_app.services.handling import SUBJECT_DOCUMENTS_MAX

    # Not the per-client and per-address limits, which would stop the eleventh first.
    settings.SUBMISSION_RATE_LIMIT = settings.SUBMISSION_EMAIL_RATE_LIMIT = "100/h"
    request = request_in_status(Status.IN_PROGRESS)
    for _ in range(SUBJECT_DOCUMENTS_MAX):
        assert send_document(client, request).status_code == 302
    refused = send_document(client, request)
    assert refused.status_code == 400 and "the most it takes" in refused.content.decode()
    assert request.attachments.count() == SUBJECT_DOCUMENTS_MAX == 10

    # The limit bounds the documents kept: once staff delete one (an ID checked), the subject may send another.
    handling.attachment_delete(attachment=request.attachments.first(), actor=Actor.staff(staff_in_role("DPO")))
    assert send_document(client, request).status_code == 302
    assert request.attachments.filter(deleted_at__isnull=True).count() == SUBJECT_DOCUMENTS_MAX
    assert send_document(client, request).status_code == 400


@pytest.mark.django_db
def test_a_body_larger_than_a_document_is_refused_before_it_is_read(client, settings):
    """Django stores an upload before a view can look at its size: the limit acts on Content-Length."""
    settings.PUBLIC_MAX_BODY_BYTES = 4096
    request = request_in_status(Status.IN_PROGRESS)
    response = send_document(client, request, content=PDF + b"x" * 8192)
    assert response.status_code == 413
    assert "What you sent is too large: a document may be at most 10 MB." in response.content.decode()
    assert not request.messages.exists() and not request.attachments.exists()
    # Answered before the CSRF check: language buttons there would post without a token and be refused.
    assert 'class="languages"' not in response.content.decode()


# How long until the limit frees (views.LimitReached.wait), as a refused reply says it.
STATED_WAIT = r"please wait \d+\xa0(?:hours?|minutes?)(?:, \d+\xa0minutes?)? and try again\."


@pytest.mark.django_db
def test_documents_are_limited_per_client_as_submissions_are(client, settings):
    settings.SUBMISSION_RATE_LIMIT = "2/h"
    request = request_in_status(Status.IN_PROGRESS)
    # A file refused for its format uses up no attempt: a phone's HEIC photo tried twice, then the JPEG.
    assert [send_document(client, request, name="photo.pdf", content=b"<html>").status_code for _ in range(3)] == [400, 400, 400]
    answers = [send_document(client, request) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 3600  # seconds, as the API's 429s say it
    assert request.attachments.count() == 2
    assert client.post(reverse("reply", args=[request.reference, request.secret]), {"body": "Words only."}).status_code == 302


@pytest.mark.django_db
def test_messages_are_limited_per_client_as_submissions_are(client, settings):
    """Each is stored and emailed to the assignee: fifteen in a second were fifteen emails."""
    settings.SUBMISSION_RATE_LIMIT = "2/h"
    request = request_in_status(Status.IN_PROGRESS)
    url = reverse("reply", args=[request.reference, request.secret])
    answers = [client.post(url, {"body": f"Message number {n}"}) for n in range(3)]
    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 3600
    page = answers[-1].content.decode()
    assert re.search(rf"Too many messages sent from here: {STATED_WAIT}", page)  # not "try again later"
    assert ">Message number 2</textarea>" in page
    assert request.messages.count() == 2


@pytest.mark.django_db
def test_messages_and_documents_are_limited_per_the_requests_email_address_from_any_network(client, settings):
    settings.SUBMISSION_EMAIL_RATE_LIMIT = "1/h"
    request = request_in_status(Status.IN_PROGRESS)
    url = reverse("reply", args=[request.reference, request.secret])
    assert client.post(url, {"body": "First"}, REMOTE_ADDR="198.51.100.50").status_code == 302
    refused = client.post(url, {"body": "Second"}, REMOTE_ADDR="203.0.113.50")
    assert refused.status_code == 429
    page = refused.content.decode()
    assert re.search(rf"Too many messages sent for this request in a short time: {STATED_WAIT}", page) and ">Second</textarea>" in page
    assert send_document(client, request).status_code == 302
    refused = send_document(client, request)
    assert refused.status_code == 429
    assert re.search(rf"Too many documents sent for this request in a short time: {STATED_WAIT}", refused.content.decode())
    assert request.messages.count() == 2 and request.attachments.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "label"),
    [
        (Status.AWAITING_SUBJECT, "Waiting for your reply"),
        (Status.IDENTITY_CHECK, "Checking your identity"),
        (Status.IN_PROGRESS, "In progress"),
    ],
)
def test_the_status_is_worded_for_the_subject_not_for_staff(client, status, label):
    request = request_in_status(status)
    page = client.get(f"/status/{request.reference}/{request.secret}/").content.decode()
    assert f"<strong>{label}</strong>" in page
    assert "Awaiting the subject" not in page


@pytest.mark.django_db
def test_the_history_does_not_say_the_same_thing_twice(client):
    """Back to checking identity after answering a question reads as resuming it; a refusal and its
    letter are two different things said once each."""
    from requests_app.audit import Actor
    from requests_app.services import handling

    dpo = staff_in_role("DPO")
    request = request_in_status(Status.IDENTITY_CHECK, subject_email="ana@example.com")
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Send a copy of your ID.", expected_status=Status.IDENTITY_CHECK)
    handling.subject_reply(request=PrivacyRequest.objects.get(pk=request.pk), body="Attached.")
    request.refresh_from_db()
    assert request.status == Status.IDENTITY_CHECK
    texts = [str(text) for _, text in selectors.subject_timeline(request)]
    assert texts.index("We resumed checking your identity.") == texts.index("You sent us a message.") + 1
    assert texts.count("We started checking your identity.") == 1

    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="identity_not_verified",
        explanation="The copy of the ID was unreadable.", expected_status=Status.IDENTITY_CHECK,
    )
    texts = [str(text) for _, text in selectors.subject_timeline(request)]
    assert texts[-2:] == ["We declined your request.", "We sent you a letter explaining our decision."]


@pytest.mark.django_db
def test_the_withdraw_form_leaves_an_unticked_box_to_the_pages_own_message(client):
    """The browser's "required" bubble speaks the browser's language, not the page's."""
    request = request_in_status(Status.IN_PROGRESS)
    page = client.get(f"/status/{request.reference}/{request.secret}/").content.decode()
    assert re.search(r'<form method="post" action="[^"]*/withdraw/" novalidate>', page)
    refused = client.post(f"/status/{request.reference}/{request.secret}/withdraw/", {}, follow=True)
    assert "Tick the box to confirm that you want to withdraw the request." in refused.content.decode()


def received_on(day: datetime.date, status: str = Status.IN_PROGRESS, **overrides) -> PrivacyRequest:
    with time_machine.travel(datetime.datetime.combine(day, datetime.time(10), tzinfo=timezone.get_default_timezone()), tick=False):
        return request_in_status(status, **overrides)


def status_page_on(client, request, day: datetime.date, language: str = "en") -> str:
    with time_machine.travel(datetime.datetime.combine(day, datetime.time(10), tzinfo=timezone.get_default_timezone()), tick=False):
        return html.unescape(client.get(status_url(request), HTTP_ACCEPT_LANGUAGE=language).content.decode())


LATE = "Our answer is late, and we apologise. We are working on your request and will answer as soon as we can."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("regime", "received", "due", "authority"),
    [
        ("gdpr", datetime.date(2026, 10, 12), "12 November 2026", "the Data Protection Authority (Autorité de protection des données"),
        ("ccpa", datetime.date(2026, 9, 1), "1 October 2026", "the California Privacy Protection Agency, cppa.ca.gov, or the "
         "California Attorney General, or the Data Protection Authority (Autorité de protection des données"),
    ],
)
def test_an_overdue_requests_page_says_the_answer_is_late_and_where_to_complain(client, regime, received, due, authority):
    """Art. 12(3): a date already past is no promise; the subject may complain (Art. 77)."""
    request = received_on(received, regime=regime)

    page = status_page_on(client, request, datetime.date(2026, 11, 30))

    assert f"Our answer was due by</dt>\n  <dd>\n    <strong>{due}</strong>" in page
    assert LATE in page
    assert f"You have the right to lodge a complaint with a supervisory authority, in particular {authority}" in page
    assert "We will answer by" not in page


@pytest.mark.django_db
def test_an_overdue_requests_page_in_french_gives_the_french_date_and_authority_and_promises_nothing(client):
    request = received_on(datetime.date(2026, 10, 12), language="fr")

    page = status_page_on(client, request, datetime.date(2026, 11, 30), language="fr")

    assert "<strong>12 novembre 2026</strong>" in page
    assert "l'Autorité de protection des données (APD), rue de la Presse 35, 1000 Bruxelles" in page
    assert "Nous vous répondrons au plus tard le" not in page  # "We will answer by", in French


@pytest.mark.django_db
def test_on_its_due_date_a_request_is_not_late_yet(client):
    request = received_on(datetime.date(2026, 10, 12))

    page = status_page_on(client, request, datetime.date(2026, 11, 12))

    assert "We will answer by</dt>\n  <dd>\n    <strong>12 November 2026</strong>" in page
    assert LATE not in page and "lodge a complaint" not in page


@pytest.mark.django_db
def test_a_paused_request_past_its_stored_date_is_not_called_late(client):
    """Waiting for the subject stopped the clock: the date moves on by the days paused, nothing is late."""
    request = received_on(datetime.date(2026, 10, 12), Status.AWAITING_SUBJECT)
    assert request.clock_paused

    page = status_page_on(client, request, datetime.date(2026, 11, 30))

    assert "We will answer by" in page
    assert "the date moves on by the days it stays paused, and to the next working day" in page
    assert LATE not in page and "lodge a complaint" not in page
    # Not the stored 12 November, a date already past: the one a reply today would give (49 days paused).
    assert "<strong>31 December 2026</strong>" in page


@pytest.mark.django_db
def test_a_clock_paused_by_staff_tells_the_subject_the_request_waits_for_them_and_the_date_a_reply_today_gives(client):
    """Staff paused the clock in an ordinary state (they asked for a document by phone): to the subject, the request
    waits for them, and the date shown is the one it would have if they answered today, not the stored one."""
    from requests_app.audit import Actor
    from requests_app.services.deadlines import clock_pause

    request = received_on(datetime.date(2026, 10, 12))  # in progress, due 12 November
    with time_machine.travel(datetime.datetime(2026, 11, 5, 10, tzinfo=timezone.get_default_timezone()), tick=False):
        clock_pause(request=request, actor=Actor.staff(request.assignee or staff_in_role("DPO")), reason="ID asked by phone")

    page = status_page_on(client, request, datetime.date(2026, 11, 30))

    assert "<dt>Status</dt><dd><strong>Waiting for your reply</strong></dd>" in page
    assert str(selectors.NEXT_STEP_TEXT[Status.AWAITING_SUBJECT]) in page
    assert str(selectors.NEXT_STEP_TEXT[Status.IN_PROGRESS]) not in page
    # 12 November and the 25 days paused so far: 7 December, a Monday.
    assert "We will answer by</dt>\n  <dd>\n    <strong>7 December 2026</strong>" in page
    assert LATE not in page
    assert "ID asked by phone" not in page  # staff's reason is theirs


@pytest.mark.django_db
def test_the_timeline_says_we_asked_before_it_says_we_are_waiting(client):
    from requests_app.audit import Actor
    from requests_app.services.handling import request_information

    request = request_in_status(Status.IN_PROGRESS)
    request_information(
        request=request, actor=Actor.staff(staff_in_role("DPO")), body="Which address?", expected_status=Status.IN_PROGRESS
    )
    events = [str(text) for _at, text in selectors.subject_timeline(request)]
    assert events.index("We asked you for more information.") < events.index("We are waiting for your reply.")


@pytest.mark.django_db
def test_a_request_granted_in_part_says_which_rights_were_refused_and_where_to_complain(client):
    from requests_app.audit import Actor
    from requests_app.models import RequestType
    from requests_app.services import handling
    from requests_app.services.intake import RightDetails
    from tests.factories import erasure_kept_whole, released_package

    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    released_package(request)
    erasure_kept_whole(request)
    handling.request_complete(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-part")), letter="", expected_status=Status.IN_PROGRESS,
        refused=[handling.RightRefusal(RequestType.ERASURE, "legal_obligation", "Telecom law keeps call records 12 months.")],
    )

    page = html.unescape(client.get(status_url(request)).content.decode())
    assert "<li>Access a copy of my data: granted</li>" in page
    assert "<li>Erase my data: refused, our letter explains why</li>" in page
    assert "Your request is complete, but we could not grant all of it; our letter explains why. You may complain" in page
    assert "We completed your request, and declined part of it." in page
    assert "We completed your request." not in page


@pytest.mark.django_db
def test_a_request_with_every_right_refused_says_it_was_answered_and_nothing_granted(client):
    from requests_app.audit import Actor
    from requests_app.models import RequestType
    from requests_app.services import handling
    from requests_app.services.intake import RightDetails

    fraud_checks = RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls")
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ERASURE), fraud_checks])
    erasure_kept_whole(request)
    handling.request_complete(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-all")), letter="", expected_status=Status.IN_PROGRESS,
        refused=[
            handling.RightRefusal(RequestType.ERASURE, "legal_obligation", "Telecom law keeps call records 12 months."),
            handling.RightRefusal(RequestType.OBJECTION, "compelling_grounds", "Fraud checks protect other customers."),
        ],
    )

    page = html.unescape(client.get(status_url(request)).content.decode())
    assert "<li>Erase my data: refused, our letter explains why</li>" in page
    assert "<li>Object to the processing of my data: refused, our letter explains why</li>" in page
    assert ": granted</li>" not in page
    assert (
        "We answered your request, but could not grant any part of it; our letter explains why for each. You may complain "
        "to a supervisory authority and seek a judicial remedy."
    ) in page
    assert "We answered your request, and declined every part of it." in page
    assert "declined part of it" not in page and "we could not grant all of it" not in page
    assert "We completed your request." not in page


@pytest.mark.django_db
def test_a_forwarded_request_says_who_answers_it_and_how_to_reach_them_not_that_it_was_refused(client):
    from requests_app.audit import Actor
    from requests_app.services import handling

    request = request_in_status(Status.IN_PROGRESS)
    handling.request_forward(
        request=request, actor=Actor.staff(staff_in_role("DPO")), controller="Mobile Operator SA",
        contact="privacy@mobile-operator.example\nAvenue du Port 1, 1000 Brussels", expected_status=Status.IN_PROGRESS,
    )

    page = html.unescape(client.get(status_url(request)).content.decode())

    assert "<strong>Forwarded to the controller</strong>" in page
    assert "Mobile Operator SA" in page and "privacy@mobile-operator.example<br>Avenue du Port 1, 1000 Brussels" in page
    assert date_in_words(timezone.localdate()) in page
    assert "we forwarded your request to it. Our letter says how to contact it. You may complain to a supervisory authority" in page
    assert "We forwarded your request to the controller of the data, who will answer you." in page
    assert "We sent you a letter saying whom we forwarded your request to, and how to contact them." in page
    assert "could not grant" not in page and "declined" not in page
    assert 'name="body"' not in page  # closed: no reply form


GIVE_YOUR_DATA_ONLY_TO_YOU = "We are making sure we give your data only to you."
REQUEST_IS_YOURS = "We are making sure that the request is yours before we act on it."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rights", "said", "not_said"),
    [
        ([RightDetails(RequestType.ACCESS)], GIVE_YOUR_DATA_ONLY_TO_YOU, REQUEST_IS_YOURS),
        ([RightDetails(RequestType.ACCESS), RightDetails(RequestType.PORTABILITY)], GIVE_YOUR_DATA_ONLY_TO_YOU, REQUEST_IS_YOURS),
        (
            [RightDetails(RequestType.ERASURE), RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls")],
            REQUEST_IS_YOURS,
            GIVE_YOUR_DATA_ONLY_TO_YOU,
        ),
        ([RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)], REQUEST_IS_YOURS, GIVE_YOUR_DATA_ONLY_TO_YOU),
    ],
)
def test_the_identity_check_says_what_it_protects_for_the_rights_asked(client, rights, said, not_said):
    """An erasure gives the subject no data: what the check makes sure of is that the request is theirs."""
    request = request_in_status(Status.IDENTITY_CHECK, rights=rights)
    page = client.get(status_url(request)).content.decode()
    assert f"{said} We may contact you for proof of identity." in page
    assert not_said not in page


@pytest.mark.django_db
def test_an_extended_identity_check_of_an_erasure_says_the_extension_then_what_the_check_is_for(client):
    request = request_in_status(Status.IDENTITY_CHECK, rights=[RightDetails(RequestType.ERASURE)])
    PrivacyRequest.objects.filter(pk=request.pk).update(
        extended_at=timezone.now(), extension_reason="Many systems", due_on=timezone.localdate() + datetime.timedelta(days=60)
    )
    page = client.get(status_url(request)).content.decode()
    assert f"we will answer by {date_in_words(timezone.localdate() + datetime.timedelta(days=60))}. {REQUEST_IS_YOURS}" in page
    assert "We extended this date because: Many systems.\n" in page  # a sentence, ended as one


TOLD_US = [
    RightDetails(RequestType.ACCESS),
    RightDetails(RequestType.RECTIFICATION, rectification_data="Billing address", rectification_value="Rue Neuve 1\n1000 Brussels"),
    RightDetails(RequestType.RESTRICTION, restriction_ground="accuracy_contested"),
    RightDetails(RequestType.OBJECTION, objection_processing="Profiling for offers", direct_marketing=True),
    RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="The newsletter"),
]


@pytest.mark.django_db
def test_the_status_page_gives_back_what_the_subject_told_us_with_the_forms_own_words(client):
    request = request_in_status(Status.IN_PROGRESS, rights=TOLD_US, description="Also my old address.", signature="Ana P.")
    page = html.unescape(client.get(status_url(request)).content.decode())
    told = page[page.index("<h2>What you told us</h2>"):page.index("<h2>What happens next</h2>")]
    for expected in (
        "<h3>Correct or complete my data</h3>",
        "<dt>Which data is incorrect or incomplete?</dt><dd dir=\"auto\">Billing address</dd>",
        "<dt>What should it say?</dt><dd dir=\"auto\">Rue Neuve 1<br>1000 Brussels</dd>",
        "<dt>Why should the processing be restricted?</dt><dd dir=\"auto\">I contest the accuracy of my data (Art. 18(1)(a))</dd>",
        "<dt>Which processing or purpose do you object to?</dt><dd dir=\"auto\">Profiling for offers</dd>",
        "<p>My objection is to direct marketing (including profiling for it).</p>",
        "<dt>Which consent do you withdraw?</dt><dd dir=\"auto\">The newsletter</dd>",
        "Also my old address.",
        f"You signed the request “<bdi>Ana P.</bdi>” on {date_in_words(request.signed_at)}.",
    ):
        assert expected in told
    assert "<h3>Access a copy of my data</h3>" not in told  # no details: listed under "You asked us to" already


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("regime", "ground"),
    [
        ("gdpr", "I contest the accuracy of my data (Art. 18(1)(a))"),
        ("uk_gdpr", "I contest the accuracy of my data (Art. 18(1)(a))"),
        ("ccpa", "I contest the accuracy of my data"),
        ("lgpd", "I contest the accuracy of my data"),
    ],
)
def test_the_restriction_ground_given_back_cites_the_gdprs_article_only_where_the_subjects_law_numbers_it_so(client, regime, ground):
    rights = [RightDetails(RequestType.RESTRICTION, restriction_ground="accuracy_contested")]
    request = request_in_status(Status.IN_PROGRESS, regime=regime, rights=rights)
    page = html.unescape(client.get(status_url(request)).content.decode())
    assert f"<dt>Why should the processing be restricted?</dt><dd dir=\"auto\">{ground}</dd>" in page
    if regime in ("ccpa", "lgpd"):
        assert "Art. " not in page and "GDPR" not in page


@pytest.mark.django_db
def test_what_the_subject_told_us_is_in_the_requests_language(client):
    request = request_in_status(Status.IN_PROGRESS, rights=TOLD_US[:2], language="fr")
    page = html.unescape(client.get(status_url(request)).content.decode())
    with translation.override("fr"):
        french = str(RequestForm.base_fields["rectification_data"].label)
    assert french != "Which data is incorrect or incomplete?" and f"<dt>{french}</dt>" in page


@pytest.mark.django_db
def test_nothing_of_what_the_subject_told_us_is_shown_once_their_data_is_purged(client):
    from requests_app.services import intake

    request = request_in_status(Status.COMPLETED, rights=TOLD_US, description="Also my old address.")
    intake.purge_personal_data(request)
    page = html.unescape(client.get(status_url(request)).content.decode())
    assert "What you told us" not in page
    # The ground and the box outlive the purge in the database: not on the page.
    for gone in ("I contest the accuracy", "direct marketing (including profiling", "Which consent", "You signed"):
        assert gone not in page
