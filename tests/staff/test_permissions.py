"""The staff dashboard's permission matrix: every view and action against every role.

Roles (requests_app/roles.py): the DPO (and superusers) may do everything; a
Handler reads everything and works the requests assigned to them or to one of
their teams; an Auditor reads everything and changes nothing. Anyone not
signed in goes to the login page, anyone without the second factor to the
code page, and staff without a role get a 403.

"Allowed" below always means the change really happened; "refused" means a
403 (or a redirect to sign in) and nothing changed in the database.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import constants as message_levels
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app.audit import Actor
from requests_app.models import (
    AssignmentRule,
    AuditEvent,
    IdentityKind,
    InternalNote,
    Message,
    MessageDirection,
    PrivacyRequest,
    RequestedRight,
    RequestType,
    ResponseTemplate,
    Status,
    Team,
    rights_mask,
)
from requests_app.services import deadlines as deadline_service
from requests_app.services import handling
from requests_app.services.intake import attachment_add
from requests_app.staff.views import ACTIONS
from tests.conftest import login_staff, post_confirmed
from tests.factories import UserFactory, erasure_kept_whole, released_package, request_in_status, staff_in_role

PDF = b"%PDF-1.4\n% scanned letter\n"


# --- The cast ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Ten accounts per test: hash their passwords cheaply (the hasher is not under test here)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Cast:
    team: Team
    other_team: Team
    handler: object  # the Handler who signs in; member of `team`
    teammate: object  # another Handler in `team`
    outsider: object  # a Handler in `other_team` only
    newcomer: object  # a Handler nobody's requests are assigned to: the target of "assign"
    auditor: object
    dpo: object  # a member of the DPO group
    superuser: object  # a superuser without any group: a DPO too
    no_role: object  # staff, two factors, but no role


@pytest.fixture
def cast(db):
    handler = staff_in_role("Handler", username="hanna")
    teammate = staff_in_role("Handler", username="tom")
    outsider = staff_in_role("Handler", username="olga")
    team = Team.objects.create(name="Telecom")
    team.members.add(handler, teammate)
    other_team = Team.objects.create(name="Retail")
    other_team.members.add(outsider)
    return Cast(
        team=team,
        other_team=other_team,
        handler=handler,
        teammate=teammate,
        outsider=outsider,
        newcomer=staff_in_role("Handler", username="nico"),
        auditor=staff_in_role("Auditor", username="audrey"),
        dpo=staff_in_role("DPO", username="dora"),
        superuser=UserFactory(username="root", is_superuser=True),
        no_role=UserFactory(username="nobody"),
    )


def sign_in(client, cast: Cast, who: str):
    """Sign the client in as `who`; "no_otp" is the handler with only a password."""
    if who == "anonymous":
        return client
    if who == "no_otp":
        client.force_login(cast.handler)
        return client
    user = {
        "no_role": cast.no_role,
        "auditor": cast.auditor,
        "handler": cast.handler,
        "handler_own": cast.handler,
        "handler_team": cast.handler,
        "handler_other": cast.handler,
        "dpo": cast.dpo,
        "superuser": cast.superuser,
    }[who]
    return login_staff(client, user)


def assert_sent_to(response, url_name: str, path: str):
    """A redirect to the login or code page that comes back to `path` afterwards."""
    assert response.status_code == 302
    target = urlsplit(response.url)
    assert target.path == reverse(url_name)
    assert parse_qs(target.query)["next"] == [path]


def snapshot(privacy_request: PrivacyRequest) -> dict:
    """Everything an action could change about a request, and the audit trail's length."""
    r = PrivacyRequest.objects.get(pk=privacy_request.pk)
    return {
        "status": r.status,
        "assignee": r.assignee_id,
        "team": r.team_id,
        "due_on": r.due_on,
        "extended_at": r.extended_at,
        "rejection_ground": r.rejection_ground,
        "refused_rights": r.refused_rights,
        "events": r.events.count(),
        "all_events": AuditEvent.objects.count(),
        "notes": r.notes.count(),
        "messages": r.messages.count(),
        "open_pauses": r.pauses.filter(ended_at__isnull=True).count(),
        "verified_identities": r.identities.filter(verified_at__isnull=False).count(),
        "postal_address": r.postal_address,
    }


