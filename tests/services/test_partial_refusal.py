"""Completing a request with some of its rights refused: each on its ground, told to the subject with the
reasons and the right to complain (Art. 12(4)), recorded on the rights and in the audit trail."""

import pytest
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    ConnectorKind,
    IdentityKind,
    LegalBasis,
    PrivacyRequest,
    RequestedRight,
    RequestType,
    SourceAction,
    SourceSystem,
    Status,
    SuppressionPurpose,
)
from requests_app.services import handling, suppression
from requests_app.services.handling import RightRefusal
from requests_app.services.intake import RightDetails
from tests.factories import (
    erasure_kept_whole, identity_proof_asked, last_letter, released_package, request_in_status, staff_in_role,
)

COMPELLING_GROUNDS = "Our fraud checks on your calls protect other customers, which outweighs your objection (Art. 21(1))."
TELECOM_LAW = "The electronic communications law makes us keep call records for 12 months."


@pytest.fixture
def dpo(db):
    return staff_in_role("DPO", username="dpo1")


def asking(*rights, **overrides) -> PrivacyRequest:
    """An in-progress request for `rights` (RightDetails or codes), its access package released where it asks one, and
    where it asks erasure, its dry run showing a legal hold keeping all it found (a refusal on the hold needs that)."""
    details = [right if isinstance(right, RightDetails) else RightDetails(right) for right in rights]
    request = request_in_status(Status.IN_PROGRESS, rights=details, **overrides)
    if RequestType.ACCESS in request.requested_rights:
        released_package(request)
    if RequestType.ERASURE in request.requested_rights:
        erasure_kept_whole(request)
    return request


def corrected(request) -> PrivacyRequest:
    """`request` with a correction carried out in a manual source, its owner having confirmed one row corrected: a
    rectification is completed as granted only once something was corrected (actions.completion_blockers)."""
    paper = SourceSystem.objects.create(
        slug="paper", name="Paper archive", connector=ConnectorKind.MANUAL, identity_kind=IdentityKind.EMAIL,
        purposes="Contracts", legal_basis=LegalBasis.CONTRACT, retention="10 years", origin="The subject",
    )
    SourceAction.objects.create(
        request=request, source=paper, kind=ActionKind.RECTIFY, status=ActionStatus.DONE, finished_at=timezone.now(),
        result={"categories": [], "rows": 1, "manual": True},
    )
    return request


def complete(request, dpo, *refused, letter="We sent you a copy of your data."):
    return handling.request_complete(
        request=request, actor=Actor.staff(dpo), letter=letter, expected_status=request.status, refused=refused
    )


def nothing_changed(request) -> bool:
    request.refresh_from_db()
    return (
        request.status == Status.IN_PROGRESS
        and request.refused_rights_mask == 0
        and not RequestedRight.objects.filter(request=request).exclude(refusal_ground="").exists()
        and not request.messages.exists()
    )


@pytest.mark.django_db
def test_a_request_granted_in_part_completes_and_its_letter_says_why_each_right_was_refused(dpo):
    request = asking(RequestType.ACCESS, RequestType.ERASURE, RequestType.OBJECTION)

    complete(
        request, dpo,
        RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW),
        RightRefusal(RequestType.OBJECTION, "other", COMPELLING_GROUNDS),
    )

    request.refresh_from_db()
    assert request.status == Status.COMPLETED
    assert request.refused_rights == ["erasure", "objection"] and request.granted_rights == ["access"]
    assert dict(request.rights.values_list("right", "refusal_ground")) == {
        "access": "", "erasure": "legal_obligation", "objection": "other",
    }
    body = request.messages.get().body
    # The opening names only the right granted: the refused ones have their own paragraphs.
    assert body.startswith(f"We have completed your request {request.reference} (Access a copy of my data).")
    assert "We sent you a copy of your data." in body
    assert (
        "We cannot grant this part of your request: “Erase my data”. The reason: Legal obligation to retain the data "
        f"(Art. 17(3)(b) GDPR).\n\n{TELECOM_LAW}"
    ) in body
    # "Other" says nothing: the DPO's words are the reason, said once.
    assert f"We cannot grant this part of your request: “Object to the processing of my data”. The reason: {COMPELLING_GROUNDS}" in body
    assert body.count(COMPELLING_GROUNDS) == 1 and "Other" not in body
    # The right to complain and to a judicial remedy, once for all the rights refused.
    assert body.count("lodge a complaint with a supervisory authority") == 1
    assert body.endswith("and to seek a judicial remedy before the courts.")


