"""The package compiled from the seed_demo sources (SQLite and PostgreSQL):
its manifest, data files, report, masking, the identities searched, the
compile_export command and encryption."""

import datetime
import hashlib
import html
import json
import re
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.lifecycle import RequestError
from requests_app.models import (
    AuditEvent,
    ExportPackage,
    ExportStatus,
    IdentityKind,
    LegalBasis,
    PrivacyRequest,
    SourceCategory,
    SourceSystem,
    SubjectIdentity,
    VerificationMethod,
    rights_mask,
)
from requests_app.services.exports import (
    compile_export,
    export_release,
    export_start,
    requeue_lost_exports,
    send_package_password,
)
from requests_app import emails, sms
from requests_app.sms import LocmemBackend, SMSError
from requests_app.sources.sql import normalise_url
from tests.exports.support import check_manifest, csv_rows, jsonl_records, open_package, stored_bytes
from tests.conftest import login_staff
from tests.factories import UserFactory

pytestmark = pytest.mark.usefixtures("export_settings")

SUBJECT_EMAIL, SUBJECT_PHONE, SUBJECT_IP = "demo0@example.com", "+32470000000", "198.18.0.1"
OTHER_SUBJECT_PHONE = "+32470000001"  # demo subject 1
CATEGORIES = ["data/cdr/calls-made", "data/cdr/calls-received", "data/crm/contacts", "data/weblogs/visits"]
CALLS_RECEIVED = 13  # of the subject's 50 call records: the second of every four (seed_demo.RECEIVED_EVERY)
MASKED = re.compile(r"^\*{5}\d{2}$")


def compiled(request, **start) -> ExportPackage:
    export = export_start(request=request, actor=Actor.system(), **start)
    name = compile_export(export_id=export.id)
    export.refresh_from_db()
    assert export.status == ExportStatus.READY, export.error
    assert name == export.storage_name
    return export


def other_parties(url: str, phone: str, direction: str) -> list[str]:
    """The other party's number in each call `phone` made ("made") or received, as the source holds it."""
    other, own = ("callee", "caller") if direction == "made" else ("caller", "callee")
    engine = sqlalchemy.create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            statement = sqlalchemy.text(f"SELECT {other} FROM cdrs WHERE {own} = :phone")
            return list(connection.execute(statement, {"phone": phone}).scalars())
    finally:
        engine.dispose()


def test_package_lists_every_file_with_its_checksum_and_row_count(demo_sources):
    backend, url, request = demo_sources
    export = compiled(request)

    assert export.storage_name == f"exports/{export.public_id}/attempt-1.zip"
    stored = stored_bytes(export.storage_name)
    assert hashlib.sha256(stored).hexdigest() == export.sha256
    assert len(stored) == export.size
    with open_package(export) as package:
        assert package.testzip() is None
        manifest = check_manifest(package)
        names = set(package.namelist())
    assert manifest == export.manifest
    assert manifest["reference"] == request.reference and manifest["kind"] == "access"
    for base in CATEGORIES:
        assert {f"{base}.jsonl", f"{base}.csv"} <= names
    rows = {entry["path"]: entry["rows"] for entry in manifest["files"]}
    assert rows["data/crm/contacts.jsonl"] == rows["data/crm/contacts.csv"] == 1
    assert rows["data/weblogs/visits.jsonl"] == rows["data/weblogs/visits.csv"] == 20
    assert rows["data/cdr/calls-made.jsonl"] == rows["data/cdr/calls-made.csv"] == 50 - CALLS_RECEIVED
    assert rows["data/cdr/calls-received.jsonl"] == rows["data/cdr/calls-received.csv"] == CALLS_RECEIVED
    assert manifest["rows"] == 71
    assert "report.html" in names
    compiled_events = AuditEvent.objects.filter(request=request, action="export_compiled")
    assert [event.data["sha256"] for event in compiled_events] == [export.sha256]


