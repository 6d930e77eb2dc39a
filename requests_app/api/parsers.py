"""Request body parsing."""

import codecs
import json
import re

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

# A \ud800-\udfff escape the decoder could not pair with its other half stays in the string as a lone surrogate
# (a pair becomes the one character it encodes).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class DuplicateKey(ValueError):
    """A JSON object that names a key twice: Python's decoder would silently keep the last value."""

    def __init__(self, key: str):
        shown = json.dumps(key if len(key) <= 100 else f"{key[:100]}...", ensure_ascii=False)
        super().__init__(_("duplicate key %(key)s: each key may appear only once in an object") % {"key": shown})


class LoneSurrogate(ValueError):
    """A string holding half of a surrogate pair, sent as its escape ("\\ud800"): no character at all. Nothing can
    encode it in UTF-8: not the answer that quotes it ('"…" is not a valid choice.'), nor PostgreSQL storing it."""

    def __init__(self, surrogate: str):
        escape = f"\\u{ord(surrogate):04x}"  # as it was sent: the character itself cannot be shown
        super().__init__(
            _("lone surrogate %(escape)s: an escape between \\ud800 and \\udfff is half of a character, valid only in a high-low pair")
            % {"escape": escape}
        )


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook refusing a key named twice in one object (at any depth)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _value in pairs:
            if key in seen:
                refuse_lone_surrogates(key)  # before the message quotes it
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def refuse_lone_surrogates(document):
    """The decoded document, unless a key or a string in it holds a lone surrogate (LoneSurrogate).

    Refused here, with every other malformed body, rather than by each field that might meet one: a choice's
    error quotes the value, and the API's answer could then not be written (a 500)."""
    pending = [document]
    while pending:  # not recursive: the decoder accepts documents nested deeper than a recursion here would
        item = pending.pop()
        if isinstance(item, str):
            if found := LONE_SURROGATE.search(item):
                raise LoneSurrogate(found.group())
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return document


def loads(text: str | bytes):
    """A JSON document as the API reads it: no NaN or Infinity, no key twice in an object, no lone surrogate."""
    return refuse_lone_surrogates(json.loads(text, parse_constant=strict_constant, object_pairs_hook=unique_keys))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing (400, as any malformed JSON) what it would let through or crash on:

    - a key twice in one object, at any depth (`{"rights": ["access"], "rights": ["erasure"]}`): Python's
      decoder keeps the last, so a portal's bug would file a request other than the one it meant;
    - a lone surrogate escape in a key or a string (`"\\ud800"`): no character, which no answer could quote;
    - a body nested too deep for Python's decoder ("[[[[..." a thousand times, in 2 KB), which would end
      in a RecursionError (500).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's own parse, with the hook (its json.load takes no other arguments), reading UTF-8 whatever charset the
        # Content-Type names. JSON is UTF-8 (RFC 8259, section 8.1), and application/json defines no charset (section
        # 11: adding one "has no effect on compliant recipients"). DRF decoded by it: a UTF-8 body a client labelled
        # "charset=iso-8859-1" filed "Liège" as "LiÃ¨ge", silently. Read as UTF-8 it is right, and a body truly in
        # another encoding is refused as malformed (400) instead of mis-read.
        try:
            return refuse_lone_surrogates(
                json.load(
                    codecs.getreader("utf-8")(stream),
                    parse_constant=strict_constant if self.strict else None,
                    object_pairs_hook=unique_keys,
                )
            )
        except RecursionError:
            # DRF's own message, so that its catalogues translate it.
            raise ParseError(_("JSON parse error - %s") % _("the document is nested too deeply.")) from None
        except ValueError as error:  # DuplicateKey and LoneSurrogate too
            raise ParseError(_("JSON parse error - %s") % error) from None
