"""Template context for the public pages."""

from django.conf import settings


def controller_details() -> dict:
    """Who the data controller is and how to reach its data protection officer (GDPR Art. 13(1)(a)-(b)):
    the public pages' footer, the certificate and the signature of every email to a subject or a recipient."""
    return {
        "name": settings.CONTROLLER_NAME,
        "address": settings.CONTROLLER_ADDRESS,
        "dpo_email": settings.DPO_CONTACT_EMAIL,
    }


def controller(request):
    """The controller, for the public pages' footer."""
    return {"controller": controller_details()}
