"""The notice to a recipient cites the law of the request's own regime for telling it (wording.recipients_told_citation):
Art. 19 of the GDPR or of the UK GDPR, Art. 18 §6 of the LGPD, and under the CCPA the provision for what was done (a
deletion, a correction); a CCPA request to limit the use of sensitive personal information is told to the recipients
too (CCPA Regulations § 7027(g)), and the letter says so."""

import html
import json
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from requests_app.models import (
    CoveredPurpose,
    Message,
    NoticeStatus,
    Recipient,
    RecipientNotice,
    RequestType,
    SourceSystem,
    SuppressionPurpose,
)
from requests_app.services import actions, handling, notices, suppression
from requests_app.services.intake import RightDetails
from tests.actions.conftest import ANA_EMAIL, ANA_PHONE, verified_request
from tests.actions import test_notices
from tests.actions.test_notices import correct_the_city
from tests.conftest import login_staff
from tests.factories import request_in_status

# The Art. 19 notices' own fixtures: carrying out the actions, and a recipient's webhook endpoint.
carry_out = test_notices.carry_out
receiver = test_notices.receiver

LIMIT_LAW = "Cal. Code Regs. tit. 11, § 7027(g)"


def _erasure_notice(cdr, dpo_actor, carry_out, regime):
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    request = verified_request(RequestType.ERASURE, regime=regime)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor)
    [message] = mail.outbox
    return message


@pytest.mark.parametrize(
    ("regime", "law"),
    [
        ("gdpr", "Article 19 GDPR"),
        ("uk_gdpr", "Article 19 UK GDPR"),
        ("lgpd", "Article 18, §6 LGPD"),
        # The deletion's own duty to tell service providers, contractors and third parties it sold or shared to.
        ("ccpa", "Cal. Civ. Code § 1798.105(c)(1)"),
    ],
)
def test_an_erasure_notice_cites_the_requests_own_law(cdr, dpo_actor, carry_out, regime, law):
    message = _erasure_notice(cdr, dpo_actor, carry_out, regime)

    assert message.subject == f"Data protection notice ({law}): changes to data we shared with you"
    for body in (message.body, message.alternatives[0][0]):
        assert f"Under {law} we tell you that, at the request of the person concerned, we made the changes below" in body
        if regime != "gdpr":
            assert "GDPR" not in body.replace(law, "")


def test_a_ccpa_correction_notice_cites_the_regulations_duty_to_instruct_who_holds_the_data(crm, dpo_actor, django_capture_on_commit_callbacks):
    Recipient.objects.create(source=crm, name="Billing partner", country="USA", notification_email="dpo@billing.example")
    request = verified_request(RequestType.RECTIFICATION, regime="ccpa")
    correct_the_city(request, crm, dpo_actor, django_capture_on_commit_callbacks, "Sacramento")

    [message] = mail.outbox
    assert message.subject == "Data protection notice (Cal. Code Regs. tit. 11, § 7023(c)): changes to data we shared with you"
    assert "Under Cal. Code Regs. tit. 11, § 7023(c) we tell you that" in message.body and "GDPR" not in message.body


def test_a_ccpa_restriction_notice_cites_nothing_the_ccpa_having_no_restriction(cdr, dpo_actor, carry_out):
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    request = verified_request(RequestType.RESTRICTION, regime="ccpa")
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out(request, dpo_actor)

    [message] = mail.outbox
    assert message.subject == "Data protection notice: changes to data we shared with you"
    assert "\n\nWe tell you that, at the request of the person concerned, we made the changes below" in message.body
    assert "GDPR" not in message.body and "Under" not in message.body


# --- CCPA Regulations § 7027(g): a request to limit ---------------------------------------


@pytest.fixture
def calls(db):
    return SuppressionPurpose.objects.create(slug="telemarketing", name="Telemarketing calls", identity_kinds=["phone"])


def _limit_request(regime="ccpa"):
    """A request to limit, as a consumer files it: nothing verified (CCPA Regulations § 7027(e))."""
    request = request_in_status(
        "in_progress", regime=regime, rights=[RightDetails(RequestType.LIMIT_USE)], subject_email=ANA_EMAIL, subject_phone=ANA_PHONE
    )
    request.identities.update(verified_at=None)
    return request


