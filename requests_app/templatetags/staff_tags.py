from django import template

from requests_app.models import RequestType

register = template.Library()


@register.filter
def rights_list(request) -> str:
    """The rights asked, read from the request's bitmask (no query per row)."""
    return ", ".join(
        str(label) for bit, (_, label) in enumerate(RequestType.choices) if request.rights_mask & (1 << bit)
    )
