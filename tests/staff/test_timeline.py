"""The request page's timeline: the audit events of one request, as staff read them."""

import ast
import re
from pathlib import Path

import pytest
from django.db import transaction
from django.urls import reverse

from requests_app.lifecycle import TRANSITIONS
from requests_app.models import Status
from requests_app.templatetags.staff_tags import EVENT_LABELS
from tests.conftest import login_staff
from tests.factories import request_in_status, staff_in_role

APP = Path(__file__).resolve().parents[2] / "requests_app"


@pytest.mark.django_db
def test_the_timeline_names_events_and_actors_in_the_readers_language(client):
    request = request_in_status(Status.IN_PROGRESS)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = client.get(reverse("staff:request", args=[request.reference]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    timeline = page[page.index('class="list timeline"'):]
    assert "Demande reçue" in timeline and "Adresse e-mail confirmée" in timeline and "Travail commencé" in timeline
    assert "Personne concernée" in timeline  # the subject, who submitted it
    assert "submitted" not in timeline and "data subject" not in timeline


def recorded_actions() -> set[str]:
    """Every action code the code records against a request: the literal codes given to
    record_event (with a request, not None) and to the letters and messages sent to the subject."""
    found = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "record_event" and len(node.args) >= 2:
                request, action = node.args[:2]
                if isinstance(action, ast.Constant) and not (isinstance(request, ast.Constant) and request.value is None):
                    found.add(action.value)
            if name == "write_to_subject":
                found |= {kw.value.value for kw in node.keywords if kw.arg == "action" and isinstance(kw.value, ast.Constant)}
    return found


def test_every_action_recorded_against_a_request_has_a_label():
    recorded = recorded_actions() | set(TRANSITIONS) | {"source_action_done", "source_action_failed", "source_action_stale"}
    assert "submitted" in recorded and "rejection_letter_sent" in recorded  # the scan finds them
    assert recorded - set(EVENT_LABELS) == set()


@pytest.mark.django_db
def test_the_request_page_writes_dates_as_the_readers_language_does(client):
    import time_machine
    from datetime import datetime
    from zoneinfo import ZoneInfo

    with time_machine.travel(datetime(2026, 3, 2, 10, tzinfo=ZoneInfo("Europe/Brussels")), tick=False):
        request = request_in_status(Status.IN_PROGRESS)
    assert str(request.due_on) == "2026-04-02"
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    url = reverse("staff:request", args=[request.reference])
    assert "2. April 2026" in client.get(url, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "2 avril 2026" in client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "2 April 2026" in client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()


@pytest.mark.django_db
def test_the_timeline_details_are_in_the_readers_language_too(client):
    """The data's keys, the codes of channels and rights, dates and the system's notes."""
    from django.utils import translation

    from requests_app.audit import Actor
    from requests_app.services import handling
    from requests_app.templatetags.staff_tags import event_data

    with translation.override("fr"):
        shown = event_data({"channel": "web", "rights": ["access"], "due_on": "2026-12-29", "unknown_key": "x"})
    assert "canal\u00a0: " in shown and "droits" in shown and "29/12/2026" in shown and "unknown key\u00a0: x" in shown
    assert "channel" not in shown and "access" not in shown and "2026-12-29" not in shown
    with translation.override("fr"):
        shown = event_data({"not_before": "2026-12-08"})  # a lifting's planned day
    assert shown == "pas avant\u00a0: 08/12/2026"

    # A source action's: its kind and a legal hold's ground named, the hold's fields labelled, the machine's own
    # keys (the basis in every language, a pause's row id) left out.
    held = {
        "category": "calls", "ground": "legal_obligation", "basis": "Telecom law", "basis_translations": {"fr": "Loi"},
        "until": "2027-11-30", "kept_from": "2025-11-30", "dated_by": "started_at",
    }
    with translation.override("de"):
        shown = event_data({"kind": "erase", "source": "cdr", "held": [held], "pause": 4242})
    assert "Art: Löschung · " in shown and "Grund Gesetzliche Pflicht" in shown and "Grundlage Telecom law" in shown
    assert "30.11.2027" in shown and "started_at" in shown
    for internal in ("basis_translations", "Loi", "legal_obligation", "erase", "kept_from", "dated_by", "pause", "4242"):
        assert internal not in shown, internal

    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS)
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS)
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Informations demandées à la personne concernée" in page and "Information requested from the subject" not in page


@pytest.mark.django_db
def test_the_systems_words_in_the_timeline_are_in_the_readers_language(client):
    """The note on starting work, an organisation as actor and the default routing rule: the trail
    keeps them in English, the dashboard says them in the reader's language."""
    from requests_app.audit import Actor, record_event
    from requests_app.models import Organisation
    from requests_app.services import handling, routing

    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.NEW)
    handling.identity_verify(
        request=request, actor=Actor.staff(dpo), identity_ids=list(request.identities.values_list("id", flat=True)),
        method="account_records", expected_status=Status.NEW,
    )
    with transaction.atomic():
        record_event(request, "note_added", actor=Actor.organisation(Organisation.objects.create(name="Acme Mobile BV")))
        record_event(request, "routed", actor=Actor.system(), data={"rule": routing.DEFAULT_RULE})
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference]), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    timeline = page[page.index('class="list timeline"'):]
    assert "Identité vérifiée" in timeline and "Identity verified" not in timeline
    assert "organisation Acme Mobile BV" in timeline  # the French word happens to be the same: check German too
    assert "par défaut\u00a0: le DPO" in timeline and "default: the DPO" not in timeline
    german = client.get(reverse("staff:request", args=[request.reference]), HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Organisation Acme Mobile BV" in german and "Standard: der Datenschutzbeauftragte (DPO)" in german


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.REJECTED, Status.WITHDRAWN])
@pytest.mark.django_db
def test_the_timeline_does_not_repeat_a_status_its_event_already_names(client, status):
    """"Completed → Completed" says nothing twice; "Work started → In progress" still says where it went."""
    request = request_in_status(status)
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    timeline = page[page.index('class="list timeline"'):]

    transitions = re.findall(r"<td>([^<>]+?) → ([^<>]+?)</td>", timeline)
    assert ("Request received", "Awaiting email verification") in transitions  # the arrow stays where it tells something
    assert [(label, to) for label, to in transitions if label == to] == []
    assert f"<td>{Status(status).label}</td>" in timeline


@pytest.mark.django_db
def test_a_step_taken_again_after_the_subject_answered_reads_as_resumed(client):
    """The subject's reply moves the request back to work: the trail says work resumed, as the subject's page does,
    not that it started a second time."""
    from requests_app.audit import Actor
    from requests_app.services import handling

    dpo = staff_in_role("DPO", username="dpo1")
    request = request_in_status(Status.IN_PROGRESS)
    handling.request_information(request=request, actor=Actor.staff(dpo), body="Which account?", expected_status=Status.IN_PROGRESS)
    handling.subject_reply(request=request, body="CUST-000123")
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[request.reference])).content.decode()
    timeline = page[page.index('class="list timeline"'):]

    assert timeline.count("Work started") == 1 and "Work resumed → In progress" in timeline