def test_json_lines_and_csv_hold_the_same_columns_and_rows(demo_sources):
    backend, url, request = demo_sources
    export = compiled(request)
    with open_package(export) as package:
        for base in CATEGORIES:
            records = jsonl_records(package, f"{base}.jsonl")
            table = csv_rows(package, f"{base}.csv")
            assert table[0] == list(records[0])
            assert len(table) - 1 == len(records)
            # Text columns are identical in both files (numbers may be formatted differently).
            for column in ("email", "caller", "callee", "ip_address", "browser", "page"):
                if column in table[0]:
                    index = table[0].index(column)
                    assert sorted(row[index] for row in table[1:]) == sorted(r[column] for r in records)
        contact = jsonl_records(package, "data/crm/contacts.jsonl")[0]
    assert contact["email"] == SUBJECT_EMAIL and contact["customer_ref"] == "CUST-000000"


def test_report_gives_the_article_15_information(demo_request):
    export = compiled(demo_request)
    with open_package(export) as package:
        report = html.unescape(package.read("report.html").decode())
    # Opened on the phone the status page's email reaches: laid out at the screen's width, not 980 px.
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in report
    for source in SourceSystem.objects.all():
        assert source.name in report
        assert source.purposes in report
        assert source.retention in report
        assert source.origin in report
        assert source.get_legal_basis_display() in report
        for recipient in source.recipients.all():
            assert f"{recipient.name} ({recipient.country}" in report
            if recipient.safeguards:
                assert recipient.safeguards in report
    assert "outside the EU/EEA" in report
    assert "right to lodge a complaint with a supervisory authority" in report
    assert "Data Protection Authority" in report
    assert "Call detail records" in report and ": callee" in report and ": caller" in report  # the masking is explained
    assert demo_request.reference in report


@pytest.mark.parametrize(("direction", "own", "other"), [("made", "caller", "callee"), ("received", "callee", "caller")])
def test_the_demo_package_holds_the_calls_made_and_received_with_the_other_party_masked(demo_sources, direction, own, other):
    """A call record is personal data of both parties: the subject gets the calls they made and those they
    received, and in each the other party's number is masked (Art. 15(4)), in both files."""
    backend, url, request = demo_sources
    export = compiled(request)
    raw_others = other_parties(url, SUBJECT_PHONE, direction)
    assert len(raw_others) == {"made": 50 - CALLS_RECEIVED, "received": CALLS_RECEIVED}[direction]
    base = f"data/cdr/calls-{direction}"
    with open_package(export) as package:
        records = jsonl_records(package, f"{base}.jsonl")
        table = csv_rows(package, f"{base}.csv")
        texts = [package.read(f"{base}.{suffix}").decode() for suffix in ("jsonl", "csv")]
    other_column = table[0].index(other)
    from_json = [record[other] for record in records]
    from_csv = [row[other_column] for row in table[1:]]
    for masked in (from_json, from_csv):
        assert all(MASKED.match(value) for value in masked), masked[:3]
        assert sorted(value[-2:] for value in masked) == sorted(raw[-2:] for raw in raw_others)
    assert {record[own] for record in records} == {SUBJECT_PHONE}  # the subject's own number is not masked
    for text in texts:
        assert not [raw for raw in raw_others if raw in text]
    if direction == "received":  # where the caller called from, and what it cost them, are the caller's
        assert table[0] == ["caller", "callee", "started_at", "duration_s"]


