"""The demo inventory (seed_demo) is set up for acting on rights: an erasure of a demo subject
anonymises the CRM contact, deletes the web logs and keeps the last 12 months' call records, made and
received, under their legal holds, erasing the older ones."""

import datetime
import io

import pytest
import sqlalchemy
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from requests_app.deadlines import add_months
from requests_app.models import (
    ActionStatus,
    LegalHold,
    Message,
    NoticeStatus,
    Recipient,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    SuppressionPurpose,
)
from requests_app.services import actions, handling
from requests_app.services.intake import RightDetails
from tests.factories import request_in_status

INVENTORY_MODELS = (SourceSystem, SourceCategory, Recipient, SourceField, LegalHold, SuppressionPurpose)


@pytest.fixture
def demo_sources(settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    settings.DEMO_SOURCES_URL = url
    call_command("seed_demo", subjects=2, cdrs_per_subject=5, web_logs_per_subject=3, stdout=io.StringIO())
    engine = sqlalchemy.create_engine(url)
    yield lambda statement, **parameters: [
        dict(row) for row in engine.connect().execute(sqlalchemy.text(statement), parameters).mappings()
    ]
    engine.dispose()


SUBJECT_PHONE = "+32470000000"  # demo subject 0


def demo_erasure(actor, capture_on_commit):
    """An erasure request from demo subject 0, its identifiers verified and its actions planned and carried out."""
    request = request_in_status(
        "in_progress", rights=[RightDetails(RequestType.ERASURE)], subject_email="demo0@example.com",
        subject_phone=SUBJECT_PHONE, ip_address="198.18.0.1",
    )
    request.identities.update(verified_at=request.created_at)
    actions.plan_actions(request=request, actor=actor)
    for action in SourceAction.objects.filter(request=request):
        for step in (actions.dry_run_start, actions.approve, actions.execute):
            with capture_on_commit(execute=True):
                step(action=SourceAction.objects.get(pk=action.pk), actor=actor)
        done = SourceAction.objects.get(pk=action.pk)
        assert done.status == ActionStatus.DONE, done.error
    return request


def test_an_erasure_of_a_demo_subject(db, demo_sources, dpo_actor, django_capture_on_commit_callbacks):
    kept_from = add_months(timezone.localdate(), -12)  # the demo's call records are held for 12 months
    # The calls the subject made and those they received: a call record is personal data of both parties.
    calls = "SELECT count(*) AS n FROM cdrs WHERE {} = '+32470000000' AND started_at {} :day"
    counts = {
        (column, op): demo_sources(calls.format(column, op), day=kept_from)[0]["n"]
        for column in ("caller", "callee") for op in (">=", "<")
    }
    assert counts[("caller", ">=")] + counts[("caller", "<")] == 4 and counts[("callee", ">=")] + counts[("callee", "<")] == 1

    request = demo_erasure(dpo_actor, django_capture_on_commit_callbacks)

    contact = demo_sources("SELECT name, email, phone, billing_address, customer_ref, company FROM customers WHERE id = 1")[0]
    # Every field about the contact is erased: none replaced by a code we could match to them again (see below). The
    # customer reference too: a unique account identifier, by which we verify and may search for the subject.
    assert contact["name"] == contact["email"] == contact["phone"] == contact["billing_address"] == "(erased)"
    assert contact["customer_ref"] == "(erased)"
    # The account stays for the invoices: a company's.
    assert contact["company"] == "Example Telecom SA"
    assert demo_sources("SELECT count(*) AS n FROM web_logs WHERE ip_address = '198.18.0.1'") == [{"n": 0}]
    # The rolling holds kept the last 12 months' calls, made and received, and erased the older ones.
    for column in ("caller", "callee"):
        recent, older = (demo_sources(calls.format(column, op), day=kept_from)[0]["n"] for op in (">=", "<"))
        assert (recent, older) == (counts[(column, ">=")], 0)
    held = SourceAction.objects.get(request=request, source__slug="cdr").result["held"]
    assert held == [
        {
            "category": category, "ground": "legal_obligation", "basis": held[0]["basis"],
            "basis_translations": {language: held[0]["basis_translations"][language] for language in ("fr", "nl", "de")},
            "dated_by": "started_at",
            "kept_from": kept_from.isoformat(), "until": add_months(timezone.localdate(), 12).isoformat(),
        }
        for category in ("calls-made", "calls-received")
    ]
    assert set(SuppressionPurpose.objects.values_list("slug", flat=True)) == {"marketing-email", "telemarketing", "event-sponsors"}


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_letter_of_a_demo_erasure_claims_no_erasure_of_data_kept(db, demo_sources, dpo_actor, django_capture_on_commit_callbacks, language):
    """QA, with a French-speaking subject: "Nous avons effacé vos données dans Contacts clients (CRM)", then that their email
    address and phone number were replaced by codes which remain their personal data, with no ground for keeping them;
    the row still held the customer reference, the company and the codes. Then (a DPO) that the customer reference
    kept "no longer identifies you": it is erased, and the letter claims that of nothing it kept."""
    request = demo_erasure(dpo_actor, django_capture_on_commit_callbacks)
    request.language = language
    request.save(update_fields=["language"])
    crm = SourceAction.objects.get(request=request, source__slug="crm")
    assert crm.dry_run["pseudonymised"] == {} and crm.dry_run["kept_fields"] == {"contacts": ["company"]}

    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)

    letter = Message.objects.filter(request=request).latest("created_at").body
    assert "codes" not in letter and "anon" not in letter
    if language == "en":
        assert (
            "We erased your data in Customer contacts (CRM): contact information.\n\n"
            "In Customer contacts (CRM), we kept company, and erased the other details about you there. If you believe that "
            "what we kept still identifies you, write to our data protection officer"
        ) in letter
        assert "customer reference" not in letter and "no longer identifies" not in letter
    else:
        assert "Nous avons effacé vos données dans Contacts clients (CRM)" in letter and "remplacé" not in letter


