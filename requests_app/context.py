"""Template context for the public pages."""

from django.conf import settings
from django.utils.translation import get_language


def controller_details(language: str) -> dict:
    """Who the data controller is and how to reach its data protection officer (GDPR Art. 13(1)(a)-(b)):
    the public pages' footer, the certificate and the signature of every email to a subject or a recipient,
    the address as `language` writes it where the deployment gives it so (CONTROLLER_ADDRESS_TRANSLATIONS)."""
    return {
        "name": settings.CONTROLLER_NAME,
        "address": settings.CONTROLLER_ADDRESS_TRANSLATIONS.get(language) or settings.CONTROLLER_ADDRESS,
        "dpo_email": settings.DPO_CONTACT_EMAIL,
    }


def controller(request):
    """The controller, for the public pages' footer, in the page's language."""
    return {"controller": controller_details(get_language())}
