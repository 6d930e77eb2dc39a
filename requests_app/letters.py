"""The template language of messages and letters: Django's, cut down to what writes text.

A DPO's response template is rendered for every letter of its purpose and language, long after it was
saved: whatever can fail at that moment must be refused when it is saved instead. So a letter has no
{% load %} (another library's tags), no {% include %} or {% extends %} (a file that may not exist), no
{% url %}, {% csrf_token %} or {% querystring %} (they need a page or a request) and no {% debug %}
(it prints the whole context): only the tags below, and Django's built-in filters.
"""

import contextvars
import datetime
import functools
import itertools
import re
from dataclasses import dataclass

from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Lexer, Node, NodeList, TokenType
from django.template.smartif import TokenBase
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy

LETTER_TAGS = [
    "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "now",
    "resetcycle", "spaceless", "templatetag", "verbatim", "with",
]

# A DPO's template is rendered for every letter of its purpose, in a web request or a task: it must not be able to
# make a letter take minutes or gigabytes (six nested loops over {{ reference }} took a minute, {{ body|ljust:"50000000" }}
# made 50 MB). Rules that make that impossible, rather than a time limit, which would refuse a letter on a busy day:
# - when a template is parsed (saved, and each time a letter is written with it): its length (LETTER_TEMPLATE_MAX_CHARS),
#   for tags at most MAX_LOOP_DEPTH deep (one inside another: forloop.parentloop), and a width given to a padding or
#   formatting filter written as a number up to MAX_WIDTH;
# - while a letter is rendered: what its filters read and make and its loops' turns count against RENDER_BUDGET
#   characters, and the letter itself may be LETTER_MAX_CHARS long; past either, the render stops (LetterTooLarge).
# A real letter is a few thousand characters: what staff write is at most TEXT_MAX_CHARS (10,000).
LETTER_TEMPLATE_MAX_CHARS = 20_000
LETTER_MAX_CHARS = 200_000
RENDER_BUDGET = 1_000_000
MAX_LOOP_DEPTH = 2
MAX_WIDTH = 100

# The filters whose numeric argument sets how wide what they print is: "%0999999d" or floatformat:"999999" too.
WIDTH_FILTERS = ["center", "floatformat", "ljust", "rjust", "stringformat"]


class LetterTooLarge(Exception):
    """A letter that would be longer than LETTER_MAX_CHARS, or take more than RENDER_BUDGET to write."""

    def __init__(self):
        super().__init__(
            gettext_lazy("the letter would be too long, or take too long to write: the template repeats or pads its text "
                         "too much.")
        )


# The budget of the render under way in this thread (_LetterTemplate.render): characters left.
_budget_left = contextvars.ContextVar("letter_budget_left")


def _spend(characters: int) -> None:
    left = _budget_left.get() - characters
    _budget_left.set(left)
    if left < 0:
        raise LetterTooLarge()


def _size(value) -> int:
    """How many characters `value` counts for: a text's or a list's length; a date, a number or a flag, one."""
    return len(value) if isinstance(value, (str, list, tuple)) else 1


def _counted(filter_function):
    """`filter_function`, counting what it reads and makes against the render's budget. Joining text with a separator
    is counted before it is made: a separator as long as the text, {{ body|join:body }}, squares it."""

    @functools.wraps(filter_function)  # keeps the flags Django reads (is_safe, needs_autoescape) and the signature
    def counted(value, *args, **kwargs):
        if filter_function is defaultfilters.join and args:
            _spend(_size(value) * len(str(args[0])))
        made = filter_function(value, *args, **kwargs)
        _spend(_size(value) + _size(made))
        return made

    return counted


class _LoopTurn(Node):
    """The body of a for tag: each turn counts against the render's budget, ten characters for each of its nodes
    besides what it prints, so that a loop printing nothing, or testing a long text at each turn, still ends soon."""

    child_nodelists = ("nodelist",)

    def __init__(self, nodelist: NodeList):
        self.nodelist = nodelist
        self.cost = 10 * (1 + len(nodelist.get_nodes_by_type(Node)))

    def render(self, context):
        text = self.nodelist.render(context)
        _spend(self.cost + len(text))
        return text


def _counted_for(parser, token):
    """Django's for tag, its turns counted (_LoopTurn)."""
    node = defaulttags.do_for(parser, token)
    turn = _LoopTurn(node.nodelist_loop)
    turn.token, turn.origin = token, parser.origin
    node.nodelist_loop = NodeList([turn])
    return node


_letter_library = Library()
_letter_library.tags = {name: defaulttags.register.tags[name] for name in LETTER_TAGS} | {"for": _counted_for}
_letter_library.filters = {name: _counted(function) for name, function in defaultfilters.register.filters.items()}
_width_filters = {_letter_library.filters[name] for name in WIDTH_FILTERS}

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

