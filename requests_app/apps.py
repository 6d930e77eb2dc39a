from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"

    def ready(self):
        # Connects the receivers that put sign-ins refused, lockouts and sign-outs in the audit trail.
        from requests_app.staff import sign_in_trail  # noqa: F401
