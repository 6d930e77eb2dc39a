"""Helpers for tests that run real `celery worker` processes against PostgreSQL and Redis.

Used by the tests that SIGKILL a worker mid-task and check that the redelivered
message is carried out once (tests/exports/test_worker_kill.py,
tests/actions/test_action_worker_kill.py), and by the one whose task Redis loses
before a worker takes it (tests/actions/test_action_lost_task.py).
"""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from django.conf import settings as django_settings
from kombu import pools as kombu_pools

from privacy_portal.celery import app as celery_app


def kill_test_broker_url(variable: str, default_db: int) -> str:
    """The Redis URL of a worker-kill test's own broker database: `default_db` on 127.0.0.1:6379, or the
    database number in the environment variable `variable`. Each test flushes its database, so two
    runs of the suite side by side (two clones, say) must give their kill tests different ones."""
    return f"redis://127.0.0.1:6379/{int(os.environ.get(variable) or default_db)}"


def db_params() -> dict:
    """Host, port, user and password of the default database, for psycopg2 and URLs."""
    default = django_settings.DATABASES["default"]
    return {
        "host": default.get("HOST") or "127.0.0.1",
        "port": int(default.get("PORT") or 5432),
        "user": default.get("USER") or "postgres",
        "password": default.get("PASSWORD") or "",
    }


def postgres_url(name: str) -> str:
    """A postgres:// URL for database `name` on the default database's server."""
    params = db_params()
    auth = quote(params["user"], safe="") + (f":{quote(params['password'], safe='')}" if params["password"] else "")
    return f"postgres://{auth}@{params['host']}:{params['port']}/{name}"


def source_connect(name: str):
    """A psycopg2 connection to database `name` on the default database's server."""
    params = db_params()
    return psycopg2.connect(dbname=name, **{k: v for k, v in params.items() if v != ""})


def admin_sql(sql: str) -> None:
    """Run one statement in the `postgres` database, outside a transaction (CREATE/DROP DATABASE)."""
    admin = source_connect("postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql)
    finally:
        admin.close()


def worker_env(*, test_db: str, broker_url: str, visibility_timeout: int, tmp_path: Path, **extra) -> dict:
    """The environment for a worker process: the test database, the given broker, tasks not eager.

    `extra` adds or overrides variables (values are turned into strings). The broker read/write
    URLs and the eager-file switch are dropped so that nothing inherited sends the worker elsewhere.
    """
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url(test_db),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "VAR_DIR": str(tmp_path / "worker-var"),
        "PYTHONUNBUFFERED": "1",
        **{name: str(value) for name, value in extra.items()},
    }
    for name in ("CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL", "CELERY_TASK_ALWAYS_EAGER_FILE"):
        env.pop(name, None)
    return env


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    """Start a solo-pool `celery worker` process with `env`, its output going to `log_path`."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps its own copy of the file
    try:
        return subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "privacy_portal", "worker",
                "--pool=solo", "--concurrency=1", "-Q", "celery,long",
                "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "info",
                "-n", f"kill-test-{log_path.stem}@%h",
            ],
            cwd=str(django_settings.BASE_DIR),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def stop_worker(worker: subprocess.Popen | None) -> None:
    """Stop a worker that is still running: warm shutdown, then SIGKILL after 10 s."""
    if worker is None or worker.poll() is not None:
        return
    worker.terminate()  # warm shutdown: the worker is idle by now
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=10)


def wait_for(predicate, *, timeout: float, what: str, workers=(), logs=()):
    """Poll `predicate` until it returns something truthy, and return that.

    Fails the test, with the tails of `logs`, on timeout or as soon as one of `workers` exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for worker in workers:
            if worker.poll() is not None:
                pytest.fail(f"worker exited ({worker.returncode}) while waiting for {what}\n{log_tails(logs)}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{log_tails(logs)}")


def log_tails(logs) -> str:
    """The last 3000 characters of each worker log, for a failure message."""
    parts = []
    for path in logs:
        text = Path(path).read_text(errors="replace") if Path(path).exists() else "(no log)"
        parts.append(f"--- {Path(path).name} (last 3000 chars) ---\n{text[-3000:]}")
    return "\n".join(parts)


def reset_producer_pool() -> None:
    """Forget the in-process app's cached broker connection pools, so a publish uses broker_url as set now."""
    celery_app._pool = None
    if "amqp" in celery_app.__dict__:
        celery_app.amqp._producer_pool = None


@contextmanager
def publishing_to(broker_url: str, monkeypatch):
    """Within the block, the in-process app publishes tasks to `broker_url` instead of running them eagerly.

    Afterwards task_always_eager and broker_url are restored, the connections opened to the broker
    closed and the producer pool reset. The environment variables are set through `monkeypatch`,
    which restores them when the test ends.
    """
    saved_conf = {key: celery_app.conf[key] for key in ("task_always_eager", "broker_url")}
    try:
        celery_app.conf.task_always_eager = False
        celery_app.conf.broker_url = broker_url
        # Celery prefers the environment's CELERY_BROKER_URL to its configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
        monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
        reset_producer_pool()
        assert celery_app.conf.broker_write_url == broker_url
        yield
    finally:
        celery_app.conf.update(saved_conf)
        kombu_pools.reset()  # closes the connections to the broker opened in the block
        reset_producer_pool()


class Stopwatch:
    """Seconds from the start of a test to each marked step, printed at its end to show where the time goes."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.laps: dict[str, float] = {}

    def mark(self, label: str) -> None:
        self.laps[label] = time.monotonic() - self.started

    def __str__(self) -> str:
        return ", ".join(f"{label} {seconds:.1f}" for label, seconds in self.laps.items())
