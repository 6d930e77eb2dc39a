"""Labels and dates inside sentences, in the active language."""

import datetime
import math
import re

from django.utils import dateformat, formats, timezone
from django.utils.timesince import timeuntil
from django.utils.translation import get_language, gettext_lazy


def in_sentence(label) -> str:
    """A label ("Phone number", "In progress") as it reads inside a sentence ("phone number").

    Only the first letter is lowered, and not in German, whose nouns keep their
    capital ("Telefonnummer"), nor for an acronym ("IP address").
    """
    text = str(label)
    if (get_language() or "").startswith("de") or text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


# The controller is in the Union, so the GDPR applies to every request (forms.REGIME_CHOICES), but a letter tells
# the subject the law of their own rights: under the GDPR, and the UK GDPR that numbers its articles alike, it
# cites the articles; under another law (the CCPA, the LGPD) it leaves them out rather than cite, as the law the
# subject relies on, one they did not invoke and whose exceptions are not their law's. The certificate (which may be
# shown to the subject) and the staff pages about one request cite as the letters do, so that staff see the law
# their answer will name.
REGIMES_CITING_GDPR_ARTICLES = frozenset({"gdpr", "uk_gdpr"})

# A label's closing citation of an article ("… (Art. 17(3)(b))"), to the end of the label: translations write it
# their own way, the French "(art. 17, paragraphe 3, point b))" with a parenthesis of its own.
GDPR_ARTICLE_AT_END = re.compile(r"\s*\((?i:art)\. .*$")


def cites_gdpr_articles(regime: str) -> bool:
    """Whether a letter under `regime` cites the GDPR's articles (REGIMES_CITING_GDPR_ARTICLES says why)."""
    return regime in REGIMES_CITING_GDPR_ARTICLES


