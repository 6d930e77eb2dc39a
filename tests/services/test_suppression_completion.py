"""Completing an objection, a consent withdrawal or a limit on use: only once each list it covers is applied, or
staff recorded why it cannot be, which the letter then tells the subject (Art. 21(3): an objection to direct marketing
is always honoured; Art. 12(4): what was not done is a refusal in part)."""

import importlib
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.apps import apps
from django.db import transaction
from django.utils import timezone

from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import CoveredPurpose, RequestType, SuppressionEntry, SuppressionPurpose
from requests_app.services import handling, suppression
from requests_app.services.actions import completion_blockers
from requests_app.services.handling import MARKETING_OBJECTION_REFUSAL, RightRefusal
from requests_app.services.intake import RightDetails, purge_personal_data
from tests.factories import request_in_status, staff_in_role

NO_PHONE = "We hold no phone number of yours, so we make no telemarketing calls to you."


@pytest.fixture
def dpo(db):
    return Actor.staff(staff_in_role("DPO", username="dpo1"))


@pytest.fixture
def emails(db):
    return SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails and newsletters", identity_kinds=["email"])


@pytest.fixture
def calls(db):
    return SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])


def marketing_objection(**overrides):
    """QA's request: UK GDPR, an objection to telemarketing calls as direct marketing and a consent withdrawal;
    only the email address verified, no phone number given."""
    request = request_in_status(
        "in_progress",
        regime="uk_gdpr",
        rights=[
            RightDetails(RequestType.OBJECTION, objection_processing="Telemarketing calls", direct_marketing=True),
            RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Newsletters"),
        ],
        **overrides,
    )
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    return request


def complete(request, dpo, *refused):
    return handling.request_complete(request=request, actor=dpo, letter="", expected_status=request.status, refused=refused)


@pytest.mark.django_db
def test_a_marketing_objection_applied_to_one_list_of_two_is_not_completed(dpo, emails, calls):
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails, calls])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[emails])

    assert completion_blockers(request) == [
        "“Object to the processing of their data”: the subject is not on the Telemarketing calls list yet: Telemarketing "
        "calls looks people up by phone number, and no identifier of that kind is verified for this request. Verify one "
        "(ask the subject for it if they gave none) and add them to the list again, or remove the list if the subject "
        "did not ask for it: an objection to direct marketing cannot be left unapplied (Art. 21(3))."
    ]
    with pytest.raises(RequestError, match="Telemarketing calls list"):
        complete(request, dpo)
    # Refusing it instead is no way out: an objection to direct marketing is always honoured.
    with pytest.raises(RequestError) as refused:
        complete(request, dpo, RightRefusal(RequestType.OBJECTION, "other", "We could not reach the calls team."))
    assert str(refused.value) == str(MARKETING_OBJECTION_REFUSAL)


@pytest.mark.django_db
def test_a_phone_number_verified_later_lets_the_list_be_applied_and_the_request_completed(dpo, emails, calls):
    request = marketing_objection(subject_phone="+32470123456")
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[calls])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[emails])

    request.identities.filter(kind="phone").update(verified_at=timezone.now())
    assert completion_blockers(request) == [
        "“Object to the processing of their data”: the subject is not on the Telemarketing calls list yet: an identifier "
        "of its kind is verified now: add them to it."
    ]
    assert suppression.suppress(request=request, actor=dpo, right="objection", purposes=[calls]) == {"telemarketing": 1}
    complete(request, dpo)

    body = request.messages.get().body
    assert "Following your objection (Article 21 UK GDPR), we no longer use your data for: Telemarketing calls." in body
    assert "lodge a complaint" not in body


@pytest.mark.django_db
def test_a_phone_number_verified_by_a_method_that_does_not_prove_it_puts_nobody_on_a_list(dpo, calls):
    """An identity document proves who the subject is, not that the number is theirs: a list would stop calling
    whoever it belongs to (IDENTITY_PROVING_METHODS), as the source systems are not searched by it either."""
    request = marketing_objection(subject_phone="+32470123456")
    request.identities.filter(kind="phone").update(verified_at=timezone.now(), verification_method="document")
    assert suppression.suppress(request=request, actor=dpo, right="objection", purposes=[calls]) == {}
    assert not SuppressionEntry.objects.exists()

    request.identities.filter(kind="phone").update(verification_method="callback")
    assert suppression.suppress(request=request, actor=dpo, right="objection", purposes=[calls]) == {"telemarketing": 1}
    assert SuppressionEntry.objects.get().value == "+32470123456"


