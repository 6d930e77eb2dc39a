"""URL converters."""

from django.urls import register_converter


class ReferenceConverter:
    """A request's reference, DSR-YYYY-NNNNN (more digits past 99,999 a year).

    Anything else is a 404 before any query: a path that is not a reference
    (a stray null character, say) never reaches the database.
    """

    regex = r"DSR-[0-9]{4}-[0-9]{5,9}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ReferenceConverter, "reference")
