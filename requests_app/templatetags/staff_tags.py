from django import template

from requests_app.models import RequestType

register = template.Library()


@register.filter
def rights_list(request) -> str:
    """The rights asked, read from the request's bitmask (no query per row)."""
    return ", ".join(str(RequestType(right).label) for right in request.requested_rights)