def test_completing_a_demo_erasure_waits_for_no_notice_to_the_authorities(
    db, demo_sources, dpo_actor, django_capture_on_commit_callbacks
):
    """An authority that obtains call records for an inquiry is no recipient of them (Art. 4(9)), nor one an
    erasure is notified to (Art. 19): the demo says so in the call records' description, and lists as recipients
    only those it tells. Completion then waits for no waiver, and the letter claims no disproportionate effort."""
    today = timezone.localdate()
    engine = sqlalchemy.create_engine(settings.DEMO_SOURCES_URL)
    with engine.begin() as connection:  # calls made and received, older than the hold keeps and within it
        connection.execute(sqlalchemy.text("INSERT INTO cdrs VALUES (:id, :a, :b, :day, 60, 'BE-0001', 'Ghent', 0.1)"), [
            {"id": 1000 + i, "a": a, "b": b, "day": day}
            for i, (a, b, day) in enumerate([
                (SUBJECT_PHONE, "+32499000001", today - datetime.timedelta(days=800)),
                (SUBJECT_PHONE, "+32499000002", today),
                ("+32499000003", SUBJECT_PHONE, today - datetime.timedelta(days=800)),
                ("+32499000004", SUBJECT_PHONE, today),
            ])
        ])
    engine.dispose()
    request = demo_erasure(dpo_actor, django_capture_on_commit_callbacks)
    cdr = SourceSystem.objects.get(slug="cdr")

    with django_capture_on_commit_callbacks(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)

    request.refresh_from_db()
    assert request.status == "completed"
    assert not request.recipient_notices.filter(status__in=(NoticeStatus.FAILED, NoticeStatus.WAIVED, NoticeStatus.PENDING)).exists()
    letter = Message.objects.filter(request=request).latest("created_at").body
    assert "We did not tell" not in letter and "disproportionate" not in letter and "Authorities" not in letter
    # Both kinds of call records were erased in part and kept in part: the letter, which names data by its kind,
    # says each once.
    kept_from = add_months(today, -12)
    assert letter.count(
        "We erased your data in Call detail records: electronic communications data (call detail records) dated before "
        f"{kept_from.day} {kept_from:%B} {kept_from.year}.\n"
    ) == 1
    assert letter.count("We kept electronic communications data (call detail records) dated") == 1
    assert {category["category"] for category in SourceAction.objects.get(request=request, source=cdr).result["categories"]} == {
        "calls-made", "calls-received"
    }
    assert all(recipient.reachable for recipient in Recipient.objects.all())
    assert "public authorities" in cdr.description and "Authorities" not in str(list(cdr.recipients.all()))


def test_seeding_again_keeps_an_inventory_that_was_acted_on(db, demo_sources, dpo_actor):
    request = request_in_status("in_progress", rights=[RightDetails(RequestType.ERASURE)], subject_email="demo0@example.com")
    request.identities.update(verified_at=request.created_at)
    actions.plan_actions(request=request, actor=dpo_actor)
    with pytest.raises(CommandError, match="fresh database"):
        call_command("seed_demo", subjects=1, cdrs_per_subject=1, stdout=io.StringIO())
    assert SourceAction.objects.filter(request=request).count() == 3


def test_the_demo_inventory_gives_every_text_in_every_site_language(db, demo_sources):
    """`make run` shows a configured installation: a letter in French, Dutch or German reads in one language, names
    too ("Operatoren van geïnterconnecteerde netwerken", not "aan Interconnected network operators")."""
    untranslated = [
        (str(item), language, field)
        for model in INVENTORY_MODELS
        for item in model.objects.prefetch_related("translations")
        for language in ("fr", "nl", "de")
        for field in item.texts_untranslated_in(language)
    ]
    assert untranslated == []
    assert Recipient.objects.get(name="Interconnected network operators").texts_in("nl")["name"] == "Operatoren van geïnterconnecteerde netwerken"
    assert SourceCategory.objects.get(slug="calls-received").texts_in("de")["description"].startswith("Anrufe, die Sie erhalten haben")
    assert Recipient.objects.get(name="Interconnected network operators").texts_in("fr")["country"] == "UE/EEE et monde entier"
    assert SuppressionPurpose.objects.get(slug="telemarketing").texts_in("de")["name"] == "Werbeanrufe"


def test_the_demo_inventorys_french_follows_french_typography(db, demo_sources):
    """A no-break space before ";" ":" "?" "!" and the typographic apostrophe, as the site's own French catalogue writes."""
    french = [
        text
        for model in INVENTORY_MODELS
        for item in model.objects.prefetch_related("translations")
        for text in item.texts_in("fr").values()
    ]
    assert not [text for text in french if "'" in text or any(f" {mark}" in text for mark in ";:?!")]
    assert any("\u00a0;" in text for text in french) and any("’" in text for text in french)
