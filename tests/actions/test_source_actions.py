"""Erasure, rectification and restriction in real SQL sources (SQLite and PostgreSQL): dry run,
approval, execution per source, legal holds, refusals, failure and retry, and completion."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from requests_app.audit import verify_chain
from requests_app.lifecycle import RequestError
from requests_app.models import (
    ActionKind,
    ActionStatus,
    AuditEvent,
    EraseMethod,
    EraseStrategy,
    ErasureException,
    IdentityKind,
    LegalHold,
    PrivacyRequest,
    RequestType,
    SourceAction,
    SourceField,
)
from requests_app.services import actions, handling
from requests_app.sources.actions import HASH_PREFIX, keyed_hash
from tests.actions.conftest import ANA_EMAIL, ANA_PHONE, BOB_EMAIL, verified_request


def _planned(request, actor, source):
    actions.plan_actions(request=request, actor=actor)
    return request.source_actions.get(source=source)


def test_erasure_dry_run_counts_and_changes_nothing(crm, cdr, erasure_request, dpo_actor, source_db, run):
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.AWAITING_APPROVAL
    # Two rows of Ana's; email (hash), name (fixed) and birth_year (null, already empty on row 2) change.
    assert action.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]
    calls = run(erasure_request.source_actions.get(source=cdr).id, "dry_run", actor=dpo_actor)  # planned with the CRM's
    assert calls.dry_run["categories"] == [{"category": "calls", "rows": 2, "fields": 8}]


def test_erasure_deletes_or_anonymises_per_category(crm, cdr, erasure_request, dpo_actor, source_db, run):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    for action in erasure_request.source_actions.all():
        done = run(action.id, "dry_run", "approve", "execute", actor=dpo_actor)
        assert done.status == ActionStatus.DONE, done.error

    assert source_db("SELECT id FROM calls ORDER BY id") == [{"id": 3}]  # the call Ana received is someone else's record
    rows = source_db("SELECT * FROM subscribers ORDER BY id")
    assert [(r["email"], r["name"], r["birth_year"], r["city"]) for r in rows] == [
        (None, "(erased)", None, "Gent"),
        (None, "(erased)", None, "Gent"),
        (BOB_EMAIL, "Bob Janssens", 1975, "Leuven"),
    ]
    assert actions.completion_blockers(erasure_request) == []
    done_events = AuditEvent.objects.filter(request=erasure_request, action="source_action_done")
    assert {event.data["source"] for event in done_events} == {"crm", "cdr"}
    assert all(ANA_EMAIL not in str(event.data) and ANA_PHONE not in str(event.data) for event in done_events)
    assert verify_chain()[1] is None


def _hash_the_email(crm):
    SourceField.objects.filter(category__source=crm, name="email").update(erase_strategy=EraseStrategy.HASH)


def test_an_erasure_that_would_keep_codes_on_no_ground_is_refused_at_its_dry_run(crm, erasure_request, dpo_actor, source_db, run):
    """QA: the CRM replaced the email address with a keyed hash, which we could match to the subject again (Recital
    26): their data, kept, with no Art. 17(3) ground for it, and the letter said "We erased your data in CRM"."""
    _hash_the_email(crm)
    # A hold on the whole of another source, or one that has ended, gives no ground for these codes.
    LegalHold.objects.create(
        source=crm, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute", pseudonyms_only=True,
        until=timezone.localdate() - datetime.timedelta(days=1),
    )
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.PLANNED and action.dry_run == {}
    assert action.error.startswith("crm: erasure would replace subscribers.email with a keyed hash")
    assert "legal hold on the codes" in action.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]


def test_an_erasure_keeps_codes_in_place_of_fields_only_under_a_hold_on_the_codes(
    crm, erasure_request, dpo_actor, source_db, run
):
    _hash_the_email(crm)
    until = timezone.localdate() + datetime.timedelta(days=365)
    LegalHold.objects.create(
        source=crm, category=crm.categories.get(), ground=ErasureException.LEGAL_CLAIMS, basis="Pending dispute over unpaid invoices",
        until=until, pseudonyms_only=True,
    )
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE, action.error
    # The hold keeps the codes, not the category: the rest of Ana's data is erased, and no category is "held".
    assert action.result["held"] == [] and action.result["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]
    assert action.dry_run["pseudonym_holds"] == [{
        "category": "subscribers", "fields": ["email"], "ground": "legal_claims", "basis": "Pending dispute over unpaid invoices",
        "basis_translations": {}, "until": until.isoformat(),
    }]
    pseudonym = keyed_hash(ANA_EMAIL)
    assert pseudonym.startswith(HASH_PREFIX) and ANA_EMAIL not in pseudonym
    rows = source_db("SELECT * FROM subscribers ORDER BY id")
    assert [(r["email"], r["name"], r["birth_year"], r["city"]) for r in rows] == [
        (pseudonym, "(erased)", None, "Gent"),
        (pseudonym, "(erased)", None, "Gent"),
        (BOB_EMAIL, "Bob Janssens", 1975, "Leuven"),
    ]


def test_an_approved_erasure_is_not_carried_out_once_the_hold_on_its_codes_is_gone(crm, erasure_request, dpo_actor, source_db, run):
    """What was approved kept the codes on a ground: with the hold deleted, or ended, there is none."""
    _hash_the_email(crm)
    hold = LegalHold.objects.create(
        source=crm, ground=ErasureException.LEGAL_CLAIMS, basis="Dispute", until=timezone.localdate() + datetime.timedelta(days=30),
        pseudonyms_only=True,
    )
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", "approve", actor=dpo_actor)
    hold.delete()

    action = run(action.id, "execute", actor=dpo_actor)
    assert action.status == ActionStatus.FAILED and "with a keyed hash" in action.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]


def test_a_hold_on_the_codes_keeps_no_category_whole(crm, cdr, erasure_request, dpo_actor, source_db, run):
    """It keeps only what erasure replaces with a keyed hash: the call records, which have none, are erased."""
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate() + datetime.timedelta(days=30),
        pseudonyms_only=True,
    )
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE and action.result["held"] == [] and action.dry_run["pseudonym_holds"] == []
    assert source_db("SELECT id FROM calls") == [{"id": 3}]


def test_an_address_the_source_keeps_in_capitals_is_found_and_erased(crm, erasure_request, dpo_actor, source_db, run):
    """Our identifiers are lower-cased; a CRM keeps addresses as typed: compared as written, nothing was erased
    and the letter said no data was found."""
    source_db("UPDATE subscribers SET email = :typed WHERE email = :e", typed="Ana@Example.COM", e=ANA_EMAIL)
    done = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert done.status == ActionStatus.DONE and done.result["categories"][0]["rows"] == 2
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :typed", typed="Ana@Example.COM") == [{"n": 0}]


def test_a_restriction_list_entry_in_capitals_is_the_subjects(crm, dpo_actor, source_db, run):
    """Listed as another system typed it, the subject was listed a second time, in lower case."""
    source_db("INSERT INTO restriction_list (identity) VALUES (:e)", e="Ana@Example.COM")
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    done = run(request.source_actions.get(source=crm).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert done.status == ActionStatus.DONE and done.result["list_entries"] == 0
    assert source_db("SELECT identity FROM restriction_list") == [{"identity": "Ana@Example.COM"}]


def test_a_legal_hold_keeps_the_category_and_says_why(crm, cdr, erasure_request, dpo_actor, source_db, run):
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law: call records kept 12 months",
        until=timezone.localdate() + datetime.timedelta(days=365),
    )
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE
    assert action.dry_run["categories"] == []
    assert action.result["held"] == [
        {
            "category": "calls",
            "ground": "legal_obligation",
            "basis": "Telecom law: call records kept 12 months",
            "basis_translations": {},
            "until": (timezone.localdate() + datetime.timedelta(days=365)).isoformat(),
        }
    ]
    assert len(source_db("SELECT id FROM calls")) == 3
    event = AuditEvent.objects.get(request=erasure_request, action="source_action_done")
    assert event.data["held"][0]["ground"] == "legal_obligation"


def test_an_expired_hold_no_longer_keeps_data(cdr, erasure_request, dpo_actor, source_db, run):
    LegalHold.objects.create(
        source=cdr, ground=ErasureException.LEGAL_CLAIMS, basis="Billing dispute", until=timezone.localdate() - datetime.timedelta(days=1)
    )
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert action.result["held"] == [] and action.result["categories"][0]["rows"] == 2


def test_execution_is_refused_without_approval_twice_and_when_stale(crm, erasure_request, dpo_actor, source_db, run):
    action = _planned(erasure_request, dpo_actor, crm)
    with pytest.raises(RequestError, match="dry run and an approval"):
        actions.execute(action=action, actor=dpo_actor)
    action = run(action.id, "dry_run", actor=dpo_actor)
    with pytest.raises(RequestError, match="dry run and an approval"):
        actions.execute(action=action, actor=dpo_actor)

    action = run(action.id, "approve", actor=dpo_actor)
    source_db("UPDATE subscribers SET name = 'Ana Maria Peeters' WHERE id = 1")  # the source moves on after the dry run
    action = run(action.id, "execute", actor=dpo_actor)
    assert action.status == ActionStatus.STALE
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 2}]
    with pytest.raises(RequestError, match="run the dry run again"):
        actions.execute(action=action, actor=dpo_actor)

    action = run(action.id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert action.status == ActionStatus.DONE
    with pytest.raises(RequestError, match="already been carried out"):
        actions.execute(action=action, actor=dpo_actor)


def _refuse_deleting_calls(source_db, source_url):
    """The source refuses deletions of call records: a real database error, as a foreign key would give."""
    if source_url.startswith("sqlite"):
        source_db("CREATE TRIGGER keep_calls BEFORE DELETE ON calls BEGIN SELECT RAISE(ABORT, 'calls are kept'); END")
    else:
        source_db("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'calls are kept'; END $$ LANGUAGE plpgsql")
        source_db("CREATE TRIGGER keep_calls BEFORE DELETE ON calls FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_the_dry_run_shows_that_a_source_would_refuse_the_change(cdr, erasure_request, dpo_actor, source_db, source_url, run):
    _refuse_deleting_calls(source_db, source_url)
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.PLANNED
    assert action.error.startswith("cdr: ") and ANA_PHONE not in action.error
    assert len(source_db("SELECT id FROM calls")) == 3
    with pytest.raises(RequestError, match="dry run and an approval"):
        actions.execute(action=action, actor=dpo_actor)


def test_a_dry_run_refused_by_a_constraint_names_the_column_but_no_value(crm, erasure_request, dpo_actor, source_db, source_url, run):
    """Staff must know what to fix (here: the erasure empties a column the database requires)."""
    # The table again with its name column required (SQLite cannot add the constraint to a column).
    source_db(
        "CREATE TABLE required_names (id INTEGER PRIMARY KEY, email VARCHAR(200), name VARCHAR(200) NOT NULL, "
        "city VARCHAR(100), birth_year INTEGER, restricted BOOLEAN NOT NULL DEFAULT FALSE)"
    )
    source_db("INSERT INTO required_names SELECT * FROM subscribers")
    source_db("DROP TABLE subscribers")
    source_db("ALTER TABLE required_names RENAME TO subscribers")
    SourceField.objects.filter(category__source=crm, name="name").update(erase_strategy=EraseStrategy.NULL)

    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.PLANNED
    assert "subscribers" in action.error and "name" in action.error, action.error
    assert ANA_EMAIL not in action.error and "Ana" not in action.error


def test_stopped_actions_and_failed_notices_are_listed_on_the_home_page_and_in_the_digest(
    cdr, erasure_request, dpo_actor, source_db, source_url, run, client
):
    """A failed erasure is a reason to act now, not at the deadline's next reminder."""
    from django.core import mail
    from django.urls import reverse

    from requests_app.models import NoticeStatus, Recipient
    from requests_app.services.routing import send_daily_digest
    from tests.conftest import login_staff

    _refuse_deleting_calls(source_db, source_url)
    action = run(_planned(erasure_request, dpo_actor, cdr).id, "dry_run", actor=dpo_actor)
    assert action.status == ActionStatus.PLANNED and action.error  # refused at its dry run
    partner = Recipient.objects.create(source=cdr, name="Roaming partner", country="FR")
    erasure_request.recipient_notices.create(recipient=partner, status=NoticeStatus.FAILED, error="HTTP 503")

    page = login_staff(client, dpo_actor.user).get(reverse("staff:home")).content.decode()
    assert "Stopped: waiting for you" in page
    assert f"{erasure_request.reference}</a>: Call records, Erasure · dry run refused" in page
    assert f"{erasure_request.reference}</a>: notice to Roaming partner not sent" in page
    send_daily_digest()
    assert f"- {erasure_request.reference}: Call records, Erasure (dry run refused)" in mail.outbox[-1].body