@pytest.mark.django_db
def test_the_completion_event_names_the_rights_refused_and_their_grounds_and_nothing_the_subject_was_told(dpo):
    request = asking(RequestType.ACCESS, RequestType.ERASURE, RequestType.OBJECTION)
    complete(
        request, dpo,
        RightRefusal(RequestType.OBJECTION, "other", COMPELLING_GROUNDS),
        RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW),
    )
    event = request.events.get(action="complete")
    assert event.data == {
        "refused": [{"right": "erasure", "ground": "legal_obligation"}, {"right": "objection", "ground": "other"}]
    }
    assert event.actor == dpo


@pytest.mark.django_db
def test_a_completion_that_refuses_nothing_records_and_says_no_refusal(dpo):
    request = asking(RequestType.ACCESS)
    complete(request, dpo)
    request.refresh_from_db()
    assert request.refused_rights == [] and request.events.get(action="complete").data == {}
    assert "lodge a complaint" not in request.messages.get().body


@pytest.mark.parametrize(("rights", "ground"), [
    ([RequestType.ACCESS, RequestType.ERASURE], "other"),
    ([RequestType.ACCESS, RequestType.ERASURE], "excessive"),
    ([RequestType.ERASURE], "other"),
    ([RequestType.ERASURE], "legal_obligation"),
])
@pytest.mark.django_db
def test_refusing_every_right_asked_on_one_ground_is_refused_as_a_rejection(dpo, rights, ground):
    """One reason for the whole request is a rejection: the Reject action offers that ground, and its letter says
    the request is refused, once, for it."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(right) for right in rights])
    refused = [RightRefusal(right, ground, TELECOM_LAW) for right in rights]
    with pytest.raises(RequestError, match="would be refused on the same ground: that is a rejection. Use Reject instead"):
        complete(request, dpo, *refused)
    assert nothing_changed(request)


FRAUD_CHECKS = RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls")
PENDING_DISPUTE = "We need your billing records to defend the claim you brought against us in court."
OVERRIDING_INTEREST = "Our fraud checks on your calls protect other customers, which outweighs your objection."


@pytest.mark.django_db
def test_every_right_refused_each_on_its_own_ground_completes_with_a_letter_that_refuses_each(dpo):
    """QA #4: an erasure kept by the telecom law (Art. 17(3)(b)) and an objection outweighed (Art. 21(1)): Reject
    could cite neither, and the letter must give each right's own reason (Art. 12(4))."""
    request = asking(RequestType.ERASURE, FRAUD_CHECKS)

    complete(
        request, dpo,
        RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW),
        RightRefusal(RequestType.OBJECTION, "compelling_grounds", OVERRIDING_INTEREST),
        letter="We looked at each part of your request with the teams concerned.",
    )

    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.rejection_ground == ""
    assert request.refused_rights == request.requested_rights == ["erasure", "objection"] and request.granted_rights == []
    assert request.events.get(action="complete").data == {
        "refused": [{"right": "erasure", "ground": "legal_obligation"}, {"right": "objection", "ground": "compelling_grounds"}]
    }
    message = request.messages.get()
    assert message.subject == f"Your privacy request {request.reference}"
    # Nothing was done: the letter does not open as a completion ("We have completed your request ()").
    assert message.body.startswith(
        f"We have examined each part of your request {request.reference} (Erase my data, Object to the processing of my "
        "data), and we cannot grant any of them. We give the reason for each below.\n\n"
        "We looked at each part of your request with the teams concerned.\n\n"
    )
    assert "We have completed" not in message.body and "()" not in message.body
    assert (
        "We cannot grant this part of your request: “Erase my data”. The reason: Legal obligation to retain the data "
        f"(Art. 17(3)(b) GDPR).\n\n{TELECOM_LAW}"
    ) in message.body
    assert (
        "We cannot grant this part of your request: “Object to the processing of my data”. The reason: Compelling "
        f"legitimate grounds for the processing, or legal claims (Art. 21(1) GDPR).\n\n{OVERRIDING_INTEREST}"
    ) in message.body
    assert message.body.count("lodge a complaint with a supervisory authority") == 1
    assert message.body.endswith("and to seek a judicial remedy before the courts.")


