"""The Celery app. Settings come from Django's settings (the CELERY_ prefix)."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacy_portal.settings")

app = Celery("privacy_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def log_as_django_does(**kwargs):
    """The worker and beat log through Django's LOGGING (its level is LOG_LEVEL, not --loglevel). Celery's own set-up
    would replace the root logger's handler with one without the filter that blanks the secret of a subject's link,
    in the very process that writes those links into emails."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
