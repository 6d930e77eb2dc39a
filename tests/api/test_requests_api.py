import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.models import IdentityKind, Message, MessageDirection, PrivacyRequest, Status, VerificationMethod
from requests_app.services import handling
from requests_app.wording import date_in_words
from tests.api.conftest import client_with, key_for

URL = "/api/v1/requests/"
VALID = {
    "rights": ["access", "erasure"],
    "subject_name": "Ana Peeters",
    "subject_email": "ana@example.com",
    "subject_phone": "+32475123456",
    "relationship": "end_user",
    "signature": "Ana Peeters",
}


def create(api, **changes):
    return api.post(URL, {**VALID, **changes}, format="json")


@pytest.mark.django_db
def test_an_organisation_files_a_request_with_asserted_identities(api, operator):
    response = create(api)
    assert response.status_code == 201, response.json()
    body = response.json()
    request = PrivacyRequest.objects.get(public_id=body["id"])
    assert (request.organisation, request.channel, request.status) == (operator, "api", Status.NEW)
    assert body["reference"] == request.reference and body["rights"] == ["access", "erasure"]
    assert body["due_on"] == request.due_on.isoformat()
    phone = request.identities.get(kind=IdentityKind.PHONE)
    # Asserted, not verified: only staff verification makes it searchable in source systems.
    assert not phone.is_verified and phone.verification_method == VerificationMethod.ASSERTED_BY_ORGANISATION
    event = request.events.get(action="submitted")
    assert (event.actor_kind, event.actor_label) == ("organisation", "organisation Mobile Operator SA")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rights": ["teleport"]}, "rights"),
        ({"subject_email": "nope"}, "subject_email"),
        ({"subject_email": "ana@localhost"}, "subject_email"),  # the web form's rule: a domain with a dot
        ({"subject_phone": "0475"}, "subject_phone"),
        ({"signature": ""}, "signature"),
        ({"rights": ["rectification"]}, "rectification_value"),
        ({"consent_withdrawn": "The newsletter"}, "consent_withdrawn"),  # a right not asked for: it would be lost
        ({"description": "x" * 10_001}, "description"),
        ({"subject_name": 123}, "subject_name"),  # a number is not a name, even as "123"
        ({"customer_reference": 1e308}, "customer_reference"),
        ({"customer_reference": ".."}, "customer_reference"),  # no account, and a path's folder above
    ],
)
@pytest.mark.django_db
def test_the_web_forms_rules_apply_with_problem_details(api, changes, field):
    response = create(api, **changes)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 400 and field in body["errors"]
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_an_account_reference_of_dots_only_is_refused_saying_what_one_looks_like(api):
    response = create(api, customer_reference=" .. ")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {
        "customer_reference": [
            "An account reference has letters or digits: enter it as your contract or invoice shows it, for example CUST-000123."
        ]
    }
    assert create(api, customer_reference="MOB-4471-2093").status_code == 201