def test_a_failing_source_keeps_the_others_results_and_can_be_retried_alone(
    crm, cdr, erasure_request, dpo_actor, source_db, source_url, run
):
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    crm_action = run(erasure_request.source_actions.get(source=crm).id, "dry_run", "approve", "execute", actor=dpo_actor)
    cdr_action = run(erasure_request.source_actions.get(source=cdr).id, "dry_run", "approve", actor=dpo_actor)
    _refuse_deleting_calls(source_db, source_url)  # between the approval and the execution
    cdr_action = run(cdr_action.id, "execute", actor=dpo_actor)

    assert crm_action.status == ActionStatus.DONE
    assert cdr_action.status == ActionStatus.FAILED
    assert cdr_action.error.startswith("cdr: ") and ANA_PHONE not in cdr_action.error
    assert len(source_db("SELECT id FROM calls")) == 3  # nothing half-deleted
    with pytest.raises(RequestError, match="cannot be completed yet"):
        handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)

    source_db("DROP TRIGGER keep_calls" + ("" if source_url.startswith("sqlite") else " ON calls"))
    retried = run(cdr_action.id, "execute", actor=dpo_actor)  # same approval: the rows did not change
    assert retried.status == ActionStatus.DONE and retried.attempts == 2
    assert SourceAction.objects.get(pk=crm_action.pk).attempts == 1
    assert source_db("SELECT id FROM calls") == [{"id": 3}]
    handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)