def test_only_verified_identities_are_searched(demo_sources):
    backend, url, request = demo_sources
    SubjectIdentity.objects.filter(request=request, kind=IdentityKind.IP_ADDRESS).update(verified_at=None)
    # Another subject's number, given but never verified: its calls must not be exported.
    SubjectIdentity.objects.create(request=request, kind=IdentityKind.PHONE, value=OTHER_SUBJECT_PHONE)

    export = compiled(request)
    manifest = export.manifest

    assert sorted((i["source"], i["kind"], i["value"]) for i in manifest["identities_searched"]) == [
        ("cdr", "phone", SUBJECT_PHONE),
        ("crm", "email", SUBJECT_EMAIL),
    ]
    assert [item["source"] for item in manifest["sources_not_searched"]] == ["weblogs"]
    assert manifest["sources_not_searched"][0] | {"name": "?"} == {
        "source": "weblogs", "name": "?", "reason": "no_verified_identifier", "kind": "ip_address"
    }
    assert not [entry for entry in manifest["files"] if entry["path"].startswith("data/weblogs/")]
    with open_package(export) as package:
        check_manifest(package)
        data = {name: package.read(name).decode() for name in package.namelist() if name.startswith("data/")}
        report = html.unescape(package.read("report.html").decode())
        callers = {record["caller"] for record in jsonl_records(package, "data/cdr/calls-made.jsonl")}
        callees = {record["callee"] for record in jsonl_records(package, "data/cdr/calls-received.jsonl")}
    assert callers == callees == {SUBJECT_PHONE}
    for text in data.values():
        assert SUBJECT_IP not in text
        assert OTHER_SUBJECT_PHONE not in text
    weblogs = SourceSystem.objects.get(slug="weblogs").name
    assert f"{weblogs}: no verified IP address" in report and "We did not search these systems" in report


def test_compile_export_command_prints_the_storage_name_as_its_last_line(demo_request):
    out = StringIO()
    call_command("compile_export", demo_request.reference, stdout=out)
    export = ExportPackage.objects.get(request=demo_request)
    assert export.status == ExportStatus.READY
    assert out.getvalue().strip().splitlines()[-1] == export.storage_name
    with open_package(export) as package:
        assert check_manifest(package)["rows"] == 71


def test_compile_export_command_compiles_the_kind_the_request_asks_for(demo_request):
    demo_request.rights.exclude(right="portability").delete()
    demo_request.rights.get_or_create(right="portability")
    PrivacyRequest.objects.filter(pk=demo_request.pk).update(rights_mask=rights_mask(["portability"]))
    call_command("compile_export", demo_request.reference, stdout=StringIO())
    assert demo_request.exports.get().kind == "portability"


def test_compile_export_command_retries_a_failed_export_as_an_audited_retry(demo_request):
    export = export_start(request=demo_request, actor=Actor.system())
    ExportPackage.objects.filter(pk=export.pk).update(status=ExportStatus.FAILED, error="source down")
    call_command("compile_export", demo_request.reference, stdout=StringIO())
    export.refresh_from_db()
    assert (export.status, export.error) == (ExportStatus.READY, "")
    retried = AuditEvent.objects.get(request=demo_request, action="export_retried")
    assert (retried.actor_kind, retried.data) == ("system", {"export": str(export.public_id)})


def test_compile_export_command_refuses_an_unknown_reference(db):
    with pytest.raises(CommandError, match="No request DSR-1999-99999"):
        call_command("compile_export", "DSR-1999-99999", stdout=StringIO())


@pytest.fixture
def dpo(db):
    return UserFactory(username="dpo-exports", is_superuser=True)


def test_encrypted_package_opens_only_with_the_password_texted_at_release(demo_sources, dpo, django_capture_on_commit_callbacks):
    backend, url, request = demo_sources
    export = compiled(request, encrypt=True)
    assert export.encrypted and export.pending_password
    assert LocmemBackend.outbox == []  # nothing is sent before release

    with open_package(export) as package:
        assert all(info.flag_bits & 0x1 for info in package.infolist())  # every entry is encrypted
        with pytest.raises(RuntimeError):
            package.read("manifest.json")
    with open_package(export, password="not-the-password") as package, pytest.raises(RuntimeError):
        package.read("manifest.json")

    with django_capture_on_commit_callbacks(execute=True):  # the text goes once the release commits
        export_release(export=export, actor=Actor.staff(dpo))

    assert len(LocmemBackend.outbox) == 1
    # The email says how to open an AES ZIP, which the unzip tools built into Windows and macOS may not.
    (ready_email,) = [message for message in mail.outbox if request.subject_email in message.to]
    assert "separate text message" in ready_email.body and "7-Zip" in ready_email.body
    phone, text = LocmemBackend.outbox[0]
    assert phone == SUBJECT_PHONE
    assert request.reference in text
    password = text.rsplit(" ", 1)[-1]
    with open_package(export, password=password) as package:
        assert package.testzip() is None
        manifest = check_manifest(package)
        callees = [record["callee"] for record in jsonl_records(package, "data/cdr/calls-made.jsonl")]
        callers = [record["caller"] for record in jsonl_records(package, "data/cdr/calls-received.jsonl")]
    assert manifest["rows"] == 71
    assert callees and callers and all(MASKED.match(value) for value in callees + callers)
    export.refresh_from_db()
    assert export.status == ExportStatus.RELEASED
    assert export.pending_password == ""
    trail = json.dumps(list(AuditEvent.objects.filter(request=request).values("data", "note")))
    assert password not in trail


