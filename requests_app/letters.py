"""The template language of messages and letters: Django's, cut down to what writes text.

A DPO's response template is rendered for every letter of its purpose and language, long after it was
saved: whatever can fail at that moment must be refused when it is saved instead. So a letter has no
{% load %} (another library's tags), no {% include %} or {% extends %} (a file that may not exist), no
{% url %}, {% csrf_token %} or {% querystring %} (they need a page or a request) and no {% debug %}
(it prints the whole context): only the tags below, and Django's built-in filters.
"""

import datetime
import itertools
import re
from dataclasses import dataclass

from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, TokenType
from django.utils.translation import gettext_lazy

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

# A real letter has only its purpose's values: a rejection has no fee, an acknowledgement no reason, and staff may
# write nothing. The test render is made with those left blank too, taking the branches a template has for them
# ({% if not reason %}…) as real letters do.
SAMPLE_VALUES_LEFT_BLANK = {**SAMPLE_VALUES, "reason": "", "fee": "", "source": "", "lift_on": "", "body": ""}

# Every name a letter from a DPO's template is rendered with (handling.render_letter): the values above, and the two
# an if tag tests, which render_with_sample_values tries both ways. A template naming any other prints nothing there.
# The text of a completion letter has {{ outcome }} too (place_outcome).
PLACEHOLDERS = [*SAMPLE_VALUES, "by_post", "clock_paused"]

# What {{ outcome }} prints in a completion letter, replaced after the render by the paragraphs the law requires there
# (what was done and kept, the rights refused, the recipients told, the right to complain): passed through the
# template, a filter or a tag could cut or change them. No letter, nor anything a filter makes of a letter, has it.
OUTCOME_MARK = "\x00outcome\x00"


def parse(source: str) -> Template:
    """`source` as a letter's template. Raises TemplateSyntaxError, for a tag a letter may not use too, and for a
    placeholder, tag or comment left open ("{{ reference"), which Django takes for text: it reached the subject."""
    _refuse_unclosed_markup(source)
    return _engine.from_string(source)


# Each opening of markup: the refusal when it is left open, what must close it, and the tag that prints it as text.
# Left open, it is refused rather than taken as text as Django would: "{# check with legal", or a comment over two
# lines, would be sent as written and show the subject a note meant for staff. Text meant to hold the opening
# ("Ref {#123}") can have it all the same: the refusal says how.
UNCLOSED_MARKUP = {
    "{{": (
        gettext_lazy("“%(mark)s” on line %(line)s is not closed: a placeholder must end with “%(end)s” on the same line. "
                     "To write “%(mark)s” as text, type %(as_text)s in its place."),
        "}}", "{% templatetag openvariable %}",
    ),
    "{%": (
        gettext_lazy("“%(mark)s” on line %(line)s is not closed: a tag must end with “%(end)s” on the same line. "
                     "To write “%(mark)s” as text, type %(as_text)s in its place."),
        "%}", "{% templatetag openblock %}",
    ),
    "{#": (
        # Closed ("{#123#}"), a comment is refused too, when the template is saved (refuse_comments): the same words.
        gettext_lazy("“%(mark)s” on line %(line)s begins a comment, which a letter may not have. To write “%(mark)s” as "
                     "text, type %(as_text)s in its place; a note for staff, left out of the letter, goes between "
                     "%(comment_tags)s."),
        "#}", "{% templatetag opencomment %}",
    ),
}
# What a note for staff, left out of every letter, is written with: a comment tag, which nobody types meaning text.
COMMENT_TAGS = "{% comment %} … {% endcomment %}"


def _refuse_unclosed_markup(source: str) -> None:
    verbatim = False  # {% verbatim %} keeps its content as text: "{{" in it is meant
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            verbatim = token.contents.startswith("verbatim") or (verbatim and not token.contents.startswith("endverbatim"))
        elif token.token_type == TokenType.TEXT and not verbatim:
            at = min((token.contents.find(mark) for mark in UNCLOSED_MARKUP if mark in token.contents), default=-1)
            if at >= 0:
                mark = token.contents[at : at + 2]
                line = token.lineno + token.contents.count("\n", 0, at)
                raise TemplateSyntaxError(_refusal(mark, line))