# Staff's words end the sentence "The reason: …" with its full stop, given or not, and never two.
@pytest.mark.parametrize("reason", [NO_PHONE, NO_PHONE.removesuffix(".")])
@pytest.mark.django_db
def test_a_list_that_cannot_be_applied_is_told_with_its_reason_and_the_right_to_complain(dpo, emails, calls, reason):
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[calls])
    with pytest.raises(RequestError, match="Say why"):
        suppression.record_not_applied(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls), reason=" ")

    suppression.record_not_applied(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls), reason=reason)
    complete(request, dpo)

    body = request.messages.get().body
    assert "we no longer use your data for: Promotional emails and newsletters." in body
    assert f"We could not stop using your data for Telemarketing calls, as you asked. The reason: {NO_PHONE}\n\n" in body
    assert "You have the right to lodge a complaint with a supervisory authority" in body
    assert request.events.filter(action="suppression_not_applied", data={"right": "withdraw_consent", "purpose": "telemarketing"}).exists()


@pytest.mark.django_db
def test_a_list_an_objection_to_direct_marketing_covers_cannot_be_left_unapplied_with_a_reason(dpo, emails, calls):
    """Art. 21(3): the data shall no longer be used for direct marketing, with no exception a reason could give."""
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails, calls])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[emails])

    with pytest.raises(RequestError) as refused:
        suppression.record_not_applied(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls), reason=NO_PHONE)
    assert str(refused.value) == (
        "An objection to direct marketing cannot be left unapplied (Art. 21(3)): verify an identifier of the kind the "
        "Telemarketing calls list uses (ask the subject for it if they gave none) and add them to it, or remove the list "
        "if the subject did not ask for it."
    )
    assert CoveredPurpose.objects.get(purpose=calls).not_applied_reason == ""
    assert not request.events.filter(action="suppression_not_applied").exists()
    with pytest.raises(RequestError, match="Telemarketing calls list"):
        complete(request, dpo)
    # Not asked after all: removed, the request completes on the list applied.
    suppression.uncover(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls))
    complete(request, dpo)
    assert "We could not stop using your data" not in request.messages.get().body


@pytest.mark.django_db
def test_a_list_of_any_kind_of_identifier_says_none_is_verified(dpo):
    """A list with no kind ticked takes every kind: only a request with no identifier verified at all misses it."""
    sponsors = SuppressionPurpose.objects.create(slug="sponsors", name="Event sponsors")

    assert suppression.missing_identifier(sponsors, {"phone"}, regime="gdpr") is None
    assert suppression.missing_identifier(sponsors, set(), regime="gdpr") == (
        "No identifier of this request is verified, and Event sponsors needs one of any kind. Verify one (ask the "
        "subject for it if they gave none) and add them to the list again, or record why it cannot be applied."
    )


@pytest.mark.django_db
def test_a_right_that_covers_no_list_names_what_the_subject_wrote(dpo, emails):
    request = marketing_objection()

    assert completion_blockers(request) == [
        # No refusal offered: an objection to direct marketing cannot be refused (Art. 21(3)).
        "“Object to the processing of their data” has not been applied: choose the suppression lists of what the subject "
        "named (direct marketing; Telemarketing calls) and add the subject to them.",
        "“Withdraw their consent” has not been applied: choose the suppression lists of what the subject named "
        "(Newsletters) and add the subject to them. Or refuse this right with your reasons.",
    ]
    # A right refused needs none of its lists.
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails])
    complete(request, dpo, RightRefusal(RequestType.WITHDRAW_CONSENT, "excessive", "Asked five times this week."))
    assert request.messages.get().body.count("we no longer use your data") == 1


@pytest.mark.django_db
def test_a_list_misread_as_asked_is_removed_but_one_applied_stays(dpo, emails, calls):
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails, calls])

    suppression.uncover(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls))
    with pytest.raises(RequestError, match="on the Promotional emails and newsletters list already"):
        suppression.uncover(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=emails))
    assert list(CoveredPurpose.objects.values_list("purpose__slug", flat=True)) == ["marketing-email"]


@pytest.mark.django_db
def test_the_reason_a_list_was_not_applied_is_purged_with_the_request(dpo, calls):
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[calls])
    suppression.record_not_applied(request=request, actor=dpo, covered=CoveredPurpose.objects.get(), reason=NO_PHONE)

    purge_personal_data(request)

    assert CoveredPurpose.objects.get().not_applied_reason == ""


