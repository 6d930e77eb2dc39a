import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import NotAllowed, RequestError
from requests_app.models import (
    AuditEvent,
    CoveredPurpose,
    RequestType,
    SuppressionEntry,
    SuppressionPurpose,
)
from requests_app.services import suppression
from requests_app.services.intake import RightDetails
from tests.conftest import login_staff, post_confirmed
from tests.factories import request_in_status, staff_in_role


def objection_request(**overrides):
    """An in-progress objection with a verified email (mixed case) and an unverified phone."""
    fields = {
        "rights": [RightDetails(RequestType.OBJECTION, objection_processing="Marketing emails")],
        "subject_email": "Ana.Peeters@Example.com",
        "subject_phone": "+32470123456",
    }
    request = request_in_status("in_progress", **{**fields, **overrides})
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    return request


@pytest.fixture
def marketing(db):
    return SuppressionPurpose.objects.create(slug="marketing", name="Marketing emails")


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1")


@pytest.mark.django_db
def test_suppress_adds_only_the_verified_identities_normalised(marketing, dpo):
    request = objection_request()
    assert request.identities.filter(kind="phone").exists()

    added = suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])

    entry = SuppressionEntry.objects.get()
    assert added == {"marketing": 1}
    assert (entry.kind, entry.value, entry.right, entry.request) == ("email", "ana.peeters@example.com", "objection", request)
    assert suppression.suppressed(marketing, [("email", "ANA.PEETERS@example.com "), ("phone", "+32470123456")]) == [True, False]


@pytest.mark.django_db
def test_a_phone_number_is_found_on_the_list_however_it_is_typed(marketing, dpo):
    """Stored as +32470123456; the national spelling the form accepts finds it too."""
    request = objection_request()
    request.identities.filter(kind="phone").update(verified_at=timezone.now())
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    for typed in ["+32 470 12 34 56", "0470 12 34 56", "0470/12.34.56"]:
        assert suppression.suppressed(marketing, [("phone", typed)]) == [True]


@pytest.mark.django_db
def test_a_list_holds_only_the_kinds_its_systems_look_people_up_by(dpo):
    emails = SuppressionPurpose.objects.create(slug="newsletter", name="Newsletter", identity_kinds=["email"])
    request = objection_request()
    request.identities.update(verified_at=timezone.now())  # email and phone verified

    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[emails])

    assert list(SuppressionEntry.objects.values_list("kind", flat=True)) == ["email"]  # not the phone number


