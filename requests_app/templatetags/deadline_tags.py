"""How much time is left, shown the same way wherever a request appears."""

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from requests_app import deadlines

register = template.Library()


def due_badge(request) -> str:
    """A "12 days left" / "3 days overdue" / "clock paused" label, coloured by urgency (due.css):
    due within 2 days is urgent, within 7 soon (the default reminders' days)."""
    if request.due_on is None or not request.is_open:
        return format_html('<span class="due due-none">{}</span>', "—")
    if request.clock_paused:
        return format_html('<span class="due due-none">{}</span>', _("clock paused"))
    left = deadlines.days_left(request.due_on, timezone.localdate())
    if left < 0:
        level, text = "overdue", ngettext("%(days)s day overdue", "%(days)s days overdue", -left) % {"days": -left}
    elif left == 0:
        level, text = "urgent", _("due today")
    else:
        level = "urgent" if left <= 2 else "soon" if left <= 7 else "ok"
        text = ngettext("%(days)s day left", "%(days)s days left", left) % {"days": left}
    return format_html(
        '<span class="due due-{}" title="{}">{}</span>',
        level,
        request.due_on.isoformat(),
        text,
    )


register.simple_tag(due_badge)