@pytest.mark.django_db
def test_upgrading_covers_the_lists_the_subject_was_put_on_before(dpo, emails, calls):
    """Before CoveredPurpose, suppress wrote only the entries and a "suppression_added" event naming no right, and
    the letter said each suppression right asked for stopped the uses of every such event."""
    migration = importlib.import_module("requests_app.migrations.0059_covered_purposes")
    before = marketing_objection()
    SuppressionEntry.objects.create(purpose=emails, kind="email", value="ana@example.com", right="objection", request=before)
    since_deleted = SuppressionPurpose.objects.create(slug="profiling", name="Profiling")
    with transaction.atomic():
        old = record_event(
            before, "suppression_added", actor=dpo, data={"purposes": [{"purpose": "marketing-email", "added": 1}, {"purpose": "profiling", "added": 0}]}
        )
    since_deleted.delete()
    # One from after CoveredPurpose counts for its own right only (its rows are there already).
    after = marketing_objection()
    suppression.suppress(request=after, actor=dpo, right="withdraw_consent", purposes=[emails])

    migration.cover_the_lists_applied_before(apps, None)
    migration.cover_the_lists_applied_before(apps, None)  # twice changes nothing

    assert sorted(CoveredPurpose.objects.filter(right__request=before).values_list("right__right", "purpose__slug", "applied_at")) == [
        ("objection", "marketing-email", old.created_at),
        ("withdraw_consent", "marketing-email", old.created_at),
    ]
    assert list(CoveredPurpose.objects.filter(right__request=after).values_list("right__right", flat=True)) == ["withdraw_consent"]
    with pytest.raises(RequestError, match="cannot be refused"):
        complete(before, dpo, RightRefusal(RequestType.WITHDRAW_CONSENT, "excessive", "Asked five times this week."))
    complete(before, dpo)
    body = before.messages.get().body
    assert "Following your objection (Article 21 UK GDPR), we no longer use your data for: Promotional emails and newsletters." in body
    assert "lodge a complaint" not in body


@pytest.mark.django_db
def test_the_letter_names_the_lists_in_the_subjects_language(dpo, emails, calls):
    emails.translations.create(language="fr", name="E-mails promotionnels")
    calls.translations.create(language="fr", name="Démarchage téléphonique")
    calls.translations.create(language="nl", name="Telemarketingoproepen")  # another language's name is not used
    request = marketing_objection(language="fr")
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[emails])
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[calls])
    suppression.record_not_applied(
        request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls), reason="Aucun numéro connu."
    )
    complete(request, dpo)

    body = request.messages.get().body
    assert "E-mails promotionnels." in body
    assert "Démarchage téléphonique" in body and "Aucun numéro connu." in body
    assert emails.name not in body and calls.name not in body and "Telemarketingoproepen" not in body


@pytest.mark.django_db
def test_a_list_a_colleague_removed_meanwhile_is_refused_with_a_reason_not_an_error(dpo, emails, calls):
    """Two staff on the same page: the second read the list before the first removed it, then waited for the lock."""
    request = marketing_objection()
    suppression.suppress(request=request, actor=dpo, right="withdraw_consent", purposes=[calls])
    read_before = CoveredPurpose.objects.get(purpose=calls)
    suppression.uncover(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls))

    removed = "This list is no longer among the lists this right covers: it was removed since you loaded the page."
    with pytest.raises(RequestError, match=removed):
        suppression.uncover(request=request, actor=dpo, covered=read_before)
    with pytest.raises(RequestError, match=removed):
        suppression.record_not_applied(request=request, actor=dpo, covered=read_before, reason=NO_PHONE)
    assert request.events.filter(action="suppression_uncovered").count() == 1
    assert not request.events.filter(action="suppression_not_applied").exists()


def ccpa_limit(**overrides):
    """The legal review's case: a CCPA request to limit the use of sensitive personal information, received on
    1 Dec 2026 with a phone number, which nobody verified (nor the email address)."""
    with time_machine.travel(datetime(2026, 12, 1, 10, tzinfo=UTC), tick=False):
        fields = {"regime": "ccpa", "rights": [RightDetails(RequestType.LIMIT_USE)], "subject_phone": "+14155550123"}
        return request_in_status("in_progress", **{**fields, **overrides})


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_puts_the_unverified_phone_number_on_the_list_and_completes(dpo, calls):
    """CCPA Regulations § 7027(e): a request to limit is not a verifiable consumer request."""
    request = ccpa_limit()
    assert request.due_on == date(2026, 12, 22)  # 15 business days (§ 7027(g)(1))
    assert not request.identities.filter(verified_at__isnull=False).exists()

    assert suppression.suppress(request=request, actor=dpo, right="limit_use", purposes=[calls]) == {"telemarketing": 1}
    assert suppression.suppressed(calls, [("phone", "+1 415 555 0123")]) == [True]
    assert list(SuppressionEntry.objects.values_list("kind", "value", "right")) == [("phone", "+14155550123", "limit_use")]
    assert completion_blockers(request) == []
    complete(request, dpo)
    assert "no longer use it for: Telemarketing calls." in request.messages.get().body


