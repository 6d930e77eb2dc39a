from django import template
from django.urls import reverse
from django.utils.html import conditional_escape, format_html

from requests_app.models import RequestType, Status

register = template.Library()


@register.filter
def rights_list(request) -> str:
    """The rights asked, read from the request's bitmask (no query per row)."""
    return ", ".join(str(RequestType(right).label) for right in request.requested_rights)


@register.simple_tag(takes_context=True)
def edit_link(context, url_name: str, pk, label) -> str:
    """`label` linked to its edit page for a DPO; plain text for the roles that only read it."""
    if not context.get("is_dpo"):
        return conditional_escape(label)
    return format_html('<a href="{}">{}</a>', reverse(url_name, args=[pk]), label)


@register.filter
def status_label(code: str) -> str:
    """A status code as staff read it ("awaiting_subject" -> "Awaiting the subject")."""
    return str(Status(code).label) if code in Status.values else code


@register.filter
def event_data(data: dict) -> str:
    """An audit event's data as "key: value · key: value" (lists joined), instead of a Python dict."""
    def shown(value):
        if isinstance(value, list):
            return ", ".join(shown(item) for item in value)
        if isinstance(value, dict):
            return ", ".join(f"{key} {shown(item)}" for key, item in value.items())
        return "—" if value is None else str(value)

    # Sorted: PostgreSQL's jsonb keeps its own key order.
    return " · ".join(f"{key.replace('_', ' ')}: {shown(value)}" for key, value in sorted((data or {}).items()))