def test_re_running_an_erasure_changes_nothing_more(crm, erasure_request, dpo_actor, source_db, run):
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", "approve", "execute", actor=dpo_actor)
    after_first = source_db("SELECT * FROM subscribers ORDER BY id")
    plan, _held = actions.build_plan(action)
    from requests_app.sources import connector_for

    connector = connector_for(crm)
    # The anonymised rows no longer match Ana's address: there is nothing left to change.
    preview = connector.preview(plan)
    assert preview["categories"] == [{"category": "subscribers", "rows": 0, "fields": 0}]
    connector.apply(plan, preview["fingerprint"])
    assert source_db("SELECT * FROM subscribers ORDER BY id") == after_first


def test_rectification_is_validated_against_the_field_type(crm, dpo_actor, source_db, run):
    request = verified_request(RequestType.RECTIFICATION)
    category = crm.categories.get()
    with pytest.raises(ValidationError, match="whole number"):
        actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="birth_year", value="nineteen")
    with pytest.raises(RequestError, match="not a field"):
        actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="password", value="x")
    assert not request.rectification_changes.exists()

    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="birth_year", value=" 1981 ")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Antwerpen")
    action = run(_planned(request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)
    assert action.kind == ActionKind.RECTIFY
    assert action.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 4}]
    run(action.id, "approve", "execute", actor=dpo_actor)
    assert source_db("SELECT birth_year, city FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [
        {"birth_year": 1981, "city": "Antwerpen"}, {"birth_year": 1981, "city": "Antwerpen"}
    ]
    event = AuditEvent.objects.filter(request=request, action="rectification_value_set").first()
    assert "Antwerpen" not in str(event.data) and "1981" not in str(event.data)


