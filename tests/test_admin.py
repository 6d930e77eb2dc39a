import html
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from requests_app.models import AuditEvent, PrivacyRequest, Status
from tests.factories import UserFactory, request_in_status, submit_request
from tests.conftest import login_staff
from tests.test_public_form import VALID

PDF = b"%PDF-1.4\n% scanned letter\n"


def intake_data(**changes):
    data = {
        **VALID,
        "channel": "post",
        "received_at": (timezone.localtime() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
    }
    data.pop("website")
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def admin_client(client, staff_user):
    return login_staff(client, staff_user)


@pytest.mark.django_db
def test_staff_record_a_posted_request_with_its_scanned_letter(admin_client, staff_user):
    letter = SimpleUploadedFile("letter.pdf", PDF, content_type="application/pdf")
    response = admin_client.post(reverse("admin:requests_app_intake"), {**intake_data(), "scanned_letter": letter})

    request = PrivacyRequest.objects.get()
    assert response.status_code == 302
    assert (request.channel, request.status) == ("post", Status.NEW)
    assert request.received_at < timezone.now() - timedelta(days=1)
    # The letter was signed and received days ago, not when staff recorded it: its status page says so too.
    assert request.signed_at == request.received_at
    from requests_app.selectors import subject_timeline

    assert subject_timeline(request)[0] == (request.received_at, "We received your request.")
    attachment = request.attachments.get()
    assert (attachment.original_name, attachment.content_type, attachment.size) == ("letter.pdf", "application/pdf", len(PDF))
    assert "letter" not in attachment.file.name  # stored under an opaque name
    assert set(request.events.values_list("action", flat=True)) == {"submitted", "attachment_added"}
    assert request.events.get(action="submitted").actor_id == staff_user.id

    download = admin_client.get(reverse("staff:attachment", args=[attachment.public_id]))
    assert b"".join(download.streaming_content) == PDF
    downloaded = request.events.get(action="attachment_downloaded")  # who saw the letter is on record
    assert (downloaded.actor_id, downloaded.data) == (staff_user.id, {"attachment": str(attachment.public_id)})


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimpleUploadedFile("letter.pdf", b"MZ\x90\x00 not a pdf"), "Upload a PDF, PNG or JPEG"),
        (SimpleUploadedFile("letter.exe", PDF), "Upload a PDF, PNG or JPEG"),
        (SimpleUploadedFile("big.pdf", PDF + b"0" * 2048), "too large"),
    ],
)
@pytest.mark.django_db
def test_bad_attachments_are_refused(admin_client, settings, upload, message):
    settings.ATTACHMENT_MAX_BYTES = 1024
    response = admin_client.post(reverse("admin:requests_app_intake"), {**intake_data(), "scanned_letter": upload})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_page_sent_back_with_errors_asks_for_the_scanned_letter_again(admin_client):
    """The browser empties the file field: the request was recorded without its letter once the date was fixed."""
    future = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    letter = SimpleUploadedFile("letter.pdf", PDF, content_type="application/pdf")
    response = admin_client.post(reverse("admin:requests_app_intake"), {**intake_data(received_at=future), "scanned_letter": letter})
    assert response.status_code == 200 and PrivacyRequest.objects.count() == 0
    assert response.context["form"].errors["scanned_letter"] == [
        "Choose the file again: a page sent back with errors cannot keep a file you chose."
    ]


@pytest.mark.django_db
def test_a_future_received_date_is_a_field_error(admin_client):
    future = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(received_at=future))
    assert "cannot be in the future" in response.content.decode()
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_a_time_in_the_hour_the_clocks_go_back_is_read_as_its_first_occurrence(admin_client):
    """25 October 2026, 02:30 came twice in Brussels: the first (summer time) is the earlier receipt."""
    import datetime

    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(received_at="2026-10-25T02:30"))
    assert response.status_code == 302
    assert PrivacyRequest.objects.get().received_at == datetime.datetime(2026, 10, 25, 0, 30, tzinfo=datetime.UTC)


@pytest.mark.django_db
def test_a_repeated_hour_typed_in_the_languages_own_format_is_read_too(admin_client):
    """Django also takes "25/10/2026 02:30" (the English and French formats): not a 500."""
    import datetime

    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(received_at="2026-10-25 02:30"))
    assert response.status_code == 302
    assert PrivacyRequest.objects.get().received_at == datetime.datetime(2026, 10, 25, 0, 30, tzinfo=datetime.UTC)