@pytest.mark.django_db
def test_a_letter_refusing_every_right_in_french_gives_each_reason_in_french(dpo):
    request = asking(RequestType.ERASURE, FRAUD_CHECKS, language="fr")

    complete(
        request, dpo,
        RightRefusal(RequestType.ERASURE, "legal_obligation", "La loi nous oblige à conserver vos données de trafic."),
        RightRefusal(RequestType.OBJECTION, "compelling_grounds", "La lutte contre la fraude protège nos autres clients."),
        letter="",
    )

    message = request.messages.get()
    assert message.subject == f"Votre demande relative à vos données personnelles {request.reference}"
    assert "Nous avons traité votre demande" not in message.body  # the completion's opening, for rights granted
    assert (
        "Nous ne pouvons pas donner suite à cette partie de votre demande\u00a0: «\u00a0Effacer mes données\u00a0». Motif\u00a0: Obligation "
        "légale de conserver les données (art. 17, paragraphe 3, point b) du RGPD).\n\nLa loi nous oblige à conserver vos données de trafic."
    ) in message.body
    assert (
        "Nous ne pouvons pas donner suite à cette partie de votre demande\u00a0: «\u00a0M'opposer au traitement de mes données\u00a0». "
        "Motif\u00a0: Motifs légitimes et impérieux pour le traitement, ou droits en justice (art. 21, paragraphe 1 du RGPD).\n\n"
    ) in message.body
    assert message.body.count("Vous avez le droit d'introduire une réclamation auprès d'une autorité de contrôle") == 1
    assert "Legal obligation" not in message.body and "supervisory authority" not in message.body


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_cannot_be_refused_in_part_on_another_ground(dpo):
    marketing = RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)
    request = asking(RequestType.ACCESS, marketing)
    with pytest.raises(RequestError, match=r"cannot be refused \(Art. 21\(3\)\)"):
        complete(request, dpo, RightRefusal(RequestType.OBJECTION, "other", COMPELLING_GROUNDS))
    assert nothing_changed(request)
    # As a whole request may be refused: on who asks, or how.
    complete(request, dpo, RightRefusal(RequestType.OBJECTION, "excessive", "The fifth objection this week."))
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["objection"]


@pytest.mark.parametrize("ground", ["other", "excessive", "legal_obligation", "rights_of_others", "legal_claims"])
@pytest.mark.django_db
def test_a_refusal_ground_that_does_not_say_why_needs_an_explanation(dpo, ground):
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    with pytest.raises(RequestError, match="the letter must give the reasons"):
        complete(request, dpo, RightRefusal(RequestType.ERASURE, ground, "  "))
    assert nothing_changed(request)


@pytest.mark.parametrize(
    ("refusal", "message"),
    [
        (RightRefusal(RequestType.ERASURE, "no_data"), "Choose the legal reason for refusing “Erase their data”."),
        (RightRefusal(RequestType.PORTABILITY, "identity_not_verified"), "This request does not ask for portability."),
    ],
)
@pytest.mark.django_db
def test_a_refusal_on_a_ground_no_longer_offered_or_of_a_right_not_asked_is_refused(dpo, refusal, message):
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    with pytest.raises(RequestError, match=message):
        complete(request, dpo, refusal)
    assert nothing_changed(request)


@pytest.mark.django_db
def test_a_refused_right_needs_none_of_its_work_done(dpo):
    """Nothing erased, no package compiled: the rights refused are answered by the letter."""
    request = asking(RequestType.ERASURE, RequestType.PORTABILITY, RequestType.RESTRICTION)
    with pytest.raises(RequestError) as refusal:
        complete(request, dpo, RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW))
    assert "no data package has been released" in str(refusal.value)  # the portability, still granted
    assert "The erasure or restriction has not been planned" in str(refusal.value)  # the restriction, still granted

    released_package(request, kind="portability")
    with pytest.raises(RequestError, match="The erasure or restriction has not been planned"):
        complete(request, dpo, RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW))
    complete(
        request, dpo,
        RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW),
        RightRefusal(RequestType.RESTRICTION, "excessive", "The third restriction of the same data this month."),
    )
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.granted_rights == ["portability"]