# What a text about one request cites for a provision, under each regime: the law of the subject's own rights alone,
# as the letters do (REGIMES_CITING_GDPR_ARTICLES), though the GDPR applies to every request too. The UK GDPR numbers
# its articles as the GDPR does, but is named as the law it is. A regime without an entry for a provision has no
# equivalent of it: the text then cites nothing there, never another law (the LGPD has none for other people's data
# in a copy, the CCPA none for telling a subject before a restriction is lifted). A data package's report
# (exports/report.html) cites "access", "portability" and "rights_of_others" in the short form; the letters and the
# certificate cite the others in words, as they always have.
# Translators: legal citations; write them as your language cites a law ("art. 15 du RGPD"), keeping the numbers.
CITATIONS = {
    "gdpr": {
        "access": gettext_lazy("GDPR Art. 15"),
        "portability": gettext_lazy("GDPR Art. 20"),
        # Art. 20(2): the data sent directly to another controller (services.transmission).
        "portability_transmission": gettext_lazy("GDPR Art. 20(2)"),
        "rights_of_others": gettext_lazy("GDPR Art. 15(4)"),
        "consent_withdrawal": gettext_lazy("Article 7(3) GDPR"),
        "erasure_exceptions": gettext_lazy("Article 17(3) GDPR"),
        "restriction_lift_notice": gettext_lazy("Article 18(3) GDPR"),
        "recipients_told": gettext_lazy("Article 19 GDPR"),
        "objection": gettext_lazy("Article 21 GDPR"),
    },
    "uk_gdpr": {
        "access": gettext_lazy("UK GDPR Art. 15"),
        "portability": gettext_lazy("UK GDPR Art. 20"),
        # Art. 20(2): the data sent directly to another controller (services.transmission).
        "portability_transmission": gettext_lazy("UK GDPR Art. 20(2)"),
        "rights_of_others": gettext_lazy("UK GDPR Art. 15(4)"),
        "consent_withdrawal": gettext_lazy("Article 7(3) UK GDPR"),
        "erasure_exceptions": gettext_lazy("Article 17(3) UK GDPR"),
        "restriction_lift_notice": gettext_lazy("Article 18(3) UK GDPR"),
        "recipients_told": gettext_lazy("Article 19 UK GDPR"),
        "objection": gettext_lazy("Article 21 UK GDPR"),
    },
    "ccpa": {
        # The right to know the specific pieces of personal information collected; 1798.130, how they are delivered:
        # in a portable, readily usable format, to be transmitted to another entity.
        "access": gettext_lazy("Cal. Civ. Code § 1798.110"),
        "portability": gettext_lazy("Cal. Civ. Code § 1798.130"),
        # The consumer's rights "shall not adversely affect the rights and freedoms of other natural persons".
        "rights_of_others": gettext_lazy("Cal. Civ. Code § 1798.145"),
        # Telling those the data went to depends on what was done (recipients_told_citation): a deletion, to notify
        # service providers and contractors, and third parties it was sold or shared to, unless impossible or
        # disproportionate; a correction, to instruct the service providers and contractors that hold the data
        # (CCPA Regulations, Cal. Code Regs. tit. 11); a limit on sensitive personal information, to notify the
        # third parties it was disclosed to after the request and direct them to comply and pass the request on.
        # The CCPA has no restriction of processing: a restriction is told citing nothing.
        "recipients_told_erase": gettext_lazy("Cal. Civ. Code § 1798.105(c)(1)"),
        "recipients_told_rectify": gettext_lazy("Cal. Code Regs. tit. 11, § 7023(c)"),
        "recipients_told_limit_use": gettext_lazy("Cal. Code Regs. tit. 11, § 7027(g)"),
        # A request refused as manifestly unfounded or excessive, "in particular because of their repetitive character",
        # the business bearing "the burden of demonstrating" it (handling.ground_in_letter). The GDPR's is the ground's
        # own Art. 12(5); the LGPD has no such ground, and cites nothing.
        "unfounded_or_excessive": gettext_lazy("Cal. Civ. Code § 1798.145(h)(3)"),
        # No right to have the data sent directly to another business: "portability_transmission" cites nothing.
    },
    "lgpd": {
        # Art. 18, I and II: confirmation and access; Art. 19: how the copy is given.
        "access": gettext_lazy("LGPD (Lei 13.709/2018) Art. 18 and 19"),
        # Art. 18, V: portability to another provider.
        "portability": gettext_lazy("LGPD (Lei 13.709/2018) Art. 18, V"),
        "portability_transmission": gettext_lazy("LGPD (Lei 13.709/2018) Art. 18, V"),
        # Art. 18, IX: revoking consent, as Art. 8 §5 allows at any time.
        "consent_withdrawal": gettext_lazy("Article 18, IX LGPD"),
        # Art. 18 §6: telling those the data was shared with of a correction, erasure, anonymisation or blocking,
        # unless impossible or disproportionate, as the GDPR's Art. 19 does.
        "recipients_told": gettext_lazy("Article 18, §6 LGPD"),
    },
}


def citations(regime: str) -> dict:
    """CITATIONS for `regime`, in the active language."""
    return {key: str(citation) for key, citation in CITATIONS[regime].items()}


def citation(regime: str, provision: str) -> str:
    """What a text under `regime` cites for `provision` (a CITATIONS key), in the active language; "" where the
    regime's law has no equivalent, and the text cites nothing."""
    return str(CITATIONS[regime].get(provision, ""))


def recipients_told_citation(regime: str, kinds) -> str:
    """What a text under `regime` cites for telling the recipients of the subject's data about `kinds` (ActionKind
    values, and "limit_use" for a CCPA limit on sensitive personal information), in the active language: each
    kind's own provision where the law has one ("recipients_told_erase"), else the one for them all
    ("recipients_told"), each once, in the order of `kinds`; "" where the law has none for any of them."""
    cited = []
    for kind in kinds:
        law = citation(regime, f"recipients_told_{kind}") or citation(regime, "recipients_told")
        if law and law not in cited:
            cited.append(law)
    return "; ".join(cited)


def label_in_letter(label, regime: str) -> str:
    """A label ending with a GDPR article ("Compliance with a legal obligation (Art. 17(3)(b))"), as a letter under
    `regime` names it: without the article under a law other than the GDPR's."""
    text = str(label)
    return text if cites_gdpr_articles(regime) else GDPR_ARTICLE_AT_END.sub("", text)