@pytest.mark.django_db
def test_a_manual_source_is_added_in_the_admin_with_its_category_inline(admin_client):
    """The dashboard's category form runs on the inline, whose source is not saved yet: not a 500."""
    from requests_app.models import SourceSystem

    data = {
        "name": "Paper files", "slug": "paper", "connector": "manual", "identity_kind": "email", "active": "on",
        "owner": "", "purposes": "Archive", "legal_basis": "contract", "retention": "5 years", "origin": "You",
        "categories-TOTAL_FORMS": "1", "categories-INITIAL_FORMS": "0", "categories-MIN_NUM_FORMS": "0",
        "categories-MAX_NUM_FORMS": "1000", "categories-0-slug": "letters", "categories-0-category": "other",
        "categories-0-query": "", "categories-0-erase_method": "delete",
        **{f"{prefix}-{field}": value for prefix in ("recipients", "legal_holds")
           for field, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"), ("MIN_NUM_FORMS", "0"), ("MAX_NUM_FORMS", "1000"))},
    }
    response = admin_client.post(reverse("admin:requests_app_sourcesystem_add"), data)
    assert response.status_code in (200, 302)  # saved, or the form again with its errors (the owner is required)
    assert response.status_code == 302 or "errornote" in response.content.decode()
    assert SourceSystem.objects.filter(slug="paper").count() == (1 if response.status_code == 302 else 0)


@pytest.mark.django_db
def test_a_time_in_the_hour_the_clocks_go_forward_is_refused_as_one_that_did_not_exist(admin_client):
    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(received_at="2026-03-29T02:30"))
    assert response.status_code == 200
    assert response.context["form"].errors["received_at"] == [
        "No such time here: the clocks went forward an hour then. Check the time and type it again."
    ]
    assert not PrivacyRequest.objects.exists()


def intake_form_as_shown(admin_client, **changes):
    """The intake form filled in on a page as the admin shows it, with that page's submission key."""
    page = admin_client.get(reverse("admin:requests_app_intake")).content.decode()
    key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', page).group(1)
    return intake_data(submission_key=key, **changes)


@pytest.mark.django_db
def test_the_intake_form_sent_twice_records_one_request_and_confirms_it_once(
    admin_client, mailoutbox, django_capture_on_commit_callbacks
):
    """A double click, Back then Send, a proxy's retry: one reference, one confirmation, one deadline."""
    data = intake_form_as_shown(admin_client)
    with django_capture_on_commit_callbacks(execute=True):
        first = admin_client.post(reverse("admin:requests_app_intake"), data)
        again = admin_client.post(reverse("admin:requests_app_intake"), data)

    request = PrivacyRequest.objects.get()
    assert first.url == again.url == reverse("admin:requests_app_privacyrequest_change", args=[request.pk])
    # The subject's confirmation and the assignment to the handler, once each.
    assert len(mailoutbox) == 2 and [message.to for message in mailoutbox].count([request.subject_email]) == 1
    shown = admin_client.get(again.url).content.decode()
    assert f"You had sent this form already: we did not record request {request.reference} a second time." in shown


@pytest.mark.django_db
def test_the_intake_form_sent_again_while_the_first_is_being_recorded_lands_on_it_too(admin_client, monkeypatch):
    """Both sendings passed the form's check before either was stored: the unique key stops the second."""
    from requests_app.forms import StaffIntakeForm

    data = intake_form_as_shown(admin_client)
    admin_client.post(reverse("admin:requests_app_intake"), data)
    monkeypatch.setattr(StaffIntakeForm, "request_filed_already", lambda form: None)

    again = admin_client.post(reverse("admin:requests_app_intake"), data)

    request = PrivacyRequest.objects.get()
    assert again.url == reverse("admin:requests_app_privacyrequest_change", args=[request.pk])
    assert "You had sent this form already" in admin_client.get(again.url).content.decode()


@pytest.mark.django_db
def test_an_intake_page_brought_back_and_corrected_or_sent_without_its_key_records_another_request(admin_client):
    """As on the public form: the key stands for the details it was first sent with, and a page that carries
    none (opened before it did) records its request as before."""
    data = intake_form_as_shown(admin_client)
    admin_client.post(reverse("admin:requests_app_intake"), data)

    corrected = admin_client.post(reverse("admin:requests_app_intake"), {**data, "subject_name": "Piet Peeters"})

    assert PrivacyRequest.objects.count() == 2
    other = PrivacyRequest.objects.get(subject_name="Piet Peeters")
    assert corrected.url == reverse("admin:requests_app_privacyrequest_change", args=[other.pk])
    assert other.submission_key is None
    admin_client.post(reverse("admin:requests_app_intake"), intake_data())
    assert PrivacyRequest.objects.count() == 3