def refuse_comments(source: str) -> None:
    """Raises TemplateSyntaxError for a comment in `source`, "{#123#}": Django leaves it out of the letter, and a DPO
    who typed it meant the text ("Ticket {#123#}"). Checked when a template is saved, not when a letter is written:
    one saved before still sends as it did."""
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.COMMENT:
            raise TemplateSyntaxError(_refusal("{#", token.lineno))


def _refusal(mark: str, line: int) -> str:
    refusal, end, as_text = UNCLOSED_MARKUP[mark]
    return refusal % {"mark": mark, "line": line, "end": end, "as_text": as_text, "comment_tags": COMMENT_TAGS}


def render(source: str, values: dict) -> str:
    """`source` rendered with `values`, as plain text. Raises what `parse` raises, and whatever a filter
    raises (a division by zero, say). A name not in `values` prints nothing, as in any Django template."""
    return parse(source).render(Context(values, autoescape=False)).strip()


class _RecordingContext(Context):
    """A context that notes the names it was asked for, and those it does not hold.

    Django asks the context for the first part of every variable a render meets ({{ due_on|date:"j F" }},
    {% if by_post %}, {% for x in rights %}, a filter's argument), after {% for %} and {% with %} have pushed
    the names they bind, and {% now … as year %} set its own: what it lacks then is a name no letter has. A
    parser of the template's names would have to know where every tag binds one, and refuse a good template
    for any it missed; the render knows. Its limit: a name only in a branch no sample render takes (under
    {% if reason == "x" %}, say) is not seen."""

    def __init__(self, values: dict):
        super().__init__(values, autoescape=False)
        self.unknown: set[str] = set()
        self.asked: set[str] = set()

    def __getitem__(self, key):
        self.asked.add(key)
        try:
            return super().__getitem__(key)
        except KeyError:
            self.unknown.add(key)
            raise


@dataclass
class SampleRenders:
    texts: list[str]  # the letter by email and by post, the clock running and paused
    unknown: set[str]  # the names it uses that it is not rendered with: they would print nothing
    asked: set[str]  # every name it uses


def render_with_sample_values(source: str, *, outcome: bool = False) -> SampleRenders:
    """Render `source` as it would be in every kind of letter: by email and by post, with the clock
    running and paused, the optional values given and left blank, so that a branch of an {% if %} is not
    left untried; with {{ outcome }} as OUTCOME_MARK if `outcome` (the text of a completion letter). Raises
    what `render` raises, and refuses a comment (refuse_comments)."""
    template = parse(source)
    refuse_comments(source)
    renders = SampleRenders(texts=[], unknown=set(), asked=set())
    for sample, by_post, clock_paused in itertools.product([SAMPLE_VALUES, SAMPLE_VALUES_LEFT_BLANK], [False, True], [False, True]):
        values = {**sample, "by_post": by_post, "clock_paused": clock_paused}
        context = _RecordingContext({**values, "outcome": OUTCOME_MARK} if outcome else values)
        try:
            renders.texts.append(template.render(context))
        except Exception:
            # An unknown name as a filter's argument ({{ body|default:fallback }}) fails the render: naming it says why.
            if not context.unknown:
                raise
        renders.unknown |= context.unknown
        renders.asked |= context.asked
    return renders


def place_outcome(text: str, outcome: str) -> str:
    """`text`, a completion letter rendered with OUTCOME_MARK as {{ outcome }}, with `outcome` in its place; at its
    end when the template has no {{ outcome }} (the built-in wording, a DPO's written before it existed)."""
    if OUTCOME_MARK not in text:
        return "\n\n".join(part for part in (text, outcome) if part)
    if not outcome:
        # Nothing to say (an access answered in full): its paragraph goes, not leaving two blank lines in the letter.
        return re.sub(r"\n*" + re.escape(OUTCOME_MARK), "", text).strip()
    return text.replace(OUTCOME_MARK, outcome)