@pytest.mark.django_db
def test_a_rectification_that_corrected_nothing_cannot_be_completed_as_granted_whatever_the_letter(dpo):
    """Granted with nothing done, the rectification would stand as answered in the record, the certificate and the
    API; a letter, which may speak of the access only, records no reason for not correcting."""
    request = asking(RequestType.ACCESS, RightDetails(RequestType.RECTIFICATION, rectification_data="My city", rectification_value="Gent"))
    for letter in ("", "We checked your city: it is right."):
        with pytest.raises(RequestError, match="“Correct or complete their data”: no data has been corrected. Enter the corrected values"):
            complete(request, dpo, letter=letter)
        assert nothing_changed(request)


@pytest.mark.django_db
def test_a_refused_rectification_needs_no_correction_and_its_letter_says_why(dpo):
    request = asking(RequestType.ACCESS, RightDetails(RequestType.RECTIFICATION, rectification_data="My city", rectification_value="Gent"))
    complete(request, dpo, RightRefusal(RequestType.RECTIFICATION, "other", "The address is your landlord's."), letter="")
    body = request.messages.get().body
    assert "The reason: The address is your landlord's." in body
    assert "lodge a complaint with a supervisory authority" in body  # Art. 12(4)


@pytest.mark.django_db
def test_a_rectification_is_refused_for_data_found_accurate_with_how_it_was_checked(dpo):
    request = asking(RequestType.ACCESS, RightDetails(RequestType.RECTIFICATION, rectification_data="My city", rectification_value="Gent"))
    with pytest.raises(RequestError, match="Explain to the subject why “The data is accurate and complete"):
        complete(request, dpo, RightRefusal(RequestType.RECTIFICATION, "data_accurate", ""))
    assert nothing_changed(request)

    checked = "Your contract, signed on 3 March, gives Antwerp as your city, and you have not moved since."
    complete(request, dpo, RightRefusal(RequestType.RECTIFICATION, "data_accurate", checked))

    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["rectification"]
    body = request.messages.get().body
    assert f"The reason: The data is accurate and complete (Art. 16 GDPR).\n\n{checked}" in body
    assert "lodge a complaint with a supervisory authority" in body


@pytest.mark.django_db
def test_data_found_accurate_refuses_a_rectification_only(dpo):
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    with pytest.raises(RequestError, match="can refuse only a request to correct or complete data, not “Erase their data”"):
        complete(request, dpo, RightRefusal(RequestType.ERASURE, "data_accurate", "It is right."))
    assert nothing_changed(request)


@pytest.mark.django_db
def test_a_right_answered_already_cannot_be_refused(dpo):
    """The subject has their copy: a letter refusing access would deny what they hold."""
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    with pytest.raises(RequestError, match="“Access a copy of their data” cannot be refused: its data package was released to the subject."):
        complete(request, dpo, RightRefusal(RequestType.ACCESS, "excessive", "The fourth copy asked this month."))
    assert nothing_changed(request)


@pytest.mark.django_db
def test_a_request_answered_in_part_is_not_sent_to_reject_nor_rejected(dpo):
    """Every right refused on one ground pointed the DPO to Reject before saying the copy was out already; and
    Reject then refused the request whole, the letter denying the copy, and the hourly clean-up ended it."""
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    refused = [RightRefusal(right, "excessive", "You asked the same three times this month.") for right in request.requested_rights]
    with pytest.raises(RequestError, match="its data package was released to the subject.") as refusal:
        complete(request, dpo, *refused)
    assert "Use Reject" not in str(refusal.value)
    with pytest.raises(RequestError, match="“Access a copy of their data” cannot be refused: its data package was released"):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="excessive",
            explanation="You asked the same three times this month.", expected_status=request.status,
        )
    assert nothing_changed(request)


