from django import template
from django.urls import reverse
from django.utils.html import conditional_escape, format_html

from requests_app.models import RequestType

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
