"""Labels inside sentences keep the capitals their language needs; dates read as each language writes them."""

import datetime
import re

import pytest
from django.utils import translation

from requests_app.models import IdentityKind, Status
from requests_app.wording import date_in_words, in_sentence, wait_in_words, with_full_stop, without_final_punctuation


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


@pytest.mark.parametrize(
    ("language", "value", "expected"),
    [
        ("fr", datetime.date(2026, 3, 1), "1er mars 2026"),  # French writes the first as an ordinal
        ("fr", datetime.date(2026, 3, 11), "11 mars 2026"),
        ("fr", datetime.date(2026, 3, 21), "21 mars 2026"),
        ("en", datetime.date(2026, 3, 1), "1 March 2026"),
        ("nl", datetime.date(2026, 3, 1), "1 maart 2026"),
        ("de", datetime.date(2026, 3, 1), "1. März 2026"),
        # A moment in Brussels time: 23:30 UTC on 28 February is 1 March there.
        ("fr", datetime.datetime(2026, 2, 28, 23, 30, tzinfo=datetime.UTC), "1er mars 2026"),
        ("fr", None, ""),
    ],
)
def test_dates_in_words(language, value, expected):
    with translation.override(language):
        assert date_in_words(value) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        # Each language's word between the date and the hour, as a sentence reads it; the zone after it.
        ("fr", "1er mars 2026 à 00:30 CET"),
        ("nl", "1 maart 2026 om 00:30 CET"),
        ("de", "1. März 2026, 00:30 CET"),
        ("en", "1 March 2026, 00:30 CET"),
    ],
)
def test_a_moment_in_words_keeps_its_time(language, expected):
    with translation.override(language):
        assert date_in_words(datetime.datetime(2026, 2, 28, 23, 30, tzinfo=datetime.UTC), "DATETIME_FORMAT") == expected


def test_a_moment_in_summer_says_summer_time():
    with translation.override("en"):
        assert date_in_words(datetime.datetime(2026, 7, 1, 10, 0, tzinfo=datetime.UTC), "DATETIME_FORMAT") == "1 July 2026, 12:00 CEST"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Which data is incorrect or incomplete?", "Which data is incorrect or incomplete"),
        ("Signature: type your full name.", "Signature: type your full name"),
        # French spaces its "?" with a no-break space, or a narrow one: no gap may be left before the colon.
        ("Pourquoi le traitement devrait-il être limité\u00a0?", "Pourquoi le traitement devrait-il être limité"),
        ("Que souhaitez-vous que nous fassions\u202f?", "Que souhaitez-vous que nous fassions"),
        ("Full name", "Full name"),
    ],
)
def test_a_label_before_a_colon_loses_its_final_mark_and_the_space_before_it(label, expected):
    assert without_final_punctuation(label) == expected


@pytest.mark.django_db
def test_the_french_error_summary_leaves_one_space_before_a_colon_after_a_question(client):
    import html

    page = html.unescape(client.post("/", {"rights": ["restriction"]}, HTTP_ACCEPT_LANGUAGE="fr").content.decode())
    summary = page[page.index('class="error-summary"'):page.index("</ul>", page.index('class="error-summary"'))]
    # One space before the colon, whichever the catalogue uses (a plain or a no-break one).
    assert re.search("Pourquoi le traitement devrait-il être limité[ \u00a0\u202f]: Choisissez le motif", summary)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Sunday 1 March 2026"),
        ("fr", "dimanche 1er mars 2026"),  # the ordinal wherever the format puts the day
        ("nl", "zondag 1 maart 2026"),
        ("de", "Sonntag, 1. März 2026"),
    ],
)
def test_a_date_with_its_weekday_in_words(language, expected):
    with translation.override(language):
        assert date_in_words(datetime.date(2026, 3, 1), "WEEKDAY_DATE_FORMAT") == expected


def test_a_date_stored_as_an_iso_string_is_written_in_words():
    with translation.override("fr"):
        assert date_in_words("2027-03-01") == "1er mars 2027"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Identity could not be verified", "Identity could not be verified."),
        ("Legal obligation to retain the data (Art. 17(3)(b))", "Legal obligation to retain the data (Art. 17(3)(b))."),
        ("Obligation légale de conserver les données (art. 17, paragraphe 3, point b))", "Obligation légale de conserver les données (art. 17, paragraphe 3, point b))."),
        ("The account is another company's. \n", "The account is another company's."),  # staff's own full stop, not two
        ("Did you mean another account?", "Did you mean another account?"),
        ("Vous l'avez écrit vous-même\u00a0!", "Vous l'avez écrit vous-même\u00a0!"),
        ("We keep it (the law says so.)", "We keep it (the law says so.)"),
        ("Le contrat dit «\u00a0conservées dix ans.\u00a0»", "Le contrat dit «\u00a0conservées dix ans.\u00a0»"),
        ("", ""),
    ],
)
def test_with_full_stop(text, expected):
    assert with_full_stop(text) == expected


@pytest.mark.parametrize(
    ("language", "seconds", "expected"),
    [
        ("en", 0, "1\xa0minute"),  # the window ends this second: a minute is never too early
        ("en", 59, "1\xa0minute"),
        ("en", 14 * 60 + 1, "15\xa0minutes"),  # rounded up: waiting 14 minutes would be refused again
        ("en", 3600, "1\xa0hour"),
        ("en", 3600 + 4 * 60 + 30, "1\xa0hour, 5\xa0minutes"),
        ("en", 2 * 3600, "2\xa0hours"),
        ("fr", 2 * 3600, "2\xa0heures"),
        ("nl", 15 * 60, "15\xa0minuten"),
        ("de", 3600, "1\xa0Stunde"),
    ],
)
def test_a_wait_in_words_is_rounded_up_to_the_minute_and_plural_aware(language, seconds, expected):
    with translation.override(language):
        assert wait_in_words(seconds) == expected


def test_telling_the_recipients_is_cited_under_each_kinds_own_provision_once():
    """Under the CCPA a deletion and a correction are told under provisions of their own, a restriction under none (it
    has no such right); the GDPR tells them all under Art. 19 (wording.recipients_told_citation)."""
    from requests_app.wording import recipients_told_citation

    assert recipients_told_citation("ccpa", ["erase", "rectify", "erase"]) == (
        "Cal. Civ. Code § 1798.105(c)(1); Cal. Code Regs. tit. 11, § 7023(c)"
    )
    assert recipients_told_citation("ccpa", ["restrict"]) == ""
    assert recipients_told_citation("gdpr", ["erase", "rectify", "restrict"]) == "Article 19 GDPR"
    assert recipients_told_citation("lgpd", ["erase", "limit_use"]) == "Article 18, §6 LGPD"
