"""Labels inside sentences, in the active language."""

from django.utils.translation import get_language


def in_sentence(label) -> str:
    """A label ("Phone number", "In progress") as it reads inside a sentence ("phone number").

    Only the first letter is lowered, and not in German, whose nouns keep their
    capital ("Telefonnummer"), nor for an acronym ("IP address").
    """
    text = str(label)
    if (get_language() or "").startswith("de") or text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def without_final_punctuation(label) -> str:
    """A label that is a question or ends in a full stop ("Which data is incorrect?"), as it reads
    before a colon: "Which data is incorrect: ..." rather than "...incorrect?: ..."."""
    return str(label).rstrip(" ?.:!")