class GatewayDown:
    """An SMS backend whose gateway refuses every message."""

    def send(self, phone, text):
        raise SMSError("gateway unavailable")


def test_the_password_is_kept_until_the_gateway_takes_it(demo_request, dpo, client, settings, django_capture_on_commit_callbacks):
    export = compiled(demo_request, encrypt=True)
    password = export.pending_password
    with django_capture_on_commit_callbacks(execute=False):  # the task that texts it does not run here
        export_release(export=export, actor=Actor.staff(dpo))
    export.refresh_from_db()
    assert export.status == ExportStatus.RELEASED and export.pending_password == password

    settings.SMS_BACKEND = f"{__name__}.GatewayDown"
    with pytest.raises(SMSError):  # the task retries on this
        send_package_password(export_id=export.id)
    export.refresh_from_db()
    assert export.pending_password == password and LocmemBackend.outbox == []
    page = login_staff(client, dpo).get(reverse("staff:export", args=[export.public_id])).content.decode()
    assert "Waiting to be texted to the subject" in page

    # Its task gave up (or was lost) while the gateway was down: the periodic job queues it again.
    assert requeue_lost_exports() == 0  # tried just now
    settings.SMS_BACKEND = "requests_app.sms.LocmemBackend"
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly on commit
        assert requeue_lost_exports(now=timezone.now() + datetime.timedelta(hours=3)) == 1
    assert send_package_password(export_id=export.id) is False  # sent once
    assert requeue_lost_exports(now=timezone.now() + datetime.timedelta(hours=3)) == 0
    assert [text.rsplit(" ", 1)[-1] for _phone, text in LocmemBackend.outbox] == [password]
    export.refresh_from_db()
    assert export.pending_password == ""
    assert AuditEvent.objects.filter(request=demo_request, action="export_password_sent").count() == 1
    assert "Waiting to be texted to the subject" not in client.get(reverse("staff:export", args=[export.public_id])).content.decode()

def test_a_phone_number_verified_by_an_identity_document_is_not_searched(demo_request):
    """A reviewer's probe: someone filed as themselves with another person's number, their ID was checked, and the
    package gave them that person's call records. An ID proves who the subject is, not that the line is theirs."""
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.DOCUMENT)
    SubjectIdentity.objects.create(
        request=demo_request, kind=IdentityKind.PHONE, value=OTHER_SUBJECT_PHONE, verified_at=timezone.now(),
        verification_method=VerificationMethod.DOCUMENT,
    )

    manifest = compiled(demo_request).manifest

    assert "phone" not in {item["kind"] for item in manifest["identities_searched"]}
    assert [(item["source"], item["reason"]) for item in manifest["sources_not_searched"]] == [("cdr", "no_verified_identifier")]
    assert not [entry for entry in manifest["files"] if entry["path"].startswith("data/cdr/")]


def test_an_encrypted_package_needs_a_verified_phone_number(demo_request):
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verified_at=None)
    with pytest.raises(RequestError, match="verified as the subject's line"):
        export_start(request=demo_request, actor=Actor.system(), encrypt=True)
    assert not ExportPackage.objects.filter(request=demo_request).exists()
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verified_at=timezone.now())
    assert export_start(request=demo_request, actor=Actor.system(), encrypt=True).encrypted