@pytest.mark.django_db
def test_a_paused_clock_is_shown_so_a_portal_does_not_call_the_request_late(api):
    from requests_app.audit import Actor
    from requests_app.services.deadlines import clock_pause
    from tests.factories import staff_in_role

    created = create(api).json()
    assert created["clock_paused"] is False
    request = PrivacyRequest.objects.get(public_id=created["id"])
    clock_pause(request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-pause")), reason="ID asked by phone")
    assert api.get(f"{URL}{created['id']}/").json()["clock_paused"] is True


@pytest.mark.django_db
def test_retrieve_shows_status_due_date_and_the_subjects_timeline(api):
    created = create(api).json()
    body = api.get(f"{URL}{created['id']}/").json()
    assert body["status"] == "new" and body["due_on"]
    assert [item["event"] for item in body["timeline"]] == ["We received your request."]
    assert "subject_email" not in body


@pytest.mark.django_db
def test_only_one_requests_answers_carry_its_timeline_and_none_shows_it_empty(api):
    """An empty list read as "nothing happened" next to GET's "We received your request.": where the timeline
    is not computed (the filing, which is benchmarked, and the list), the field is left out."""
    created = create(api).json()
    listed = api.get(URL).json()["results"][0]
    assert "timeline" not in created and "timeline" not in listed
    assert created.keys() == listed.keys()
    fetched = api.get(f"{URL}{created['id']}/").json()
    assert fetched.keys() - created.keys() == {"portability_recipient", "timeline"}  # one request's details
    assert [item["event"] for item in fetched["timeline"]] == ["We received your request."]


@pytest.mark.django_db
def test_list_filters_and_paginates_by_cursor(api):
    first = create(api).json()
    create(api, rights=["objection"], objection_processing="Marketing")
    api.post(f"{URL}{first['id']}/withdraw/")
    assert [r["id"] for r in api.get(URL, {"status": "withdrawn"}).json()["results"]] == [first["id"]]
    assert len(api.get(URL, {"type": "objection"}).json()["results"]) == 1
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert api.get(URL, {"updated_since": future}).json()["results"] == []
    assert api.get(URL, {"status": "bogus"}).status_code == 400
    page = api.get(URL).json()
    assert set(page) == {"next", "previous", "results"} and len(page["results"]) == 2


@pytest.mark.django_db
def test_every_request_is_listed_once_across_pages_when_many_share_a_creation_time(api, operator):
    """Ordered by created_at alone, ties came back in another order on each page (PostgreSQL's top-N sort is not
    stable): 110 requests created in the same instant paged to 110 items, one of them twice and one never."""
    from tests.factories import submit_request

    for _ in range(110):
        submit_request(organisation=operator)
    PrivacyRequest.objects.update(created_at=timezone.now())
    listed, page = [], api.get(URL).json()
    while True:
        listed += [item["id"] for item in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert sorted(listed) == sorted(str(public_id) for public_id in PrivacyRequest.objects.values_list("public_id", flat=True))


@pytest.mark.django_db
def test_a_withdrawal_over_the_api_is_confirmed_to_the_subject_naming_the_organisation(
    api, operator, mailoutbox, django_capture_on_commit_callbacks
):
    """The portal acts on the subject's behalf; the subject hears of it from us as of the request itself."""
    with django_capture_on_commit_callbacks(execute=True):
        created = create(api, language="nl").json()
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"{URL}{created['id']}/withdraw/")

    (email,) = [sent for sent in mailoutbox if sent.to == ["ana@example.com"]]
    assert created["reference"] in email.subject
    assert f"ingetrokken door {operator.name}, dat het namens u had ingediend" in email.body  # in Dutch
    assert '<html lang="nl">' in email.alternatives[0][0]


@pytest.mark.django_db
def test_withdrawing_twice_is_a_conflict(api):
    created = create(api).json()
    withdrawn = api.post(f"{URL}{created['id']}/withdraw/").json()
    assert withdrawn["status"] == "withdrawn"
    assert [item["event"] for item in withdrawn["timeline"]] == ["We received your request.", "The request was withdrawn."]
    again = api.post(f"{URL}{created['id']}/withdraw/")
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    # The portal's words, not the state machine's ("a request that is withdrawn cannot be moved to withdrawn").
    withdrawn_at = date_in_words(PrivacyRequest.objects.get(public_id=created["id"]).closed_at, "DATETIME_FORMAT")
    assert again.json()["detail"] == f"This request was already withdrawn on {withdrawn_at}: nothing changed."


@pytest.mark.django_db
def test_updated_since_the_moment_a_timeline_entry_or_an_event_shows_lists_the_request(api, operator):
    """A portal catching up from the time its last timeline entry or webhook event showed finds the change: the
    status used to move updated_at a moment before the entry and the event were dated, in the same transaction."""
    from requests_app.models import WebhookDelivery, WebhookEndpoint
    from requests_app.services.webhooks import WebhookEvent, api_datetime

    WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    created = create(api).json()
    withdrawn = api.post(f"{URL}{created['id']}/withdraw/").json()
    event = WebhookDelivery.objects.get(event=WebhookEvent.REQUEST_STATUS_CHANGED)
    for since in (withdrawn["timeline"][-1]["at"], api_datetime(event.occurred_at)):
        assert [listed["id"] for listed in api.get(URL, {"updated_since": since}).json()["results"]] == [created["id"]]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_polling_from_updated_since_next_finds_a_change_committed_after_the_poll_that_it_was_dated_before(api, monkeypatch):
    """A change is dated inside its transaction and seen once it commits: a poll in between does not list it, and a
    poll from the moment of that one never did. Updated-Since-Next, from the poll in between, finds it."""
    from django.db import connection

    from requests_app import selectors
    from requests_app.api.fields import MomentField

    # Without the margin for the clocks, which would hide whether the open transaction is waited for.
    monkeypatch.setattr(selectors, "CHANGES_CLOCK_MARGIN", timedelta(0))

    request = PrivacyRequest.objects.get(public_id=create(api).json()["id"])
    other = connection.get_new_connection(connection.get_connection_params())  # another worker, its own transaction
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT 1")  # its transaction has begun
            stamped = timezone.now()
            cursor.execute(
                f"UPDATE {PrivacyRequest._meta.db_table} SET status = %s, updated_at = %s WHERE id = %s",
                [Status.WITHDRAWN, stamped, request.pk],
            )
        polled_at = MomentField().to_representation(timezone.now())
        poll = api.get(URL, {"updated_since": MomentField().to_representation(request.created_at)})
        assert [listed["status"] for listed in poll.json()["results"]] == ["new"]  # not committed yet
        other.commit()
    finally:
        other.close()

    next_since = poll["Updated-Since-Next"]
    assert datetime.fromisoformat(next_since) <= stamped
    assert api.get(URL, {"updated_since": polled_at}).json()["results"] == []  # the change the naive poller misses
    assert [listed["status"] for listed in api.get(URL, {"updated_since": next_since}).json()["results"]] == ["withdrawn"]


@pytest.mark.django_db
def test_updated_since_next_is_a_few_seconds_ago_when_no_transaction_is_open(api):
    from requests_app.selectors import CHANGES_CLOCK_MARGIN

    before = timezone.now()
    next_since = datetime.fromisoformat(api.get(URL)["Updated-Since-Next"])
    assert before - CHANGES_CLOCK_MARGIN - timedelta(seconds=1) <= next_since <= timezone.now() - CHANGES_CLOCK_MARGIN


@pytest.mark.postgres
@pytest.mark.django_db
def test_updated_since_next_goes_back_the_longest_task_time_when_the_role_cannot_see_the_other_sessions(caplog):
    """PostgreSQL hides other roles' sessions' transactions from a role without pg_read_all_stats: one of them could
    be a change still uncommitted, dated as long ago as a transaction may run: the moment goes back that far."""
    from django.db import connection

    from requests_app.selectors import CHANGES_CLOCK_MARGIN, changes_committed_before, changes_unseen_margin

    other_process = connection.copy()  # another process of the application, connected as the test's role
    other_process.ensure_connection()
    try:
        before = timezone.now()
        seen = changes_committed_before()
        assert before - CHANGES_CLOCK_MARGIN - timedelta(seconds=1) <= seen <= timezone.now() - CHANGES_CLOCK_MARGIN

        with connection.cursor() as cursor:
            # Created in the test's transaction, and gone with it.
            cursor.execute("CREATE ROLE portal_without_stats NOLOGIN")
            cursor.execute("SET LOCAL ROLE portal_without_stats")
        try:
            blind = changes_committed_before()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
    finally:
        other_process.close()
    # From the start of the test's transaction, as PostgreSQL's now() is.
    margin = changes_unseen_margin()
    assert margin == timedelta(hours=2, seconds=5)  # the source actions' time limit, and the clocks'
    assert timezone.now() - margin - timedelta(minutes=1) <= blind <= timezone.now() - margin
    assert "grant it pg_read_all_stats" in caplog.text


@pytest.mark.django_db
def test_the_status_label_and_the_timeline_are_in_the_language_asked_for(api):
    """As the README says: not only a problem's `detail` follows Accept-Language."""
    created = create(api).json()
    answer = api.get(f"{URL}{created['id']}/", HTTP_ACCEPT_LANGUAGE="fr")
    assert answer["Content-Language"] == "fr"
    assert answer.json()["status_label"] == "Nouvelle"
    assert [item["event"] for item in answer.json()["timeline"]] == ["Nous avons reçu votre demande."]


@pytest.mark.django_db
def test_withdrawing_a_completed_request_says_it_is_closed_and_since_when(api):
    request = PrivacyRequest.objects.get(public_id=create(api).json()["id"])
    for name in ("start_work", "complete"):
        lifecycle.transition(request, name, actor=Actor.system())
    answer = api.post(f"{URL}{request.public_id}/withdraw/")
    assert answer.status_code == 409
    closed_at = date_in_words(request.closed_at, "DATETIME_FORMAT")
    assert answer.json()["detail"] == f"This request is already closed (completed on {closed_at}): there is nothing left to withdraw."


@pytest.mark.parametrize(
    ("body", "content_type", "code", "detail"),
    [
        ("{bad", "application/json", 400, "JSON parse error - Expecting property name enclosed in double quotes"),
        ('["withdraw"]', "application/json", 400, "The request is not valid; see errors."),
        ('{"reason": "\\ud800"}', "application/json", 400, "JSON parse error - lone surrogate \\ud800"),
        ("withdraw", "text/plain", 415, 'Unsupported media type "text/plain" in request.'),
    ],
    ids=["malformed", "not-an-object", "lone-surrogate", "text"],
)
@pytest.mark.django_db
def test_a_withdrawal_with_a_body_it_cannot_read_is_refused_and_withdraws_nothing(api, body, content_type, code, detail):
    """The view never read its body: malformed JSON or text was answered 200, and the request withdrawn."""
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/withdraw/", data=body, content_type=content_type)
    assert response.status_code == code and response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"].startswith(detail)
    assert PrivacyRequest.objects.get(public_id=created["id"]).status == Status.NEW


@pytest.mark.parametrize(
    ("body", "content_type"), [("", "application/json"), ("", "text/plain"), ("{}", "application/json")], ids=["none", "none-as-text", "empty-object"]
)
@pytest.mark.django_db
def test_a_withdrawal_takes_no_body_or_an_empty_object(api, body, content_type):
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/withdraw/", data=body, content_type=content_type)
    assert response.status_code == 200 and response.json()["status"] == "withdrawn"


UNKNOWN = ["Unknown field: check its name against the API schema. Nothing was done."]


@pytest.mark.django_db
def test_a_withdrawal_with_a_field_it_does_not_take_is_refused_naming_it(api):
    """{"reason": ...} was ignored and the request withdrawn, as if the body had been read."""
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/withdraw/", {"reason": "moved abroad"}, format="json")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {"reason": UNKNOWN}
    assert PrivacyRequest.objects.get(public_id=created["id"]).status == Status.NEW


@pytest.mark.django_db
def test_a_misspelled_field_is_refused_with_every_other_mistake_and_nothing_is_filed(api):
    """A "subject_phonee" filed the request without the phone."""
    body = {key: value for key, value in VALID.items() if key != "subject_phone"}
    response = api.post(URL, {**body, "subject_phonee": "+32475123456"}, format="json")
    assert response.status_code == 400 and response.json()["errors"] == {"subject_phonee": UNKNOWN}
    # With the serializer's own mistakes, and with the form's.
    mixed = api.post(URL, {**body, "subject_name": 123, "subject_email": "nope", "subject_phonee": "1", "confirm": True}, format="json")
    assert set(mixed.json()["errors"]) == {"subject_name", "subject_email", "subject_phonee", "confirm"}
    assert mixed.json()["errors"]["confirm"] == UNKNOWN
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_a_message_with_a_field_it_does_not_take_is_refused_not_passed_on_without_it(api):
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/messages/", {"body": "My ID", "document": "aWQ="}, format="json")
    assert response.status_code == 400 and response.json()["errors"] == {"document": UNKNOWN}
    assert not PrivacyRequest.objects.get(public_id=created["id"]).messages.exists()


@pytest.mark.django_db
def test_the_schema_says_the_bodies_take_no_other_fields(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    assert schema["RequestCreate"]["additionalProperties"] is False
    assert schema["MessageCreate"]["additionalProperties"] is False


@pytest.mark.django_db
def test_the_schema_shows_every_limit_of_the_form_and_says_what_each_field_is(client):
    """Only subject_name, subject_email and customer_reference had their maxLength: a portal learnt the others from
    a 400."""
    from requests_app.api.serializers import PortalRequestForm  # the web form's fields, and the postal address

    fields = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]["RequestCreate"]["properties"]
    form_fields = PortalRequestForm.base_fields
    limits = {name: fields[name].get("maxLength") for name in fields if getattr(form_fields[name], "max_length", None)}
    assert limits == {name: form_fields[name].max_length for name in limits}
    assert {name for name, limit in limits.items() if limit} >= {
        "rectification_data", "rectification_value", "objection_processing", "consent_withdrawn", "signature",
        "subject_phone", "ip_address", "postal_address",
    }
    assert [name for name, field in fields.items() if not field.get("description")] == []


@pytest.mark.django_db
def test_a_detail_over_its_limit_is_refused_its_line_breaks_counted_once(api):
    lines = "a" * 1998 + "\r\n" + "b"  # 2,001 characters as sent, 2,000 as the form counts them
    filed = create(api, rights=["rectification"], rectification_data="My address", rectification_value=lines)
    assert filed.status_code == 201, filed.json()
    too_long = create(api, rights=["rectification"], rectification_data="My address", rectification_value="a" * 2001)
    assert too_long.status_code == 400 and set(too_long.json()["errors"]) == {"rectification_value"}


@pytest.mark.django_db
def test_a_filed_request_is_at_the_address_its_201_gives(api):
    response = create(api)
    assert response.status_code == 201
    location = response["Location"]
    assert location == f"{URL}{response.json()['id']}/"  # a path: right behind any proxy
    fetched = api.get(location)
    assert fetched.status_code == 200 and fetched.json()["id"] == response.json()["id"]


@pytest.mark.django_db
def test_a_message_reaches_the_thread(api):
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/messages/", {"body": "My account number is 42."}, format="json")
    assert response.status_code == 201
    request = PrivacyRequest.objects.get(public_id=created["id"])
    assert request.messages.get().body == "My account number is 42."
    assert request.events.get(action="subject_replied").actor_kind == "organisation"


@pytest.mark.django_db
def test_a_passed_on_messages_201_gives_its_address_where_it_reads_back(api):
    created = create(api).json()
    response = api.post(f"{URL}{created['id']}/messages/", {"body": "My account number is 42."}, format="json")
    assert response["Location"] == f"{URL}{created['id']}/messages/{response.json()['id']}/"  # a path, as a filing's
    fetched = api.get(response["Location"])
    assert fetched.status_code == 200 and fetched.json() == response.json()
    assert api.head(response["Location"]).status_code == 200
    assert api.post(response["Location"], {"body": "again"}, format="json").status_code == 405


@pytest.mark.django_db
def test_only_the_messages_an_organisation_passed_on_read_back_others_are_a_404(api, operator, other_operator):
    """The subject's own replies on the status page, and the DPO team's messages, were never the portal's to read."""
    created = create(api).json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    passed_on = api.post(f"{URL}{created['id']}/messages/", {"body": "Via the portal"}, format="json").json()
    own_reply = handling.subject_reply(request=request, body="Via my status page")
    to_subject = Message.objects.create(request=request, direction=MessageDirection.TO_SUBJECT, body="Please send your ID")
    theirs = create(client_with(key_for(other_operator))).json()
    for message_id in (own_reply.public_id, to_subject.public_id, uuid.uuid4(), "0" * 36):
        refused = api.get(f"{URL}{created['id']}/messages/{message_id}/")
        assert refused.status_code == 404 and refused.json()["detail"] == "No such message for this API key."
    # Another organisation's request is unknown whatever message id comes with it; a read key reads its own.
    assert api.get(f"{URL}{theirs['id']}/messages/{passed_on['id']}/").status_code == 404
    assert client_with(key_for(other_operator)).get(f"{URL}{created['id']}/messages/{passed_on['id']}/").status_code == 404
    assert client_with(key_for(operator, scope="read")).get(f"{URL}{created['id']}/messages/{passed_on['id']}/").status_code == 200


ENDPOINTS = [
    ("get", "{url}{id}/"),
    ("post", "{url}{id}/withdraw/"),
    ("post", "{url}{id}/messages/"),
    ("get", f"{{url}}{{id}}/messages/{uuid.uuid4()}/"),
]


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
@pytest.mark.django_db
def test_another_organisations_request_is_a_404(api, other_operator, method, template):
    theirs = create(client_with(key_for(other_operator))).json()
    response = getattr(api, method)(template.format(url=URL, id=theirs["id"]), {"body": "hi"}, format="json")
    assert response.status_code == 404
    assert PrivacyRequest.objects.get(public_id=theirs["id"]).status == Status.NEW


MALFORMED_IDS = ["not-a-uuid", "0" * 35, "12345", "a.b", "%E2%82%AC"]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize(
    ("method", "template"),
    [*ENDPOINTS, ("get", "{url}{id}/exports/"), ("get", f"{{url}}{{id}}/exports/{uuid.uuid4()}/download/")],
)
@pytest.mark.django_db
def test_a_malformed_request_id_is_checked_after_the_key_and_unknown_like_any_other(api, method, template, bad_id):
    """An id that is not a UUID was the generic "No such endpoint" 404, answered before the key was read: a caller
    without a key was told 404 rather than 401, and one with a key a misleading title."""
    from rest_framework.test import APIClient

    path = template.format(url=URL, id=bad_id)
    without_key = getattr(APIClient(), method)(path, {"body": "hi"}, format="json")
    assert without_key.status_code == 401 and without_key["WWW-Authenticate"] == "Api-Key"
    refused = getattr(api, method)(path, {"body": "hi"}, format="json")
    assert refused.status_code == 404 and refused["Content-Type"] == "application/problem+json"
    assert refused.json()["detail"] == "No such privacy request for this API key."


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.django_db
def test_a_malformed_message_or_package_id_is_no_such_message_or_package(api, bad_id):
    created = create(api).json()
    message = api.get(f"{URL}{created['id']}/messages/{bad_id}/")
    assert message.status_code == 404 and message.json()["detail"] == "No such message for this API key."
    package = api.get(f"{URL}{created['id']}/exports/{bad_id}/download/")
    assert package.status_code == 404 and package.json()["detail"] == "No such export package for this API key."


@pytest.mark.django_db
def test_lists_only_show_the_organisations_own_requests(api, other_operator):
    mine = create(api).json()
    create(client_with(key_for(other_operator)))
    assert [r["id"] for r in api.get(URL).json()["results"]] == [mine["id"]]


@pytest.mark.parametrize(
    "key_kind", ["missing", "wrong", "expired", "revoked"],
)
@pytest.mark.django_db
def test_bad_keys_are_401(operator, key_kind):
    from rest_framework.test import APIClient

    if key_kind == "missing":
        client = APIClient()
    elif key_kind == "wrong":
        client = client_with("abcdefgh.not-a-real-key")
    elif key_kind == "expired":
        client = client_with(key_for(operator, expiry_date=timezone.now() - timedelta(minutes=1)))
    else:
        client = client_with(key_for(operator, revoked=True))
    response = client.get(URL)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    detail = {"missing": "Send an API key", "expired": "has expired"}.get(key_kind, "not valid")
    assert detail in response.json()["detail"]


@pytest.mark.django_db
def test_a_read_key_cannot_write(operator):
    reader = client_with(key_for(operator, scope="read"))
    assert reader.get(URL).status_code == 200
    assert create(reader).status_code == 403
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db
def test_malformed_json_is_400_and_oversized_bodies_413(api, settings):
    bad = api.post(URL, data="{not json", content_type="application/json")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"
    settings.API_MAX_BODY_BYTES = 1000
    big = api.post(URL, {**VALID, "description": "x" * 2000}, format="json")
    assert big.status_code == 413 and big.json()["status"] == 413


@pytest.mark.django_db
def test_the_longest_filing_the_schema_allows_fits_the_body_limit_even_escaped(api, settings):
    """Python's json.dumps, like most JSON libraries, writes text outside ASCII as \\u escapes, an emoji in 12 bytes:
    a Cyrillic description well within its 10,000 characters was a 413 under a 64 KiB limit."""
    from requests_app.api.serializers import RequestCreateSerializer

    # Every field's limit in characters, the description's 10,000 (which the form checks) included.
    fields = RequestCreateSerializer().fields.values()
    longest = 10_000 + sum(getattr(field, "max_length", None) or 0 for field in fields)
    assert longest * 12 + 4096 <= settings.API_MAX_BODY_BYTES
    body = json.dumps({**VALID, "rights": ["objection"], "description": "😀" * 10_000, "objection_processing": "Ж" * 2000})
    assert len(body.encode()) > 64 * 1024
    filed = api.post(URL, body, content_type="application/json")
    assert filed.status_code == 201, filed.content[:300]


# What gunicorn hands Django for a body sent in chunks: the header, and no length (WSGI: CONTENT_LENGTH empty or absent).
CHUNKED = {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": ""}


@pytest.mark.django_db
def test_a_body_sent_in_chunks_is_a_411_not_read_as_empty(api):
    """Django reads a body by its length: a chunked filing was answered "This field is required" for every field it
    had sent, and a chunked withdrawal went through whatever its body said."""
    filed = api.post(URL, VALID, format="json", **CHUNKED)
    assert filed.status_code == 411 and filed["Content-Type"] == "application/problem+json"
    assert filed.json()["title"] == "Length Required" and "Content-Length" in filed.json()["detail"]
    assert not PrivacyRequest.objects.exists()
    request = PrivacyRequest.objects.get(public_id=create(api).json()["id"])
    withdrawn = api.post(f"{URL}{request.public_id}/withdraw/", {"reason": "not a body it takes"}, format="json", **CHUNKED)
    assert withdrawn.status_code == 411
    request.refresh_from_db()
    assert request.status == Status.NEW


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"rights": ["objection"], "objection_processing": "Profiling", "direct_marketing": "yes"}, {"direct_marketing": ["Must be a valid boolean."]}),
        ({"rights": ["objection"], "objection_processing": "Profiling", "direct_marketing": 1}, {"direct_marketing": ["Must be a valid boolean."]}),
        ({"rights": ["access", "erasure", "access"]}, {"rights": ["“access” is listed more than once: list each right once."]}),
    ],
)
@pytest.mark.django_db
def test_a_boolean_must_be_json_true_or_false_and_a_right_listed_once(api, changes, errors):
    """DRF took "yes" and 1 for true, and merged a right listed twice, without a word: a portal's bug hidden."""
    refused = api.post(URL, {**VALID, **changes}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == errors
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_an_objection_to_direct_marketing_is_filed_as_such(api):
    body = {**VALID, "rights": ["objection"], "direct_marketing": True}
    assert api.post(URL, body, format="json").status_code == 201
    assert PrivacyRequest.objects.get().rights.get().direct_marketing is True


@pytest.mark.django_db
def test_a_filter_given_twice_is_refused_not_half_applied(api):
    response = api.get(URL, {"status": ["new", "withdrawn"]})
    assert response.status_code == 400
    assert response.json()["errors"] == {"status": ["Give status once: the list filters by one value of it at a time."]}


@pytest.mark.django_db
def test_a_misspelt_filter_is_refused_not_ignored(api):
    """"updated_after" listed every request, as if the portal's filter had been applied: a full sync it did not ask for."""
    create(api)
    response = api.get(URL, {"updated_after": "2026-12-01T00:00:00Z", "status": "new"})
    assert response.status_code == 400
    assert response.json()["errors"] == {"updated_after": ["Unknown parameter: check its name against the API schema."]}
    assert len(api.get(URL, {"status": "new"}).json()["results"]) == 1


@pytest.mark.django_db
def test_details_sent_without_their_right_are_refused_in_the_apis_words(api):
    """The web form's "tick it above" meant nothing to a portal, which has no box to tick."""
    response = api.post(URL, {**VALID, "rectification_data": "My address is Rue Haute 1."}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "rectification_data": ["Sent without “rectification” in rights: add it to rights, or leave this field out."]
    }
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_answers_made_before_any_view_are_in_the_language_asked_for(api, settings):
    """The 413, the 411 and the 308 are written before any view, and the duplicate key's reason outside gettext:
    they came in English whatever Accept-Language asked, then without the Content-Language and Vary that every
    other answer has, and in another JSON layout (spaced, with \\u escapes)."""
    settings.API_MAX_BODY_BYTES = 1000
    big = api.post(URL, {**VALID, "description": "x" * 2000}, format="json", HTTP_ACCEPT_LANGUAGE="fr")
    assert big.json()["detail"] == "Le corps dépasse 1000 octets."
    assert big.content.decode().startswith('{"type":"about:blank","title":"Content Too Large","status":413,"detail":"Le corps dépasse')
    moved = api.post(URL.rstrip("/"), VALID, format="json", HTTP_ACCEPT_LANGUAGE="de")
    assert json.loads(moved.content)["detail"].startswith("Die Adresse dieses Endpunkts endet mit einem Schrägstrich")
    assert '"detail":"Die Adresse dieses Endpunkts' in moved.content.decode()
    chunked = api.post(URL, VALID, format="json", HTTP_ACCEPT_LANGUAGE="nl", **CHUNKED)
    for answer, language in ((big, "fr"), (moved, "de"), (chunked, "nl")):
        assert answer["Content-Language"] == language
        assert "Accept-Language" in answer["Vary"]
    twice = api.post(URL, data='{"rights": [], "rights": []}', content_type="application/json", HTTP_ACCEPT_LANGUAGE="nl")
    assert 'dubbele sleutel "rights"' in twice.json()["detail"]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"rights": ["access"], "subject_name": "Ana", "rights": ["erasure"]}', "rights"),
        # Nested: the suppression lookup's identifiers, and an object inside an array inside an object.
        ('{"identifiers": [{"kind": "email", "value": "a@example.com", "kind": "phone"}]}', "kind"),
        ('{"a": {"b": [{"c": 1, "c": 1}]}}', "c"),
        # Two spellings of one key are one key once decoded.
        ('{"signature": "Ana", "sign\\u0061ture": "Bob"}', "signature"),
    ],
)
@pytest.mark.django_db
def test_a_key_named_twice_in_a_json_object_is_400_naming_it(api, body, key):
    response = api.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": f'JSON parse error - duplicate key "{key}": each key may appear only once in an object',
    }
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_a_key_named_twice_is_refused_on_every_endpoint_that_reads_json(operator):
    from requests_app.models import SuppressionPurpose

    SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails")
    suppression = client_with(key_for(operator, scope="suppression"))
    body = '{"identifiers": [{"kind": "email", "kind": "phone", "value": "+32475123456"}]}'
    response = suppression.post("/api/v1/suppression-lists/marketing-email/lookup/", data=body, content_type="application/json")
    assert response.status_code == 400 and 'duplicate key "kind"' in response.json()["detail"]