def message_levels_of(response) -> list[int]:
    return [message.level for message in get_messages(response.wsgi_request)]


# --- GET pages ---------------------------------------------------------------------


@pytest.fixture
def things(cast):
    """One of each object a staff page shows."""
    privacy_request = request_in_status(Status.IN_PROGRESS)
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(assignee=cast.outsider, team=cast.other_team)
    with transaction.atomic():
        attachment = attachment_add(
            request=privacy_request,
            file=SimpleUploadedFile("id.pdf", PDF, content_type="application/pdf"),
            actor=Actor.system(),
        )
    letter = Message.objects.create(request=privacy_request, direction=MessageDirection.TO_SUBJECT, body="Your request.")
    return {
        "request": privacy_request,
        "attachment": attachment,
        "letter": letter,
        "rule": AssignmentRule.objects.create(name="Telecom requests", assign_team=cast.team),
        "template": ResponseTemplate.objects.create(purpose="message", subject="About {{ reference }}", body="{{ body }}"),
        "team": cast.team,
        "user": cast.teammate,
    }


# (url name, arguments from `things`): "read" pages are for every role, "configuration" pages are read by
# the DPO and the Auditor, "dpo" pages (the edit pages) are for the DPO only.
READ_PAGES = [
    ("staff:home", lambda t: []),
    ("staff:queue", lambda t: []),
    ("staff:request", lambda t: [t["request"].reference]),
    # A letter laid out to post: what the request page shows already.
    ("staff:letter_print", lambda t: [t["letter"].public_id]),
]
# The request's files (an ID scan): only for who works it, the DPO and auditors; `handler` does not work it.
FILE_PAGES = [
    ("staff:attachment", lambda t: [t["attachment"].public_id]),
]
CONFIGURATION_PAGES = [
    ("staff:rules", lambda t: []),
    ("staff:templates", lambda t: []),
    ("staff:teams", lambda t: []),
    ("staff:users", lambda t: []),
    ("staff:inventory", lambda t: []),
    ("staff:webhooks", lambda t: []),
]
DPO_PAGES = [
    ("staff:rule_new", lambda t: []),
    ("staff:rule_edit", lambda t: [t["rule"].pk]),
    ("staff:template_new", lambda t: []),
    ("staff:template_edit", lambda t: [t["template"].pk]),
    ("staff:team_new", lambda t: []),
    ("staff:team_edit", lambda t: [t["team"].pk]),
    ("staff:user_new", lambda t: []),
    ("staff:user_edit", lambda t: [t["user"].pk]),
]
PAGES = {"read": READ_PAGES, "files": FILE_PAGES, "configuration": CONFIGURATION_PAGES, "dpo": DPO_PAGES}

# What each role gets on each kind of page.
GET_MATRIX = {
    "anonymous": {"read": "login", "files": "login", "configuration": "login", "dpo": "login"},
    "no_otp": {"read": "otp", "files": "otp", "configuration": "otp", "dpo": "otp"},
    "no_role": {"read": 403, "files": 403, "configuration": 403, "dpo": 403},
    "auditor": {"read": 200, "files": 200, "configuration": 200, "dpo": 403},
    "handler": {"read": 200, "files": 403, "configuration": 403, "dpo": 403},
    "dpo": {"read": 200, "files": 200, "configuration": 200, "dpo": 200},
    "superuser": {"read": 200, "files": 200, "configuration": 200, "dpo": 200},
}

GET_CASES = [
    pytest.param(url_name, args, role, GET_MATRIX[role][kind], id=f"{role}-{url_name}")
    for kind, pages in PAGES.items()
    for url_name, args in pages
    for role in GET_MATRIX
]