def test_a_new_corrected_value_voids_the_dryrun(crm, dpo_actor, run):
    request = verified_request(RequestType.RECTIFICATION)
    category = crm.categories.get()
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Antwerpen")
    action = run(_planned(request, dpo_actor, crm).id, "dry_run", "approve", actor=dpo_actor)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Mechelen")
    action.refresh_from_db()
    assert action.status == ActionStatus.PLANNED and action.approved_at is None


def test_restriction_sets_the_flag_and_adds_to_the_list_once(crm, dpo_actor, source_db, run):
    request = verified_request(RequestType.RESTRICTION)
    action = run(_planned(request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)
    assert action.dry_run["categories"] == [{"category": "subscribers", "rows": 2, "fields": 2}]
    assert action.dry_run["list_entries"] == 1
    action = run(action.id, "approve", "execute", actor=dpo_actor)
    assert action.status == ActionStatus.DONE
    flags = source_db("SELECT restricted FROM subscribers ORDER BY id")
    assert [bool(row["restricted"]) for row in flags] == [True, True, False]
    assert source_db("SELECT identity FROM restriction_list") == [{"identity": ANA_EMAIL}]

    plan, _held = actions.build_plan(action)
    from requests_app.sources import connector_for

    again = connector_for(crm).preview(plan)
    assert again["list_entries"] == 0 and again["categories"][0]["fields"] == 0


def test_a_request_with_an_erasure_right_completes_only_once_planned_and_done(crm, erasure_request, dpo_actor, run):
    with pytest.raises(RequestError, match="has not been planned"):
        handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    action = _planned(erasure_request, dpo_actor, crm)
    with pytest.raises(RequestError, match="CRM"):
        handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    run(action.id, "dry_run", "approve", "execute", actor=dpo_actor)
    completed = handling.request_complete(request=erasure_request, actor=dpo_actor, letter="Done", expected_status=erasure_request.status)
    assert completed.status == "completed"


def test_recipients_of_a_source_where_nothing_changed_need_no_notice(crm, cdr, erasure_request, dpo_actor, run):
    from requests_app.models import NoticeStatus, Recipient

    LegalHold.objects.create(source=cdr, ground=ErasureException.LEGAL_OBLIGATION, basis="Telecom law", until=timezone.localdate())
    Recipient.objects.create(source=cdr, name="Interconnect partners", country="EU", notification_email="p@example.net")
    Recipient.objects.create(source=crm, name="Group companies", country="BE", notification_email="g@example.net")
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    for action in erasure_request.source_actions.all():
        run(action.id, "dry_run", "approve", "execute", actor=dpo_actor)

    notices = {n.recipient.name: n.status for n in erasure_request.recipient_notices.select_related("recipient")}
    assert notices == {"Interconnect partners": NoticeStatus.NOT_NEEDED, "Group companies": NoticeStatus.SENT}
    assert actions.completion_blockers(erasure_request) == []


def test_a_restriction_list_must_suit_the_connector(crm):
    crm.restriction_list = "/restrictions"
    with pytest.raises(ValidationError, match="table.column"):
        crm.full_clean()
    crm.restriction_list = "restriction_list.identity"
    crm.full_clean()


def test_the_same_instant_written_with_another_offset_is_not_a_change():
    from requests_app.sources.actions import differs

    assert not differs("2026-03-01T13:00:00Z", datetime.datetime(2026, 3, 1, 14, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))))
    assert differs("2026-03-01T13:00:00Z", datetime.datetime(2026, 3, 1, 14, 0, tzinfo=datetime.UTC))
    assert not differs(1981, "1981") and differs(None, "") and not differs(None, None)


