from django import template

from requests_app.staff.action_views import panel_context

register = template.Library()


@register.simple_tag(takes_context=True)
def source_actions_panel(context) -> dict:
    """The "Actions in source systems" panel's data, whichever view renders the request page:
    request_detail knows nothing of the panel, and the panel's own views pass a form that failed."""
    return panel_context(context["request"], context["r"], context.get("source_action_forms"))