@pytest.mark.parametrize(("url_name", "args", "role", "expected"), GET_CASES)
@pytest.mark.django_db
def test_get_pages_by_role(client, cast, things, url_name, args, role, expected):
    url = reverse(url_name, args=args(things))
    sign_in(client, cast, role)

    response = client.get(url)

    if expected == "login":
        assert_sent_to(response, "staff:login", url)
    elif expected == "otp":
        assert_sent_to(response, "staff:otp", url)
    else:
        assert response.status_code == expected
    if url_name == "staff:attachment" and expected == 200:
        assert b"".join(response.streaming_content) == PDF


@pytest.mark.django_db
def test_the_handler_who_works_the_request_opens_its_attachments_and_others_only_see_their_names(client, cast, things):
    request_page = reverse("staff:request", args=[things["request"].reference])
    link = reverse("staff:attachment", args=[things["attachment"].public_id])
    sign_in(client, cast, "handler")
    page = client.get(request_page).content.decode()
    assert "id.pdf" in page and link not in page
    PrivacyRequest.objects.filter(pk=things["request"].pk).update(team=cast.team)  # now the handler's team's
    page = client.get(request_page).content.decode()
    assert link in page
    assert b"".join(client.get(link).streaming_content) == PDF


# The links to edit pages each configuration page gives a DPO, and never an Auditor.
EDIT_LINKS = {
    "staff:rules": lambda t: [reverse("staff:rule_new"), reverse("staff:rule_edit", args=[t["rule"].pk])],
    "staff:templates": lambda t: [reverse("staff:template_new"), reverse("staff:template_edit", args=[t["template"].pk])],
    "staff:teams": lambda t: [reverse("staff:team_new"), reverse("staff:team_edit", args=[t["team"].pk])],
    "staff:users": lambda t: [reverse("staff:user_new"), reverse("staff:user_edit", args=[t["user"].pk])],
    "staff:inventory": lambda t: [reverse("staff:source_new"), reverse("staff:recipient_new")],
}


@pytest.mark.parametrize("url_name", EDIT_LINKS)
@pytest.mark.django_db
def test_the_auditor_reads_the_configuration_without_edit_links(client, cast, things, url_name):
    links = [f'href="{url}"' for url in EDIT_LINKS[url_name](things)]
    sign_in(client, cast, "auditor")
    page = client.get(reverse(url_name)).content.decode()
    assert not any(link in page for link in links)
    sign_in(client, cast, "dpo")
    page = client.get(reverse(url_name)).content.decode()
    assert all(link in page for link in links)


@pytest.mark.parametrize(
    ("role", "can_act"),
    [("auditor", False), ("handler", False), ("dpo", True), ("superuser", True)],
)
@pytest.mark.django_db
def test_the_request_page_offers_actions_only_to_those_who_may_work_it(client, cast, things, role, can_act):
    # The request belongs to the outsider's team, not the signed-in handler's.
    sign_in(client, cast, role)
    html = client.get(reverse("staff:request", args=[things["request"].reference])).content.decode()
    note_form = reverse("staff:request_action", args=[things["request"].reference, "note"])
    assert (note_form in html) is can_act
    assert ("You can read this request but not act on it." in html) is not can_act


# --- POST actions on a request ---------------------------------------------------


@dataclass(frozen=True)
class ActionCase:
    """An action with a request in a status that allows it, valid data, and its visible effect."""

    name: str
    status: str
    data: Callable  # (request, cast) -> POST data
    happened: Callable  # (request refreshed, cast) -> bool
    prepare: Callable = lambda r, cast: None  # (request, cast): extra setup


def _pause(privacy_request, cast):
    with transaction.atomic():
        deadline_service.clock_pause(request=privacy_request, actor=Actor.staff(cast.dpo), reason="Waiting for the ID")


def _ccpa_receipt_unconfirmed(privacy_request, cast):
    """A CCPA request recorded from a letter: no email confirmed its receipt."""
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(
        regime="ccpa", subject_email="", acknowledgement_due_on=privacy_request.received_at.date(), acknowledged_at=None
    )