def test_an_execution_whose_task_was_lost_can_be_started_again_after_the_time_limit(crm, erasure_request, dpo_actor, settings, run):
    action = run(_planned(erasure_request, dpo_actor, crm).id, "dry_run", "approve", actor=dpo_actor)
    actions.execute(action=action, actor=dpo_actor)  # queued on commit, which never comes here: the task is lost
    action.refresh_from_db()
    assert action.status == ActionStatus.RUNNING
    with pytest.raises(RequestError, match="already being carried out"):
        actions.execute(action=action, actor=dpo_actor)

    SourceAction.objects.filter(pk=action.pk).update(
        started_at=timezone.now() - datetime.timedelta(seconds=settings.SOURCE_ACTION_TIME_LIMIT + 1)
    )
    action = run(action.id, "execute", actor=dpo_actor)
    assert action.status == ActionStatus.DONE and action.attempts == 2


def test_a_dry_run_that_seems_stuck_can_be_started_again(crm, erasure_request, dpo_actor, run):
    action = _planned(erasure_request, dpo_actor, crm)
    actions.dry_run_start(action=action, actor=dpo_actor)  # its task is lost
    action = run(action.id, "dry_run", actor=dpo_actor)
    assert action.status == ActionStatus.AWAITING_APPROVAL


@pytest.mark.parametrize(("text", "expected"), [("yes", True), ("Oui", True), ("ja", True), ("no", False), ("non", False), ("nee", False), ("Nein", False)])
def test_yes_or_no_in_the_portals_languages(text, expected):
    from requests_app.models import FieldType
    from requests_app.sources.actions import typed_value

    assert typed_value(FieldType.BOOLEAN, text) is expected


def test_anything_else_is_not_yes_or_no():
    from requests_app.models import FieldType
    from requests_app.sources.actions import typed_value

    with pytest.raises(ValidationError, match="yes or no"):
        typed_value(FieldType.BOOLEAN, "maybe")


def test_an_email_address_typed_in_capitals_finds_the_subjects_rows(crm, dpo_actor, source_db, run):
    """Sources keep addresses in lower case: "Ana@Example.COM" searched as typed found nothing to erase, and the
    letter told Ana none of her data was there."""
    from requests_app.models import Status
    from requests_app.services.intake import RightDetails, request_verify_email, verification_token
    from tests.factories import submit_request

    request = submit_request(subject_email=ANA_EMAIL.title(), rights=[RightDetails(RequestType.ERASURE)])
    request_verify_email(token=verification_token(request))
    request.refresh_from_db()
    assert request.subject_email == "Ana@Example.Com"  # written to as typed
    assert list(request.identities.values_list("value", "verification_method")) == [(ANA_EMAIL, "email_link")]
    handling.request_transition(request=request, actor=dpo_actor, name="start_work", expected_status=Status.NEW)

    actions.plan_actions(request=request, actor=dpo_actor)
    action = run(request.source_actions.get(source=crm).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE and action.result["categories"][0]["rows"] == 2
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :email", email=ANA_EMAIL) == [{"n": 0}]


def _rectification_and_restriction_dry_run(crm, dpo_actor, run, *, field: str, value: str) -> PrivacyRequest:
    """A request for rectification and restriction in the CRM, with `field` of Ana's rows corrected to `value`, whose
    two actions both had their dry run, on the same rows, before either is carried out."""
    request = verified_request(RequestType.RECTIFICATION, RequestType.RESTRICTION)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field=field, value=value)
    actions.plan_actions(request=request, actor=dpo_actor)
    for kind in (ActionKind.RECTIFY, ActionKind.RESTRICT):
        assert run(request.source_actions.get(kind=kind).id, "dry_run", actor=dpo_actor).status == ActionStatus.AWAITING_APPROVAL
    return request


@pytest.mark.parametrize("first, then", [(ActionKind.RECTIFY, ActionKind.RESTRICT), (ActionKind.RESTRICT, ActionKind.RECTIFY)])
def test_a_rectification_and_a_restriction_of_the_same_rows_keep_each_others_dry_run_valid(first, then, crm, dpo_actor, source_db, run):
    """The city corrected does not change what the restriction does (set the flag), nor the flag what the
    rectification does (correct the city): carried out in either order, the second runs as its dry run showed,
    not refused as stale for a new dry run and approval."""
    request = _rectification_and_restriction_dry_run(crm, dpo_actor, run, field="city", value="Antwerpen")

    assert run(request.source_actions.get(kind=first).id, "approve", "execute", actor=dpo_actor).status == ActionStatus.DONE
    second = run(request.source_actions.get(kind=then).id, "approve", "execute", actor=dpo_actor)

    assert (second.status, second.error) == (ActionStatus.DONE, "")
    rows = source_db("SELECT city, restricted FROM subscribers WHERE email = :e ORDER BY id", e=ANA_EMAIL)
    assert [(row["city"], bool(row["restricted"])) for row in rows] == [("Antwerpen", True), ("Antwerpen", True)]