def test_an_identity_document_does_not_make_a_phone_the_passwords_channel(demo_request):
    """A document proves who the subject is, not that the number reaches them: the password could open
    the subject's data on someone else's phone."""
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(
        verified_at=timezone.now(), verification_method=VerificationMethod.DOCUMENT
    )
    with pytest.raises(RequestError, match="verified as the subject's line"):
        export_start(request=demo_request, actor=Actor.system(), encrypt=True)
    assert not ExportPackage.objects.filter(request=demo_request).exists()
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.CALLBACK)
    assert export_start(request=demo_request, actor=Actor.system(), encrypt=True).encrypted


def test_a_phone_verified_again_by_document_gets_no_password(demo_request, dpo, django_capture_on_commit_callbacks):
    """Verified by call-back when the export started, by a document since: no release sends the password
    there, nor does a task queued before the change."""
    export = compiled(demo_request, encrypt=True)
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.DOCUMENT)
    with pytest.raises(RequestError, match="verified as the subject's line"):
        export_release(export=export, actor=Actor.staff(dpo))
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.pending_password

    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.CALLBACK)
    with django_capture_on_commit_callbacks(execute=False):  # the task that texts it does not run here
        export_release(export=export, actor=Actor.staff(dpo))
    SubjectIdentity.objects.filter(request=demo_request, kind=IdentityKind.PHONE).update(verification_method=VerificationMethod.DOCUMENT)
    assert send_package_password(export_id=export.id) is False
    assert LocmemBackend.outbox == []
    export.refresh_from_db()
    assert export.pending_password  # kept: sent once the number is verified as the subject's line


def test_without_an_sms_gateway_no_package_is_encrypted(demo_request, settings, client, dpo):
    """Production has no SMS backend by default: the file one would keep passwords on disk."""
    settings.SMS_BACKEND = ""
    with pytest.raises(RequestError, match="needs an SMS gateway"):
        export_start(request=demo_request, actor=Actor.system(), encrypt=True)
    assert not ExportPackage.objects.filter(request=demo_request).exists()
    login_staff(client, dpo)
    page = client.get(reverse("staff:request", args=[demo_request.reference])).content.decode()
    assert "Compile a data export" in page and 'name="encrypt"' not in page
    with pytest.raises(SMSError, match="no SMS gateway"):
        sms.send("+32470000000", "text")


def test_no_password_is_texted_once_the_request_was_withdrawn(demo_request, dpo, django_capture_on_commit_callbacks):
    from requests_app import lifecycle

    export = compiled(demo_request, encrypt=True)
    with django_capture_on_commit_callbacks(execute=False):  # the password task waits in the queue...
        export_release(export=export, actor=Actor.staff(dpo))
    lifecycle.transition(demo_request, "withdraw", actor=Actor.system())  # ...while the subject withdraws
    assert send_package_password(export_id=export.id) is False
    assert LocmemBackend.outbox == []