def _fee_proposed(privacy_request, cast):
    with transaction.atomic():
        handling.fee_propose(
            request=privacy_request, actor=Actor.staff(cast.dpo), amount=Decimal("25"),
            explanation="The fourth copy this month.", expected_status=privacy_request.status,
        )


def _filed_by_an_agent(privacy_request, cast):
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(
        agent_capacity="authorised_agent", agent_name="Marc Peeters", agent_email="marc@example.org"
    )


def _filed_by_an_agent_whose_authority_is_confirmed(privacy_request, cast):
    _filed_by_an_agent(privacy_request, cast)
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(agent_authority_confirmed_at=timezone.now())


def _filed_by_an_agent_with_the_subjects_proven_address(privacy_request, cast):
    _filed_by_an_agent(privacy_request, cast)
    # Asked only at an address proven the subject's (agents.subject_confirmation_send).
    privacy_request.identities.filter(kind=IdentityKind.EMAIL).update(
        verified_at=timezone.now(), verification_method="account_records"
    )


def _email_identity(privacy_request):
    return privacy_request.identities.get(kind=IdentityKind.EMAIL)


ACTION_CASES = {
    case.name: case
    for case in [
        ActionCase(
            "assign",
            Status.NEW,
            lambda r, c: {"assignee": c.newcomer.username, "expected_assignee": r.assignee_id or ""},
            lambda r, c: r.assignee_id == c.newcomer.id and r.events.filter(action="assigned").exists(),
        ),
        ActionCase(
            "message",
            Status.IN_PROGRESS,
            lambda r, c: {"subject": "Your request", "body": "We are on it."},
            lambda r, c: Message.objects.filter(
                request=r, direction=MessageDirection.TO_SUBJECT, body__contains="We are on it."
            ).exists(),
        ),
        ActionCase(
            "request_information",
            Status.IN_PROGRESS,
            lambda r, c: {"body": "Please send a copy of your ID.", "expected_status": Status.IN_PROGRESS},
            lambda r, c: r.status == Status.AWAITING_SUBJECT
            and Message.objects.filter(request=r, body__contains="Please send a copy of your ID.").exists()
            and r.pauses.filter(ended_at__isnull=True).exists(),
        ),
        ActionCase(
            "verify_identity",
            Status.NEW,
            lambda r, c: {"identities": [_email_identity(r).id], "method": "document", "expected_status": Status.NEW},
            lambda r, c: _email_identity(r).verification_method == "document" and r.status == Status.IN_PROGRESS,
        ),
        ActionCase(
            "confirm_agent_authority",
            Status.IN_PROGRESS,
            lambda r, c: {"method": "signed_permission"},
            lambda r, c: r.agent_authority_confirmed_at is not None and r.events.filter(action="agent_authority_confirmed").exists(),
            prepare=_filed_by_an_agent,
        ),
        ActionCase(
            "withdraw_agent_authority",
            Status.IN_PROGRESS,
            lambda r, c: {"reason": "The subject never allowed them."},
            lambda r, c: r.agent_authority_confirmed_at is None and r.events.filter(action="agent_authority_withdrawn").exists(),
            prepare=_filed_by_an_agent_whose_authority_is_confirmed,
        ),
        ActionCase(
            "correct_requester",
            Status.IN_PROGRESS,
            lambda r, c: {
                "to": "agent", "agent_capacity": "legal_representative", "agent_name": "Marc Peeters",
                "reason": "Her lawyer filed it.",
            },
            # The agent's address is the one that confirmed the request, the form's only choice.
            lambda r, c: r.agent_name == "Marc Peeters" and r.subject_email == "" and r.events.filter(action="requester_corrected").exists(),
        ),
        ActionCase(
            "postal_address",
            Status.IN_PROGRESS,
            lambda r, c: {"postal_address": "Kerkstraat 12\n2000 Antwerpen"},
            lambda r, c: r.postal_address == "Kerkstraat 12\n2000 Antwerpen"
            and r.events.filter(action="postal_address_corrected").exists(),
        ),
        ActionCase(
            "ask_subject_to_confirm",
            Status.IN_PROGRESS,
            lambda r, c: {},
            lambda r, c: bool(r.subject_confirmation_nonce) and r.events.filter(action="subject_confirmation_sent").exists(),
            prepare=_filed_by_an_agent_with_the_subjects_proven_address,
        ),
        ActionCase(
            "extend",
            Status.IN_PROGRESS,
            lambda r, c: {"reason": "Many systems to search."},
            lambda r, c: r.extended_at is not None
            and r.extension_reason == "Many systems to search."
            and r.due_on > r.original_due_on,
        ),
        ActionCase(
            "pause",
            Status.IN_PROGRESS,
            lambda r, c: {"question": "Please send a copy of your ID."},
            # The clock stops, and the subject is asked, in writing, for what we wait for.
            lambda r, c: r.pauses.filter(ended_at__isnull=True, reason="Please send a copy of your ID.").exists()
            and Message.objects.filter(request=r, body__contains="Please send a copy of your ID.").exists(),
        ),
        ActionCase(
            "resume",
            Status.IN_PROGRESS,
            lambda r, c: {},
            lambda r, c: r.pauses.count() == 1 and not r.pauses.filter(ended_at__isnull=True).exists(),
            prepare=_pause,
        ),
        ActionCase(
            "start_identity_check",
            Status.NEW,
            lambda r, c: {"expected_status": Status.NEW},
            lambda r, c: r.status == Status.IDENTITY_CHECK,
        ),
        ActionCase(
            "start_work",
            Status.NEW,
            lambda r, c: {"expected_status": Status.NEW},
            lambda r, c: r.status == Status.IN_PROGRESS,
        ),
        ActionCase(
            "complete",
            Status.IN_PROGRESS,
            lambda r, c: {"letter": "We sent you a copy of your data.", "expected_status": Status.IN_PROGRESS},
            lambda r, c: r.status == Status.COMPLETED
            and Message.objects.filter(request=r, body__contains="We sent you a copy of your data.").exists(),
            prepare=lambda r, cast: released_package(r),  # an access request is answered with its data
        ),
        ActionCase(
            "reject",
            Status.NEW,
            lambda r, c: {"ground": "excessive", "explanation": "The tenth request this week.", "expected_status": Status.NEW},
            lambda r, c: r.status == Status.REJECTED and r.rejection_ground == "excessive",
        ),
        ActionCase(
            "forward",
            Status.NEW,
            lambda r, c: {
                "controller": "Mobile Operator SA", "contact": "privacy@mobile-operator.example",
                "forwarded_on": timezone.localdate().isoformat(), "expected_status": Status.NEW,
            },
            lambda r, c: r.status == Status.FORWARDED and r.forwarded_to == "Mobile Operator SA"
            and Message.objects.filter(request=r, body__contains="privacy@mobile-operator.example").exists(),
        ),
        ActionCase(
            "fee",
            Status.IN_PROGRESS,
            lambda r, c: {"amount": "25", "explanation": "The fourth copy this month.", "expected_status": Status.IN_PROGRESS},
            lambda r, c: r.fee_amount == Decimal("25") and Message.objects.filter(request=r, body__contains="The fourth copy").exists(),
        ),
        ActionCase(
            "fee_paid",
            Status.IN_PROGRESS,
            lambda r, c: {},
            lambda r, c: r.fee_paid_at is not None and r.events.filter(action="fee_paid").exists(),
            prepare=_fee_proposed,
        ),
        ActionCase(
            "confirm_receipt",
            Status.NEW,
            lambda r, c: {},
            lambda r, c: r.acknowledged_at is not None and r.events.filter(action="receipt_confirmed").exists(),
            prepare=_ccpa_receipt_unconfirmed,
        ),
        ActionCase(
            "note",
            Status.NEW,
            lambda r, c: {"body": "Called the customer's DPO."},
            lambda r, c: InternalNote.objects.filter(request=r, body="Called the customer's DPO.").exists(),
        ),
    ]
}