# Every name a letter from a DPO's template is rendered with (handling.render_letter): the values above, and the three
# an if tag tests, which render_with_sample_values tries both ways (to_agent: an agent filed the request for the
# subject, and the letter goes to them). A template naming any other prints nothing there. The text of a completion
# letter has {{ outcome }} too (place_outcome).
PLACEHOLDERS = [*SAMPLE_VALUES, "by_post", "clock_paused", "to_agent"]

# What {{ outcome }} prints in a completion letter, replaced after the render by the paragraphs the law requires there
# (what was done and kept, the rights refused, the recipients told, the right to complain): passed through the
# template, a filter or a tag could cut or change them. No letter, nor anything a filter makes of a letter, has it.
OUTCOME_MARK = "\x00outcome\x00"


class _LetterTemplate(Template):
    """A letter's template, whose every render has its budget (RENDER_BUDGET) and its longest letter (LETTER_MAX_CHARS)."""

    def render(self, context):
        budget = _budget_left.set(RENDER_BUDGET)
        try:
            text = super().render(context)
        finally:
            _budget_left.reset(budget)
        if len(text) > LETTER_MAX_CHARS:
            raise LetterTooLarge()
        return text


def parse(source: str) -> Template:
    """`source` as a letter's template. Raises TemplateSyntaxError, for a tag a letter may not use too, and for a
    placeholder, tag or comment left open ("{{ reference"), which Django takes for text: it reached the subject; and
    for what could make a letter without end (_refuse_blow_ups)."""
    if len(source) > LETTER_TEMPLATE_MAX_CHARS:
        raise TemplateSyntaxError(
            gettext_lazy("A template may be at most %(max)s characters long.")
            % {"max": number_format(LETTER_TEMPLATE_MAX_CHARS, force_grouping=True)}
        )
    _refuse_unclosed_markup(source)
    template = _LetterTemplate(source, engine=_engine)
    _refuse_blow_ups(template)
    return template


def _refuse_blow_ups(template: Template) -> None:
    """Refuse for tags deeper than MAX_LOOP_DEPTH, whose turns multiply, and a width given to a padding or formatting
    filter other than as a number up to MAX_WIDTH (a placeholder's value may be any number)."""
    for node in template.nodelist.get_nodes_by_type(Node):
        if isinstance(node, defaulttags.ForNode) and 1 + _loop_depth(node.nodelist_loop) > MAX_LOOP_DEPTH:
            raise TemplateSyntaxError(
                gettext_lazy("The for tag on line %(line)s has for tags inside it more than one deep: a letter may have "
                             "a for tag inside another, no deeper.") % {"line": node.token.lineno}
            )
        for expression in _filter_expressions(vars(node).values()):
            for function, arguments in expression.filters:
                if function in _width_filters and not all(
                    not is_variable and all(int(number) <= MAX_WIDTH for number in re.findall(r"\d+", str(argument)))
                    for is_variable, argument in arguments
                ):
                    raise TemplateSyntaxError(
                        gettext_lazy("The filter “%(filter)s” on line %(line)s may be given a width of at most %(max)s, "
                                     "written as a number.")
                        % {"filter": function.__name__, "line": node.token.lineno, "max": MAX_WIDTH}
                    )


def _loop_depth(nodelist: NodeList) -> int:
    """How deep the for tags in `nodelist` go: 0 without any, 1 without one inside another."""
    return max((1 + _loop_depth(node.nodelist_loop) for node in nodelist.get_nodes_by_type(defaulttags.ForNode)), default=0)


def _filter_expressions(values):
    """The filter expressions among a node's attributes: a placeholder's, a tag's arguments, an if tag's conditions."""
    for value in values:
        if isinstance(value, FilterExpression):
            yield value
        elif isinstance(value, TokenBase):  # an if tag's condition, or a part of it
            yield from _filter_expressions(vars(value).values())
        elif isinstance(value, dict):
            yield from _filter_expressions(value.values())
        elif isinstance(value, (list, tuple)) and not isinstance(value, NodeList):  # nodes are looked at one by one
            yield from _filter_expressions(value)


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
    texts: list[str]  # the letter by email and by post, the clock running and paused, to the subject and to an agent
    unknown: set[str]  # the names it uses that it is not rendered with: they would print nothing
    asked: set[str]  # every name it uses


def render_with_sample_values(source: str, *, outcome: bool = False) -> SampleRenders:
    """Render `source` as it would be in every kind of letter: by email and by post, with the clock
    running and paused, to the subject and to an agent, the optional values given and left blank, so that a branch of an {% if %} is not
    left untried; with {{ outcome }} as OUTCOME_MARK if `outcome` (the text of a completion letter). Raises
    what `render` raises, and refuses a comment (refuse_comments)."""
    template = parse(source)
    refuse_comments(source)
    renders = SampleRenders(texts=[], unknown=set(), asked=set())
    for sample, by_post, clock_paused, to_agent in itertools.product(
        [SAMPLE_VALUES, SAMPLE_VALUES_LEFT_BLANK], [False, True], [False, True], [False, True]
    ):
        values = {**sample, "by_post": by_post, "clock_paused": clock_paused, "to_agent": to_agent}
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