@pytest.mark.django_db
def test_staff_choose_how_the_subject_is_related_to_us_as_the_subject_does(admin_client):
    """The intake shares the public form's question, with no answer chosen in advance ("Other" when the letter does
    not say)."""
    page = admin_client.get(reverse("admin:requests_app_intake")).content.decode()
    assert '<option value="" selected>Choose…</option>' in page
    # Staff record what the subject wrote: the questions speak of the subject, not to them.
    assert "How is the subject related to us?" in page and "Where does the subject live?" in page
    assert "How are you, or the person you are acting for, related to us?" not in page and "What would you like us to do?" not in page
    # The rights and grounds too: "Access a copy of my data" read as a quote.
    assert "Access a copy of their data" in page and "The subject contests the accuracy of their data (Art. 18(1)(a))" in page
    assert "of my data" not in page and "I contest" not in page
    assert "The subject&#x27;s customer account reference (optional)" in page

    no_language = admin_client.post(reverse("admin:requests_app_intake"), intake_data(language=""))
    assert no_language.context["form"].errors["language"] == ["Choose the language the subject wrote in."]

    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(relationship=None))

    assert response.status_code == 200
    assert "Choose how the subject is related to us." in response.content.decode()
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_the_intakes_errors_speak_of_the_subject_too(admin_client, client):
    sent = admin_client.post(
        reverse("admin:requests_app_intake"),
        intake_data(
            rights=["rectification", "objection"], rectification_data=None, rectification_value=None, confirm=None,
            customer_reference="--",
        ),
    )
    page = html.unescape(sent.content.decode())
    for said in (
        "Say which data the subject says is incorrect or incomplete.",
        "Say what the subject says it should say.",
        "Say which processing or purpose the subject objects to.",
        "Tick the box once you have checked these details against the original request.",
        "enter it as the subject's contract or invoice shows it",
    ):
        assert said in page, said
    assert "Tell us" not in page and "your contract" not in page and not PrivacyRequest.objects.exists()
    # The public form still speaks to the subject.
    public = html.unescape(client.post(reverse("submit"), {**VALID, "rights": ["objection"], "confirm": ""}).content.decode())
    assert "Tell us which processing or purpose you object to." in public
    assert "Please confirm before sending the request." in public


@pytest.mark.django_db
def test_an_intake_form_with_a_forged_submission_key_is_refused(admin_client):
    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(submission_key="not-a-key"))

    assert response.status_code == 200
    assert "Submission key: Enter a valid UUID." in response.content.decode()
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_the_intake_page_speaks_the_staff_members_language(admin_client):
    page = admin_client.get(reverse("admin:requests_app_intake"), HTTP_ACCEPT_LANGUAGE="nl").content.decode()
    assert "Een verzoek registreren dat per e-mail, post of telefoon binnenkwam" in page
    assert 'value="Het verzoek registreren"' in page and "Waar woont de betrokkene?" in page
    # The subject's language is chosen for each letter, not preset to the one the staff member reads the page in.
    language = re.search(r'<select name="language"[^>]*>.*?</select>', page, re.S).group(0)
    assert '<option value="" selected>' in language and "data-follows-page-language" not in language
    refused = admin_client.post(reverse("admin:requests_app_intake"), intake_data(language=None), HTTP_ACCEPT_LANGUAGE="nl")
    assert refused.status_code == 200 and not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_the_intake_page_loads_the_double_click_guard(admin_client):
    """The site's forms.js: a second click while the form is on its way is not sent."""
    page = admin_client.get(reverse("admin:requests_app_intake")).content.decode()
    assert re.search(r'<script src="/static/requests_app/forms\.js[^"]*" defer>', page)


@pytest.mark.django_db
def test_add_goes_to_intake(admin_client):
    response = admin_client.get(reverse("admin:requests_app_privacyrequest_add"))
    assert response.url == reverse("admin:requests_app_intake")


@pytest.mark.django_db
def test_changelist_searches_by_reference_only(admin_client):
    """A search is in the URL (?q=): no email address or phone number may go there."""
    ana = submit_request(subject_email="ana@example.com")
    submit_request(subject_email="bob@example.com")
    url = reverse("admin:requests_app_privacyrequest_changelist")

    by_email = admin_client.get(url, {"q": "bob@example.com"}).context["cl"].queryset
    by_reference = admin_client.get(url, {"q": ana.reference}).context["cl"].queryset
    assert list(by_email) == []
    assert list(by_reference) == [ana]


@pytest.mark.parametrize("role", ["Handler", "Auditor", "DPO"])
@pytest.mark.django_db
def test_the_lists_filter_only_as_their_page_offers_so_no_hidden_field_can_be_guessed_from_a_count(client, role):
    """A filter on a field the page never shows (?secret__startswith=Ab) counted the requests whose status link's
    secret starts so: a Handler could learn any subject's link a character at a time, and act as the subject."""
    from requests_app.models import ExportPackage
    from tests.factories import staff_in_role

    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    ExportPackage.objects.create(request=request, kind="access", pending_password="S3cretPw", encrypted=True)
    login_staff(client, staff_in_role(role, username=f"{role.lower()}-lists"))
    requests = reverse("admin:requests_app_privacyrequest_changelist")
    packages = reverse("admin:requests_app_exportpackage_changelist")
    for guess in (
        {"secret__startswith": request.secret[:2]},
        {"pending_secret": ""},
        {"verification_nonce__startswith": request.verification_nonce[:2]},
        {"subject_email__icontains": "ana"},
        {"reference": request.reference},
        {"rights__request__secret__startswith": request.secret[:2]},
    ):
        assert client.get(requests, guess).status_code == 400, guess
    if role != "Handler":  # the package list is the DPO's and the auditor's
        assert client.get(packages, {"pending_password__startswith": "S3c"}).status_code == 400
        assert client.get(packages, {"status__exact": "queued"}).status_code == 200
    # What the page offers still filters.
    offered = client.get(requests, {"status__exact": Status.IN_PROGRESS, "rights__right__exact": "access"})
    assert offered.status_code == 200
    assert list(offered.context["cl"].queryset) == [request]
    assert client.get(requests, {"status__exact": Status.NEW}).context["cl"].result_count == 0
    year = request.received_at.year
    assert client.get(requests, {"received_at__year": year}).context["cl"].result_count == 1