@pytest.mark.django_db
def test_the_same_key_in_two_objects_is_no_duplicate(api):
    body = {**VALID, "description": "x"}
    assert api.post(URL, data=json.dumps(body), content_type="application/json").status_code == 201
    lookup = '{"identifiers": [{"kind": "email", "value": "a@example.com"}, {"kind": "email", "value": "b@example.com"}]}'
    from requests_app.api.parsers import loads

    assert loads(lookup)["identifiers"][1] == {"kind": "email", "value": "b@example.com"}


@pytest.mark.django_db
def test_idempotency_a_body_with_a_key_twice_is_not_the_body_with_its_last_value(api):
    """A body the parser refuses is compared by its bytes: a corrected retry is another request, not the stored 400."""
    twice = json.dumps(VALID)[:-1] + ', "subject_name": "Bob Peeters"}'
    refused = api.post(URL, data=twice, content_type="application/json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert refused.status_code == 400
    corrected = api.post(URL, data=json.dumps({**VALID, "subject_name": "Bob Peeters"}), content_type="application/json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert corrected.status_code == 422
    again = api.post(URL, data=twice, content_type="application/json", HTTP_IDEMPOTENCY_KEY="d-1")
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_json_nested_too_deeply_is_400_not_a_crash(api):
    """A thousand nested arrays fit in 2 KB and exhaust Python's decoder."""
    nested = api.post(URL, data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert nested.status_code == 400 and nested["Content-Type"] == "application/problem+json"
    assert "nested too deeply" in nested.json()["detail"]


# The escapes as they stand in the JSON text: json.dumps would write a lone surrogate so too.
LONE_HIGH, LONE_LOW = "\\ud800", "\\udfff"


def lone_surrogate_refused(response, escape):
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json", response.content
    assert response.json()["detail"] == (
        f"JSON parse error - lone surrogate {escape}: an escape between \\ud800 and \\udfff is half of a character, "
        "valid only in a high-low pair"
    )
    return True


@pytest.mark.parametrize(
    ("changes", "escape"),
    [
        # A choice's error quotes the value sent: '"\ud800" is not a valid choice.' could not be written (a 500).
        ({"rights": ["\ud800"]}, LONE_HIGH),
        ({"rights": ["restriction"], "restriction_ground": "\udfff"}, LONE_LOW),
        ({"relationship": "\udfff"}, LONE_LOW),
        ({"language": "\udfff"}, LONE_LOW),
        # A field that never quotes it, and a key that names no field: refused all the same.
        ({"subject_name": "\ud800"}, LONE_HIGH),
        ({"\udfff": "x"}, LONE_LOW),
        # A low half before a high one is two lone halves, not a pair.
        ({"description": "\udfff\ud800"}, LONE_LOW),
    ],
)
@pytest.mark.django_db
def test_a_lone_surrogate_in_a_json_body_is_400_naming_it(api, changes, escape):
    response = api.post(URL, data=json.dumps({**VALID, **changes}), content_type="application/json")
    assert lone_surrogate_refused(response, escape)
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_a_lone_surrogate_is_refused_on_every_endpoint_that_reads_json(api, operator):
    from requests_app.models import SuppressionPurpose

    created = create(api).json()
    twice = '{"\\ud800": 1, "\\ud800": 2}'  # named twice: refused for the surrogate, which the duplicate's message would quote
    assert lone_surrogate_refused(api.post(URL, data=twice, content_type="application/json"), LONE_HIGH)
    messages = f"{URL}{created['id']}/messages/"
    assert lone_surrogate_refused(api.post(messages, data=twice, content_type="application/json"), LONE_HIGH)
    assert lone_surrogate_refused(api.post(messages, data='{"body": "Hi \\udfff"}', content_type="application/json"), LONE_LOW)
    SuppressionPurpose.objects.create(slug="marketing-email", name="Promotional emails")
    lookup = client_with(key_for(operator, scope="suppression")).post(
        "/api/v1/suppression-lists/marketing-email/lookup/",
        data='{"identifiers": [{"kind": "\\ud800", "value": "x"}]}',
        content_type="application/json",
    )
    assert lone_surrogate_refused(lookup, LONE_HIGH)
    assert not PrivacyRequest.objects.get(public_id=created["id"]).messages.exists()


@pytest.mark.django_db
def test_a_lone_surrogates_refusal_is_stored_and_replayed_for_its_idempotency_key(api):
    """The refusal quoting the value was stored for the key: PostgreSQL's jsonb refused it (a DataError, a 500)."""
    body = json.dumps({**VALID, "relationship": "\udfff"})
    first = api.post(URL, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="surrogate-1")
    again = api.post(URL, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="surrogate-1")
    assert lone_surrogate_refused(first, LONE_LOW) and lone_surrogate_refused(again, LONE_LOW)
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_character_written_as_a_surrogate_pair_is_that_character(api):
    body = json.dumps({**VALID, "description": "Merci \U0001f600"})
    assert "\\ud83d\\ude00" in body  # the high half's escape, then the low one's
    assert api.post(URL, data=body, content_type="application/json").status_code == 201
    assert PrivacyRequest.objects.get().description == "Merci \U0001f600"

@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "iso-8859-1", "windows-1252", "utf-16", "bz2_codec", "nonsense"])
def test_a_json_body_is_read_as_utf8_whatever_charset_its_content_type_names(api, charset):
    """A UTF-8 body labelled charset=iso-8859-1 (some HTTP libraries' default label) was filed as "AnaÃ¯s LiÃ¨ge":
    DRF decoded by the label, and JSON is UTF-8 whatever it says (RFC 8259)."""
    body = json.dumps({**VALID, "subject_name": "Anaïs Liège"}, ensure_ascii=False).encode()
    # generic(): post() would re-encode the body in the charset named.
    response = api.generic("POST", URL, body, content_type=f"application/json; charset={charset}")
    assert response.status_code == 201, response.json()
    assert PrivacyRequest.objects.get().subject_name == "Anaïs Liège"


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", ["iso-8859-1", "utf-16"])
def test_a_json_body_in_another_encoding_than_utf8_is_refused_not_misread(api, encoding):
    body = json.dumps({**VALID, "subject_name": "Anaïs Liège"}, ensure_ascii=False).encode(encoding)
    response = api.generic("POST", URL, body, content_type=f"application/json; charset={encoding}")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"].startswith("JSON parse error - 'utf-8' codec can't decode byte")
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cursor",
    # "p=x", "o=-1", "r=x", "p=99999-01-01"; then cursors DRF alone would read as the first page: "abc", "q=1",
    # base64 with a character that is not ("cD0%yMDI2" has "%"), and one of letters that are not base64 at all;
    # "p=0001-01-01 00:00:00-23:59", a moment PostgreSQL cannot hold (DataError: a 500, and the transaction broken).
    [
        "cD14", "not-a-cursor", "bz0tMQ==", "cj14", "cD05OTk5OS0wMS0wMQ==", "YWJj", "cT0x", "cD0%yMDI2", "é",
        "cD0wMDAxLTAxLTAxIDAwOjAwOjAwLTIzOjU5",
    ],
)
def test_a_cursor_that_cannot_be_read_is_a_400_naming_it_not_a_404(api, cursor):
    """A 404 said the list was not there; the list is, and the fault is in the parameter, as with a filter."""
    create(api)
    response = api.get(URL, {"cursor": cursor})
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {"cursor": ["Invalid cursor"]}
    french = api.get(URL, {"cursor": cursor}, HTTP_ACCEPT_LANGUAGE="fr")
    assert french.json()["errors"]["cursor"] != ["Invalid cursor"]  # DRF's own catalogue translates it


