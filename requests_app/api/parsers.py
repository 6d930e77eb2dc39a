"""Request body parsing."""

import codecs
import json

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant


class DuplicateKey(ValueError):
    """A JSON object that names a key twice: Python's decoder would silently keep the last value."""

    def __init__(self, key: str):
        shown = json.dumps(key if len(key) <= 100 else f"{key[:100]}...", ensure_ascii=False)
        super().__init__(_("duplicate key %(key)s: each key may appear only once in an object") % {"key": shown})


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook refusing a key named twice in one object (at any depth)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def loads(text: str | bytes):
    """A JSON document as the API reads it: no NaN or Infinity, no key twice in an object."""
    return json.loads(text, parse_constant=strict_constant, object_pairs_hook=unique_keys)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing (400, as any malformed JSON) what it would let through or crash on:

    - a key twice in one object, at any depth (`{"rights": ["access"], "rights": ["erasure"]}`): Python's
      decoder keeps the last, so a portal's bug would file a request other than the one it meant;
    - a body nested too deep for Python's decoder ("[[[[..." a thousand times, in 2 KB), which would end
      in a RecursionError (500).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's own parse, with the hook (its json.load takes no other arguments).
        encoding = parsers.get_encoding(parser_context or {})  # a text encoding, or a 400 of its own
        try:
            return json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=strict_constant if self.strict else None,
                object_pairs_hook=unique_keys,
            )
        except RecursionError:
            # DRF's own message, so that its catalogues translate it.
            raise ParseError(_("JSON parse error - %s") % _("the document is nested too deeply.")) from None
        except ValueError as error:  # DuplicateKey too
            raise ParseError(_("JSON parse error - %s") % error) from None
