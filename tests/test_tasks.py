import time

import pytest
from django.core import mail

from privacy_portal.celery import app as celery_app
from requests_app import tasks
from requests_app.models import SentNotification
from requests_app.services.intake import request_resend_verification
from tests.factories import submit_request


@pytest.mark.django_db
def test_verification_email_is_queued_only_when_the_submission_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit_request()
    assert len(callbacks) == 1
    assert len(mail.outbox) == 0  # nothing sent before commit

    callbacks[0]()
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_rolled_back_submission_queues_nothing(django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                submit_request()
                raise RuntimeError("boom")
    assert callbacks == []
    assert mail.outbox == []


@pytest.mark.django_db
def test_verification_task_run_twice_sends_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request()
    tasks.send_verification_email(request.id)
    tasks.send_verification_email(request.id)
    assert len(mail.outbox) == 1
    assert SentNotification.objects.filter(request=request, kind="verify_email").count() == 1


@pytest.mark.django_db
def test_a_resent_link_is_a_new_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request()
    with django_capture_on_commit_callbacks(execute=True):
        request_resend_verification(reference=request.reference, email=request.subject_email)
    tasks.send_verification_email(request.id)  # a redelivery of the re-send
    assert len(mail.outbox) == 2
    assert mail.outbox[0].body != mail.outbox[1].body


@pytest.mark.django_db
def test_confirmation_task_run_twice_sends_once(django_capture_on_commit_callbacks):
    from requests_app.services.intake import request_verify_email, verification_token

    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request()
    with django_capture_on_commit_callbacks(execute=True):
        request_verify_email(token=verification_token(request))
    tasks.send_request_confirmed_email(request.id)
    assert [m.subject.endswith("is confirmed") for m in mail.outbox] == [False, True]


@pytest.mark.django_db
def test_a_failed_send_releases_the_claim_so_the_retry_sends(monkeypatch, django_capture_on_commit_callbacks):
    from django.core.mail import EmailMultiAlternatives

    with django_capture_on_commit_callbacks(execute=False):
        request = submit_request()

    def refuse(self, fail_silently=False):
        raise OSError("mail server unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(EmailMultiAlternatives, "send", refuse)
        with pytest.raises(OSError):
            tasks.send_verification_email.run(request.id)
    assert not SentNotification.objects.filter(request=request).exists()

    tasks.send_verification_email.run(request.id)
    assert len(mail.outbox) == 1


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_sends_the_verification_email(settings):
    """The whole path: commit, the broker (Redis), a Celery worker, the email."""
    from celery.contrib.testing.worker import start_worker

    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = settings.CELERY_BROKER_URL
    with start_worker(celery_app, perform_ping_check=False, pool="threads", concurrency=1, shutdown_timeout=10):
        request = submit_request()
        deadline = time.monotonic() + 20
        while not mail.outbox and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [request.subject_email]
    assert SentNotification.objects.filter(request=request, kind="verify_email").exists()