@pytest.mark.django_db
def test_a_list_whose_kind_the_subject_has_not_verified_is_kept_as_asked_and_the_others_are_applied(marketing, dpo):
    """On the telemarketing list, an email address would stop no call: the subject is not put on it, but the
    objection still covers it, for completion to wait for (see the completion tests below)."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request()  # only the email is verified

    added = suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing, calls])

    assert added == {"marketing": 1}
    assert list(SuppressionEntry.objects.values_list("purpose__slug", flat=True)) == ["marketing"]
    covers = {cover.purpose.slug: cover.applied_at for cover in CoveredPurpose.objects.filter(right__request=request)}
    assert covers["marketing"] is not None and covers["telemarketing"] is None
    assert AuditEvent.objects.get(action="suppression_added").data["not_applied"] == ["telemarketing"]


@pytest.mark.django_db
def test_a_list_records_only_known_kinds_of_identifier(client, dpo):
    login_staff(client, dpo)
    response = client.post(
        reverse("staff:suppression_purpose_new"),
        {"name": "Telemarketing calls", "slug": "telemarketing", "identity_kinds": ["phone", "fax"]},
    )
    assert "Select a valid choice. fax is not one of the available choices." in response.content.decode()
    assert not SuppressionPurpose.objects.exists()
    client.post(reverse("staff:suppression_purpose_new"), {"name": "Telemarketing calls", "slug": "telemarketing", "identity_kinds": ["phone"]})
    assert SuppressionPurpose.objects.get().identity_kinds == ["phone"]
    page = client.get(reverse("staff:suppressions")).content.decode()
    assert "Phone number" in page


@pytest.mark.django_db
def test_suppress_twice_adds_once_and_audits_counts_never_values(marketing, dpo):
    request = objection_request()
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    again = suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])

    assert again == {"marketing": 0}
    assert SuppressionEntry.objects.count() == 1
    first, second = AuditEvent.objects.filter(action="suppression_added").order_by("sequence")
    assert first.data == {"right": "objection", "purposes": [{"purpose": "marketing", "added": 1}], "not_applied": []}
    assert second.data == {"right": "objection", "purposes": [{"purpose": "marketing", "added": 0}], "not_applied": []}
    assert "ana" not in str(first.data).lower() and "example" not in first.note


@pytest.mark.django_db
def test_a_repeat_objection_whose_subject_is_on_the_list_already_can_be_completed(marketing, dpo):
    """The entries stay with the earlier request; the new one is honoured all the same."""
    from requests_app.services.actions import completion_blockers

    earlier, again = objection_request(), objection_request()
    suppression.suppress(request=earlier, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    assert any("has not been applied" in str(blocker) for blocker in completion_blockers(again))
    assert suppression.suppress(request=again, actor=Actor.staff(dpo), right="objection", purposes=[marketing]) == {"marketing": 0}
    assert not any("has not been applied" in str(blocker) for blocker in completion_blockers(again))


@pytest.mark.django_db
def test_the_completion_letter_says_which_uses_stopped_and_what_a_consent_withdrawal_means(marketing, dpo):
    """Whatever the DPO wrote: the subject is told what processing stopped (Art. 21) and that what was done
    with their consent before stays lawful (Art. 7(3))."""
    from requests_app.models import Message
    from requests_app.services import handling

    telemarketing = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls")
    request = objection_request(
        rights=[
            RightDetails(RequestType.OBJECTION, objection_processing="Marketing emails"),
            RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Calls"),
        ]
    )
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing, telemarketing])
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="withdraw_consent", purposes=[telemarketing])
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=request.status)

    body = Message.objects.filter(request=request).latest("created_at").body
    assert "Following your objection (Article 21 GDPR), we no longer use your data for: Marketing emails, Telemarketing calls." in body
    assert "Following the withdrawal of your consent (Article 7(3) GDPR), we no longer use your data for: Telemarketing calls." in body
    assert "What we did with your consent before you withdrew it remains lawful." in body


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "consent_law"), [("ccpa", ""), ("lgpd", " (Article 18, IX LGPD)")])
def test_the_completion_letter_under_another_law_than_the_gdpr_cites_no_gdpr_article_for_the_uses_stopped(marketing, dpo, regime, consent_law):
    from requests_app.models import Message
    from requests_app.services import handling

    request = objection_request(
        regime=regime,
        rights=[
            RightDetails(RequestType.OBJECTION, objection_processing="Marketing emails"),
            RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Calls"),
        ],
    )
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="withdraw_consent", purposes=[marketing])
    handling.request_complete(request=request, actor=Actor.staff(dpo), letter="", expected_status=request.status)

    body = Message.objects.filter(request=request).latest("created_at").body
    assert "Following your objection, we no longer use your data for: Marketing emails." in body
    assert f"Following the withdrawal of your consent{consent_law}, we no longer use your data for: Marketing emails." in body
    assert "GDPR" not in body


@pytest.mark.django_db
def test_the_right_recorded_is_the_one_applied(marketing, dpo):
    request = objection_request(
        rights=[
            RightDetails(RequestType.LIMIT_USE),
            RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Event sponsors"),
        ]
    )

    suppression.suppress(request=request, actor=Actor.staff(dpo), right="withdraw_consent", purposes=[marketing])

    assert SuppressionEntry.objects.get().right == "withdraw_consent"
    with pytest.raises(RequestError, match="does not ask for objection"):
        suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])


@pytest.mark.django_db
def test_suppress_is_refused_without_an_objection_withdrawal_or_limit(marketing, dpo):
    request = request_in_status("in_progress", rights=[RightDetails(RequestType.ACCESS)])
    request.identities.update(verified_at=timezone.now())

    with pytest.raises(RequestError, match="no objection"):
        suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    assert not SuppressionEntry.objects.exists()


@pytest.mark.django_db
def test_suppress_adds_nothing_without_verified_identities_and_is_refused_for_a_closed_request(marketing, dpo):
    unverified = objection_request()
    unverified.identities.update(verified_at=None)
    assert suppression.suppress(request=unverified, actor=Actor.staff(dpo), right="objection", purposes=[marketing]) == {}
    assert CoveredPurpose.objects.get().applied_at is None

    closed = objection_request(subject_name="Bo")
    closed.status = "completed"
    closed.save(update_fields=["status"])
    with pytest.raises(RequestError, match="open, verified"):
        suppression.suppress(request=closed, actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    assert not SuppressionEntry.objects.exists()


@pytest.mark.django_db
def test_an_auditor_may_not_suppress(marketing):
    auditor = Actor.staff(staff_in_role("Auditor", username="a1"))
    with pytest.raises(NotAllowed):
        suppression.suppress(request=objection_request(), actor=auditor, right="objection", purposes=[marketing])


@pytest.mark.django_db
def test_entries_csv_lists_kind_value_right_and_time(marketing, dpo):
    suppression.suppress(request=objection_request(), actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    out = io.StringIO()
    for _row in suppression.entries_csv(marketing.entries.all(), out):
        pass

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["kind", "value", "right", "added_at"]
    assert rows[1][:3] == ["email", "ana.peeters@example.com", "objection"]
    assert len(rows) == 2


@pytest.mark.parametrize(
    ("value", "in_csv"),
    [
        ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("+32470123456", "+32470123456"),  # a phone number stays as it is
        ("CUST-0042", "CUST-0042"),
    ],
)
@pytest.mark.django_db
def test_a_cell_of_the_dpos_csv_never_runs_as_a_spreadsheet_formula(client, marketing, dpo, value, in_csv):
    SuppressionEntry.objects.create(purpose=marketing, kind="customer_reference", value=value, right="objection")
    login_staff(client, dpo)
    response = client.get(reverse("staff:suppression_download", args=[marketing.slug]))
    assert list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))[1][1] == in_csv
    # Not asked for a spreadsheet (the API's values=exact), the service writes the value as it is.
    out = io.StringIO()
    for _row in suppression.entries_csv(marketing.entries.all(), out):
        pass
    assert list(csv.reader(io.StringIO(out.getvalue())))[1][1] == value


@pytest.mark.parametrize(("role", "status"), [("DPO", 200), ("Auditor", 200), ("Handler", 403)])
@pytest.mark.django_db
def test_only_the_dpo_and_auditors_download_a_list(client, marketing, dpo, role, status):
    suppression.suppress(request=objection_request(), actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    login_staff(client, staff_in_role(role, username=f"u-{role}"))

    page = client.get(reverse("staff:suppressions"))
    response = client.get(reverse("staff:suppression_download", args=["marketing"]))

    assert page.status_code == 200 and "Marketing emails" in page.content.decode()
    assert response.status_code == status
    if status == 200:
        body = b"".join(response.streaming_content).decode()
        assert "ana.peeters@example.com" in body
        assert AuditEvent.objects.filter(action="suppression_list_downloaded", actor=response.wsgi_request.user).exists()


@pytest.mark.django_db
def test_only_the_dpo_creates_a_list_and_one_with_entries_is_not_deleted(client, marketing, dpo):
    login_staff(client, staff_in_role("Handler", username="h1"))
    assert client.post(reverse("staff:suppression_purpose_new"), {"name": "Profiling", "slug": "profiling"}).status_code == 403

    login_staff(client, dpo)
    assert client.post(reverse("staff:suppression_purpose_new"), {"name": "Profiling", "slug": "profiling"}).status_code == 302
    assert SuppressionPurpose.objects.filter(slug="profiling").exists()

    suppression.suppress(request=objection_request(), actor=Actor.staff(dpo), right="objection", purposes=[marketing])
    client.post(reverse("staff:suppression_purpose_edit", args=[marketing.pk]), {"delete": "1"})
    assert SuppressionPurpose.objects.filter(pk=marketing.pk).exists()


@pytest.mark.django_db
def test_the_request_page_offers_suppression_only_for_these_rights(client, marketing, dpo):
    login_staff(client, dpo)
    objection = objection_request()
    access = request_in_status("in_progress", rights=[RightDetails(RequestType.ACCESS)], subject_name="Bo")

    assert reverse("staff:suppression_request", args=[objection.reference]) in client.get(
        reverse("staff:request", args=[objection.reference])
    ).content.decode()
    access_page = client.get(reverse("staff:request", args=[access.reference])).content.decode()
    assert reverse("staff:suppression_request", args=[access.reference]) not in access_page


@pytest.mark.django_db
def test_the_request_form_adds_the_identities_to_the_chosen_lists(client, marketing, dpo):
    other = SuppressionPurpose.objects.create(slug="profiling", name="Profiling")
    request = objection_request()
    login_staff(client, dpo)
    url = reverse("staff:suppression_request", args=[request.reference])

    page = client.get(url).content.decode()
    assert 'name="purposes"' in page and "Profiling" in page
    response = client.post(url, {"right": "objection", "purposes": [marketing.pk]}, follow=True)

    assert "Added 1 entry" in response.content.decode()
    assert list(SuppressionEntry.objects.values_list("purpose__slug", flat=True)) == ["marketing"]
    assert not other.entries.exists()
    assert client.post(url, {"right": "objection"}).status_code == 400


@pytest.mark.django_db
def test_a_handler_not_on_the_request_cannot_use_the_form(client, marketing):
    request = objection_request()
    login_staff(client, staff_in_role("Handler", username="h2"))

    response = client.post(reverse("staff:suppression_request", args=[request.reference]), {"purposes": [marketing.pk]})

    assert response.status_code == 403
    assert not SuppressionEntry.objects.exists()


@pytest.mark.django_db
def test_an_auditor_reads_the_lists_a_request_covers_but_changes_nothing(client, marketing, dpo):
    """Auditors read every request (roles): the lists its objection covers too, which were a 403. Without the forms,
    and a form sent all the same is refused."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request()  # the phone number is not verified
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[marketing, calls])
    suppression.record_not_applied(
        request=request, actor=Actor.staff(dpo), covered=CoveredPurpose.objects.get(purpose=calls),
        reason="We hold no phone number of yours.",
    )
    login_staff(client, staff_in_role("Auditor", username="a1"))
    url = reverse("staff:suppression_request", args=[request.reference])

    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The subject is on these lists for it: Marketing emails" in page
    assert "Not on the Telemarketing calls list yet." in page
    assert "Reason: We hold no phone number of yours." in page
    assert 'name="purposes"' not in page and 'name="step"' not in page and 'name="reason"' not in page
    assert "Add to the lists" not in page and "Record why" not in page
    request_page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert f'<a href="{url}">Suppression lists</a>' in request_page and "Choose the lists" not in request_page

    entries = SuppressionEntry.objects.count()
    assert client.post(url, {"right": "objection", "purposes": [marketing.pk, calls.pk]}).status_code == 403
    assert client.post(url, {"step": "uncover", "right": "objection", "purpose": "telemarketing"}).status_code == 403
    assert client.post(
        url, {"step": "not_applied", "right": "objection", "purpose": "telemarketing", "reason": "Changed"}
    ).status_code == 403
    assert SuppressionEntry.objects.count() == entries
    assert CoveredPurpose.objects.get(purpose=calls).not_applied_reason == "We hold no phone number of yours."


