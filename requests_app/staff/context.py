from django.conf import settings

from requests_app import roles


def staff_role(request):
    """The signed-in staff member's role, for the navigation."""
    user = getattr(request, "user", None)
    role = roles.role_of(user) if user is not None else None
    return {
        "staff_role": role,
        "is_dpo": role == roles.DPO,
        "reads_configuration": role in roles.CONFIGURATION_READERS,
        "records_requests": role in roles.INTAKE_ROLES,
        # The page warns before the idle session ends (WCAG 2.2.1), and offers to keep it (staff.js).
        "session_seconds": settings.SESSION_COOKIE_AGE,
    }