def test_a_rectification_of_the_address_carried_out_after_the_restrictions_dry_run_makes_it_stale(crm, dpo_actor, source_db, run):
    """The corrected address is what the restriction now finds the rows by: its dry run, on the old one, no longer
    says what it would do."""
    request = _rectification_and_restriction_dry_run(crm, dpo_actor, run, field="email", value="ana.new@example.com")
    run(request.source_actions.get(kind=ActionKind.RECTIFY).id, "approve", "execute", actor=dpo_actor)

    restrict = run(request.source_actions.get(kind=ActionKind.RESTRICT).id, "approve", "execute", actor=dpo_actor)

    assert restrict.status == ActionStatus.STALE
    assert [bool(row["restricted"]) for row in source_db("SELECT restricted FROM subscribers ORDER BY id")] == [False, False, False]


def _erasure_and_restriction_dry_run(crm, dpo_actor, run, erase_method: str) -> PrivacyRequest:
    """A request for erasure and restriction in the CRM, whose subscribers are erased by `erase_method`, with both
    actions' dry runs done on the same rows before either is carried out."""
    crm.categories.update(erase_method=erase_method)
    request = verified_request(RequestType.ERASURE, RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    for kind in (ActionKind.ERASE, ActionKind.RESTRICT):
        assert run(request.source_actions.get(kind=kind).id, "dry_run", actor=dpo_actor).status == ActionStatus.AWAITING_APPROVAL
    return request


@pytest.mark.parametrize("erase_method", [EraseMethod.ANONYMISE, EraseMethod.DELETE])
def test_a_restriction_of_the_rows_an_erasure_will_erase_keeps_the_erasures_dry_run_valid(erase_method, crm, dpo_actor, source_db, run):
    """Restricted while the erasure is decided (Art. 18(1)(d)): the flag set does not change what the erasure erases,
    and its dry run was refused as stale, for a new dry run and approval."""
    request = _erasure_and_restriction_dry_run(crm, dpo_actor, run, erase_method)
    restrict = run(request.source_actions.get(kind=ActionKind.RESTRICT).id, "approve", "execute", actor=dpo_actor)
    assert restrict.status == ActionStatus.DONE
    assert [bool(row["restricted"]) for row in source_db("SELECT restricted FROM subscribers WHERE email = :e", e=ANA_EMAIL)] == [True, True]

    erase = run(request.source_actions.get(kind=ActionKind.ERASE).id, "approve", "execute", actor=dpo_actor)

    assert (erase.status, erase.error) == (ActionStatus.DONE, "")
    assert erase.result["categories"][0]["rows"] == 2
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 0}]


@pytest.mark.parametrize(
    "erase_method, change, stale",
    [
        (EraseMethod.ANONYMISE, "UPDATE subscribers SET birth_year = 1981 WHERE id = 1", True),  # a field it anonymises
        (EraseMethod.ANONYMISE, "UPDATE subscribers SET city = 'Brugge' WHERE id = 1", False),  # a field it keeps
        (EraseMethod.ANONYMISE, "DELETE FROM subscribers WHERE id = 2", True),
        (EraseMethod.DELETE, "UPDATE subscribers SET city = 'Brugge' WHERE id = 1", True),  # it erases every field
        (EraseMethod.DELETE, f"INSERT INTO subscribers (id, email, name) VALUES (4, '{ANA_EMAIL}', 'Ana')", True),
    ],
    ids=["anonymised field", "kept field", "row removed", "deleted row's field", "row added"],
)
def test_an_erasures_dry_run_is_stale_once_what_it_erases_changed(erase_method, change, stale, crm, dpo_actor, source_db, run):
    """Its fingerprint leaves out the restriction flag, not the subject's data: the rows it finds and what it erases of
    them are still in it, changed by the source after the dry run."""
    request = _erasure_and_restriction_dry_run(crm, dpo_actor, run, erase_method)
    erase = run(request.source_actions.get(kind=ActionKind.ERASE).id, "approve", actor=dpo_actor)
    source_db(change)

    erase = run(erase.id, "execute", actor=dpo_actor)

    assert erase.status == (ActionStatus.STALE if stale else ActionStatus.DONE), erase.error