def _asks_erasure_too(privacy_request, cast):
    """The access request also asks for erasure, and its copy was released; a legal hold keeps all the erasure found:
    a completion may refuse the erasure."""
    released_package(privacy_request)
    RequestedRight.objects.create(request=privacy_request, right=RequestType.ERASURE)
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(rights_mask=rights_mask([RequestType.ACCESS, RequestType.ERASURE]))
    erasure_kept_whole(privacy_request)


# A completion that refuses part of the request: allowed to whoever may complete it, and to no one else.
ACTION_CASES_WITH_OPTIONS = {
    "complete_refusing_a_right": ActionCase(
        "complete",
        Status.IN_PROGRESS,
        lambda r, c: {
            "expected_status": Status.IN_PROGRESS, "refusal_ground_erasure": "legal_obligation",
            "refusal_explanation_erasure": "Telecom law keeps call records for 12 months.",
        },
        lambda r, c: r.status == Status.COMPLETED and r.refused_rights == ["erasure"]
        and Message.objects.filter(request=r, body__contains="Telecom law keeps call records").exists(),
        prepare=_asks_erasure_too,
    ),
    # An agent's request made the subject's own: the agent's details go.
    "correct_requester_to_the_subject": ActionCase(
        "correct_requester",
        Status.IN_PROGRESS,
        lambda r, c: {"to": "subject", "reason": "She filed it herself."},
        lambda r, c: not r.filed_by_agent and r.events.filter(action="requester_corrected").exists(),
        prepare=_filed_by_an_agent,
    ),
    # A question asking the agent for proof of their authority: what lets a request be rejected for its lack.
    "request_information_asking_for_the_agents_authority": ActionCase(
        "request_information",
        Status.IN_PROGRESS,
        lambda r, c: {"body": "Please send the subject's signed permission.", "asks_agent_authority": "on", "expected_status": Status.IN_PROGRESS},
        lambda r, c: r.status == Status.AWAITING_SUBJECT
        and Message.objects.filter(request=r, asks_agent_authority=True).exists(),
        prepare=_filed_by_an_agent,
    ),
}