@pytest.mark.django_db
def test_through_the_pages_a_marketing_objection_completes_only_once_each_list_is_applied(client, marketing, dpo):
    """QA's case: the telemarketing list was refused for want of a phone number and the request was completed
    on the email list alone, its letter granting the objection in full. Nor may a reason leave it out (Art. 21(3))."""
    from requests_app.models import Message

    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request(
        regime="uk_gdpr", rights=[RightDetails(RequestType.OBJECTION, objection_processing="Telemarketing calls", direct_marketing=True)],
    )  # the phone number is not verified
    login_staff(client, dpo)
    page_url = reverse("staff:suppression_request", args=[request.reference])
    complete_url = reverse("staff:request_action", args=[request.reference, "complete"])

    applied = client.post(page_url, {"right": "objection", "purposes": [marketing.pk, calls.pk]}, follow=True)
    assert applied.redirect_chain[-1][0] == page_url  # to verify the phone number, or remove the list
    page = applied.content.decode()
    assert "Not added to Telemarketing calls: Telemarketing calls looks people up by phone number" in page
    assert "an objection to direct marketing cannot be left unapplied (Art. 21(3))." in page
    assert 'value="not_applied"' not in page and 'name="reason"' not in page  # no "Record why"
    assert "so no reason can be recorded" in page
    request_page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "the subject is not on the Telemarketing calls list yet" in request_page
    client.post(complete_url, {"letter": "", "expected_status": "in_progress"})
    request.refresh_from_db()
    assert request.status == "in_progress"

    refused = client.post(
        page_url, {"step": "not_applied", "right": "objection", "purpose": "telemarketing", "reason": "We hold no phone number of yours."},
        follow=True,
    )
    assert "An objection to direct marketing cannot be left unapplied (Art. 21(3))" in refused.content.decode()
    assert CoveredPurpose.objects.get(purpose=calls).not_applied_reason == ""

    request.identities.filter(kind="phone").update(verified_at=timezone.now())
    client.post(page_url, {"right": "objection", "purposes": [marketing.pk, calls.pk]})
    post_confirmed(client, complete_url, {"letter": "", "expected_status": "in_progress"})

    request.refresh_from_db()
    assert request.status == "completed"
    body = Message.objects.filter(request=request).latest("created_at").body
    assert "we no longer use your data for: Marketing emails, Telemarketing calls." in body
    assert "We could not stop using your data" not in body


