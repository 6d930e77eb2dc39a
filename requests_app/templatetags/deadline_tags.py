"""How much time is left, shown the same way wherever a request appears."""

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app import deadlines

register = template.Library()

# Colour by urgency: due within 2 days is urgent, within 7 soon (the default reminders' days).
COLOURS = {"overdue": "#b00020", "urgent": "#c05600", "soon": "#8a6d00", "ok": "#1e7b34", "none": "#5b6775"}


def due_badge(request) -> str:
    """A coloured "12 days left" / "3 days overdue" / "clock paused" label."""
    if request.due_on is None or not request.is_open:
        return format_html('<span style="color:{}">{}</span>', COLOURS["none"], "—")
    if request.clock_paused:
        return format_html('<span style="color:{}">{}</span>', COLOURS["none"], _("clock paused"))
    left = deadlines.days_left(request.due_on, timezone.localdate())
    if left < 0:
        level, text = "overdue", ngettext("%(days)s day overdue", "%(days)s days overdue", -left) % {"days": -left}
    elif left == 0:
        level, text = "urgent", _("due today")
    else:
        level = "urgent" if left <= 2 else "soon" if left <= 7 else "ok"
        text = ngettext("%(days)s day left", "%(days)s days left", left) % {"days": left}
    return format_html(
        '<span class="due due-{}" style="color:{};font-weight:600" title="{}">{}</span>',
        level,
        COLOURS[level],
        request.due_on.isoformat(),
        text,
    )


register.simple_tag(due_badge)