@pytest.mark.django_db
def test_a_suppression_applied_is_told_for_the_right_granted_only(dpo):
    """The subject withdrew consent to the newsletter (applied) and objected to fraud checks (refused)."""
    request = asking(
        RequestType.ACCESS,
        RightDetails(RequestType.OBJECTION, objection_processing="Fraud checks on my calls"),
        RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Newsletter"),
    )
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    newsletter = SuppressionPurpose.objects.create(slug="newsletter", name="Newsletter")
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="withdraw_consent", purposes=[newsletter])

    with pytest.raises(RequestError, match="“Withdraw their consent” cannot be refused: the subject was put on these suppression lists for it: Newsletter."):
        complete(
            request, dpo,
            RightRefusal(RequestType.OBJECTION, "other", COMPELLING_GROUNDS),
            RightRefusal(RequestType.WITHDRAW_CONSENT, "excessive", "Asked five times this week."),
        )
    complete(request, dpo, RightRefusal(RequestType.OBJECTION, "other", COMPELLING_GROUNDS))
    body = request.messages.get().body
    assert "Following the withdrawal of your consent (Article 7(3) GDPR), we no longer use your data for: Newsletter." in body
    assert "Following your objection" not in body


@pytest.mark.parametrize(("regime", "language", "ground", "ground_shown"), [
    ("ccpa", "en", "legal_obligation", "The reason: Legal obligation to retain the data.\n"),
    ("lgpd", "en", "legal_obligation", "The reason: Legal obligation to retain the data.\n"),
    ("ccpa", "en", "legal_claims", "The reason: Needed for the establishment, exercise or defence of legal claims.\n"),
    ("lgpd", "en", "legal_claims", "The reason: Needed for the establishment, exercise or defence of legal claims.\n"),
])
@pytest.mark.django_db
def test_a_refusal_under_another_law_than_the_gdpr_cites_no_gdpr_article(dpo, regime, language, ground, ground_shown):
    request = asking(RequestType.ACCESS, RequestType.ERASURE, regime=regime, language=language)
    complete(request, dpo, RightRefusal(RequestType.ERASURE, ground, "Tax law: invoices kept 7 years."))
    body = request.messages.get().body
    assert ground_shown in body
    assert "Art." not in body and "GDPR" not in body



@pytest.mark.parametrize("regime", ["gdpr", "ccpa", "lgpd"])
@pytest.mark.django_db
def test_an_objection_is_refused_on_compelling_grounds_and_an_erasure_on_legal_claims(dpo, regime):
    request = asking(RequestType.ACCESS, RequestType.ERASURE, FRAUD_CHECKS, regime=regime)
    complete(
        request, dpo,
        RightRefusal(RequestType.OBJECTION, "compelling_grounds", OVERRIDING_INTEREST),
        RightRefusal(RequestType.ERASURE, "legal_claims", PENDING_DISPUTE),
    )
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["erasure", "objection"]
    assert dict(request.rights.values_list("right", "refusal_ground")) == {
        "access": "", "erasure": "legal_claims", "objection": "compelling_grounds",
    }
    body = request.messages.get().body
    # Its GDPR article only under the GDPR: a CCPA or LGPD subject relies on their own law (wording.label_in_letter).
    article = {"erasure": " (Art. 17(3)(e) GDPR)", "objection": " (Art. 21(1) GDPR)"} if regime == "gdpr" else {"erasure": "", "objection": ""}
    assert (
        "We cannot grant this part of your request: “Erase my data”. The reason: Needed for the establishment, exercise or "
        f"defence of legal claims{article['erasure']}.\n\n{PENDING_DISPUTE}"
    ) in body
    assert (
        "We cannot grant this part of your request: “Object to the processing of my data”. The reason: Compelling legitimate "
        f"grounds for the processing, or legal claims{article['objection']}.\n\n{OVERRIDING_INTEREST}"
    ) in body
    if regime != "gdpr":
        assert "Art." not in body and "GDPR" not in body