@pytest.mark.django_db
def test_a_list_not_asked_is_removed_with_the_reason_box_empty(client, dpo):
    """The remove button shares its form with the required reason: the browser must not ask for one."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request()
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[calls])
    login_staff(client, dpo)
    page_url = reverse("staff:suppression_request", args=[request.reference])

    page = client.get(page_url).content.decode()
    assert 'name="reason"' in page and "required" in page
    assert '<button type="submit" name="step" value="uncover" class="secondary" formnovalidate>' in page
    client.post(page_url, {"step": "uncover", "right": "objection", "purpose": "telemarketing", "reason": ""})

    assert not CoveredPurpose.objects.exists()


LIST_REMOVED = "This list is no longer among the lists this right covers: it was removed since you loaded the page."


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["uncover", "not_applied"])
def test_a_click_on_a_list_a_colleague_removed_since_the_page_was_loaded_says_so_on_the_page(client, dpo, step):
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request()
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[calls])
    login_staff(client, dpo)
    page_url = reverse("staff:suppression_request", args=[request.reference])
    click = {"step": step, "right": "objection", "purpose": "telemarketing", "reason": "We hold no phone number of yours."}
    suppression.uncover(request=request, actor=Actor.staff(dpo), covered=CoveredPurpose.objects.get())

    response = client.post(page_url, click, follow=True)

    assert response.redirect_chain == [(page_url, 302)] and LIST_REMOVED in response.content.decode()
    assert not request.events.filter(action="suppression_not_applied").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["uncover", "not_applied"])
def test_a_click_that_waited_for_a_colleague_removing_the_list_says_so_on_the_page(client, dpo, monkeypatch, step):
    """Both clicks found the list; the colleague's removed it and committed while this one waited for the request's
    lock: the page with why, not a server error."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    request = objection_request()
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="objection", purposes=[calls])
    login_staff(client, dpo)
    page_url = reverse("staff:suppression_request", args=[request.reference])
    click = {"step": step, "right": "objection", "purpose": "telemarketing", "reason": "We hold no phone number of yours."}
    lock = suppression._locked_open

    def colleague_first(privacy_request):
        CoveredPurpose.objects.filter(purpose=calls).delete()
        return lock(privacy_request)

    monkeypatch.setattr(suppression, "_locked_open", colleague_first)

    response = client.post(page_url, click, follow=True)

    assert response.redirect_chain == [(page_url, 302)] and LIST_REMOVED in response.content.decode()