def test_every_action_of_the_request_page_is_in_the_matrix():
    assert set(ACTION_CASES) == set(ACTIONS)


# Who signs in, whose request it is (its assignee and team), and the outcome.
POST_SCENARIOS = {
    "anonymous": ("handler", None, "login"),
    "no_otp": ("handler", None, "otp"),  # even the request's own handler, with only a password
    "no_role": ("handler", None, 403),
    "auditor": ("handler", None, 403),
    "handler_own": ("handler", None, "allowed"),
    "handler_team": ("teammate", "team", "allowed"),
    "handler_other": ("outsider", "other_team", 403),
    "dpo": ("outsider", "other_team", "allowed"),
    "superuser": ("outsider", "other_team", "allowed"),
}


def request_for(case: ActionCase, cast: Cast, scenario: str) -> PrivacyRequest:
    assignee, team, _outcome = POST_SCENARIOS[scenario]
    privacy_request = request_in_status(case.status)
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(
        assignee=getattr(cast, assignee), team=getattr(cast, team) if team else None
    )
    privacy_request.refresh_from_db()
    case.prepare(privacy_request, cast)
    privacy_request.refresh_from_db()
    return privacy_request


@pytest.mark.parametrize("scenario", list(POST_SCENARIOS))
@pytest.mark.parametrize("action", [*ACTION_CASES, *ACTION_CASES_WITH_OPTIONS])
@pytest.mark.django_db
def test_request_actions_by_role(client, cast, action, scenario):
    case = {**ACTION_CASES, **ACTION_CASES_WITH_OPTIONS}[action]
    privacy_request = request_for(case, cast, scenario)
    before = snapshot(privacy_request)
    url = reverse("staff:request_action", args=[privacy_request.reference, case.name])
    page = reverse("staff:request", args=[privacy_request.reference])
    sign_in(client, cast, scenario)

    response = post_confirmed(client, url, case.data(privacy_request, cast), HTTP_REFERER=f"http://testserver{page}")

    outcome = POST_SCENARIOS[scenario][2]
    if outcome == "allowed":
        assert response.status_code == 302
        assert response.url == page
        assert message_levels_of(response) == [message_levels.SUCCESS]
        privacy_request.refresh_from_db()
        assert case.happened(privacy_request, cast)
        assert snapshot(privacy_request)["all_events"] > before["all_events"]  # and it is in the audit trail
    else:
        # Back to the page the form is on once signed in: the action's address takes only forms.
        if outcome == "login":
            assert_sent_to(response, "staff:login", page)
        elif outcome == "otp":
            assert_sent_to(response, "staff:otp", page)
        else:
            assert response.status_code == 403
        assert snapshot(privacy_request) == before