@pytest.mark.django_db
def test_an_address_without_its_trailing_slash_is_redirected_keeping_the_post(api):
    """A 301 would make clients re-send the POST as a GET; a 308 keeps the method and the body."""
    response = api.post(URL.rstrip("/"), VALID, format="json")
    assert response.status_code == 308 and response["Location"] == URL
    assert response["Content-Type"] == "application/problem+json"
    assert not PrivacyRequest.objects.exists()
    followed = api.post(URL.rstrip("/"), VALID, format="json", follow=True)
    assert followed.status_code == 201 and PrivacyRequest.objects.count() == 1
    assert api.get("/api/v1/nothing-here").status_code == 404  # no endpoint with a slash either


@pytest.mark.django_db
def test_a_crash_is_answered_in_problem_details(api, monkeypatch):
    from requests_app.api import views

    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "Response", fail)  # ping's answer
    api.raise_request_exception = False
    response = api.get("/api/v1/ping/")
    assert response.status_code == 500 and response["Content-Type"] == "application/problem+json"
    assert response.json()["title"] == "Internal Server Error" and "a bug" not in response.content.decode()


@pytest.mark.django_db
def test_a_host_not_allowed_is_a_400_in_problem_details_on_the_api(api, client, settings):
    assert "evil.example" not in settings.ALLOWED_HOSTS
    response = api.post(URL, VALID, format="json", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "This server does not answer for the host named in the Host header.",
    }
    assert not PrivacyRequest.objects.exists()
    # Any API path, even one with no endpoint; the public site keeps Django's page.
    assert client.get("/api/v1/nothing-here/", HTTP_HOST="evil.example")["Content-Type"] == "application/problem+json"
    public = client.get("/", HTTP_HOST="evil.example")
    assert public.status_code == 400 and public["Content-Type"].startswith("text/html")


