import threading

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from requests_app.audit import Actor
from requests_app.models import Channel, Relationship, RequestType
from requests_app.services.intake import RightDetails, request_submit


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    is_staff = True
    password = factory.django.Password("correct-horse-battery")


def staff_in_role(role: str, **fields):
    """A staff user in one of the roles (DPO, Handler, Auditor)."""
    from django.contrib.auth.models import Group

    user = UserFactory(**fields)
    # get_or_create: transactional tests flush the groups the migration made.
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def staff_who_signs_in(role: str, **fields):
    """A staff user in `role` with an authenticator set up: one routing may give requests to."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = staff_in_role(role, **fields)
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user


def submit_request(**overrides):
    """A request submitted through the real service, as the public form would."""
    kwargs = {
        "rights": [RightDetails(RequestType.ACCESS)],
        "subject_name": "Ana Peeters",
        "subject_email": "ana@example.com",
        "relationship": Relationship.END_USER,
        "signature": "Ana Peeters",
        "regime": "gdpr",
        "language": "en",
        "channel": Channel.WEB,
        "actor": Actor.subject(),
    }
    kwargs.update(overrides)
    return request_submit(**kwargs)


def request_in_status(status: str, **overrides):
    """A request moved to `status` along the shortest legal path."""
    from requests_app import lifecycle
    from requests_app.models import Status

    paths = {
        Status.AWAITING_VERIFICATION: [],
        Status.NEW: ["verify_email"],
        Status.IDENTITY_CHECK: ["verify_email", "start_identity_check"],
        Status.IN_PROGRESS: ["verify_email", "start_work"],
        Status.AWAITING_SUBJECT: ["verify_email", "await_subject"],
        Status.COMPLETED: ["verify_email", "start_work", "complete"],
        Status.REJECTED: ["verify_email", "reject"],
        Status.FORWARDED: ["verify_email", "forward"],
        Status.WITHDRAWN: ["withdraw"],
        Status.EXPIRED: ["expire"],
    }
    request = submit_request(**overrides)
    for name in paths[status]:
        lifecycle.transition(request, name, actor=Actor.system())
    assert request.status == status
    request.refresh_from_db()
    return request


def identity_proof_asked(request, staff) -> None:
    """Staff ask the subject for proof of identity and the subject answers with something that does not prove it:
    what must come before a rejection for an unverified identity (handling.identity_refusal). The request returns
    to the status it had."""
    from requests_app.services import handling

    handling.request_information(
        request=request, actor=Actor.staff(staff), body="Please send a copy of a bill in your name.",
        expected_status=request.status,
    )
    handling.subject_reply(request=request, body="I would rather not.")
    request.refresh_from_db()


def last_letter(request):
    """The last message sent to the subject on `request`: the letter that closed it."""
    return request.messages.filter(direction="to_subject").order_by("id").last()


def now():
    return timezone.now()


def released_package(request, kind="access"):
    """A data package already released to the subject: what completing an access or portability request needs."""
    from requests_app.models import ExportPackage, ExportStatus

    released_at = timezone.now()
    return ExportPackage.objects.create(
        request=request, kind=kind, status=ExportStatus.RELEASED, released_at=released_at,
        expires_at=released_at + settings.EXPORT_LINK_LIFETIME,  # as exports.export_release sets it
    )


def erasure_kept_whole(request):
    """The erasure of `request` planned in a call-records system whose every record a legal hold keeps, and dry-run:
    the holds keep all the subject's data it found (two rows), which refusing the erasure on a legal obligation or
    legal claims needs (actions.beyond_the_holds). As a dry run leaves it; the system is inactive, so that no package
    a test compiles reads its database, which is not there."""
    import datetime

    from requests_app.models import (
        ActionKind, ActionStatus, ConnectorKind, DataCategory, EraseMethod, ErasureException, IdentityKind, LegalBasis,
        LegalHold, SourceAction, SourceCategory, SourceSystem,
    )

    source, _created = SourceSystem.objects.get_or_create(
        slug="kept-call-records",
        defaults={
            "name": "Kept call records", "connector": ConnectorKind.SQL, "connection_url": "sqlite:////nonexistent/calls.sqlite3",
            "identity_kind": IdentityKind.PHONE, "purposes": "Billing", "legal_basis": LegalBasis.LEGAL_OBLIGATION,
            "retention": "12 months", "origin": "The network", "active": False,
        },
    )
    SourceCategory.objects.get_or_create(
        source=source, slug="calls",
        defaults={
            "category": DataCategory.ELECTRONIC_COMMUNICATIONS, "query": "SELECT * FROM calls WHERE caller IN :identities",
            "table": "calls", "identity_field": "caller", "erase_method": EraseMethod.DELETE,
        },
    )
    until = datetime.date(2099, 12, 31)
    LegalHold.objects.get_or_create(
        source=source, category=None,
        defaults={"ground": ErasureException.LEGAL_OBLIGATION, "basis": "Telecom law: call records kept", "until": until},
    )
    held = [{
        "category": "calls", "ground": ErasureException.LEGAL_OBLIGATION, "basis": "Telecom law: call records kept",
        "basis_translations": {}, "until": until.isoformat(),
    }]
    return SourceAction.objects.create(
        request=request, source=source, kind=ActionKind.ERASE, status=ActionStatus.AWAITING_APPROVAL, dry_run_at=timezone.now(),
        dry_run={"categories": [], "list_entries": 0, "held": held, "held_rows": {"calls": 2}, "identities": 1},
    )


def confirm_email(request):
    """The owner of the address of a request received directly (staff intake, API) confirms it through the link
    staff send (intake.email_confirmation_send): what releasing an unencrypted package to its status page needs."""
    from requests_app.services.intake import request_verify_email, verification_token

    return request_verify_email(token=verification_token(request))


def at_once(work, times: int) -> list:
    """Run `work()` in `times` threads released together, as requests arriving at the same moment would be
    served; each thread closes its database connection. What each returned, or the exception it raised."""
    barrier, outcomes = threading.Barrier(times), []

    def run():
        try:
            barrier.wait()
            outcomes.append(work())
        except Exception as error:  # noqa: BLE001 - the test reads it
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes

