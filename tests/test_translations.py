"""The French, Dutch and German catalogues: complete, compiled from their current .po files, and used."""

import ast
import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from requests_app.models import RequestType

LOCALE = Path(settings.BASE_DIR) / "locale"
LANGUAGES = ["fr", "nl", "de"]


def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file: {"msgctxt", "msgid", "msgid_plural", "msgstr": [...]} (the header left out)."""
    entries, entry, field = [], None, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if entry and entry.get("msgid"):
                entries.append(entry)
            entry, field = None, None
            continue
        if line.startswith("#"):
            continue
        entry = entry or {"msgctxt": None, "msgid": "", "msgid_plural": None, "msgstr": {}}
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            value = ast.literal_eval(line)
        else:
            field, value = keyword, ast.literal_eval(rest)
        if field.startswith("msgstr"):
            index = int(field[7:-1]) if "[" in field else 0
            entry["msgstr"][index] = entry["msgstr"].get(index, "") + value
        else:
            entry[field] = (entry.get(field) or "") + value
    return entries


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language):
    entries = po_entries(LOCALE / language / "LC_MESSAGES" / "django.po")
    assert len(entries) > 800
    untranslated = [entry["msgid"] for entry in entries if not all(entry["msgstr"].values())]
    assert untranslated == []


def test_french_punctuation_is_held_to_its_word_by_a_no_break_space():
    """French puts a space before : ; ? ! » and after «; an ordinary one lets a line break strand the mark."""
    entries = po_entries(LOCALE / "fr" / "LC_MESSAGES" / "django.po")
    breakable = [
        text for entry in entries for text in entry["msgstr"].values() if re.search(r" [:;?!»]|« ", text)
    ]
    assert breakable == []


def test_every_message_in_the_code_is_in_the_catalogues(tmp_path):
    """A new or changed message fails here until it is extracted and translated: makemessages,
    run on a copy of the code, finds nothing the committed catalogues lack."""
    root = Path(settings.BASE_DIR)
    for folder in ("privacy_portal", "requests_app", "templates", "locale"):
        shutil.copytree(root / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "manage.py", tmp_path)
    languages = [argument for language in LANGUAGES for argument in ("-l", language)]
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", *languages, "--no-obsolete"],
        cwd=tmp_path, env={**os.environ, "DJANGO_SETTINGS_MODULE": "privacy_portal.settings"},
        check=True, capture_output=True, timeout=300,
    )
    for language in LANGUAGES:
        po = Path("locale") / language / "LC_MESSAGES" / "django.po"
        committed = {(entry["msgctxt"], entry["msgid"]) for entry in po_entries(root / po)}
        in_the_code = {(entry["msgctxt"], entry["msgid"]) for entry in po_entries(tmp_path / po)}
        assert sorted(in_the_code - committed, key=str) == [], f"run makemessages and translate ({language})"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogue_matches_its_po_file(language):
    """The .mo files are committed (no gettext needed to run): each must hold what its .po says."""
    folder = LOCALE / language / "LC_MESSAGES"
    with open(folder / "django.mo", "rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    for entry in po_entries(folder / "django.po"):
        if entry["msgid_plural"]:
            forms = (entry["msgid"], entry["msgid_plural"], 1)
            singular = catalogue.npgettext(entry["msgctxt"], *forms) if entry["msgctxt"] else catalogue.ngettext(*forms)
            assert singular == entry["msgstr"][0], entry["msgid"]
        elif entry["msgctxt"]:
            assert catalogue.pgettext(entry["msgctxt"], entry["msgid"]) == entry["msgstr"][0], entry["msgid"]
        else:
            assert catalogue.gettext(entry["msgid"]) == entry["msgstr"][0], entry["msgid"]


@pytest.mark.parametrize(
    ("language", "erasure"),
    [("fr", "Effacer mes données"), ("nl", "Mijn gegevens wissen"), ("de", "Meine Daten löschen")],
)
def test_the_subjects_language_is_used(language, erasure):
    with translation.override(language):
        assert str(RequestType.ERASURE.label) == erasure


@pytest.mark.django_db
def test_a_visitor_switches_the_public_pages_language(client):
    assert "Erase my data" in client.get("/").content.decode()
    response = client.post("/i18n/setlang/", {"language": "nl", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "Mijn gegevens wissen" in page and 'lang="nl"' in page