def test_any_other_request_django_refuses_before_a_view_is_a_400_in_problem_details_on_the_api(rf):
    from django.core.exceptions import SuspiciousOperation

    from privacy_portal.urls import bad_request

    response = bad_request(rf.post("/api/v1/requests/"), SuspiciousOperation("too many fields"))
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["detail"] == "The request could not be understood."


@pytest.mark.django_db
def test_each_key_is_throttled_with_retry_after(api, operator, monkeypatch):
    from requests_app.api.auth import OrganisationKeyThrottle

    cache.clear()
    monkeypatch.setattr(OrganisationKeyThrottle, "THROTTLE_RATES", {"organisation_key": "3/min"})
    codes = [api.get(URL).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api.get(URL)
    assert limited["Content-Type"] == "application/problem+json"
    assert int(limited["Retry-After"]) > 0
    assert client_with(key_for(operator)).get(URL).status_code == 200  # another key, its own budget


@pytest.mark.django_db
def test_idempotency_same_key_same_body_replays(api):
    first = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    second = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert PrivacyRequest.objects.count() == 1
    assert second["Location"] == first["Location"] == f"{URL}{first.json()['id']}/"


@pytest.mark.django_db
@pytest.mark.parametrize("changes", [{}, {"rights": []}], ids=["filed", "refused"])
def test_idempotency_a_replay_is_the_first_answer_byte_for_byte_in_its_language(api, changes):
    """jsonb sorted the stored body's keys ("id" came after "fee"), and a replay asked in another language said
    Content-Language: en over the first call's French."""
    first = api.post(URL, {**VALID, **changes}, format="json", HTTP_IDEMPOTENCY_KEY="lang-1", HTTP_ACCEPT_LANGUAGE="fr")
    again = api.post(URL, {**VALID, **changes}, format="json", HTTP_IDEMPOTENCY_KEY="lang-1", HTTP_ACCEPT_LANGUAGE="en")
    assert again["Idempotent-Replayed"] == "true" and first.status_code == again.status_code
    assert again.content == first.content
    assert again["Content-Language"] == first["Content-Language"] == "fr"


@pytest.mark.django_db
def test_idempotency_a_replayed_message_has_its_location_and_a_replayed_refusal_none(api):
    created = create(api).json()
    messages, refusals = [], []
    for _ in range(2):
        messages.append(api.post(f"{URL}{created['id']}/messages/", {"body": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="m-1"))
        refusals.append(api.post(URL, {**VALID, "rights": []}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"))
    first, again = messages
    assert first.status_code == again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"] == f"{URL}{created['id']}/messages/{first.json()['id']}/"
    assert again.content == first.content
    assert PrivacyRequest.objects.get(public_id=created["id"]).messages.count() == 1
    assert [refused.status_code for refused in refusals] == [400, 400] and refusals[1]["Idempotent-Replayed"] == "true"
    assert not any(refused.has_header("Location") for refused in refusals)


@pytest.mark.django_db
def test_idempotency_compares_a_json_body_by_its_content_not_its_layout(api):
    """A retry serialised again (another indentation, another key order) is the same call."""
    api.post(URL, json.dumps(VALID), content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc-2")
    reordered = json.dumps(dict(reversed(list(VALID.items()))), indent=2)
    retried = api.post(URL, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc-2")
    assert retried.status_code == 201 and retried["Idempotent-Replayed"] == "true"
    assert PrivacyRequest.objects.count() == 1
    changed = api.post(URL, json.dumps({**VALID, "language": "fr"}), content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc-2")
    assert changed.status_code == 422
    assert changed.json()["title"] == "Unprocessable Content"  # RFC 9110's name, not RFC 7231's "Unprocessable Entity"


@pytest.mark.django_db
def test_idempotency_a_key_up_to_255_characters_is_kept_a_longer_one_refused_as_the_schema_says(api, client):
    longest = "k" * 255
    first = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY=longest)
    again = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY=longest)
    assert first.status_code == again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    too_long = api.post(URL, {**VALID, "subject_email": "bob@example.com"}, format="json", HTTP_IDEMPOTENCY_KEY=longest + "k")
    assert too_long.status_code == 400 and too_long["Content-Type"] == "application/problem+json"
    assert too_long.json()["detail"] == "Idempotency-Key is longer than 255 characters."
    assert PrivacyRequest.objects.count() == 1
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    declared = [
        parameter["schema"]
        for path in schema["paths"].values()
        for operation in path.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "Idempotency-Key"
    ]
    assert len(declared) == 3 and all(each == {"type": "string", "maxLength": 255} for each in declared)


@pytest.mark.django_db
def test_idempotency_same_key_other_body_is_422(api):
    api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
    other = api.post(URL, {**VALID, "subject_name": "Someone Else"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-2")
    assert other.status_code == 422
    assert PrivacyRequest.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_same_key_in_flight_is_409(api, operator):
    from requests_app.api.idempotency import call_fingerprint
    from requests_app.models import IdempotencyRecord

    body = b'{"rights": ["access"]}'
    fingerprint = call_fingerprint("POST", URL, body)
    IdempotencyRecord.objects.create(organisation=operator, key="abc-3", fingerprint=fingerprint)  # first call running
    response = api.post(URL, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc-3")
    assert response.status_code == 409
    assert "still being processed" in response.json()["detail"]


@pytest.mark.django_db
def test_the_two_conflicts_are_told_apart_by_their_type_and_the_key_in_flight_says_when_to_retry(api, operator):
    """Both were `about:blank` "Conflict": only the localised `detail` said whether to retry or to read the request
    again."""
    from requests_app.api.idempotency import call_fingerprint
    from requests_app.models import IdempotencyRecord

    created = create(api).json()
    api.post(f"{URL}{created['id']}/withdraw/")
    state = api.post(f"{URL}{created['id']}/withdraw/", HTTP_ACCEPT_LANGUAGE="fr")
    body = b'{"rights": ["access"]}'
    IdempotencyRecord.objects.create(organisation=operator, key="abc-9", fingerprint=call_fingerprint("POST", URL, body))
    in_flight = api.post(URL, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="abc-9", HTTP_ACCEPT_LANGUAGE="fr")

    assert state.status_code == in_flight.status_code == 409
    assert (state.json()["type"], state.json()["title"]) == (
        "urn:privacy-portal:problem:state-conflict", "Not allowed in the request's state"
    )
    assert (in_flight.json()["type"], in_flight.json()["title"]) == (
        "urn:privacy-portal:problem:idempotency-key-in-flight", "Idempotency-Key in flight"
    )
    assert in_flight["Retry-After"] == "1" and not state.has_header("Retry-After")


@pytest.mark.django_db
def test_idempotency_a_call_that_dies_before_its_answer_is_stored_files_nothing(api, monkeypatch):
    """The answer is stored with the work: a process dying in between leaves neither, and the retry files once."""
    from requests_app.api import idempotency
    from requests_app.models import IdempotencyRecord

    def die(record, response):
        raise SystemExit("worker killed")

    monkeypatch.setattr(idempotency, "_store", die)
    with pytest.raises(SystemExit):
        api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-4")
    assert not PrivacyRequest.objects.exists()
    monkeypatch.undo()
    # The dead call's claim holds the key until it counts as abandoned...
    assert api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-4").status_code == 409
    IdempotencyRecord.objects.update(created_at=timezone.now() - idempotency.ABANDONED_AFTER - timedelta(seconds=1))
    # ...then the retry does the work, once.
    retried = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-4")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried
    assert PrivacyRequest.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_a_call_that_outlived_its_claim_rolls_back(api, monkeypatch):
    """A call running past ABANDONED_AFTER lost its claim to a retry, which did the work: this one must not."""
    from requests_app.api import views
    from requests_app.models import IdempotencyRecord

    submit = views.intake.request_submit

    def slow_submit(**kwargs):
        filed = submit(**kwargs)
        IdempotencyRecord.objects.all().delete()  # a retry took the claim for abandoned
        return filed

    monkeypatch.setattr(views.intake, "request_submit", slow_submit)
    with pytest.raises(RuntimeError, match="given up"):
        api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="abc-5")
    assert not PrivacyRequest.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the failed statement runs outside any transaction, as in production
@pytest.mark.parametrize(("body", "code"), [({**VALID, "rights": []}, 400), (VALID, 201)])
def test_idempotency_a_call_whose_answer_cannot_be_stored_leaves_no_claim(api, body, code):
    """A 500 answered "still being processed" to the retry for five minutes: storing a refusal failed after the
    work rolled back, and the claim stayed. Any failure to store frees the key at once, as a 5xx answer does."""
    from django.db import connection

    from requests_app.models import IdempotencyRecord

    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    # A real failure of the database when the answer is written: a constraint it breaks.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT refuse_the_answer CHECK (status_code <> {code})")
    try:
        api.raise_request_exception = False
        failed = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="store-1")
        assert failed.status_code == 500
        assert not IdempotencyRecord.objects.exists() and not PrivacyRequest.objects.exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT refuse_the_answer")
    # The same key and body are processed again, not refused as in flight.
    retried = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="store-1")
    assert retried.status_code == code and "Idempotent-Replayed" not in retried
    assert api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="store-1")["Idempotent-Replayed"] == "true"
    assert PrivacyRequest.objects.count() == (1 if code == 201 else 0)


@pytest.mark.django_db
def test_idempotency_keys_belong_to_one_organisation(api, other_operator):
    api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    theirs = client_with(key_for(other_operator)).post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs
    assert PrivacyRequest.objects.count() == 2


@pytest.mark.django_db
def test_idempotency_keys_are_forgotten_after_their_lifetime(api, settings):
    """Past IDEMPOTENCY_KEY_LIFETIME the hourly job deletes the stored answer: the key may be used afresh."""
    import datetime

    from django.utils import timezone

    from requests_app import tasks
    from requests_app.models import IdempotencyRecord

    api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="recent")
    expired = timezone.now() - settings.IDEMPOTENCY_KEY_LIFETIME - datetime.timedelta(minutes=1)
    IdempotencyRecord.objects.filter(key="old").update(created_at=expired)

    assert tasks.purge_idempotency_records() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
    assert api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="old").status_code == 201  # a new request
    assert PrivacyRequest.objects.count() == 3


@pytest.mark.django_db
def test_a_refusal_is_replayed_too(api):
    created = create(api).json()
    api.post(f"{URL}{created['id']}/withdraw/")
    first = api.post(f"{URL}{created['id']}/withdraw/", HTTP_IDEMPOTENCY_KEY="w-1")
    again = api.post(f"{URL}{created['id']}/withdraw/", HTTP_IDEMPOTENCY_KEY="w-1")
    assert first.status_code == again.status_code == 409
    assert again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for expected in ("/api/v1/requests/", "withdraw", "Idempotency-Key", "ApiKey", "'409'"):
        assert expected in text
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


@pytest.mark.django_db
def test_ping_names_the_keys_organisation(api, django_assert_num_queries):
    with django_assert_num_queries(1) as queries:  # the key comes with its organisation
        assert api.get("/api/v1/ping/").json() == {"organisation": "Mobile Operator SA"}
    assert "ORDER BY" not in queries[0]["sql"]  # the prefix is unique: nothing to sort


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/ping/", URL, "{id}/", "{id}/exports/"])
def test_every_get_route_answers_head_with_the_gets_headers_and_no_body(api, path):
    """The ping answered HEAD 405 (an uptime monitor's check): @api_view allows only the methods it lists."""
    path = path.format(id=f"{URL}{create(api).json()['id']}")
    get, head = api.get(path), api.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head["Content-Type"] == get["Content-Type"] == "application/json"
    assert head["Content-Length"] == get["Content-Length"] and "HEAD" in head["Allow"]


@pytest.mark.django_db
def test_filing_a_request_answers_from_what_it_wrote(api, django_assert_num_queries):
    create(api)  # the year's reference counter and the audit chain head exist from here on
    # key, savepoint, reference, request, rights, identities, audit (lock, event, head), release
    with django_assert_num_queries(10):
        assert create(api).status_code == 201


@pytest.mark.django_db
def test_rights_are_listed_in_a_fixed_order_and_without_a_query_per_request(api, django_assert_num_queries):
    assert create(api, rights=["erasure", "access"]).json()["rights"] == ["access", "erasure"]
    create(api, rights=["objection"], objection_processing="Marketing")
    # The key, Updated-Since-Next's moment, the page (read in a savepoint: SAVEPOINT and RELEASE around it).
    with django_assert_num_queries(5):
        results = api.get(URL).json()["results"]
    assert [r["rights"] for r in results] == [["objection"], ["access", "erasure"]]


@pytest.mark.django_db
def test_the_rights_refused_on_completion_are_listed_apart_from_those_asked(api, django_assert_num_queries):
    """`rights` stays the list of the rights asked: a portal reading it before this field existed reads it still."""
    from requests_app.audit import Actor
    from requests_app.services import handling
    from tests.factories import erasure_kept_whole, released_package, staff_in_role

    created = create(api).json()
    assert created["refused_rights"] == []
    request = PrivacyRequest.objects.get(public_id=created["id"])
    lifecycle.transition(request, "start_work", actor=Actor.system())
    released_package(request)
    erasure_kept_whole(request)
    handling.request_complete(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-api")), letter="", expected_status=Status.IN_PROGRESS,
        refused=[handling.RightRefusal("erasure", "legal_obligation", "Telecom law keeps call records 12 months.")],
    )

    body = api.get(f"{URL}{created['id']}/").json()
    assert (body["status"], body["rights"], body["refused_rights"]) == ("completed", ["access", "erasure"], ["erasure"])
    assert [item["event"] for item in body["timeline"]][-2:] == [
        "We completed your request, and declined part of it.", "We sent you our final answer."
    ]
    # The key, Updated-Since-Next's moment, the page (in a savepoint: SAVEPOINT and RELEASE around it): what was refused
    # is read from the request.
    with django_assert_num_queries(5):
        [listed] = api.get(URL).json()["results"]
    assert listed["refused_rights"] == ["erasure"]


@pytest.mark.django_db
def test_a_request_with_every_right_refused_on_its_own_ground_is_completed_with_all_its_rights_refused(api):
    """Answered right by right and nothing granted: `completed`, not `rejected` (one ground for the whole request)."""
    from requests_app.audit import Actor
    from requests_app.services import handling
    from tests.factories import erasure_kept_whole, staff_in_role

    created = create(api, rights=["erasure", "objection"], objection_processing="Fraud checks on my calls").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    lifecycle.transition(request, "start_work", actor=Actor.system())
    erasure_kept_whole(request)
    handling.request_complete(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-api-all")), letter="", expected_status=Status.IN_PROGRESS,
        refused=[
            handling.RightRefusal("erasure", "legal_obligation", "Telecom law keeps call records 12 months."),
            handling.RightRefusal("objection", "compelling_grounds", "Fraud checks protect other customers."),
        ],
    )

    body = api.get(f"{URL}{created['id']}/").json()
    assert (body["status"], body["rights"], body["refused_rights"]) == ("completed", ["erasure", "objection"], ["erasure", "objection"])
    assert [item["event"] for item in body["timeline"]][-2:] == [
        "We answered your request, and declined every part of it.", "We sent you our final answer."
    ]


@pytest.mark.django_db
def test_updated_since_lists_a_request_whose_due_date_moved(api, operator):
    """An extension changes nothing but the deadline: a portal syncing with updated_since must still see it."""
    import time_machine

    from requests_app import roles
    from requests_app.audit import Actor
    from requests_app.services.deadlines import request_extend
    from tests.factories import request_in_status, staff_in_role

    request = request_in_status(Status.IN_PROGRESS, organisation=operator)
    filed_due_on = request.due_on
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        since = timezone.now().isoformat()
        assert api.get(URL, {"updated_since": since}).json()["results"] == []
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        request_extend(request=request, actor=Actor.staff(staff_in_role(roles.DPO)), reason="Many sources to search")
        [listed] = api.get(URL, {"updated_since": since}).json()["results"]
    assert listed["id"] == str(request.public_id) and listed["extended_at"]
    assert listed["due_on"] != filed_due_on.isoformat()


@pytest.mark.django_db
def test_updated_since_lists_a_request_whose_clock_was_paused_and_resumed(api, operator):
    """Resuming adds the paused days to the due date, through refresh_deadline: the same rule."""
    import time_machine

    from requests_app import roles
    from requests_app.audit import Actor
    from requests_app.services.deadlines import clock_pause, clock_resume
    from tests.factories import request_in_status, staff_in_role

    dpo = Actor.staff(staff_in_role(roles.DPO))
    request = request_in_status(Status.IN_PROGRESS, organisation=operator)
    due_on = request.due_on
    clock_pause(request=request, actor=dpo, reason="Proof of identity asked for by post")
    with time_machine.travel(timezone.now() + timedelta(days=4)):
        since = timezone.now().isoformat()
        clock_resume(request=PrivacyRequest.objects.get(pk=request.pk), actor=dpo)
        [listed] = api.get(URL, {"updated_since": since}).json()["results"]
    assert listed["id"] == str(request.public_id) and listed["due_on"] > due_on.isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize("since", ["2026-03-01T10:00:00 01:00", "2026-03-01T10:00 0100", "2026-03-01T10:00:00.5 01"])
def test_an_updated_since_whose_plus_was_read_as_a_space_says_so(api, since):
    """An offset's "+" not percent-encoded in the query string arrives as a space: DRF's message asked for the
    "+HH:MM" the client had sent."""
    response = api.get(URL, {"updated_since": since})
    assert response.status_code == 400
    assert response.json()["errors"]["updated_since"] == [
        'The time zone offset lost its "+": in a query string a "+" reads as a space. Send it as "%2B" '
        '(2026-03-01T10:00:00%2B01:00), or give the time in UTC with "Z".'
    ]
    encoded = api.get(f"{URL}?updated_since=2026-03-01T10:00:00%2B01:00")
    assert encoded.status_code == 200


NO_OFFSET = [
    "Give the time with its offset, e.g. 2026-12-01T19:23:52Z or +01:00: without one it could be read in the wrong time zone."
]


@pytest.mark.django_db
@pytest.mark.parametrize("since", ["2026-12-01T19:23:52", "2026-12-01", "2026-12-01T19:23", "2026-12-01T19:23:52.5"])
def test_an_updated_since_without_its_offset_is_refused_not_read_as_brussels_time(api, since):
    """A portal in UTC sending its time without "Z" missed an hour of changes (two in summer), read as Brussels time."""
    response = api.get(URL, {"updated_since": since})
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == {"updated_since": NO_OFFSET}
    for with_offset in (f"{since[:10]}T19:23:52Z", f"{since[:10]}T19:23:52+01:00", f"{since[:10]}T19:23:52-05:00"):
        assert api.get(URL, {"updated_since": with_offset}).status_code == 200
    assert api.get(URL, {"updated_since": "2026-13-01T00:00:00"}).json()["errors"]["updated_since"] != NO_OFFSET


@pytest.mark.django_db
def test_the_schema_says_updated_since_needs_its_offset(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    [parameter] = [p for p in schema["paths"]["/api/v1/requests/"]["get"]["parameters"] if p["name"] == "updated_since"]
    assert "offset" in parameter["description"] and parameter["schema"]["format"] == "date-time"


@pytest.mark.django_db
# Brussels is ahead of UTC, so these are before year 1 in UTC; the last one is after 9999.
@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+00:10", "9999-12-31T23:59:59-02:00"])
def test_an_updated_since_out_of_range_is_a_400_not_a_500(api, since):
    response = api.get(URL, {"updated_since": since})
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert "updated_since" in response.json()["errors"]


@pytest.mark.django_db
def test_a_nul_character_quoted_in_an_error_does_not_break_its_idempotent_answer(api):
    """A choice's error quotes the value sent; PostgreSQL's jsonb cannot store U+0000 (found by the fuzzing)."""
    body = {**VALID, "restriction_ground": "a\x00b"}
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="nul-1")
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="nul-1")
    assert first.status_code == again.status_code == 400
    assert first.json()["errors"]["restriction_ground"] == ['"a\ufffdb" is not a valid choice.']
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True])
def test_an_address_with_no_endpoint_is_a_404_in_problem_details_with_debug_on_or_off(api, settings, debug):
    settings.DEBUG = debug
    for path in (f"/api/v1/requests/{uuid.uuid4()}/nothing-here/", "/api/v1/nothing-here/", "/api/v2/requests/"):
        response = api.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/problem+json", path
        assert response.json()["detail"] == "No such endpoint."
    host = api.get("/api/v1/ping/", HTTP_HOST="evil.example")
    assert host.status_code == 400 and host["Content-Type"] == "application/problem+json"
    assert host.json()["detail"] == "This server does not answer for the host named in the Host header."