# The law a label's closing citation of a GDPR article names (label_citing_its_law), under each regime that cites them.
LAW_AFTER_AN_ARTICLE = {
    # Translators: %(provision)s is an article as a label cites it in your language ("art. 12, paragraphe 5"); name the
    # regulation after it as your citations do ("%(provision)s du RGPD", "%(provision)s DSGVO", "%(provision)s AVG").
    "gdpr": gettext_lazy("%(provision)s GDPR"),
    # Translators: as the one before, for the UK GDPR, named as your "Article 19 UK GDPR" names it.
    "uk_gdpr": gettext_lazy("%(provision)s UK GDPR"),
}


def label_citing_its_law(label, regime: str) -> str:
    """A label ending with a GDPR article, as a letter under `regime` names it (label_in_letter), the article naming
    its law: "Manifestly unfounded (Art. 12(5) GDPR)", as the letter's other citations do ("Article 19 GDPR"), not a
    bare "(Art. 12(5))" beside them. Done here, for every label, rather than in each label's own text and its
    translations."""
    text = label_in_letter(label, regime)
    cited = GDPR_ARTICLE_AT_END.search(text)
    if regime not in LAW_AFTER_AN_ARTICLE or cited is None:
        return text
    space, provision = re.fullmatch(r"(\s*)\((.*)\)", cited.group(0), re.DOTALL).groups()
    return f"{text[:cited.start()]}{space}({LAW_AFTER_AN_ARTICLE[regime] % {'provision': provision}})"


def without_final_punctuation(label) -> str:
    """A label that is a question or ends in a full stop ("Which data is incorrect?"), as it reads
    before a colon: "Which data is incorrect: ..." rather than "...incorrect?: ...".

    French puts a no-break space (U+00A0) or a narrow one (U+202F) before "?": it goes with the
    mark, or the colon that follows would have two spaces before it."""
    return str(label).rstrip(" ?.:!\u00a0\u202f")


# A sentence's own end: a full stop, "!", "?" or an ellipsis, perhaps before closing quotes or brackets (the French
# "… »" with its space).
SENTENCE_END = re.compile(r"[.!?…][\s\"'”’»)\]]*$")


def with_full_stop(text) -> str:
    """`text` as the end of a sentence ("The reason: Identity could not be verified."): a label with a full stop
    added, staff's own words ("…, so we keep it.") as they are. English, French, Dutch and German all end a
    sentence so."""
    text = str(text).rstrip()
    return text if not text or SENTENCE_END.search(text) else f"{text}."


def amount_in_words(amount, currency: str) -> str:
    """An amount of money as the active language writes it, with its currency: "1.250,00 EUR" in Dutch."""
    return f"{formats.number_format(amount, 2, use_l10n=True, force_grouping=True)} {currency}"


def date_in_words(value, format_name: str = "DATE_FORMAT") -> str:
    """A date or a moment as the active language writes it in a sentence ("1 March 2026"), a moment in the
    site's time zone, an ISO date string (as JSON stores one) as that date. `format_name` is one of Django's
    format names or one of ours (privacy_portal/formats: WEEKDAY_DATE_FORMAT, "Tuesday 1 December 2026").
    French writes the first of the month as an ordinal, wherever the format puts the day: "1er mars 2026",
    "dimanche 1er mars 2026", not "1 mars"."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        value = datetime.date.fromisoformat(value)
    if isinstance(value, datetime.datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    date_format = formats.get_format(format_name)
    if (get_language() or "").startswith("fr") and value.day == 1:
        date_format = re.sub(r"(?<!\\)j", r"j\\e\\r", date_format)  # the day, then a literal "er"
    return dateformat.format(value, date_format)


def wait_in_words(seconds: int) -> str:
    """A wait as the active language says it ("15 minutes", "1 hour, 5 minutes", "2 hours"; Django's own words,
    translated with Django), rounded up to the minute: whoever waits as long as it says is never too early."""
    now = timezone.now()
    return timeuntil(now + datetime.timedelta(minutes=max(1, math.ceil(seconds / 60))), now)


def masked_email(address: str) -> str:
    """An address shown back to the person who typed it, so they can spot a mistake: the domain whole (where
    most typing mistakes are, "gmial.com", and the part that says least about them), of the local part its
    first character only ("b•••@example.org"), which tells someone reading over their shoulder little."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return ""
    return f"{local[0]}•••@{domain}"
