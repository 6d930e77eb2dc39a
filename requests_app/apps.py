from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"

    def ready(self):
        # Connects the receivers that put sign-ins refused, lockouts and sign-outs in the audit trail.
        from requests_app.staff import sign_in_trail  # noqa: F401
        # Stamps each sign-in's time in its session, which ends SESSION_ABSOLUTE_TIMEOUT_HOURS after it.
        from requests_app.staff import sessions  # noqa: F401