@pytest.mark.django_db
def test_every_detail_is_in_the_language_the_caller_accepts_like_the_field_messages(api, other_operator):
    french = {"HTTP_ACCEPT_LANGUAGE": "fr"}
    invalid = api.post(URL, {**VALID, "subject_email": "not an email"}, format="json", **french)
    assert invalid.status_code == 400
    assert invalid.json()["detail"] == "La requête n'est pas valide\u00a0; voir errors."
    assert invalid.json()["errors"]["subject_email"] == ["Saisissez une adresse e-mail valide."]

    unknown = api.get(f"{URL}{uuid.uuid4()}/", **french)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Aucune demande de ce numéro pour cette clé d'API."
    no_key = APIClient().get(URL, HTTP_ACCEPT_LANGUAGE="de")
    assert no_key.status_code == 401
    assert no_key.json()["detail"] == "Senden Sie einen API-Schlüssel: Authorization: Api-Key <Schlüssel>."
    malformed = api.post(URL, "{", content_type="application/json", HTTP_ACCEPT_LANGUAGE="nl")
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("JSON-parsefout - ")

    reused = {"HTTP_IDEMPOTENCY_KEY": "fr-1", **french}
    assert api.post(URL, VALID, format="json", **reused).status_code == 201
    other_body = api.post(URL, {**VALID, "subject_name": "Someone Else"}, format="json", **reused)
    assert other_body.status_code == 422
    assert other_body.json()["detail"] == (
        "Cette Idempotency-Key a servi pour une autre requête (un autre corps ou point d'accès)."
    )
    assert api.get(URL).json()["results"]  # without Accept-Language: English, as before
    assert api.get(f"{URL}{uuid.uuid4()}/").json()["detail"] == "No such privacy request for this API key."


