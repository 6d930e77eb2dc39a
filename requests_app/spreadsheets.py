"""CSV cells a spreadsheet would run: the exports' and the suppression lists' CSV files are opened in one."""

import re

NUMBER = re.compile(r"[+-]?\d+")
# As a PostgreSQL condition on a text column's value, for CSV files the database writes itself (COPY).
FORMULA_SQL = "({column} ~ '^[-=+@\\t\\r]' AND {column} !~ '^[+-]?[0-9]+$')"


def spreadsheet_safe(value: str) -> str:
    """The value, with a leading ' when a spreadsheet opening the CSV would run it as a formula (=, +, -, @,
    tab or carriage return first, as OWASP lists; a signed whole number stays a number). Text someone typed
    (a name, a customer reference, a note in a source) could otherwise run on the reader's machine; the JSON
    files keep every value as it is."""
    if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not NUMBER.fullmatch(value):
        return "'" + value
    return value