def test_applying_a_ccpa_limit_tells_every_recipient_of_an_active_source(cdr, crm, calls, dpo_actor, django_capture_on_commit_callbacks):
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    Recipient.objects.create(source=crm, name="Ad partner", country="USA", notification_email="dpo@ads.example")
    retired = SourceSystem.objects.create(slug="old", name="Old billing", active=False, identity_kind="phone")
    Recipient.objects.create(source=retired, name="Old partner", country="USA", notification_email="dpo@old.example")
    request = _limit_request()

    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])

    assert sorted(request.recipient_notices.values_list("recipient__name", "status")) == [
        ("Ad partner", NoticeStatus.SENT), ("Roaming partner", NoticeStatus.SENT),
    ]
    roaming = next(message for message in mail.outbox if message.to == ["dpo@roaming.example"])
    assert roaming.subject == f"Data protection notice ({LIMIT_LAW}): a request to limit the use of sensitive personal information we shared with you"
    for body in (roaming.body, roaming.alternatives[0][0]):
        assert f"Under {LIMIT_LAW} we tell you that the person concerned has asked us to limit the use and disclosure" in body
        assert "pass the request on to anyone you disclosed that information to since" in body
        assert "we made the changes below" not in body
    # The phone number as the consumer gave it, unverified: a request to limit is applied so (§ 7027(e)).
    assert f"Identifiers (phone number): {ANA_PHONE}" in roaming.body and ANA_EMAIL not in roaming.body

    # Applying it to another list tells nobody twice.
    texts = SuppressionPurpose.objects.create(slug="sms", name="Promotional texts", identity_kinds=["phone"])
    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[texts])
    assert len(mail.outbox) == 2


def test_a_webhook_recipient_reads_the_limit_in_the_notice(cdr, calls, dpo_actor, receiver, django_capture_on_commit_callbacks):
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_webhook_url=receiver.url)
    request = _limit_request()

    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])

    [(_headers, body)] = receiver.received
    data = json.loads(body)["data"]
    assert data["limit_use"] is True and data["actions"] == [] and data["identifiers"] == [ANA_PHONE]


def test_a_limit_under_another_law_tells_no_recipient(cdr, calls, dpo_actor, django_capture_on_commit_callbacks):
    """The GDPR knows no such right: the carrier's own policy offers it, and Art. 19 tells only changes to the data."""
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    request = _limit_request(regime="gdpr")
    request.identities.update(verified_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])

    assert CoveredPurpose.objects.filter(right__request=request, applied_at__isnull=False).exists()
    assert not request.recipient_notices.exists() and mail.outbox == []


def test_a_ccpa_limit_waits_for_its_notices_and_its_letter_says_who_was_told(cdr, calls, dpo_actor, django_capture_on_commit_callbacks):
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    unreachable = Recipient.objects.create(source=cdr, name="Analytics vendor", country="USA")
    request = _limit_request()
    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])

    assert actions.completion_blockers(request) == [
        "Recipient Analytics vendor cannot be notified: it has no email address or webhook URL. Add one in the inventory, "
        "or waive the notice."
    ]
    notices.waive(
        notice=request.recipient_notices.get(recipient=unreachable), actor=dpo_actor, reason="never_disclosed",
        note="It receives billing data only, never sensitive personal information.",
    )
    handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=request.status)

    body = Message.objects.filter(request=request).latest("created_at").body
    assert (
        "We told the following recipients of your data of your request to limit the use and disclosure of your sensitive "
        "personal information, and asked them to limit their own use of any of it we disclosed to them since you made it, "
        f"and to pass your request on ({LIMIT_LAW}): Roaming partner."
    ) in body
    assert "about these changes" not in body


def test_a_ccpa_deletion_and_limit_are_each_told_under_their_own_provision(cdr, calls, dpo_actor, carry_out, django_capture_on_commit_callbacks):
    """The limit applied first waits for the deletion in the recipient's source: one notice tells both."""
    Recipient.objects.create(source=cdr, name="Roaming partner", country="France", notification_email="dpo@roaming.example")
    request = verified_request(RequestType.ERASURE, RequestType.LIMIT_USE, regime="ccpa")
    actions.plan_actions(request=request, actor=dpo_actor)
    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])
    assert mail.outbox == []  # the deletion in its source is still to run

    carry_out(request, dpo_actor)

    [message] = mail.outbox
    assert "Under Cal. Civ. Code § 1798.105(c)(1) we tell you that, at the request of the person concerned, we made the changes" in message.body
    assert f"Under {LIMIT_LAW} we tell you that the person concerned has asked us to limit" in message.body
    handling.request_complete(request=request, actor=dpo_actor, letter="", expected_status=request.status)
    body = Message.objects.filter(request=request).latest("created_at").body
    assert "We told the following recipients of your data about these changes (Cal. Civ. Code § 1798.105(c)(1)): Roaming partner." in body
    assert f"and to pass your request on ({LIMIT_LAW}): Roaming partner." in body
    assert RecipientNotice.objects.get(request=request).status == NoticeStatus.SENT


def test_staff_see_a_ccpa_limits_notices_and_may_waive_one(client, dpo, cdr, calls, dpo_actor, django_capture_on_commit_callbacks):
    """A request to limit acts on no source system, yet its notices block completion until sent or waived."""
    Recipient.objects.create(source=cdr, name="Analytics vendor", country="USA")  # nowhere to send it
    request = _limit_request()
    with django_capture_on_commit_callbacks(execute=True):
        suppression.suppress(request=request, actor=dpo_actor, right="limit_use", purposes=[calls])

    page = html.unescape(login_staff(client, dpo).get(reverse("staff:request", args=[request.reference])).content.decode())

    [vendor] = re.findall(r"<td>Analytics vendor</td>(.*?)</tr>", page, re.DOTALL)
    assert "No email address or webhook URL is recorded for this recipient." in vendor and "Waive" in vendor
