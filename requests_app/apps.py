from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    # The admin's heading for the app's models (else "REQUESTS_APP").
    verbose_name = _("Privacy requests")

    def ready(self):
        # Connects the receivers that put sign-ins refused, lockouts and sign-outs in the audit trail.
        from requests_app.staff import sign_in_trail  # noqa: F401
        # Stamps each sign-in's time in its session, which ends SESSION_ABSOLUTE_TIMEOUT_HOURS after it.
        from requests_app.staff import sessions  # noqa: F401
