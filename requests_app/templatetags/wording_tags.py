from django import template
from django.utils.html import format_html

from requests_app.exports.package import not_searched_reason
from requests_app.services.handling import supervisory_authorities_in_words
from requests_app.wording import (
    cites_gdpr_articles,
    date_in_words,
    in_sentence,
    label_in_letter,
    with_full_stop,
    without_final_punctuation,
)

register = template.Library()
register.filter("date_in_words", date_in_words)
register.filter("in_sentence", in_sentence)
# A package's kind, "Access (Art. 15)", without the GDPR's article for a CCPA or LGPD subject.
register.filter("label_in_letter", label_in_letter)
# Whether a text about a request under this regime cites the GDPR's article numbers (the UK GDPR's are the same), or
# says the sentence without them.
register.filter("cites_gdpr_articles", cites_gdpr_articles)
register.filter("not_searched_reason", not_searched_reason)
register.filter("without_final_punctuation", without_final_punctuation)
register.filter("with_full_stop", with_full_stop)


@register.filter
def texts_in(item, language: str) -> dict[str, str]:
    """An inventory item's subject-facing texts in `language` (its texts_in: SourceSystem, SourceCategory, Recipient)."""
    return item.texts_in(language)


@register.filter
def name_in(item, language: str) -> str:
    """A source system's or recipient's name as a reader of `language` reads it (its translation, else its own name)."""
    return item.texts_in(language)["name"]


@register.filter
def supervisory_authority(request) -> str:
    """Where the subject of `request` may complain (handling.supervisory_authorities), named as in rejection letters."""
    return supervisory_authorities_in_words(request.regime)


@register.filter
def in_language(text, language: str) -> str:
    """Text written in `language` (a staff message's subject), marked so for a page read in another: escaped and safe,
    so a translated sentence places it ({% blocktranslate with text=...|in_language:... %}) without escaping its
    markup again."""
    return format_html('<span lang="{}">{}</span>', language, text)


@register.filter
def reference_on_one_line(reference: str) -> str:
    """A request's reference in a sentence the subject reads, in a span the style sheet keeps on one line: a phone
    would break DSR-2026-00005 at a hyphen, and "00005" alone on the next line reads as another number. Escaped and
    safe, as in_language, for a translated sentence to place."""
    return format_html('<span class="reference-inline">{}</span>', reference)
