"""Template context for the public pages."""

from django.conf import settings


def controller(request):
    """Who the data controller is and how to reach its data protection officer (the footer)."""
    return {
        "controller": {
            "name": settings.CONTROLLER_NAME,
            "address": settings.CONTROLLER_ADDRESS,
            "dpo_email": settings.DPO_CONTACT_EMAIL,
        }
    }