@pytest.mark.parametrize(
    ("refusal", "message"),
    [
        (RightRefusal(RequestType.ERASURE, "compelling_grounds", OVERRIDING_INTEREST),
         "Compelling legitimate grounds (Art. 21(1)) can refuse only an objection to processing other than direct marketing, "
         "not “Erase their data”."),
        (RightRefusal(RequestType.ACCESS, "compelling_grounds", OVERRIDING_INTEREST), "not “Access a copy of their data”."),
        (RightRefusal(RequestType.ACCESS, "legal_claims", PENDING_DISPUTE),
         "Legal claims (Art. 17(3)(e)) can refuse only an erasure, not “Access a copy of their data”."),
        (RightRefusal(RequestType.OBJECTION, "legal_claims", PENDING_DISPUTE),
         "Legal claims (Art. 17(3)(e)) can refuse only an erasure, not “Object to the processing of their data”."),
    ],
)
@pytest.mark.django_db
def test_a_ground_of_one_right_cannot_refuse_another(dpo, refusal, message):
    request = request_in_status(
        Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE), FRAUD_CHECKS]
    )
    with pytest.raises(RequestError) as refused:
        complete(request, dpo, refusal)
    assert message in str(refused.value)
    assert nothing_changed(request)


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_cannot_be_refused_on_compelling_grounds(dpo):
    """Art. 21(3): no interest of the controller weighs against it."""
    marketing = RightDetails(RequestType.OBJECTION, objection_processing="Promotional calls", direct_marketing=True)
    request = asking(RequestType.ACCESS, marketing)
    with pytest.raises(RequestError, match=r"The subject objects to direct marketing, which cannot be refused \(Art. 21\(3\)\)"):
        complete(request, dpo, RightRefusal(RequestType.OBJECTION, "compelling_grounds", OVERRIDING_INTEREST))
    assert nothing_changed(request)


@pytest.mark.django_db
def test_the_complete_form_offers_a_ground_of_one_right_only_for_that_right():
    from requests_app.staff.forms import CompleteForm

    newsletter = RightDetails(RequestType.WITHDRAW_CONSENT, consent_withdrawn="Newsletter")
    request = request_in_status(
        Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE), FRAUD_CHECKS, newsletter]
    )
    form = CompleteForm(privacy_request=request)

    def grounds(right):
        return set(dict(form.fields[f"refusal_ground_{right}"].choices))

    one_right_grounds = {"compelling_grounds", "legal_claims", "legal_obligation", "rights_of_others"}
    assert grounds("erasure") & one_right_grounds == {"legal_claims", "legal_obligation"}
    assert grounds("objection") & one_right_grounds == {"compelling_grounds"}
    assert not grounds("access") & one_right_grounds  # other people's data is masked in the copy (Art. 15(4))
    assert not grounds("withdraw_consent") & one_right_grounds
    for right in ("access", "erasure", "objection"):
        # An unverified identity refuses the whole request: never offered for one right.
        assert {"", "unfounded", "excessive", "other"} <= grounds(right) and "identity_not_verified" not in grounds(right)
    assert grounds("withdraw_consent") == {"", "unfounded", "excessive"}  # Art. 7(3): not "other" either


@pytest.mark.django_db
def test_an_unverified_identity_refuses_no_right_alone(dpo):
    """Granting one right to a person whose identity could not be verified, and refusing another for it, contradict."""
    request = asking(RequestType.ACCESS, RequestType.ERASURE)
    with pytest.raises(RequestError, match="refuses the whole request"):
        complete(request, dpo, RightRefusal(RequestType.ERASURE, "identity_not_verified", ""))
    assert nothing_changed(request)


@pytest.mark.parametrize(("right", "ground"), [(RequestType.ACCESS, "legal_obligation"), (RequestType.ERASURE, "rights_of_others")])
@pytest.mark.django_db
def test_a_ground_of_another_rights_article_refuses_no_right_in_part(dpo, right, ground):
    """Art. 17(3)(b) is an exception to erasure, Art. 15(4) a limit on the copy given: neither refuses another right."""
    request = asking(RequestType.ACCESS, RequestType.ERASURE, RequestType.OBJECTION)
    with pytest.raises(RequestError, match="can refuse only"):
        complete(request, dpo, RightRefusal(right, ground, "Because."))
    assert nothing_changed(request)


@pytest.mark.django_db
def test_the_rights_of_others_may_refuse_the_data_ported_too(dpo):
    request = corrected(asking(RequestType.PORTABILITY, RequestType.RECTIFICATION))
    complete(request, dpo, RightRefusal(RequestType.PORTABILITY, "rights_of_others", "The records are your employer's calls."), letter="We corrected it.")
    # The letter cites the portability's article, not the copy's (Art. 15(4)) that the ground's label names too.
    body = request.messages.get().body
    assert (
        "We cannot grant this part of your request: “Receive my data in a machine-readable format”. The reason: The rights and "
        "freedoms of others (Art. 20(4) GDPR).\n\nThe records are your employer's calls."
    ) in body
    assert "15(4)" not in body
    with pytest.raises(RequestError, match=r"\(Art. 20\(4\)\) can refuse only the data ported, not “Erase their data”"):
        complete(asking(RequestType.ACCESS, RequestType.ERASURE), dpo, RightRefusal(RequestType.ERASURE, "rights_of_others", "Because."))