@pytest.mark.django_db
def test_the_admin_names_the_apps_models_in_the_staff_members_language(admin_client):
    index = admin_client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Demandes relatives aux données personnelles" in index
    assert "Requests_App" not in index  # what Django makes of the app label by itself


@pytest.mark.django_db
def test_request_page_shows_the_audit_trail_and_edits_nothing(admin_client):
    request = request_in_status(Status.IN_PROGRESS)
    url = reverse("admin:requests_app_privacyrequest_change", args=[request.pk])
    html = admin_client.get(url).content.decode()
    assert "start_work" in html and "verify_email" in html
    assert 'name="subject_email"' not in html  # shown, never editable

    admin_client.post(url, {"subject_email": "changed@example.com", "status": "completed"})
    request.refresh_from_db()
    assert (request.subject_email, request.status) == ("ana@example.com", Status.IN_PROGRESS)


@pytest.mark.django_db
def test_audit_events_are_read_only_in_the_admin(admin_client):
    request_in_status(Status.NEW)
    event = AuditEvent.objects.first()
    assert admin_client.get(reverse("admin:requests_app_auditevent_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:requests_app_auditevent_add")).status_code == 403
    admin_client.post(reverse("admin:requests_app_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_attachments_are_not_served_to_the_public_or_to_staff_without_permission(client):
    request = request_in_status(Status.NEW)
    from requests_app.audit import Actor
    from requests_app.services.intake import attachment_add
    from django.db import transaction

    with transaction.atomic():
        attachment = attachment_add(
            request=request, file=SimpleUploadedFile("id.pdf", PDF, content_type="application/pdf"), actor=Actor.system()
        )
    url = reverse("staff:attachment", args=[attachment.public_id])
    assert client.get(url).status_code == 302  # to the login page

    # Signed in with a password but not yet the second factor: sent to the code page.
    staff_without_role = UserFactory(is_staff=True, is_superuser=False)
    client.force_login(staff_without_role)
    assert client.get(url).url.startswith(reverse("staff:otp"))
    login_staff(client, staff_without_role)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(
    ("role", "works_it", "linked"),
    [("DPO", False, True), ("Auditor", False, True), ("Handler", True, True), ("Handler", False, False)],
)
@pytest.mark.django_db
def test_the_request_page_links_attachments_only_for_those_who_may_open_them(client, role, works_it, linked):
    from django.db import transaction

    from requests_app.audit import Actor
    from requests_app.services.intake import attachment_add
    from tests.factories import staff_in_role

    request = request_in_status(Status.NEW)
    with transaction.atomic():
        attachment = attachment_add(
            request=request, file=SimpleUploadedFile("id-card.pdf", PDF, content_type="application/pdf"), actor=Actor.system()
        )
    user = staff_in_role(role, username=f"{role.lower()}-admin")
    if works_it:
        PrivacyRequest.objects.filter(pk=request.pk).update(assignee=user)
    login_staff(client, user)
    page = client.get(reverse("admin:requests_app_privacyrequest_change", args=[request.pk])).content.decode()
    url = reverse("staff:attachment", args=[attachment.public_id])
    # What is there, for everyone: the file's name and size.
    assert re.search(r'class="field-(name|download)">\s*<p>(<a href="[^"]+">)?id-card.pdf', page)
    assert re.search(rf'class="field-size">\s*<p>{len(PDF)}</p>', page)
    assert (url in page) == linked  # a link only where it opens (not a 403)
    assert (client.get(url).status_code == 200) == linked


@pytest.mark.django_db
def test_the_admin_shows_a_deleted_attachment_as_deleted_without_a_link(admin_client, staff_user):
    from django.db import transaction

    from requests_app.audit import Actor
    from requests_app.services import handling
    from requests_app.services.intake import attachment_add

    request = request_in_status(Status.NEW)
    with transaction.atomic():
        attachment = attachment_add(
            request=request, file=SimpleUploadedFile("id-card.pdf", PDF, content_type="application/pdf"), actor=Actor.system()
        )
    handling.attachment_delete(attachment=attachment, actor=Actor.staff(staff_user))
    page = admin_client.get(reverse("admin:requests_app_privacyrequest_change", args=[request.pk])).content.decode()
    assert re.search(rf'class="field-download">\s*<p>deleted on {timezone.localdate()} by {staff_user.username}</p>', page)
    assert "id-card.pdf" not in page and reverse("staff:attachment", args=[attachment.public_id]) not in page


# What each role may do in the admin: (role, page, expected status). The roles are groups,
# not Django model permissions, and none of these users is a superuser.
ROLE_PAGES = [
    ("DPO", "admin:requests_app_organisationapikey_add", 200),  # issue API keys
    ("DPO", "admin:requests_app_webhookendpoint_add", 200),
    ("DPO", "admin:requests_app_organisation_add", 200),
    ("DPO", "admin:requests_app_intake", 200),
    ("Handler", "admin:requests_app_intake", 200),  # records a posted request
    ("Handler", "admin:requests_app_privacyrequest_changelist", 200),
    ("Handler", "admin:requests_app_organisation_add", 403),
    ("Handler", "admin:requests_app_assignmentrule_changelist", 403),  # the configuration is the DPO's and the auditor's
    ("Handler", "admin:requests_app_auditevent_changelist", 403),
    ("Handler", "admin:requests_app_webhookendpoint_changelist", 403),  # its secrets are the DPO's
    ("Auditor", "admin:requests_app_auditevent_changelist", 200),
    ("Auditor", "admin:requests_app_organisation_changelist", 200),
    ("Auditor", "admin:requests_app_intake", 403),
    ("Auditor", "admin:requests_app_organisationapikey_changelist", 403),
    ("Auditor", "admin:requests_app_sourcesystem_changelist", 403),  # connection URLs may hold credentials
]


@pytest.mark.parametrize(("role", "page", "expected"), ROLE_PAGES)
@pytest.mark.django_db
def test_the_admin_follows_the_staff_roles(client, role, page, expected):
    from tests.factories import staff_in_role

    login_staff(client, staff_in_role(role, username=f"{role.lower()}-admin"))
    assert client.get(reverse(page)).status_code == expected


@pytest.mark.django_db
def test_a_dpo_who_is_not_a_superuser_issues_an_api_key(client):
    from requests_app.models import Organisation, OrganisationAPIKey
    from tests.factories import staff_in_role

    organisation = Organisation.objects.create(name="Mobile Operator SA")
    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    response = client.post(
        reverse("admin:requests_app_organisationapikey_add"),
        {"name": "portal", "organisation": organisation.pk, "scope": "write"},
        follow=True,
    )
    assert response.status_code == 200
    key = OrganisationAPIKey.objects.get(organisation=organisation)
    assert key.prefix in response.content.decode()  # the key is shown once, with its prefix

    # Revoked in its change form. The trail names the key by its prefix, never by its primary key (which holds
    # the key's hash), and tells issuing from revoking.
    client.post(
        reverse("admin:requests_app_organisationapikey_change", args=[key.pk]),
        {"name": "portal", "organisation": organisation.pk, "scope": "write", "revoked": "on"},
    )
    events = AuditEvent.objects.filter(action="organisationapikey_saved").order_by("sequence")
    issued = {"name": [None, "portal"], "scope": ["read", "write"], "organisation": [None, "Mobile Operator SA"]}  # as first shown
    assert [event.data for event in events] == [
        {"prefix": key.prefix, "name": "portal", "organisation": "Mobile Operator SA", "revoked": revoked, "changes": changes}
        for revoked, changes in ((False, issued), (True, {"revoked": [False, True]}))
    ]
    assert key.hashed_key not in str([event.data for event in AuditEvent.objects.all()])


def issue_api_key(client):
    """The DPO's two steps: open the add form (it carries its submission key), send it. The answer to the POST."""
    from requests_app.models import Organisation

    organisation = Organisation.objects.create(name="Mobile Operator SA")
    return client.post(reverse("admin:requests_app_organisationapikey_add"), {**api_key_form(client), "organisation": organisation.pk})


def api_key_form(client) -> dict:
    """A blank add form's fields: a name, a scope, and the form's own submission key."""
    page = client.get(reverse("admin:requests_app_organisationapikey_add")).content.decode()
    submission_key = re.search(r'name="submission_key" value="([0-9a-f-]{36})"', page).group(1)
    return {"name": "portal", "scope": "read", "submission_key": submission_key}


def shown_api_key(response) -> str | None:
    found = re.search(r'<code id="api-key">([^<]+)</code>', response.content.decode())
    return found.group(1) if found else None


@pytest.mark.django_db
def test_a_new_api_key_is_shown_once_on_the_page_its_post_leads_to_and_kept_in_no_url_or_cookie(client):
    """Django keeps messages in a cookie that is signed, not encrypted: the library's "The API key is: ..."
    message would hand the key to anything that sees the cookie. The key waits in the database session instead."""
    from django.contrib.admin.utils import quote

    from requests_app.models import OrganisationAPIKey
    from tests.api.conftest import client_with
    from tests.factories import staff_in_role

    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    added = issue_api_key(client)

    api_key = OrganisationAPIKey.objects.get()
    issued_url = reverse("admin:requests_app_organisationapikey_issued", args=[quote(api_key.pk)])
    assert added.status_code == 302 and added["Location"] == issued_url
    [waiting] = [value for name, value in client.session.items() if name.startswith("secret_to_show:")]
    shown = client.get(issued_url)
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    key = shown_api_key(shown)
    assert key == waiting and api_key.prefix == key.split(".")[0]
    assert shown.content.decode().count(key) == 1
    assert key not in added["Location"] and key not in str(added.cookies) and key not in str(shown.cookies)
    assert key not in str(client.cookies) and key not in str(dict(client.session))  # taken out as it was shown
    assert client_with(key).get("/api/v1/requests/").status_code == 200
    assert key not in client.get(reverse("admin:requests_app_organisationapikey_changelist")).content.decode()


@pytest.mark.django_db
def test_reloading_the_new_keys_page_issues_no_second_key_and_shows_the_key_no_more(client):
    from requests_app.models import OrganisationAPIKey
    from tests.factories import staff_in_role

    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    issued_url = issue_api_key(client)["Location"]
    key = shown_api_key(client.get(issued_url))

    for later in (client.get(issued_url), client.get(issued_url)):  # a reload; the page opened again later
        page = later.content.decode()
        assert later.status_code == 200 and "no-store" in later["Cache-Control"]
        assert shown_api_key(later) is None and key not in page and key.split(".")[1] not in page
        assert "was shown once, when it was issued, and cannot be shown again" in page
        assert "revoke this key" in page and reverse("admin:requests_app_organisationapikey_add") in page
    assert OrganisationAPIKey.objects.count() == 1
    assert AuditEvent.objects.filter(action="organisationapikey_saved").count() == 1


@pytest.mark.django_db
def test_the_add_form_sent_twice_issues_one_key_and_leads_to_its_page(client):
    """A double click: the same form (its submission key) sent again issues nothing and shows the first key."""
    from requests_app.models import Organisation, OrganisationAPIKey
    from tests.factories import staff_in_role

    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    organisation = Organisation.objects.create(name="Mobile Operator SA")
    form = {**api_key_form(client), "organisation": organisation.pk}
    add_url = reverse("admin:requests_app_organisationapikey_add")

    first, second = client.post(add_url, form), client.post(add_url, form)

    assert first.status_code == second.status_code == 302 and first["Location"] == second["Location"]
    assert OrganisationAPIKey.objects.count() == 1
    assert AuditEvent.objects.filter(action="organisationapikey_saved").count() == 1
    assert shown_api_key(client.get(second["Location"]))  # the key the first sending issued, shown once
    # A new blank form is a new key.
    assert client.post(add_url, {**api_key_form(client), "organisation": organisation.pk}).status_code == 302
    assert OrganisationAPIKey.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_add_form_sent_twice_at_once_issues_one_key(client):
    """Both sendings pass every check before either is stored: PostgreSQL makes the second wait on the first's
    submission key, and it leads to the first one's page, which shows the key."""
    from django.conf import settings
    from django.test import Client

    from requests_app.models import Organisation, OrganisationAPIKey
    from tests.factories import at_once, staff_in_role

    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    form = {**api_key_form(client), "organisation": Organisation.objects.create(name="Mobile Operator SA").pk}
    session_id = client.cookies[settings.SESSION_COOKIE_NAME].value

    def send():
        browser = Client()  # the same browser's session; a client each, as each thread changes its cookies
        browser.cookies[settings.SESSION_COOKIE_NAME] = session_id
        return browser.post(reverse("admin:requests_app_organisationapikey_add"), form)

    answers = at_once(send, times=2)

    assert [answer.status_code for answer in answers] == [302, 302]
    assert answers[0]["Location"] == answers[1]["Location"]
    assert OrganisationAPIKey.objects.count() == 1
    assert AuditEvent.objects.filter(action="organisationapikey_saved").count() == 1
    assert shown_api_key(client.get(answers[0]["Location"]))


@pytest.mark.django_db
def test_a_second_sending_that_loaded_the_session_before_the_first_committed_leaves_the_key_to_be_shown(client, rf):
    """Every answer saves its session: the second sending's copy, from before the first one kept the key in it,
    must not be saved over it."""
    from django.contrib import admin
    from django.contrib.sessions.backends.db import SessionStore

    from requests_app.models import Organisation, OrganisationAPIKey
    from tests.factories import staff_in_role

    dpo = staff_in_role("DPO", username="dpo-keys")
    login_staff(client, dpo)
    form = {**api_key_form(client), "organisation": Organisation.objects.create(name="Mobile Operator SA").pk}
    add_url = reverse("admin:requests_app_organisationapikey_add")
    second = rf.post(add_url, form)
    second.user, second._dont_enforce_csrf_checks = dpo, True
    second.session = SessionStore(client.session.session_key)
    assert not [name for name in second.session.keys() if name.startswith("secret_to_show:")]  # loaded now

    first = client.post(add_url, form)
    answer = admin.site._registry[OrganisationAPIKey].add_view(second)
    second.session.save()  # as SessionMiddleware does at the end of every answer

    assert answer.status_code == 302 and answer["Location"] == first["Location"]
    assert OrganisationAPIKey.objects.count() == 1
    assert shown_api_key(client.get(first["Location"]))


@pytest.mark.parametrize("role", ["DPO", "Auditor", "Handler"])
@pytest.mark.django_db
def test_only_the_dpo_who_issued_a_key_sees_it(client, role):
    """The key waits in the issuing DPO's session: another DPO opening its page sees that it was shown; an auditor or
    a handler, who may not open what holds secrets, gets a 403."""
    from django.test import Client

    from tests.factories import staff_in_role

    login_staff(client, staff_in_role("DPO", username="dpo-keys"))
    issued_url = issue_api_key(client)["Location"]

    other = login_staff(Client(), staff_in_role(role, username=f"other-{role.lower()}"))
    answer = other.get(issued_url)
    if role == "DPO":
        assert answer.status_code == 200 and not shown_api_key(answer) and b"key-shown-already" in answer.content
    else:
        assert answer.status_code == 403
    assert shown_api_key(client.get(issued_url))  # still there for the DPO who issued it


@pytest.mark.django_db
def test_changes_in_the_admin_are_audited_and_refused_to_readers(client):
    from requests_app.models import Organisation
    from tests.factories import staff_in_role

    login_staff(client, staff_in_role("Auditor", username="auditor-admin"))
    response = client.post(reverse("admin:requests_app_organisation_add"), {"name": "Sneaky SA"})
    assert response.status_code == 403 and not Organisation.objects.exists()

    login_staff(client, staff_in_role("DPO", username="dpo-admin"))
    client.post(reverse("admin:requests_app_organisation_add"), {"name": "Mobile Operator SA"})
    organisation = Organisation.objects.get()
    client.post(reverse("admin:requests_app_organisation_delete", args=[organisation.pk]), {"post": "yes"})
    assert not Organisation.objects.exists()
    trail = AuditEvent.objects.filter(request=None).order_by("sequence")
    assert [(event.action, event.actor_label, event.data["name"]) for event in trail] == [
        ("organisation_saved", "dpo-admin", "Mobile Operator SA"),
        ("organisation_deleted", "dpo-admin", "Mobile Operator SA"),
    ]


@pytest.mark.django_db
def test_the_admin_offers_one_api_keys_entry_and_proper_plurals(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Organisation API keys" in page and ">API keys<" not in page  # the library's keys without an organisation
    assert "Source categories" in page and "Suppression entries" in page and "Webhook deliveries" in page


@pytest.mark.django_db
def test_accounts_and_authenticators_are_not_managed_in_the_admin(admin_client):
    """On the dashboard a role change is audited and only its owner binds an authenticator;
    Django's own pages would change roles unrecorded and show a superuser every TOTP secret."""
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "/admin/auth/user/" not in page and "/admin/otp_totp/totpdevice/" not in page
    for path in ("/admin/auth/user/", "/admin/auth/group/", "/admin/otp_totp/totpdevice/"):
        assert admin_client.get(path).status_code == 404


def test_the_admin_signs_in_through_the_dashboard(client):
    """One sign-in, the dashboard's, which records it in the audit trail."""
    response = client.get("/admin/login/?next=/admin/requests_app/")
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:login") + "?next=/admin/requests_app/"


@pytest.mark.django_db
def test_the_admin_and_the_api_docs_name_the_sites_icon(client):
    login_staff(client, UserFactory(is_superuser=True))
    icon = 'rel="icon" href="/static/requests_app/favicon.svg"'
    assert icon in client.get("/admin/").content.decode()
    assert icon in client.get("/api/redoc/").content.decode()


@pytest.mark.parametrize("role", ["DPO", "Auditor", "Handler"])
@pytest.mark.django_db
def test_every_admin_link_on_a_request_page_opens_for_the_role_that_sees_it(client, role):
    """A link to a page the role may not open (a handler's, to the organisation) would answer 403: show the name."""
    from requests_app.models import Organisation, Team
    from tests.factories import staff_in_role

    user = staff_in_role(role, username=f"{role.lower()}-admin")
    request = request_in_status(Status.NEW)
    PrivacyRequest.objects.filter(pk=request.pk).update(
        organisation=Organisation.objects.create(name="Link Telecom"), team=Team.objects.create(name="Linked team"),
        assignee=user,
    )
    login_staff(client, user)
    page = client.get(reverse("admin:requests_app_privacyrequest_change", args=[request.pk])).content.decode()

    assert "Link Telecom" in page and "Linked team" in page
    links = set(re.findall(r'href="(/admin/requests_app/[^"]+)"', page))
    assert links, "the page links at least its own section"
    refused = [link for link in links if client.get(link, follow=True).status_code != 200]
    assert refused == []


@pytest.mark.django_db
def test_an_auditor_reads_the_inventorys_pages_in_the_admin_that_take_the_dashboards_forms(client):
    """The admin gives a reader the form without its fields: a form that sets up a field must not fail on it."""
    from requests_app.models import ConnectorKind, SourceCategory, SourceSystem, SuppressionPurpose
    from tests.factories import staff_in_role

    source = SourceSystem.objects.create(
        slug="crm", name="CRM", connector=ConnectorKind.SQL, connection_url="sqlite:///x.sqlite3", identity_kind="email",
        purposes="Support", legal_basis="contract", retention="2 years", origin="You",
    )
    category = SourceCategory.objects.create(source=source, slug="contacts", category="identity", query="SELECT 1 WHERE :identities")
    purpose = SuppressionPurpose.objects.create(slug="marketing", name="Marketing")
    login_staff(client, staff_in_role("Auditor", username="auditor-admin"))
    # (Source systems hold connection settings: the admin shows them to DPOs only.)
    for name, pk in [("sourcecategory", category.pk), ("suppressionpurpose", purpose.pk)]:
        response = client.get(reverse(f"admin:requests_app_{name}_change", args=[pk]))
        assert response.status_code == 200, name


@pytest.mark.django_db
def test_the_admin_names_a_manual_extract_without_linking_the_file(client, settings):
    """With S3 storage the file's URL is a presigned link: whoever holds it opens the raw extract, with no
    permission check and no audit event."""
    from requests_app.models import ConnectorKind, ExportPackage, ManualTask, SourceSystem
    from tests.factories import staff_in_role

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    settings.AWS_STORAGE_BUCKET_NAME, settings.AWS_S3_ENDPOINT_URL = "privacy-bucket", "https://s3.example.com"
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY, settings.AWS_S3_REGION_NAME = "AKIAEXAMPLE", "example", "eu-west-1"
    export = ExportPackage.objects.create(request=request_in_status(Status.IN_PROGRESS), kind="access", status="waiting_manual")
    source = SourceSystem.objects.create(name="Archive", slug="archive", connector=ConnectorKind.MANUAL)
    task = ManualTask.objects.create(export=export, source=source)
    ManualTask.objects.filter(pk=task.pk).update(upload=f"manual-extracts/{export.public_id}-archive.csv")
    login_staff(client, staff_in_role("Auditor", username="auditor-admin"))

    page = client.get(reverse("admin:requests_app_manualtask_change", args=[task.pk])).content.decode()

    assert f"{export.public_id}-archive.csv" in page
    assert "manual-extracts/" not in page and "s3.example.com" not in page


AGENT_BY_POST = {
    "filed_by": "agent", "agent_name": "Maître Dupont", "agent_email": "dupont@avocats.example",
    "agent_capacity": "legal_representative", "agent_permission": "on",
}


@pytest.mark.django_db
def test_staff_record_a_posted_request_a_lawyer_made_for_the_subject(
    admin_client, mailoutbox, django_capture_on_commit_callbacks
):
    """A lawyer's letter: we write to the lawyer, and the agent's gate holds until their authority is confirmed."""
    from requests_app.services import agents

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(**AGENT_BY_POST, language="en"))

    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.agent_name, request.agent_email, request.agent_capacity) == (
        "Maître Dupont", "dupont@avocats.example", "legal_representative"
    )
    assert request.correspondence_email == "dupont@avocats.example"
    assert agents.authority_refusal(request)  # nothing disclosed or changed until staff confirm it
    assert request.events.get(action="submitted").data["agent"] == "legal_representative"
    confirmation = [message for message in mailoutbox if request.subject_email not in message.to and "dupont@avocats.example" in message.to]
    assert len(confirmation) == 1 and "on behalf of" in confirmation[0].body
    assert not [message for message in mailoutbox if request.subject_email in message.to]


@pytest.mark.django_db
def test_an_agents_letter_without_their_email_address_is_recorded_to_be_answered_by_post(admin_client):
    """A letter may carry no email address, the agent's as the subject's: we write to neither then, by email."""
    response = admin_client.post(
        reverse("admin:requests_app_intake"), intake_data(**{**AGENT_BY_POST, "agent_email": ""}, subject_email="")
    )
    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.agent_capacity, request.correspondence_email) == ("legal_representative", "")


@pytest.mark.django_db
def test_the_intake_form_asks_an_agents_details_as_the_public_form_does(admin_client):
    response = admin_client.post(
        reverse("admin:requests_app_intake"),
        intake_data(filed_by="agent", agent_email="not an address", agent_name="12345"),
    )
    assert response.status_code == 200 and not PrivacyRequest.objects.exists()
    errors = response.context["form"].errors
    assert set(errors) == {"agent_name", "agent_email", "agent_capacity", "agent_permission"}
    assert errors["agent_capacity"] == ["Choose in what capacity the agent acts for the subject."]


@pytest.mark.django_db
def test_an_agents_details_left_filled_in_for_a_subjects_own_request_are_dropped(admin_client):
    response = admin_client.post(reverse("admin:requests_app_intake"), intake_data(**{**AGENT_BY_POST, "filed_by": "subject"}))
    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert (request.agent_capacity, request.agent_name, request.agent_email) == ("", "", "")
    assert not request.filed_by_agent
