"""The demo inventory (seed_demo) is set up for acting on rights: an erasure of a demo subject
anonymises the CRM contact, deletes the web logs and keeps the last 12 months' call records under
their legal hold, erasing the older ones."""

import io

import pytest
import sqlalchemy
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from requests_app.deadlines import add_months
from requests_app.models import (
    ActionStatus,
    LegalHold,
    Recipient,
    RequestType,
    SourceAction,
    SourceCategory,
    SourceField,
    SourceSystem,
    SuppressionPurpose,
)
from requests_app.services import actions
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


def test_an_erasure_of_a_demo_subject(db, demo_sources, dpo_actor, django_capture_on_commit_callbacks):
    request = request_in_status(
        "in_progress", rights=[RightDetails(RequestType.ERASURE)], subject_email="demo0@example.com",
        subject_phone="+32470000000", ip_address="198.18.0.1",
    )
    request.identities.update(verified_at=request.created_at)
    kept_from = add_months(timezone.localdate(), -12)  # the demo's call records are held for 12 months
    calls = "SELECT count(*) AS n FROM cdrs WHERE caller = '+32470000000' AND started_at {} :day"
    recent, older = (demo_sources(calls.format(op), day=kept_from)[0]["n"] for op in (">=", "<"))
    assert recent + older == 5
    actions.plan_actions(request=request, actor=dpo_actor)
    for action in SourceAction.objects.filter(request=request):
        for step in (actions.dry_run_start, actions.approve, actions.execute):
            with django_capture_on_commit_callbacks(execute=True):
                step(action=SourceAction.objects.get(pk=action.pk), actor=dpo_actor)
        done = SourceAction.objects.get(pk=action.pk)
        assert done.status == ActionStatus.DONE, done.error

    contact = demo_sources("SELECT name, email, billing_address, customer_ref FROM customers WHERE id = 1")[0]
    assert contact["name"] == contact["billing_address"] == "(erased)" and contact["email"].startswith("anon:")
    assert contact["customer_ref"] == "CUST-000000"  # the account stays for the invoices
    assert demo_sources("SELECT count(*) AS n FROM web_logs WHERE ip_address = '198.18.0.1'") == [{"n": 0}]
    # The rolling hold kept the last 12 months' calls and erased the older ones.
    assert [demo_sources(calls.format(op), day=kept_from)[0]["n"] for op in (">=", "<")] == [recent, 0]
    held = SourceAction.objects.get(request=request, source__slug="cdr").result["held"]
    assert held == [{
        "category": "calls", "ground": "legal_obligation", "basis": held[0]["basis"],
        "basis_translations": {language: held[0]["basis_translations"][language] for language in ("fr", "nl", "de")},
        "dated_by": "started_at",
        "kept_from": kept_from.isoformat(), "until": add_months(timezone.localdate(), 12).isoformat(),
    }]
    assert set(SuppressionPurpose.objects.values_list("slug", flat=True)) == {"marketing-email", "telemarketing", "event-sponsors"}


def test_seeding_again_keeps_an_inventory_that_was_acted_on(db, demo_sources, dpo_actor):
    request = request_in_status("in_progress", rights=[RightDetails(RequestType.ERASURE)], subject_email="demo0@example.com")
    request.identities.update(verified_at=request.created_at)
    actions.plan_actions(request=request, actor=dpo_actor)
    with pytest.raises(CommandError, match="fresh database"):
        call_command("seed_demo", subjects=1, cdrs_per_subject=1, stdout=io.StringIO())
    assert SourceAction.objects.filter(request=request).count() == 3


def test_the_demo_inventory_gives_every_text_in_every_site_language(db, demo_sources):
    """`make run` shows a configured installation: a letter in French, Dutch or German reads in one language, names
    too ("Autoriteiten, wanneer de wet dat vereist", not "aan Authorities, when the law requires it")."""
    untranslated = [
        (str(item), language, field)
        for model in INVENTORY_MODELS
        for item in model.objects.prefetch_related("translations")
        for language in ("fr", "nl", "de")
        for field in item.texts_untranslated_in(language)
    ]
    assert untranslated == []
    assert Recipient.objects.get(name="Authorities, when the law requires it").texts_in("nl")["name"] == "Autoriteiten, wanneer de wet dat vereist"
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
