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