@pytest.mark.django_db
def test_an_empty_expected_status_counts_as_not_given(client, cast):
    # The view turns an empty expected_status into None ("no check"), as when the field is absent.
    privacy_request = request_in_status(Status.NEW)
    sign_in(client, cast, "dpo")
    url = reverse("staff:request_action", args=[privacy_request.reference, "start_work"])

    response = client.post(url, {"expected_status": ""})

    assert [m.message for m in get_messages(response.wsgi_request)] == ["Work started."]
    assert PrivacyRequest.objects.get(pk=privacy_request.pk).status == Status.IN_PROGRESS


@pytest.mark.django_db
def test_an_unknown_action_is_a_404_and_changes_nothing(client, cast):
    privacy_request = request_in_status(Status.NEW)
    before = snapshot(privacy_request)
    sign_in(client, cast, "dpo")
    response = client.post(reverse("staff:request_action", args=[privacy_request.reference, "withdraw"]), {})
    assert response.status_code == 404
    assert snapshot(privacy_request) == before


@pytest.mark.parametrize("role", ["auditor", "handler", "dpo"])
@pytest.mark.django_db
def test_actions_answer_post_only(client, cast, role):
    privacy_request = request_in_status(Status.NEW)
    PrivacyRequest.objects.filter(pk=privacy_request.pk).update(assignee=cast.handler)
    before = snapshot(privacy_request)
    sign_in(client, cast, role)
    response = client.get(reverse("staff:request_action", args=[privacy_request.reference, "start_work"]))
    # Not a blank 405: the request's page, where the action's form is.
    assert (response.status_code, response.url) == (302, reverse("staff:request", args=[privacy_request.reference]))
    assert snapshot(privacy_request) == before


# --- The bulk action ---------------------------------------------------------------

# Like the request actions, except that a handler's bulk action on a request they
# may not work skips that request with a warning instead of answering 403.
BULK_OUTCOMES = {**{name: outcome for name, (_a, _t, outcome) in POST_SCENARIOS.items()}, "handler_other": "skipped"}


@pytest.mark.parametrize("scenario", list(BULK_OUTCOMES))
@pytest.mark.django_db
def test_bulk_action_by_role(client, cast, scenario):
    privacy_request = request_for(ACTION_CASES["start_work"], cast, scenario)
    before = snapshot(privacy_request)
    url = reverse("staff:bulk")
    sign_in(client, cast, scenario)

    queue = f"{reverse('staff:queue')}?status=new"
    response = client.post(
        url, {"action": "start_work", "references": [privacy_request.reference], "query": ""}, HTTP_REFERER=f"http://testserver{queue}"
    )

    outcome = BULK_OUTCOMES[scenario]
    if outcome == "allowed":
        assert response.status_code == 302
        assert PrivacyRequest.objects.get(pk=privacy_request.pk).status == Status.IN_PROGRESS
    elif outcome == "skipped":
        assert response.status_code == 302
        warnings = [m.message for m in get_messages(response.wsgi_request) if m.level == message_levels.WARNING]
        assert len(warnings) == 1 and privacy_request.reference in warnings[0]
        assert snapshot(privacy_request) == before
    else:
        if outcome == "login":
            assert_sent_to(response, "staff:login", queue)
        elif outcome == "otp":
            assert_sent_to(response, "staff:otp", queue)
        else:
            assert response.status_code == 403
        assert snapshot(privacy_request) == before


