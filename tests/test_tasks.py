import socket
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core import mail
from django.utils import timezone

from privacy_portal.celery import app as celery_app
from requests_app import tasks
from requests_app.models import Organisation, PrivacyRequest, SentNotification
from requests_app.services.intake import request_resend_link
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
def test_the_lost_link_page_queues_one_task_whether_or_not_the_details_match(django_capture_on_commit_callbacks):
    """So that the time the page takes does not tell whether an address filed a reference."""
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request()
    for email in (request.subject_email, "someone.else@example.com"):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            request_resend_link(reference=request.reference, email=email)
        assert [callback.__qualname__ for callback in callbacks] == ["queue_after_commit.<locals>.publish"]


@pytest.mark.django_db
def test_a_resent_link_is_a_new_email(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = submit_request()
    with django_capture_on_commit_callbacks(execute=True):
        request_resend_link(reference=request.reference, email=request.subject_email)
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


@pytest.fixture
def unreachable_broker(monkeypatch):
    """A Redis URL nobody listens on: publishing fails as it does when Redis is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    # Celery reads the broker from this variable before its own settings (which a worker test may have set).
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    saved = {name: celery_app.conf[name] for name in ("broker_url", "broker_write_url", "task_always_eager", "task_publish_retry")}
    drop_pooled_connections()
    celery_app.conf.update(broker_url=url, broker_write_url=url, task_always_eager=False, task_publish_retry=False)
    yield
    monkeypatch.undo()
    celery_app.conf.update(saved)
    drop_pooled_connections()


def drop_pooled_connections():
    """Make the app pick its connections anew for the broker URL now configured (as Celery does after a fork)."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_neither_fails_nor_files_twice_an_api_request(unreachable_broker, caplog):
    """The request commits, then its task cannot be queued: the portal still gets its 201, and its retry
    with the same Idempotency-Key the same answer, not a second request. The sweeper routes it later."""
    from tests.api.conftest import client_with, key_for
    from tests.api.test_requests_api import URL, VALID

    api = client_with(key_for(Organisation.objects.create(name="Mobile Operator SA")))
    first = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, VALID, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert PrivacyRequest.objects.count() == 1
    assert "could not queue requests_app.tasks.follow_up_request" in caplog.text
    assert PrivacyRequest.objects.get().routed_at is None  # left for dispatch_unrouted_requests


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_still_shows_the_subject_their_reference(client, unreachable_broker):
    from tests.test_public_form import post_form

    response = post_form(client)
    assert response.status_code == 302
    request = PrivacyRequest.objects.get()
    assert request.reference in client.get(response.url).content.decode()  # they can ask for the link again


@pytest.fixture
def stalled_broker(monkeypatch):
    """A Redis URL whose server takes connections and never answers, as a Redis failing over, or one behind a
    firewall that dropped the connection, does. The kernel completes the handshake for a listening socket's
    backlog, so nothing needs to accept. Celery's own publish retries are left on, as in production."""
    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(16)
        url = f"redis://127.0.0.1:{stalled.getsockname()[1]}/0"
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        saved = {name: celery_app.conf[name] for name in ("broker_url", "broker_write_url", "task_always_eager")}
        drop_pooled_connections()
        celery_app.conf.update(broker_url=url, broker_write_url=url, task_always_eager=False)
        yield
        monkeypatch.undo()
        celery_app.conf.update(saved)
        drop_pooled_connections()


@pytest.mark.django_db(transaction=True)
def test_a_stalled_broker_delays_an_api_answer_but_does_not_hang_it(stalled_broker, caplog):
    """A publish used to wait for ever on a Redis that never answered: the request was filed, the portal never
    answered, and gunicorn killed the worker. The broker's socket timeouts end the wait (settings)."""
    from tests.api.conftest import client_with, key_for
    from tests.api.test_requests_api import URL, VALID

    api = client_with(key_for(Organisation.objects.create(name="Mobile Operator SA")))
    answers = []
    call = threading.Thread(target=lambda: answers.append(api.post(URL, VALID, format="json")), daemon=True)
    call.start()
    call.join(timeout=60)
    assert not call.is_alive(), "the API call still waits on the stalled broker"
    assert answers[0].status_code == 201 and PrivacyRequest.objects.count() == 1
    assert "could not queue requests_app.tasks.follow_up_request" in caplog.text


@pytest.fixture
def missing_broker_folder(monkeypatch, tmp_path):
    """The embedded defaults' filesystem broker, its folder gone (moved away, or a disk not mounted)."""
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    names = ("broker_url", "broker_write_url", "task_always_eager", "task_publish_retry", "broker_transport_options")
    saved = {name: celery_app.conf[name] for name in names}
    folder = str(tmp_path / "gone")
    drop_pooled_connections()
    celery_app.conf.update(
        broker_url="filesystem://", broker_write_url="filesystem://", task_always_eager=False, task_publish_retry=False,
        broker_transport_options={"data_folder_in": folder, "data_folder_out": folder},
    )
    yield
    monkeypatch.undo()
    celery_app.conf.update(saved)
    drop_pooled_connections()


@pytest.mark.django_db(transaction=True)
def test_a_missing_broker_folder_does_not_turn_a_filed_request_into_an_error_page(client, missing_broker_folder, caplog):
    """Kombu's filesystem transport raises the OSError itself: the subject was shown a 500 for a request that
    was filed, and sent it again."""
    from tests.test_public_form import post_form

    response = post_form(client)

    assert response.status_code == 302
    assert PrivacyRequest.objects.count() == 1
    assert "could not queue requests_app.tasks.send_verification_email" in caplog.text


def test_every_periodic_job_names_a_registered_task(settings):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    # The jobs a promise rests on: reminders, lost work found again, the nightly audit walk, retention.
    for name in (
        "sweep_deadlines", "requeue_lost_work", "requeue_dead_exports", "verify_audit_chain", "purge_closed_requests",
        "clear_expired_sessions", "purge_webhook_deliveries", "purge_sign_in_records", "remove_stale_export_work_files",
    ):
        assert f"requests_app.tasks.{name}" in scheduled
    assert scheduled <= set(celery_app.tasks)


def test_long_tasks_have_a_queue_of_their_own():
    """A verification email must not wait behind a 50-minute export."""
    long_tasks = {tasks.compile_export, tasks.run_source_action_dry_run, tasks.execute_source_action}
    for task in long_tasks:
        assert celery_app.amqp.router.route({}, task.name)["queue"].name == "long", task.name
    for task in (tasks.send_verification_email, tasks.follow_up_request, tasks.sweep_deadlines, tasks.deliver_webhook):
        assert celery_app.amqp.router.route({}, task.name)["queue"].name == "celery", task.name


@pytest.mark.django_db
def test_expired_sessions_and_what_they_hold_are_deleted(client, settings):
    """A queue search is kept in the session: an idle session must not keep it for ever."""
    from django.contrib.sessions.models import Session

    session = client.session
    session["queue_searches"] = {"abc": "ana@example.com"}
    session.save()
    Session.objects.filter(session_key=session.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    live = SessionStore()
    live["x"] = 1
    live.create()

    tasks.clear_expired_sessions()
    tasks.clear_expired_sessions()  # a second run finds nothing more to do

    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert "clear-expired-sessions" in {name for name in settings.CELERY_BEAT_SCHEDULE}
