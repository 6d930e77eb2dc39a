from django.conf import settings

from requests_app import roles
from requests_app.staff.sessions import SessionStore


def staff_role(request):
    """The signed-in staff member's role, for the navigation."""
    user = getattr(request, "user", None)
    role = roles.role_of(user) if user is not None else None
    session = getattr(request, "session", None)
    session = session if role is not None and isinstance(session, SessionStore) else None
    return {
        "staff_role": role,
        "is_dpo": role == roles.DPO,
        "reads_configuration": role in roles.CONFIGURATION_READERS,
        "records_requests": role in roles.INTAKE_ROLES,
        # The page warns before the idle session ends (WCAG 2.2.1), and offers to keep it (staff.js); near its
        # absolute end, before that end, and without the offer (sessions.SessionStore).
        "session_seconds": session.get_expiry_age() if session is not None else settings.SESSION_COOKIE_AGE,
        "session_final": session is not None and session.ends_before_idle(),
    }