def _address_corrected_in_the_crm(other_right, crm, dpo_actor, run):
    """A request for rectification and `other_right` whose rectification, carried out, wrote a new address over the
    one Ana gave in the CRM's rows."""
    request = verified_request(RequestType.RECTIFICATION, other_right)
    actions.rectification_change_set(
        request=request, actor=dpo_actor, category=crm.categories.get(), field="email", value="Ana.New@Example.com"
    )
    actions.plan_actions(request=request, actor=dpo_actor)
    rectify = run(request.source_actions.get(kind=ActionKind.RECTIFY).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert rectify.status == ActionStatus.DONE
    return request


def test_a_restriction_after_the_address_was_corrected_finds_the_rows_by_the_corrected_one(crm, dpo_actor, source_db, run):
    """The rectification wrote the new address over the one the subject gave: the restriction, run after it,
    searched by the old one, found nothing, and the letter said there was nothing to restrict."""
    request = _address_corrected_in_the_crm(RequestType.RESTRICTION, crm, dpo_actor, run)

    restrict = run(request.source_actions.get(kind=ActionKind.RESTRICT).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert restrict.status == ActionStatus.DONE and restrict.result["categories"][0]["rows"] == 2
    restricted = source_db("SELECT email, restricted FROM subscribers WHERE name LIKE 'Ana%' ORDER BY id")
    assert [bool(row["restricted"]) for row in restricted] == [True, True]


def test_a_purged_requests_corrected_address_searches_nothing(crm, dpo_actor, run):
    """The purge blanks the corrected values: searched by "", a source could match rows with no address at all."""
    from requests_app import selectors
    from requests_app.services import intake

    request = _address_corrected_in_the_crm(RequestType.RESTRICTION, crm, dpo_actor, run)
    assert selectors.corrected_identifiers(request=request, source=crm) == ["Ana.New@Example.com"]
    intake.purge_personal_data(request)
    assert request.rectification_changes.get().value == ""
    assert selectors.corrected_identifiers(request=request, source=crm) == []


def _compiled_access_package(request, actor):
    from requests_app.models import ExportPackage, ExportStatus
    from requests_app.services import exports

    export = exports.export_start(request=request, actor=actor, kind="access")
    exports.compile_export(export_id=export.id)
    export = ExportPackage.objects.get(pk=export.pk)
    assert export.status == ExportStatus.READY, export.error
    return export


@pytest.mark.parametrize(
    "query",
    ["SELECT * FROM subscribers WHERE email IN :identities", "SELECT * FROM subscribers WHERE lower(email) IN :identities"],
)
def test_a_copy_compiled_after_the_address_was_corrected_holds_the_rows_found_by_the_corrected_one(
    crm, dpo, dpo_actor, run, settings, tmp_path, client, query
):
    """The rectification wrote the new address over the one the subject gave: the access package compiled after it
    searched the CRM by the old one only, held none of the subject's rows, and its report told them we found no
    data about them there (Art. 15). On PostgreSQL the package takes the COPY path, on SQLite the streaming one."""
    from tests.conftest import login_staff
    from tests.exports.support import jsonl_records, open_package

    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    crm.categories.update(query=query)  # compared as stored, or in lower case as identifiers are spelled
    request = _address_corrected_in_the_crm(RequestType.ACCESS, crm, dpo_actor, run)

    export = _compiled_access_package(request, dpo_actor)

    with open_package(export) as package:
        records = jsonl_records(package, "data/crm/subscribers.jsonl")
        report = package.read("report.html").decode()
    assert sorted((record["id"], record["email"]) for record in records) == [(1, "Ana.New@Example.com"), (2, "Ana.New@Example.com")]
    assert "This package confirms that we process personal data about you" in report
    assert "found no data about you in them" not in report
    # Each spelling searched, as written and as identifiers are spelled; those not verified are marked for staff.
    assert [(item["source"], item["value"], item.get("corrected", False)) for item in export.manifest["identities_searched"]] == [
        ("crm", "Ana.New@Example.com", True), ("crm", "ana.new@example.com", True), ("crm", ANA_EMAIL, False),
    ]
    login_staff(client, dpo)
    page = client.get(f"/staff/exports/{export.public_id}/").content.decode()
    assert "Email address Ana.New@Example.com (as this request's rectification corrected it)" in page
    assert "Email address ana@example.com</li>" in page  # verified: not marked


def test_a_copy_never_searches_by_a_corrected_address_the_rectification_wrote_nowhere(
    crm, dpo_actor, run, source_db, settings, tmp_path
):
    """No row held the subject's address, so the rectification changed nothing in the CRM: the address it would have
    written is someone else's (Bob's), and his row must not reach Ana's copy."""
    from tests.exports.support import jsonl_records, open_package

    settings.EXPORT_WORK_DIR = str(tmp_path / "export-work")
    source_db("DELETE FROM subscribers WHERE email = :email", email=ANA_EMAIL)
    request = verified_request(RequestType.RECTIFICATION, RequestType.ACCESS)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="email", value=BOB_EMAIL)
    actions.plan_actions(request=request, actor=dpo_actor)
    rectify = run(request.source_actions.get(kind=ActionKind.RECTIFY).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert rectify.status == ActionStatus.DONE and not rectify.changed_anything()

    export = _compiled_access_package(request, dpo_actor)

    with open_package(export) as package:
        assert jsonl_records(package, "data/crm/subscribers.jsonl") == []
    assert export.manifest["identities_searched"] == [{"source": "crm", "kind": "email", "value": ANA_EMAIL}]
    assert source_db("SELECT name FROM subscribers WHERE email = :email", email=BOB_EMAIL) == [{"name": "Bob Janssens"}]


def test_an_erasure_never_searches_by_a_corrected_address_the_rectification_wrote_nowhere(crm, dpo_actor, source_db, run):
    """With no verified email address the rectification found no row to write the corrected one into, yet the erasure
    after it searched by that value: someone else's rows, and a copy the package (skipping the CRM) could never hold."""
    request = verified_request(RequestType.RECTIFICATION, RequestType.ERASURE)
    request.identities.filter(kind=IdentityKind.EMAIL).update(verified_at=None)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="email", value=BOB_EMAIL)
    actions.plan_actions(request=request, actor=dpo_actor)
    rectify = run(request.source_actions.get(kind=ActionKind.RECTIFY).id, "dry_run", "approve", "execute", actor=dpo_actor)
    assert rectify.status == ActionStatus.DONE and not rectify.changed_anything()

    erase = run(request.source_actions.get(kind=ActionKind.ERASE).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert erase.status == ActionStatus.DONE and erase.dry_run["identities"] == 0
    assert source_db("SELECT name FROM subscribers WHERE email = :email", email=BOB_EMAIL) == [{"name": "Bob Janssens"}]


# --- A corrected identifier that other people's rows hold ---------------------


@pytest.mark.parametrize("corrected", [BOB_EMAIL, "Bob@Example.COM"])
def test_a_rectification_dry_run_refuses_an_identifier_someone_elses_rows_hold(crm, dpo_actor, source_db, run, corrected):
    """Ana "corrects" her address to Bob's: carried out, every later search for her in the CRM would look for Bob's
    address too, and an erasure of hers would delete his row. Addresses compare without regard to case, as they are
    searched."""
    request = verified_request(RequestType.RECTIFICATION, RequestType.ERASURE)
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="email", value=corrected)

    actions.plan_actions(request=request, actor=dpo_actor)
    action = run(request.source_actions.get(kind=ActionKind.RECTIFY).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.PLANNED and not action.dry_run
    assert action.error.startswith("crm: the corrected subscribers.email is already held by rows that are not the subject's (1 row in subscribers)")
    assert "bob" not in action.error.lower()
    assert source_db("SELECT id FROM subscribers WHERE lower(email) = :email ORDER BY id", email=ANA_EMAIL) == [{"id": 1}, {"id": 2}]


def test_a_rectification_refuses_at_execution_an_identifier_someone_took_since_the_dry_run(crm, dpo_actor, source_db, run):
    """The dry run found the new address free; a row of someone else's got it before the execution, which must
    change none of Ana's rows (not even the other corrected field)."""
    request = verified_request(RequestType.RECTIFICATION)
    category = crm.categories.get()
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="email", value="ana.new@example.com")
    actions.rectification_change_set(request=request, actor=dpo_actor, category=category, field="city", value="Antwerpen")
    action = run(_planned(request, dpo_actor, crm).id, "dry_run", "approve", actor=dpo_actor)
    assert action.status == ActionStatus.APPROVED
    source_db("INSERT INTO subscribers (id, email, name, city, restricted) VALUES (4, 'Ana.New@example.com', 'Ana Nieuw', 'Brugge', false)")

    action = run(action.id, "execute", actor=dpo_actor)

    assert action.status == ActionStatus.FAILED
    assert "(1 row in subscribers)" in action.error
    assert source_db("SELECT email, city FROM subscribers WHERE id IN (1, 2) ORDER BY id") == [
        {"email": ANA_EMAIL, "city": "Gent"}, {"email": ANA_EMAIL, "city": "Gent"}
    ]


def test_a_rectification_counts_the_rows_other_categories_find_by_the_corrected_identifier(crm, dpo_actor, source_db, run):
    """The package and the actions search every category of the source by the corrected address: rows of another
    table (read by its query alone) that hold it would join Ana's copy."""
    from requests_app.models import DataCategory, SourceCategory

    source_db("CREATE TABLE tickets (id INTEGER PRIMARY KEY, email VARCHAR(200), subject VARCHAR(200))")
    source_db("INSERT INTO tickets VALUES (1, 'ana.new@example.com', 'Roaming bill'), (2, 'carl@example.com', 'Fax')")
    SourceCategory.objects.create(
        source=crm, slug="tickets", category=DataCategory.CONTACT, query="SELECT * FROM tickets WHERE email IN :identities"
    )
    request = verified_request(RequestType.RECTIFICATION)
    actions.rectification_change_set(
        request=request, actor=dpo_actor, category=crm.categories.get(slug="subscribers"), field="email", value="Ana.New@Example.com"
    )

    action = run(_planned(request, dpo_actor, crm).id, "dry_run", actor=dpo_actor)

    assert action.status == ActionStatus.PLANNED
    assert "(1 row in tickets)" in action.error


def test_a_rectification_may_write_another_of_the_subjects_own_identifiers(crm, dpo_actor, source_db, run):
    """Rows holding an address the subject verified are found as theirs anyway: correcting to it takes nobody's."""
    from requests_app.models import SubjectIdentity

    request = verified_request(RequestType.RECTIFICATION)
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.EMAIL, value=BOB_EMAIL, verified_at=timezone.now())
    actions.rectification_change_set(request=request, actor=dpo_actor, category=crm.categories.get(), field="email", value=BOB_EMAIL)

    action = run(_planned(request, dpo_actor, crm).id, "dry_run", "approve", "execute", actor=dpo_actor)

    assert action.status == ActionStatus.DONE, action.error
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :email", email=BOB_EMAIL) == [{"n": 3}]