@pytest.mark.django_db
def test_access_is_not_refused_for_other_peoples_data_at_completion(dpo):
    """Refusing access ended its package (exports.end_packages_of_refused_rights): the subject had neither the copy,
    masked, nor the confirmation and the Art. 15(1) and 15(2) information (Art. 15(4), recital 63)."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    with pytest.raises(RequestError, match=r"limit only the copy of the data, never access itself.* Mask the other people's data"):
        complete(request, dpo, RightRefusal(RequestType.ACCESS, "rights_of_others", "Your copy would show other people's calls."))
    assert nothing_changed(request)


LIMIT_USE = RightDetails(RequestType.LIMIT_USE)
NOT_PROVED = "We asked you for a copy of a bill in your name, and received none."


@pytest.mark.django_db
def test_beside_a_ccpa_request_to_limit_an_unverified_identity_refuses_the_other_rights_alone(dpo):
    """The limit is acted on with no identity verified (CCPA Regulations § 7027(e)), the request to know is not: the
    rule that an unverified identity refuses the whole request would have left the access with no refusal at all."""
    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[RightDetails(RequestType.ACCESS), LIMIT_USE])
    with pytest.raises(RequestError, match=r"needs no verified identity \(CCPA Regulations § 7027\(e\)\)"):
        complete(request, dpo, RightRefusal(RequestType.LIMIT_USE, "identity_not_verified", NOT_PROVED))
    assert nothing_changed(request)
    with pytest.raises(RequestError, match=r"To refuse “Access a copy of their data” on it, complete the request and refuse that right there."):
        handling.request_reject(
            request=request, actor=Actor.staff(dpo), ground="identity_not_verified", explanation=NOT_PROVED,
            expected_status=request.status,
        )
    assert nothing_changed(request)

    # The subject's email address, confirmed by the link, is enough to put them on the list.
    request.identities.filter(kind="email").update(verified_at=timezone.now())
    profiling = SuppressionPurpose.objects.create(slug="profiling", name="Profiling")
    suppression.suppress(request=request, actor=Actor.staff(dpo), right="limit_use", purposes=[profiling])
    identity_proof_asked(request, dpo)
    complete(request, dpo, RightRefusal(RequestType.ACCESS, "identity_not_verified", NOT_PROVED), letter="")
    request.refresh_from_db()
    assert request.status == Status.COMPLETED and request.refused_rights == ["access"] and request.granted_rights == ["limit_use"]
    # Treated as a request for the categories instead (CCPA Regulations § 7024(a)): this inventory has none to give.
    assert (
        "We cannot grant this part of your request: “Access a copy of my data”. The reason: Identity could not be verified."
        f"\n\n{NOT_PROVED}\n\nAs we could not verify your identity, we cannot give you specific pieces of personal "
        "information, so we treated your request as one for the categories of personal information (Cal. Code Regs. tit. "
        "11, § 7024(a)). Without verifying who you are, we cannot tell you which of them we hold about you: this is what "
        "we collect about the people whose data we process, system by system.\n\nYou may make a new request at any time, "
        "with information that identifies you: once we can verify who you are, we will answer it."
    ) in last_letter(request).body


@pytest.mark.django_db
def test_the_complete_form_offers_an_unverified_identity_and_fraud_beside_a_ccpa_request_to_limit_where_they_refuse():
    from requests_app.staff.forms import CompleteForm

    request = request_in_status(Status.IN_PROGRESS, regime="ccpa", rights=[RightDetails(RequestType.ACCESS), LIMIT_USE])
    form = CompleteForm(privacy_request=request)

    def grounds(right):
        return set(dict(form.fields[f"refusal_ground_{right}"].choices))

    assert "identity_not_verified" in grounds("access") and "fraudulent" not in grounds("access")
    assert grounds("limit_use") == {"", "fraudulent", "unfounded", "excessive"}  # "" is Granted


@pytest.mark.django_db
def test_withdrawing_consent_beside_access_is_refused_in_part_only_as_unfounded_or_excessive(dpo):
    """Art. 7(3); an unverified identity refuses the whole request, never one right of it."""
    from requests_app.staff.forms import CompleteForm

    request = asking(RequestType.ACCESS, RequestType.WITHDRAW_CONSENT)
    assert set(dict(CompleteForm(privacy_request=request).fields["refusal_ground_withdraw_consent"].choices)) == {"", "unfounded", "excessive"}
    with pytest.raises(RequestError, match=r"Consent can be withdrawn at any time"):
        complete(request, dpo, RightRefusal(RequestType.WITHDRAW_CONSENT, "other", "We still need it."))
    assert nothing_changed(request)


@pytest.mark.django_db
def test_the_complete_form_requires_the_reasons_its_ground_needs():
    from requests_app.staff.forms import CompleteForm

    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    form = CompleteForm(
        {"letter": "Done.", "refusal_ground_access": "", "refusal_ground_erasure": "legal_obligation", "refusal_explanation_erasure": " "},
        privacy_request=request,
    )
    assert not form.is_valid() and list(form.errors) == ["refusal_explanation_erasure"]


@pytest.mark.django_db
def test_the_complete_form_refuses_reasons_written_for_a_right_left_granted():
    from requests_app.staff.forms import CompleteForm

    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.ACCESS), RightDetails(RequestType.ERASURE)])
    form = CompleteForm(
        {"letter": "Done.", "refusal_ground_access": "", "refusal_explanation_access": "Your copy would show others' calls.",
         "refusal_ground_erasure": "", "refusal_explanation_erasure": ""},
        privacy_request=request,
    )
    assert not form.is_valid()
    assert list(form.errors) == ["refusal_explanation_access"]


@pytest.mark.django_db
def test_a_refusal_in_part_under_the_ccpa_names_the_belgian_authority_too(dpo):
    """The GDPR applies to every request (the controller is in Brussels): its authority is one the subject may complain to."""
    request = asking(RequestType.ACCESS, RequestType.ERASURE, regime="ccpa", language="nl")
    complete(request, dpo, RightRefusal(RequestType.ERASURE, "legal_obligation", TELECOM_LAW))
    body = request.messages.get().body
    assert "de California Privacy Protection Agency, cppa.ca.gov" in body
    assert "de Gegevensbeschermingsautoriteit (GBA), Drukpersstraat 35, 1000 Brussel" in body


@pytest.mark.django_db
def test_a_french_letter_refusing_the_data_ported_for_the_rights_of_others_cites_article_20_not_15(dpo):
    """QA: "Motif : Droits et libertés d'autrui (art. 15, paragraphe 4, et art. 20, paragraphe 4)" for a portability refusal."""
    request = corrected(asking(RequestType.PORTABILITY, RequestType.RECTIFICATION, language="fr"))
    complete(request, dpo, RightRefusal(RequestType.PORTABILITY, "rights_of_others", "Ce sont les appels de votre employeur."), letter="Corrigé.")
    reason = next(line for line in request.messages.get().body.split("\n\n") if "Motif" in line)
    assert "20" in reason and "15" not in reason


@pytest.mark.django_db
def test_a_rejection_for_the_rights_of_others_cites_the_portabilitys_article_only(dpo):
    """The ground refuses only the data ported now (access is masked instead): its label still names Art. 15(4) too,
    for requests refused on it before, but a letter cites the one rule it applies."""
    request = request_in_status(Status.IN_PROGRESS, rights=[RightDetails(RequestType.PORTABILITY)])
    handling.request_reject(
        request=request, actor=Actor.staff(dpo), ground="rights_of_others",
        explanation="The records are your employer's calls.", expected_status=request.status,
    )
    body = request.messages.get().body
    assert "The reason: The rights and freedoms of others (Art. 20(4) GDPR).\n\n" in body and "15(4)" not in body


@pytest.mark.django_db
def test_a_letter_under_another_law_cites_no_article_for_the_rights_of_others(dpo):
    request = corrected(asking(RequestType.PORTABILITY, RequestType.RECTIFICATION, regime="ccpa"))
    complete(request, dpo, RightRefusal(RequestType.PORTABILITY, "rights_of_others", "The records are your employer's calls."), letter="Done.")
    assert "The reason: The rights and freedoms of others.\n\n" in request.messages.get().body
