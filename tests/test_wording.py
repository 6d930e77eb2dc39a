"""Labels inside sentences keep the capitals their language needs."""

import pytest
from django.utils import translation

from requests_app.models import IdentityKind, Status
from requests_app.wording import in_sentence


@pytest.mark.parametrize(
    ("language", "label", "expected"),
    [
        ("en", IdentityKind.PHONE.label, "phone number"),
        ("en", IdentityKind.IP_ADDRESS.label, "IP address"),  # an acronym keeps its capitals
        ("en", Status.IN_PROGRESS.label, "in progress"),
        ("fr", IdentityKind.PHONE.label, "numéro de téléphone"),
        ("de", IdentityKind.PHONE.label, "Telefonnummer"),  # German nouns keep their capital
        ("de", Status.IN_PROGRESS.label, Status.IN_PROGRESS.label),
    ],
)
def test_in_sentence(language, label, expected):
    with translation.override(language):
        assert in_sentence(label) == expected


@pytest.mark.django_db
def test_a_german_refusal_quotes_the_status_names_it_keeps_capitalised():
    from requests_app import lifecycle
    from requests_app.audit import Actor
    from tests.factories import request_in_status

    request = request_in_status(Status.COMPLETED)
    with translation.override("de"), pytest.raises(lifecycle.IllegalTransition) as refused:
        lifecycle.transition(request, "start_work", actor=Actor.system())
    assert str(refused.value) == "Ein Antrag mit dem Status „Abgeschlossen“ kann nicht in den Status „In Bearbeitung“ überführt werden."