@pytest.mark.django_db
def test_a_ccpa_request_to_limit_without_an_identifier_of_the_lists_kind_asks_for_one_not_for_verification(dpo, calls):
    request = ccpa_limit(subject_phone="")
    suppression.suppress(request=request, actor=dpo, right="limit_use", purposes=[calls])

    assert completion_blockers(request) == [
        "“Limit the use and disclosure of their data”: the subject is not on the Telemarketing calls list yet: Telemarketing "
        "calls looks people up by phone number, and the subject gave no identifier of that kind. Ask the subject for one "
        "and add them to the list again, or record why it cannot be applied. A request to limit the use of sensitive "
        "personal information under the CCPA needs no verification (CCPA Regulations § 7027(e))."
    ]
    # Given later, unverified: it is enough.
    request.identities.create(kind="phone", value="+14155550123")
    assert completion_blockers(request) == [
        "“Limit the use and disclosure of their data”: the subject is not on the Telemarketing calls list yet: the subject "
        "gave an identifier of its kind: add them to it."
    ]
    assert suppression.suppress(request=request, actor=dpo, right="limit_use", purposes=[calls]) == {"telemarketing": 1}
    assert completion_blockers(request) == []


@pytest.mark.django_db
def test_a_list_of_any_kind_of_identifier_says_the_subject_gave_none_for_a_ccpa_request_to_limit(dpo):
    sponsors = SuppressionPurpose.objects.create(slug="sponsors", name="Event sponsors")

    assert suppression.missing_identifier(sponsors, {"phone"}, regime="ccpa", verification_needed=False) is None
    assert suppression.missing_identifier(sponsors, set(), regime="ccpa", verification_needed=False).startswith(
        "The subject gave no identifier, and Event sponsors needs one of any kind. Ask the subject for one"
    )


@pytest.mark.django_db
def test_only_the_ccpa_request_to_limit_uses_unverified_identifiers(dpo, calls):
    """Beside it, a CCPA objection (no CCPA right: the GDPR's, which this EU controller owes every subject) and a
    limit on use under the GDPR still need a verified identifier."""
    both = ccpa_limit(rights=[RightDetails(RequestType.OBJECTION, objection_processing="Telemarketing calls"), RightDetails(RequestType.LIMIT_USE)])
    gdpr = ccpa_limit(regime="gdpr", subject_name="Bo Smith", subject_email="bo@example.com", subject_phone="+32470123456")

    assert suppression.suppress(request=both, actor=dpo, right="objection", purposes=[calls]) == {}
    assert suppression.suppress(request=gdpr, actor=dpo, right="limit_use", purposes=[calls]) == {}
    assert "is verified for this request. Verify one" in completion_blockers(gdpr)[0]
    assert suppression.suppress(request=both, actor=dpo, right="limit_use", purposes=[calls]) == {"telemarketing": 1}
    assert [blocker.split(":")[0] for blocker in completion_blockers(both)] == ["“Object to the processing of their data”"]


@pytest.mark.django_db
@pytest.mark.parametrize(("regime", "law"), [("gdpr", " (Art. 21(3))"), ("uk_gdpr", " (Art. 21(3))"), ("ccpa", ""), ("lgpd", "")])
def test_a_marketing_list_left_unapplied_cites_the_gdprs_article_only_where_the_requests_law_numbers_it_so(dpo, calls, regime, law):
    request = request_in_status(
        "in_progress",
        regime=regime,
        rights=[RightDetails(RequestType.OBJECTION, objection_processing="Telemarketing calls", direct_marketing=True)],
    )
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    suppression.suppress(request=request, actor=dpo, right="objection", purposes=[calls])

    assert completion_blockers(request) == [
        "“Object to the processing of their data”: the subject is not on the Telemarketing calls list yet: Telemarketing "
        "calls looks people up by phone number, and no identifier of that kind is verified for this request. Verify one "
        "(ask the subject for it if they gave none) and add them to the list again, or remove the list if the subject "
        f"did not ask for it: an objection to direct marketing cannot be left unapplied{law}."
    ]
    with pytest.raises(RequestError) as refused:
        suppression.record_not_applied(request=request, actor=dpo, covered=CoveredPurpose.objects.get(purpose=calls), reason=NO_PHONE)
    assert str(refused.value).startswith(f"An objection to direct marketing cannot be left unapplied{law}: verify an identifier")