@pytest.mark.django_db
def test_the_pages_of_a_ccpa_request_to_limit_add_the_unverified_phone_and_never_ask_for_verification(client, dpo):
    """CCPA Regulations § 7027(e): a request to limit is not a verifiable consumer request."""
    calls = SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])
    sponsors = SuppressionPurpose.objects.create(slug="sponsors", name="Event sponsors", identity_kinds=["customer_reference"])
    request = request_in_status(
        "in_progress", regime="ccpa", rights=[RightDetails(RequestType.LIMIT_USE)], subject_phone="+14155550123"
    )  # nothing verified
    login_staff(client, dpo)
    page_url = reverse("staff:suppression_request", args=[request.reference])

    page = client.get(page_url).content.decode()
    assert "add the identifiers they gave to them" in page and "The identifiers they gave, verified or not" in page
    assert "verified identifiers" not in page
    request_page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    assert "but for a request to limit under the CCPA, which needs no verification" in request_page

    applied = client.post(page_url, {"right": "limit_use", "purposes": [calls.pk, sponsors.pk]}, follow=True)
    page = applied.content.decode()
    assert "Added 1 entry" in page
    assert "Not added to Event sponsors: Event sponsors looks people up by customer account reference, and the subject gave no" in page
    assert "needs no verification (CCPA Regulations § 7027(e))" in page
    assert "Verify" not in page
    assert list(SuppressionEntry.objects.values_list("purpose__slug", "value")) == [("telemarketing", "+14155550123")]
    again = client.post(page_url, {"right": "limit_use", "purposes": [calls.pk]}, follow=True)
    assert "The identifiers the subject gave were already on the chosen lists." in again.content.decode()