def test_the_packages_first_rows_are_shown_only_to_who_may_read_the_requests_files(demo_request, dpo, client):
    """Another handler sees that the package exists, not the subject's data; each showing is audited."""
    from tests.factories import staff_in_role

    export = compiled(demo_request)
    page_url = reverse("staff:export", args=[export.public_id])
    subject_email = demo_request.subject_email

    other_handler = login_staff(client, staff_in_role("Handler", username="other-handler")).get(page_url).content.decode()
    assert "Review the package" not in other_handler and subject_email not in other_handler
    assert not AuditEvent.objects.filter(action="export_previewed").exists()

    page = login_staff(client, dpo).get(page_url).content.decode()
    assert "Review the package" in page and subject_email in page
    french = client.get(page_url, HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert f"Adresse e-mail {subject_email}" in french and f"email {subject_email}" not in french  # the identifier's kind, named
    event = AuditEvent.objects.filter(action="export_previewed").first()
    assert AuditEvent.objects.filter(action="export_previewed").count() == 2  # each showing
    assert (event.request_id, event.actor_label, event.data) == (demo_request.pk, "dpo-exports", {"export": str(export.public_id)})


def asking_for_portability(request: PrivacyRequest) -> PrivacyRequest:
    """The demo request, asking for portability as well as access."""
    request.rights.get_or_create(right="portability")
    PrivacyRequest.objects.filter(pk=request.pk).update(rights_mask=rights_mask(["access", "portability"]))
    request.refresh_from_db()
    return request


def test_the_staff_page_of_a_portability_package_lists_what_it_left_out_and_why(demo_request, dpo, client):
    """Whoever releases the package sees, before releasing it, what the report tells the subject is left out:
    read from the manifest, so a change to the inventory since cannot make the page disagree with the package."""
    request = asking_for_portability(demo_request)
    SourceCategory.objects.filter(source__slug="crm").update(portable=False)
    export = compiled(request, kind="portability")
    SourceSystem.objects.filter(slug="cdr").update(legal_basis=LegalBasis.CONTRACT)  # after compiling: the package still left it out
    page_url = reverse("staff:export", args=[export.public_id])

    page = html.unescape(login_staff(client, dpo).get(page_url).content.decode())

    assert "Left out of this portability package" in page
    assert (
        "<li>Call detail records, Electronic communications data (call detail records): its source's legal basis is "
        "legal obligation (Art. 6(1)(c)), neither consent nor a contract (Art. 20(1)(a))</li>"
        "<li>Customer contacts (CRM), Contact information: not marked portable in the inventory (neither provided by "
        "the subject nor observed from their use, Art. 20(1))</li>"
        "<li>Website connection logs, Website connection data: its source's legal basis is legitimate interests "
        "(Art. 6(1)(f)), neither consent nor a contract (Art. 20(1)(a))</li>"
    ) in page
    assert page.index("Left out of this portability package") < page.index("Release to the subject")


@pytest.mark.parametrize("regime", ["gdpr", "uk_gdpr", "ccpa", "lgpd"])
def test_the_staff_page_of_a_portability_package_cites_the_gdprs_articles_only_where_the_requests_law_numbers_them_so(
    demo_request, dpo, client, regime
):
    """The GDPR's Art. 20, whose limits left the data out, is the UK GDPR's Art. 20 too; the CCPA and the LGPD have no
    such article, and staff are not shown one their answer will not name (wording.cites_gdpr_articles)."""
    request = asking_for_portability(demo_request)
    PrivacyRequest.objects.filter(pk=request.pk).update(regime=regime)
    SourceCategory.objects.filter(source__slug="crm").update(portable=False)
    export = compiled(request, kind="portability")

    page = html.unescape(login_staff(client, dpo).get(reverse("staff:export", args=[export.public_id])).content.decode())

    if regime in ("gdpr", "uk_gdpr"):
        assert "<h1>Portability (Art. 20) · " in page
        assert "The right to data portability (Art. 20) does not cover these categories" in page
        assert "by asking for access (Art. 15)." in page
        assert "legal basis is legal obligation (Art. 6(1)(c)), neither consent nor a contract (Art. 20(1)(a))</li>" in page
        assert "nor observed from their use, Art. 20(1))</li>" in page
    else:
        assert "<h1>Portability · " in page
        assert "The right to data portability does not cover these categories" in page
        assert "by asking for access." in page
        assert "legal basis is legal obligation, neither consent nor a contract</li>" in page
        assert "(neither provided by the subject nor observed from their use)</li>" in page
        assert "Art. " not in page and "GDPR" not in page


def test_the_staff_page_of_an_access_package_lists_nothing_left_out(demo_request, dpo, client):
    export = compiled(demo_request, kind="access")
    page = login_staff(client, dpo).get(reverse("staff:export", args=[export.public_id])).content.decode()
    assert "Left out of this portability package" not in page


def test_every_entry_of_a_compiled_package_is_dated_when_reading_its_sources_began(demo_sources):
    """The CSV a PostgreSQL source's COPY writes comes from a ZIP of its own (copied as it is): dated too, at the
    moment the manifest gives."""
    backend, url, request = demo_sources
    export = compiled(request)
    with open_package(export) as package:
        dates = {info.date_time for info in package.infolist()}
    (date,) = dates
    dated = datetime.datetime(*date, tzinfo=ZoneInfo("Europe/Brussels"))  # a ZIP date is local time: ours
    assert datetime.datetime.fromisoformat(export.manifest["reading_started_at"]) == dated


def test_the_csv_files_tell_a_spreadsheet_they_are_utf_8_and_the_json_lines_stay_as_held(demo_sources):
    """Excel opening a CSV by a double-click reads it in the computer's legacy code page unless a byte-order mark says
    UTF-8: "LiÃ¨ge" for Liège. The CSV is the spreadsheet's copy, so it starts with the mark (on the SQLite path and on
    PostgreSQL's COPY path alike); the JSON lines, for other programs, carry none, and the report says which is which."""
    from requests_app.selectors import export_previews

    backend, url, request = demo_sources
    engine = sqlalchemy.create_engine(normalise_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text("UPDATE customers SET billing_address = 'Rue Léopold 3, 4000 Liège' WHERE email = :email"),
                {"email": SUBJECT_EMAIL},
            )
    finally:
        engine.dispose()
    export = compiled(request)

    with open_package(export) as package:
        check_manifest(package)  # sizes and checksums count the mark
        for base in CATEGORIES:
            assert package.read(f"{base}.csv").startswith(b"\xef\xbb\xbf") and package.read(f"{base}.csv")[3:4].isalpha(), base
            assert not package.read(f"{base}.jsonl").startswith(b"\xef\xbb\xbf"), base
        (contact,) = csv_rows(package, "data/crm/contacts.csv")[1:]
        assert "Rue Léopold 3, 4000 Liège" in contact
        assert jsonl_records(package, "data/crm/contacts.jsonl")[0]["billing_address"] == "Rue Léopold 3, 4000 Liège"
        report = html.unescape(package.read("report.html").decode())
    assert "The CSV files start with a byte-order mark" in report
    # Staff's review shows the column names, not the mark before the first.
    (contacts_csv,) = [preview for preview in export_previews(export) if preview["path"] == "data/crm/contacts.csv"]
    assert contacts_csv["first_lines"][0].startswith("customer_ref,")


def test_an_agent_is_told_the_password_goes_to_the_phone_of_the_person_they_act_for(
    demo_request, dpo, client, django_capture_on_commit_callbacks
):
    """The password is texted only to the subject's verified line, never to the agent who filed: the agent's email and
    status page must not send them looking for a text that goes to someone else, and the subject's text says who asked."""
    PrivacyRequest.objects.filter(pk=demo_request.pk).update(
        agent_capacity="legal_representative", agent_name="Mr Lawyer", agent_email="law@example.org",
        agent_authority_confirmed_at=timezone.now(),
    )
    demo_request.refresh_from_db()
    export = compiled(demo_request, encrypt=True)
    with django_capture_on_commit_callbacks(execute=False):
        export_release(export=export, actor=Actor.staff(dpo))
    status_url = reverse("status", args=[demo_request.reference, demo_request.secret])
    page = html.unescape(client.get(status_url).content.decode())
    assert "The password is on its way by text message to the phone number of the person you act for" in page
    assert "on its way to you by text message" not in page

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        send_package_password(export_id=export.id)
    emails.send_export_ready_email(ExportPackage.objects.get(pk=export.pk))
    (ready_email,) = mail.outbox
    assert ready_email.to == ["law@example.org"]
    assert "separate text message" not in ready_email.body
    assert "its password goes in a text message to the phone number of the person you act for, not to you" in ready_email.body
    html_body = html.unescape(ready_email.alternatives[0][0])
    assert "the phone number of the person you act for" in html_body and "separate text message" not in html_body

    ((phone, text),) = LocmemBackend.outbox
    assert phone == SUBJECT_PHONE
    assert "Mr Lawyer made request" in text and demo_request.reference in text
    password = text.rsplit(" ", 1)[-1]
    with open_package(ExportPackage.objects.get(pk=export.pk), password=password) as package:
        assert package.testzip() is None
    page = html.unescape(client.get(status_url).content.decode())
    assert "The password was sent by text message to the phone number of the person you act for" in page
    assert "The password was sent to you by text message" not in page