@pytest.mark.parametrize("role", ["auditor", "no_role"])
@pytest.mark.django_db
def test_bulk_assign_and_everything_are_refused_to_readers(client, cast, role):
    privacy_request = request_in_status(Status.NEW)
    before = snapshot(privacy_request)
    sign_in(client, cast, role)
    response = client.post(
        reverse("staff:bulk"), {"action": "assign", "assignee": cast.newcomer.username, "everything": "on", "query": ""}
    )
    assert response.status_code == 403
    assert snapshot(privacy_request) == before


# --- Writes to the DPO's settings ------------------------------------------------


def _settings_posts(cast, things):
    """(url, POST data, count of the objects it would create or change)."""
    return {
        "rule_new": (
            reverse("staff:rule_new"),
            {"position": 1, "name": "All to Nico", "active": "on", "assign_user": cast.newcomer.pk},
            lambda: AssignmentRule.objects.count(),
        ),
        "rule_delete": (
            reverse("staff:rule_edit", args=[things["rule"].pk]),
            {"delete": "1"},
            lambda: AssignmentRule.objects.count(),
        ),
        "template_new": (
            reverse("staff:template_new"),
            {"purpose": "completion", "request_type": "", "language": "en", "subject": "Done", "body": "{{ body }}"},
            lambda: ResponseTemplate.objects.count(),
        ),
        "team_new": (
            reverse("staff:team_new"),
            {"name": "Legal", "members": [cast.handler.pk]},
            lambda: Team.objects.count(),
        ),
        "user_new": (
            reverse("staff:user_new"),
            {
                "username": "mallory",
                "email": "mallory@example.com",
                "role": "DPO",
                "is_active": "on",
            },
            lambda: get_user_model().objects.count(),
        ),
        "user_promote": (
            reverse("staff:user_edit", args=[cast.handler.pk]),
            {"username": cast.handler.username, "email": cast.handler.email, "role": "DPO", "is_active": "on"},
            lambda: cast.handler.groups.filter(name="DPO").count(),
        ),
        "user_invite": (
            reverse("staff:user_edit", args=[cast.teammate.pk]),
            {"invite": "1"},
            lambda: TOTPDevice.objects.filter(user=cast.teammate).count(),
        ),
    }


SETTINGS_WRITES = ["rule_new", "rule_delete", "template_new", "team_new", "user_new", "user_promote", "user_invite"]


@pytest.mark.parametrize("role", ["no_role", "auditor", "handler"])
@pytest.mark.parametrize("write", SETTINGS_WRITES)
@pytest.mark.django_db
def test_only_the_dpo_may_change_settings(client, cast, things, write, role):
    TOTPDevice.objects.create(user=cast.teammate, name="phone", confirmed=True)
    url, data, count = _settings_posts(cast, things)[write]
    before, events_before = count(), AuditEvent.objects.count()
    sign_in(client, cast, role)

    response = client.post(url, data)

    assert response.status_code == 403
    assert (count(), AuditEvent.objects.count()) == (before, events_before)


@pytest.mark.parametrize("role", ["dpo", "superuser"])
@pytest.mark.parametrize("write", SETTINGS_WRITES)
@pytest.mark.django_db
def test_the_dpo_changes_settings(client, cast, things, write, role):
    TOTPDevice.objects.create(user=cast.teammate, name="phone", confirmed=True)
    url, data, count = _settings_posts(cast, things)[write]
    before, events_before = count(), AuditEvent.objects.count()
    sign_in(client, cast, role)

    response = client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert count() != before
    assert AuditEvent.objects.count() == events_before + 1
