"""Checks over every template file of the product."""

import re

from django.conf import settings


def test_no_template_has_a_comment_over_several_lines():
    """Django's {# #} ends at the line's end: one over two lines is printed as text. The certificate, the evidence
    given to the subject and the supervisory authority, opened with a developer's note. Use {% comment %} there."""
    unclosed = [
        f"{path.relative_to(settings.BASE_DIR)}:{number}"
        for path in sorted((settings.BASE_DIR / "templates").rglob("*"))
        if path.is_file()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\{#(?!.*#\})", line)
    ]
    assert unclosed == []
