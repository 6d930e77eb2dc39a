"""A completed request granted in part (data kept under a legal hold, a source not searched): the certificate's
outcome, the letter and the status page say so alike, and the certificate's holds tell its categories apart."""

from django.urls import reverse

from requests_app.models import IdentityKind, Message, RequestType, SourceSystem
from requests_app.services import actions, certificate, handling
from tests.actions.conftest import verified_request
from tests.actions.test_demo_inventory import demo_erasure, demo_sources  # noqa: F401 (a fixture)
from tests.actions.test_notices import carry_out_actions

PARTLY = "Your request is complete, but we could not grant all of it; our letter explains why."


def _complete(request, dpo_actor, capture_on_commit):
    with capture_on_commit(execute=True):
        handling.request_complete(request=request, actor=dpo_actor, letter="Done.", expected_status=request.status)
    request.refresh_from_db()
    return Message.objects.filter(request=request).latest("created_at").body


def test_a_demo_erasure_that_kept_call_records_is_granted_in_part_everywhere(
    db, demo_sources, dpo_actor, django_capture_on_commit_callbacks, client  # noqa: F811
):
    """The certificate headed "Completed: every right asked was granted." above the call records it listed as kept
    under a legal hold, which the letter said the right to erasure does not apply to."""
    request = demo_erasure(dpo_actor, django_capture_on_commit_callbacks)
    letter = _complete(request, dpo_actor, django_capture_on_commit_callbacks)
    assert "The right to erasure does not apply to this data" in letter and "lodge a complaint" in letter

    html = certificate.render_certificate_html(request)
    assert "every right asked was granted" not in html
    assert (
        "<dt>Outcome</dt><dd>Completed, granted in part: data kept in Call detail records under a legal hold, to which "
        "the right to erasure does not apply: compliance with a legal obligation (Art. 17(3)(b) GDPR)"
    ) in html
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert PARTLY in page and "Your request is complete.<" not in page


def test_the_certificates_holds_name_the_categories_that_read_alike(
    db, demo_sources, dpo_actor, django_capture_on_commit_callbacks  # noqa: F811
):
    """The calls made and those received have one description: two identical rows, without the category's name."""
    request = demo_erasure(dpo_actor, django_capture_on_commit_callbacks)
    _complete(request, dpo_actor, django_capture_on_commit_callbacks)

    html = certificate.render_certificate_html(request)
    held = html[html.index("Kept under a legal hold"):]
    assert "<td>Electronic communications data (call detail records) (calls-made) (dated " in held
    assert "<td>Electronic communications data (call detail records) (calls-received) (dated " in held


def test_a_restriction_that_could_not_search_a_source_is_granted_in_part_everywhere(
    crm, cdr, dpo_actor, django_capture_on_commit_callbacks, client
):
    """No phone number verified: the call records' restriction ended "Done: not searched", and the certificate
    still said every right asked was granted."""
    SourceSystem.objects.filter(pk=cdr.pk).update(restriction_list="restriction_list.identity")
    request = verified_request(RequestType.RESTRICTION)
    request.identities.filter(kind=IdentityKind.PHONE).update(verified_at=None)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    letter = _complete(request, dpo_actor, django_capture_on_commit_callbacks)
    assert "We could not search Call records" in letter and "lodge a complaint" in letter

    html = certificate.render_certificate_html(request)
    assert "<dt>Outcome</dt><dd>Completed, granted in part: Call records not searched (no verified phone number).</dd>" in html
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert PARTLY in page


def test_a_request_carried_out_in_full_is_still_granted_in_full(crm, dpo_actor, django_capture_on_commit_callbacks, client):
    request = verified_request(RequestType.RESTRICTION)
    actions.plan_actions(request=request, actor=dpo_actor)
    carry_out_actions(request, dpo_actor, django_capture_on_commit_callbacks)
    _complete(request, dpo_actor, django_capture_on_commit_callbacks)

    assert certificate.outcome(request) == "Completed: every right asked was granted."
    page = client.get(reverse("status", args=[request.reference, request.secret])).content.decode()
    assert PARTLY not in page