@pytest.mark.django_db
def test_one_answer_lists_every_mistake_the_serializers_and_the_forms_rules_alike(api):
    body = {**VALID, "rights": ["objection"], "subject_email": "not an email", "subject_phone": 32475123456}
    del body["relationship"]
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    # The serializer's own checks (missing, wrong type) and the form's rules, which used to wait for them.
    assert errors["relationship"] == ["This field is required."]
    assert errors["subject_phone"] == ["Not a valid string."]
    assert errors["subject_email"] == ["Enter a valid email address."]
    assert errors["objection_processing"] == ["Tell us which processing or purpose you object to."]
    assert set(errors) == {"relationship", "subject_phone", "subject_email", "objection_processing"}
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_a_right_that_is_not_one_does_not_hide_the_mistakes_in_the_details_of_the_others(api):
    """The valid entries of rights still say which details belong: a detail sent without its right, and one a
    valid right needs, are reported with the entry that is not a right."""
    body = {**VALID, "rights": ["access", "bogus", "objection"], "rectification_data": "My address is Rue Haute 1."}
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "rights": {"1": ['"bogus" is not a valid choice.']},
        "rectification_data": ["Sent without “rectification” in rights: add it to rights, or leave this field out."],
        "objection_processing": ["Tell us which processing or purpose you object to."],
    }
    # Nothing of rights is a right: which details belong cannot be told, and only rights is reported.
    nothing_valid = api.post(URL, {**body, "rights": ["bogus"]}, format="json")
    assert nothing_valid.json()["errors"] == {"rights": {"0": ['"bogus" is not a valid choice.']}}
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_a_field_the_serializer_refused_gets_no_second_message_from_the_form(api):
    response = api.post(URL, {**VALID, "rights": ["objection"], "objection_processing": ["marketing"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"objection_processing": ["Not a valid string."]}


@pytest.mark.django_db
@pytest.mark.parametrize("step", ["message", "information"])
def test_updated_since_lists_a_request_whose_timeline_grew(api, operator, step):
    """A message from the DPO team adds to the timeline the portal reads, and nothing else it sees changes."""
    import time_machine

    from requests_app import roles
    from requests_app.audit import Actor
    from requests_app.services.handling import message_send, request_information
    from tests.factories import request_in_status, staff_in_role

    request = request_in_status(Status.IN_PROGRESS, organisation=operator)
    dpo = Actor.staff(staff_in_role(roles.DPO))
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        since = timezone.now().isoformat()
        assert api.get(URL, {"updated_since": since}).json()["results"] == []
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        if step == "message":
            message_send(request=request, actor=dpo, body="We found two accounts in your name.")
        else:
            request_information(request=request, actor=dpo, body="Which address did you use?", expected_status=request.status)
        [listed] = api.get(URL, {"updated_since": since}).json()["results"]
    assert listed["id"] == str(request.public_id)
    timeline = api.get(f"{URL}{request.public_id}/").json()["timeline"]
    assert timeline[-1]["at"] >= since


@pytest.mark.django_db
def test_a_messages_line_breaks_count_once_against_its_limit_as_on_the_status_page(api):
    from requests_app.models import TEXT_MAX_CHARS, Message

    created = create(api).json()
    lines = "a\r\n" * (TEXT_MAX_CHARS // 2)  # 1.5 times the limit as sent, exactly the limit once counted
    response = api.post(f"{URL}{created['id']}/messages/", {"body": lines}, format="json")
    assert response.status_code == 201, response.json()
    assert Message.objects.get().body == ("a\n" * (TEXT_MAX_CHARS // 2)).strip()
    too_long = api.post(f"{URL}{created['id']}/messages/", {"body": "a" * (TEXT_MAX_CHARS + 1)}, format="json")
    assert too_long.status_code == 400 and "body" in too_long.json()["errors"]


@pytest.mark.django_db
def test_a_method_no_endpoint_has_is_a_405_for_a_read_key_too_not_a_call_for_a_write_key(operator):
    for scope in ("read", "write"):
        response = client_with(key_for(operator, scope=scope)).put(URL, {}, format="json")
        assert response.status_code == 405, scope
        assert "GET" in response["Allow"] and "PUT" not in response["Allow"]
    assert client_with(key_for(operator, scope="read")).post(URL, VALID, format="json").status_code == 403


@pytest.mark.django_db
def test_a_request_forwarded_to_its_controller_reads_so_and_can_be_listed_by_that_status(api):
    from requests_app.audit import Actor
    from requests_app.services import handling
    from tests.factories import staff_in_role

    created = create(api).json()
    other = create(api, subject_email="bob@example.com", subject_name="Bob Janssens", signature="Bob Janssens").json()
    request = PrivacyRequest.objects.get(public_id=created["id"])
    handling.request_forward(
        request=request, actor=Actor.staff(staff_in_role("DPO", username="dpo-api-forward")), controller="Mobile Operator SA",
        contact="privacy@mobile-operator.example", expected_status=Status.NEW,
    )

    body = api.get(f"{URL}{created['id']}/").json()
    assert (body["status"], body["status_label"]) == ("forwarded", "Forwarded to the controller")
    assert [item["event"] for item in body["timeline"]][-2:] == [
        "We forwarded your request to the controller of the data, who will answer you.",
        "We sent you a letter saying whom we forwarded your request to, and how to contact them.",
    ]
    listed = api.get(URL, {"status": "forwarded"}).json()["results"]
    assert [item["id"] for item in listed] == [created["id"]] and other["id"] not in [item["id"] for item in listed]


@pytest.mark.django_db
def test_the_same_message_sent_again_is_refused_with_the_time_and_its_zone(api):
    """A portal abroad reads "sent at 14:03" as its own time: the refusal names the zone."""
    created = create(api).json()
    assert api.post(f"{URL}{created['id']}/messages/", {"body": "Any news?"}, format="json").status_code == 201
    again = api.post(f"{URL}{created['id']}/messages/", {"body": "Any news?"}, format="json")
    assert again.status_code == 409
    assert re.fullmatch(r"The same text was sent at \d\d:\d\d CES?T: it was not sent again\.", again.json()["detail"])


@pytest.mark.django_db
def test_a_messages_location_names_its_request_as_the_filing_did_whatever_case_the_call_wrote(api):
    created = create(api).json()
    response = api.post(f"{URL}{created['id'].upper()}/messages/", {"body": "Hi"}, format="json")
    assert response["Location"] == f"{URL}{created['id']}/messages/{response.json()['id']}/"


# Every moment the API writes: ISO 8601 in Brussels time with its offset, always six digits of microseconds.
API_MOMENT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0[12]:00$")


def moments_in(answer) -> dict:
    """Every field of a JSON answer, at any depth, whose name says it is a moment ("at", "…_at")."""
    found = {}

    def walk(value, path):
        if isinstance(value, dict):
            for name, item in value.items():
                if (name == "at" or name.endswith("_at")) and item is not None:
                    found[f"{path}.{name}"] = item
                walk(item, f"{path}.{name}")
        elif isinstance(value, list):
            for position, item in enumerate(value):
                walk(item, f"{path}.{position}")

    walk(answer, "")
    return found


@pytest.mark.django_db
def test_every_time_in_an_answer_keeps_six_digits_of_microseconds_even_when_they_are_zero(api):
    """DRF wrote datetime.isoformat(), which leaves out a fraction of zero: "09:30:00+01:00" beside
    "09:30:00.412345+01:00" in the same field, and a portal parsing one form with a fixed format failed on the other."""
    with time_machine.travel(datetime(2026, 1, 15, 8, 30, tzinfo=UTC), tick=False):
        created = create(api).json()
        request = PrivacyRequest.objects.get(public_id=created["id"])
        PrivacyRequest.objects.filter(pk=request.pk).update(
            extended_at=timezone.now(), fee_amount=25, fee_proposed_at=timezone.now(), fee_paid_at=timezone.now()
        )
        message = api.post(f"{URL}{created['id']}/messages/", {"body": "Via the portal"}, format="json").json()
        answers = [
            created, message, api.get(f"{URL}{created['id']}/").json(), api.get(URL).json(),
            api.get(f"{URL}{created['id']}/messages/{message['id']}/").json(),
            api.post(f"{URL}{created['id']}/withdraw/").json(),
        ]
    moments = {}
    for position, answer in enumerate(answers):
        moments.update({f"{position}{path}": value for path, value in moments_in(answer).items()})
    named = {path.rsplit(".", 1)[-1] for path in moments}
    assert {"received_at", "created_at", "updated_at", "extended_at", "proposed_at", "paid_at", "at"} <= named
    assert {path: value for path, value in moments.items() if not API_MOMENT.match(value)} == {}
    assert created["created_at"] == "2026-01-15T09:30:00.000000+01:00"


NOVA = {"rights": ["portability"], "recipient_name": "Nova Telecom", "recipient_email": "dpo@nova.example"}


@pytest.mark.django_db
def test_a_portability_request_names_the_organisation_to_send_the_data_to_and_reads_it_back(api):
    """GDPR Art. 20(2): a portal files what the web form asks, and finds it in the request's detail."""
    created = create(api, **NOVA)
    assert created.status_code == 201, created.json()
    right = PrivacyRequest.objects.get(public_id=created.json()["id"]).rights.get()
    assert (right.recipient_name, right.recipient_email) == ("Nova Telecom", "dpo@nova.example")
    detail = api.get(f"{URL}{created.json()['id']}/").json()
    assert detail["portability_recipient"] == {"name": "Nova Telecom", "email": "dpo@nova.example"}
    assert "portability_recipient" not in created.json()  # the filing's answer has no more than a list's

    without = create(api, rights=["portability"]).json()
    assert api.get(f"{URL}{without['id']}/").json()["portability_recipient"] is None


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"recipient_email": ""}, {"recipient_email": ["Give the email address of the organisation you want your data sent to."]}),
        ({"recipient_name": ""}, {"recipient_name": ["Give the name of the organisation you want your data sent to."]}),
        ({"recipient_email": "dpo@nova"}, {"recipient_email": ["Enter a valid email address."]}),
        (
            {"recipient_email": "ANA@example.com"},
            {
                "recipient_email": [
                    "This is the subject's own email address (subject_email): they get their own copy of their data "
                    "anyway. Give the other organisation's address, or leave out both recipient_name and recipient_email."
                ]
            },
        ),
        (
            {"rights": ["access"]},
            {
                "recipient_name": ["Sent without “portability” in rights: add it to rights, or leave this field out."],
                "recipient_email": ["Sent without “portability” in rights: add it to rights, or leave this field out."],
            },
        ),
    ],
)
@pytest.mark.django_db
def test_the_organisation_to_send_the_data_to_is_refused_as_the_web_form_refuses_it(api, changes, errors):
    response = create(api, **{**NOVA, **changes})
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == errors
    assert not PrivacyRequest.objects.exists()


@pytest.mark.django_db
def test_the_schema_documents_the_organisation_to_send_the_data_to(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    create_fields = schema["components"]["schemas"]["RequestCreate"]["properties"]
    assert create_fields["recipient_email"]["maxLength"] == 254 and "Art. 20(2)" in create_fields["recipient_name"]["description"]
    detail = schema["components"]["schemas"]["RequestWithTimeline"]
    assert "portability_recipient" in detail["required"]
    examples = schema["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples["AccessAndPortabilityForASubscriber"]["value"]["recipient_name"] == "Nova Telecom"
