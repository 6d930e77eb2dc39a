"""The template language of messages and letters: Django's, cut down to what writes text.

A DPO's response template is rendered for every letter of its purpose and language, long after it was
saved: whatever can fail at that moment must be refused when it is saved instead. So a letter has no
{% load %} (another library's tags), no {% include %} or {% extends %} (a file that may not exist), no
{% url %}, {% csrf_token %} or {% querystring %} (they need a page or a request) and no {% debug %}
(it prints the whole context): only the tags below, and Django's built-in filters.
"""

import datetime
import itertools

from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, TokenType
from django.utils.translation import gettext as _

LETTER_TAGS = [
    "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "now",
    "resetcycle", "spaceless", "templatetag", "verbatim", "with",
]

_letter_library = Library()
_letter_library.tags = {name: defaulttags.register.tags[name] for name in LETTER_TAGS}
_letter_library.filters = dict(defaultfilters.register.filters)

# No loaders and no libraries to load. An Engine always adds Django's own tags (with {% load %} and
# {% include %}) to those it is given: they are replaced here by the letter's.
_engine = Engine(loaders=[], libraries={})
_engine.template_builtins = [_letter_library]

# What the placeholders named on the Response templates page hold in a real letter, for the test
# render made when a template is saved.
SAMPLE_VALUES = {
    "reference": "DSR-2026-00042",
    "due_on": datetime.date(2026, 12, 29),
    "rights": "Access, Erasure",
    "reason": "The request is manifestly unfounded.",
    "fee": "25.00 EUR",
    "source": "CRM",
    "lift_on": "7 December 2026",
    "body": "What staff write for this request.",
}


def parse(source: str) -> Template:
    """`source` as a letter's template. Raises TemplateSyntaxError, for a tag a letter may not use too, and for a
    placeholder, tag or comment left open ("{{ reference"), which Django takes for text: it reached the subject."""
    _refuse_unclosed_markup(source)
    return _engine.from_string(source)


def _refuse_unclosed_markup(source: str) -> None:
    verbatim = False  # {% verbatim %} keeps its content as text: "{{" in it is meant
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            verbatim = token.contents.startswith("verbatim") or (verbatim and not token.contents.startswith("endverbatim"))
        elif token.token_type == TokenType.TEXT and not verbatim:
            at = min((token.contents.find(mark) for mark in ("{{", "{%", "{#") if mark in token.contents), default=-1)
            if at >= 0:
                line = token.lineno + token.contents.count("\n", 0, at)
                raise TemplateSyntaxError(
                    _("“%(mark)s” on line %(line)s is not closed.") % {"mark": token.contents[at : at + 2], "line": line}
                )


def render(source: str, values: dict) -> str:
    """`source` rendered with `values`, as plain text. Raises what `parse` raises, and whatever a filter
    raises (a division by zero, say)."""
    return parse(source).render(Context(values, autoescape=False)).strip()


def render_with_sample_values(source: str) -> None:
    """Render `source` as it would be in every kind of letter: by email and by post, with the clock
    running and paused, so that a branch of an {% if %} is not left untried. Raises what `render` raises."""
    for by_post, clock_paused in itertools.product([False, True], repeat=2):
        render(source, {**SAMPLE_VALUES, "by_post": by_post, "clock_paused": clock_paused})
