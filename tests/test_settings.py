"""Production mode, checked in a fresh interpreter as a deployment would start."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# What only a deployment knows; production refuses to start without each (see DEPLOYMENT_VALUES below).
DEPLOYMENT = {
    "SITE_URL": "https://privacy.example.com",
    "EMAIL_HOST": "smtp.example.com",
    "DEFAULT_FROM_EMAIL": "Privacy Office <privacy@example.com>",
    "DPO_EMAIL": "dpo@example.com",
    "CONTROLLER_NAME": "Example Carrier SA",
    "CONTROLLER_ADDRESS": "Rue de l'Exemple 1, 1000 Brussels",
    "DATABASE_URL": "postgres://privacy@db.example.com:5432/privacy_portal",
    "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
    "CACHE_URL": "redis://redis.example.com:6379/1",
}
DEPLOYMENT_VALUES = list(DEPLOYMENT)
# A production start with its secrets, for run_manage.
PRODUCTION = {
    "PRODUCTION": "true",
    "SECRET_KEY": "a-long-random-production-secret-" + "x9Q2" * 10,
    "ALLOWED_HOSTS": "privacy.example.com",
    "ANONYMISATION_KEY": "a-long-random-anonymisation-key-" + "p3W8" * 10,
}


def run_manage(*args, **env):
    """manage.py in a fresh interpreter; in production mode with the deployment's values unless `env` overrides them."""
    set_by_test = ("SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "ANONYMISATION_KEY", *DEPLOYMENT_VALUES)
    clean_env = {k: v for k, v in os.environ.items() if k not in set_by_test}
    deployment = DEPLOYMENT if env.get("PRODUCTION") == "true" else {}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean_env, "DJANGO_SETTINGS_MODULE": "privacy_portal.settings", **deployment, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_HOSTS": "privacy.example.com"}, "SECRET_KEY"),
        ({"SECRET_KEY": PRODUCTION["SECRET_KEY"]}, "ALLOWED_HOSTS"),
        ({"SECRET_KEY": PRODUCTION["SECRET_KEY"], "ALLOWED_HOSTS": "x.example", "DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": PRODUCTION["SECRET_KEY"], "ALLOWED_HOSTS": "x.example"}, "ANONYMISATION_KEY"),
    ],
)
def test_production_refuses_to_start_without_its_secrets(env, message):
    result = run_manage("check", PRODUCTION="true", **env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(("name", "minimum_length"), [("SECRET_KEY", 50), ("ANONYMISATION_KEY", 32)])
@pytest.mark.parametrize("weak_key", ["x", "abc", "s3cret-" * 3, "ab" * 40])
def test_production_refuses_to_start_with_a_weak_key(name, minimum_length, weak_key):
    """Django's own rule for SECRET_KEY (50 characters, 5 different), and one as strict for the anonymisation key but
    for its length: a weak one would let whoever holds erased data test guesses (email addresses, phone numbers)
    against its pseudonyms."""
    result = run_manage("check", **{**PRODUCTION, name: weak_key})
    assert result.returncode != 0
    assert f"{name} must be at least {minimum_length} characters long, with at least 5 different ones, in production" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr


def test_production_takes_an_anonymisation_key_of_256_bits_in_base64():
    """`openssl rand -base64 32`: 44 characters. A key in use cannot be changed without changing every pseudonym, so a
    strong key written that way must not stop the start for being shorter than SECRET_KEY's 50."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    assert len(key) == 44
    assert run_manage("check", **{**PRODUCTION, "ANONYMISATION_KEY": key}).returncode == 0


def test_development_takes_any_key():
    assert run_manage("check", SECRET_KEY="x", ANONYMISATION_KEY="abc").returncode == 0


@pytest.mark.parametrize("name", DEPLOYMENT_VALUES)
def test_production_refuses_to_start_without_the_deployments_own_values(name):
    result = run_manage(
        "check", PRODUCTION="true", SECRET_KEY=PRODUCTION["SECRET_KEY"], ALLOWED_HOSTS="x.example", ANONYMISATION_KEY=PRODUCTION["ANONYMISATION_KEY"], **{name: ""}
    )
    assert result.returncode != 0
    assert f"{name} must be set in production" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "sqlite:////tmp/x.sqlite3"}, "DATABASE_URL must start with postgres:// or postgresql://"),
        ({"CELERY_BROKER_URL": "filesystem://"}, "CELERY_BROKER_URL must start with redis:// or rediss://"),
        ({"CACHE_URL": "locmem://"}, "CACHE_URL must start with redis:// or rediss:// or unix://"),
        ({"SMS_BACKEND": "requests_app.sms.FileBackend"}, "the file backend keeps package passwords on disk"),
    ],
)
def test_production_refuses_the_development_choices_set_by_hand(env, message):
    """Named, they are as unnoticed as unset: a file cache counts limits per machine, locmem per process."""
    result = run_manage("check", **PRODUCTION, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_takes_redis_over_a_socket_or_through_sentinel():
    accepted = run_manage(
        "check", **PRODUCTION, CELERY_BROKER_URL="sentinel://redis-a.example.com:26379", CACHE_URL="unix:///run/redis.sock"
    )
    assert accepted.returncode == 0, accepted.stderr


def test_production_cookies_go_over_https_only():
    show = ("shell", "--no-imports", "-c", "from django.conf import settings as s; print(s.LANGUAGE_COOKIE_SECURE, s.LANGUAGE_COOKIE_SAMESITE)")
    assert run_manage(*show, **PRODUCTION).stdout.strip() == "True Lax"


def test_behind_a_proxy_the_client_address_header_is_required():
    refused = run_manage("check", SECURE_PROXY_SSL_HEADER="true", **PRODUCTION)
    assert refused.returncode != 0 and "set RATELIMIT_IP_META_KEY" in refused.stderr
    accepted = run_manage("check", SECURE_PROXY_SSL_HEADER="true", RATELIMIT_IP_META_KEY="HTTP_X_REAL_IP", **PRODUCTION)
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize("count", ["0", "two"])
def test_a_proxy_count_that_is_not_a_positive_number_is_refused(count):
    refused = run_manage("check", TRUSTED_PROXY_COUNT=count)
    assert refused.returncode != 0 and "TRUSTED_PROXY_COUNT must be" in refused.stderr


def test_a_page_size_limit_that_would_fail_every_http_source_is_refused():
    refused = run_manage("check", HTTP_SOURCE_MAX_PAGE_BYTES="0")
    assert refused.returncode != 0 and "HTTP_SOURCE_MAX_PAGE_BYTES must be at least 65536" in refused.stderr


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"HTTP_SOURCE_RETRY_DELAYS": "1,-2"}, "HTTP_SOURCE_RETRY_DELAYS and HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS must not be negative"),
        ({"HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS": "-1"}, "must not be negative"),
        ({"HTTP_SOURCE_RETRY_DELAYS": "1,2s"}, "HTTP_SOURCE_RETRY_DELAYS must be comma-separated whole numbers"),
        ({"HTTP_SOURCE_RETRY_DELAYS": ""}, None),  # one attempt only
    ],
)
def test_the_waits_before_an_http_source_is_asked_again_are_checked_at_start(env, refusal):
    result = run_manage("check", **env)
    if refusal is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and refusal in result.stderr


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"SQL_SOURCE_RETRY_DELAYS": "1,-2"}, "SQL_SOURCE_RETRY_DELAYS must not be negative"),
        ({"SQL_SOURCE_RETRY_DELAYS": "1,2s"}, "SQL_SOURCE_RETRY_DELAYS must be comma-separated whole numbers"),
        ({"SQL_SOURCE_RETRY_DELAYS": ""}, None),  # one attempt only
    ],
)
def test_the_waits_before_a_sql_source_is_tried_again_are_checked_at_start(env, refusal):
    result = run_manage("check", **env)
    if refusal is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and refusal in result.stderr


def test_a_bound_on_lookups_that_would_stop_every_webhook_is_refused():
    refused = run_manage("check", WEBHOOK_MAX_PENDING_LOOKUPS="0")
    assert refused.returncode != 0 and "WEBHOOK_MAX_PENDING_LOOKUPS must be 1 or more" in refused.stderr


def test_a_proxy_count_needs_the_header_it_counts_in():
    refused = run_manage("check", TRUSTED_PROXY_COUNT="2")
    assert refused.returncode != 0 and "set RATELIMIT_IP_META_KEY too" in refused.stderr
    assert run_manage("check", TRUSTED_PROXY_COUNT="2", RATELIMIT_IP_META_KEY="HTTP_X_FORWARDED_FOR").returncode == 0


@pytest.mark.parametrize("site_url", ["http://privacy.example.com", "https://", "  "])
def test_production_links_go_to_an_https_address(site_url):
    result = run_manage(
        "check", PRODUCTION="true", SECRET_KEY=PRODUCTION["SECRET_KEY"], ALLOWED_HOSTS="x.example", ANONYMISATION_KEY=PRODUCTION["ANONYMISATION_KEY"],
        SITE_URL=site_url,
    )
    assert result.returncode != 0
    assert "SITE_URL must be" in result.stderr


def test_check_deploy_is_clean_in_production():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secrets_can_come_from_files(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-" + "z" * 50 + "\n")
    result = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)",
        PRODUCTION="true", SECRET_KEY_FILE=str(secret_file), ALLOWED_HOSTS="x.example", ANONYMISATION_KEY=PRODUCTION["ANONYMISATION_KEY"],
    )
    assert result.stdout.strip().splitlines()[-1] == "from-a-file-" + "z" * 50


def test_a_secret_file_that_cannot_be_read_is_a_clear_configuration_error(tmp_path):
    result = run_manage("check", **{**PRODUCTION, "SECRET_KEY": "", "SECRET_KEY_FILE": str(tmp_path / "missing")})
    assert result.returncode != 0
    assert f"SECRET_KEY_FILE names {tmp_path / 'missing'}, which cannot be read: No such file or directory" in result.stderr


def test_redis_redelivers_a_task_only_after_the_longest_task_could_have_run(settings):
    """A message redelivered while its task still runs would run a long erasure twice at once."""
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.SOURCE_ACTION_TIME_LIMIT
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.EXPORT_TASK_TIME_LIMIT

    result = run_manage(
        "check", PRODUCTION="true", SECRET_KEY=PRODUCTION["SECRET_KEY"], ALLOWED_HOSTS="x.example", ANONYMISATION_KEY=PRODUCTION["ANONYMISATION_KEY"],
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0", CELERY_VISIBILITY_TIMEOUT="3600",
    )
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT (3600 s) must exceed the longest task time limit (7200 s)" in result.stderr


THREE_BEATS = "EXPORT_HEARTBEAT_STALE_SECONDS ({stale} s) must be at least three heartbeats"


@pytest.mark.parametrize(
    ("interval", "stale", "refusal"),
    [
        ("30", "180", None),
        ("30", "90", None),
        ("30", "89", THREE_BEATS),
        ("60", "120", THREE_BEATS),
        ("0", "180", "EXPORT_HEARTBEAT_INTERVAL_SECONDS must be at least 1"),
    ],
)
def test_an_export_heartbeat_is_stale_only_after_several_missed_beats(interval, stale, refusal):
    """A stale window of one or two beats would let a live export that missed one be taken over."""
    result = run_manage("check", EXPORT_HEARTBEAT_INTERVAL_SECONDS=interval, EXPORT_HEARTBEAT_STALE_SECONDS=stale)
    if refusal is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert refusal.format(stale=stale) in result.stderr


@pytest.mark.parametrize(
    ("interval", "stale", "refusal"),
    [
        ("30", "90", None),
        ("30", "89", "SOURCE_ACTION_HEARTBEAT_STALE_SECONDS (89 s) must be at least three heartbeats"),
        ("0", "180", "SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS must be at least 1"),
    ],
)
def test_a_source_action_heartbeat_is_stale_only_after_several_missed_beats(interval, stale, refusal):
    """The same rule for a dry run or an execution: a live one that missed a beat is never taken over."""
    result = run_manage(
        "check", SOURCE_ACTION_HEARTBEAT_INTERVAL_SECONDS=interval, SOURCE_ACTION_HEARTBEAT_STALE_SECONDS=stale
    )
    if refusal is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert refusal in result.stderr


def test_a_malformed_number_is_refused():
    result = run_manage("check", ATTACHMENT_MAX_BYTES="ten megabytes")
    assert result.returncode != 0
    assert "ATTACHMENT_MAX_BYTES must be a whole number" in result.stderr


def test_a_negative_notice_before_lifting_a_restriction_is_refused():
    result = run_manage("check", RESTRICTION_LIFT_NOTICE_DAYS="-1")
    assert result.returncode != 0
    assert "RESTRICTION_LIFT_NOTICE_DAYS must be 0 or more" in result.stderr


@pytest.mark.parametrize(("value", "accepted"), [("1", True), ("60", True), ("0", False), ("600", False)])
def test_a_webhook_attempt_must_end_well_before_its_tasks_time_limit(value, accepted):
    result = run_manage("check", WEBHOOK_TIMEOUT_SECONDS=value)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "WEBHOOK_TIMEOUT_SECONDS must be from 1 to 60" in result.stderr


@pytest.mark.parametrize(("value", "accepted"), [("10/h", True), ("1000000/s", True), ("120/min", True), ("10 per hour", False), ("10/fortnight", False)])
def test_a_malformed_rate_limit_is_refused_at_start(value, accepted):
    result = run_manage("check", API_RATE_LIMIT=value)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "API_RATE_LIMIT must be a count per second, minute, hour or day" in result.stderr


def test_time_zone_is_brussels_and_aware(settings):
    assert settings.TIME_ZONE == "Europe/Brussels" and settings.USE_TZ


def test_production_texts_nothing_unless_a_gateway_is_configured():
    """The development file backend would keep package passwords on disk."""
    show = ("shell", "--no-imports", "-c", "from django.conf import settings; print(repr(settings.SMS_BACKEND))")
    assert run_manage(*show, **PRODUCTION).stdout.strip() == "''"
    assert run_manage(*show, **PRODUCTION, SMS_BACKEND="gateway.Backend").stdout.strip() == "'gateway.Backend'"
    assert run_manage(*show).stdout.strip() == "'requests_app.sms.FileBackend'"


def test_a_deployments_address_is_given_in_the_other_languages_it_names_never_in_the_development_defaults():
    show = ("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.CONTROLLER_ADDRESS_TRANSLATIONS)")
    given = run_manage(*show, **PRODUCTION, CONTROLLER_ADDRESS_NL="Voorbeeldstraat 1, 1000 Brussel").stdout.strip()
    assert given == "{'fr': '', 'nl': 'Voorbeeldstraat 1, 1000 Brussel', 'de': ''}"
    assert "Bruxelles, Belgique" in run_manage(*show).stdout  # the development default's own


def test_production_mails_through_the_backend_that_logs_partly_refused_emails():
    show = ("shell", "--no-imports", "-c", "from django.conf import settings; print(settings.EMAIL_BACKEND)")
    assert run_manage(*show, **PRODUCTION).stdout.strip() == "privacy_portal.mail.EmailBackend"


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"WEBHOOK_DELIVERY_LOG_DAYS": "3"}, None),
        ({"WEBHOOK_DELIVERY_LOG_DAYS": "2"}, "WEBHOOK_DELIVERY_LOG_DAYS must be at least 3 (twice WEBHOOK_RETRY_HOURS and a day)"),
        ({"WEBHOOK_DELIVERY_LOG_DAYS": "6", "WEBHOOK_RETRY_HOURS": "72"}, "WEBHOOK_DELIVERY_LOG_DAYS must be at least 7"),
        ({"LOGIN_ATTEMPT_LOG_DAYS": "1"}, None),
        ({"LOGIN_ATTEMPT_LOG_DAYS": "0"}, "LOGIN_ATTEMPT_LOG_DAYS must be at least LOGIN_LOCKOUT_MINUTES"),
        ({"LOGIN_ATTEMPT_LOG_DAYS": "1", "LOGIN_LOCKOUT_MINUTES": "1441"}, "LOGIN_ATTEMPT_LOG_DAYS must be at least"),
    ],
)
def test_a_retention_never_deletes_what_a_running_safeguard_still_counts(env, refusal):
    """Purged sooner, the failures a lockout counts would end it early, and an endpoint failing for good would be
    switched off for want of the event it took in the meantime."""
    result = run_manage("check", **env)
    if refusal is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert refusal in result.stderr


def test_a_periodic_run_not_started_in_time_is_dropped():
    """After an outage the worker runs each periodic job a few times, not once per missed period; a
    backlog of under 30 minutes never drops every run."""
    from celery.schedules import crontab
    from django.conf import settings

    schedule = settings.CELERY_BEAT_SCHEDULE
    expires = {name: entry["options"]["expires"] for name, entry in schedule.items()}
    assert expires["dispatch-due-webhooks"] == 30 * 60  # every minute: at least half an hour
    assert expires["delete-expired-exports"] == 60 * 60  # hourly: its period
    assert expires["purge-closed-requests"] == 6 * 3600  # daily: 6 hours
    for name, entry in schedule.items():
        if isinstance(entry["schedule"], crontab):  # the 6 hours suit daily jobs only
            assert len(entry["schedule"].hour) == 1 and len(entry["schedule"].minute) == 1, name


def test_at_debug_level_sql_parameters_and_source_urls_are_still_not_logged():
    """LOG_LEVEL=DEBUG (chasing a bug in production) must not write the subject's data: the SQL
    logger prints statements with their parameters, urllib3 every URL asked (an email in its path)."""
    result = run_manage(
        "shell", "-c",
        "import logging; print([logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in "
        "('django.db.backends', 'urllib3.connectionpool', 'requests_app')])",
        LOG_LEVEL="DEBUG",
    )
    assert result.stdout.strip().splitlines()[-1] == "[False, False, True]", result.stderr


def test_urllib3s_warnings_which_name_the_url_asked_are_not_logged():
    """urllib3 warns with the URL it asked when a source answers with a malformed header ("Failed to parse headers
    (url=…/customers/jane.doe%40example.com/records)"): the connectors log what failed themselves, without it."""
    result = run_manage(
        "shell", "-c", "import logging; print(logging.getLogger('urllib3.connection').isEnabledFor(logging.WARNING))"
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_a_worker_logs_through_the_filter_that_blanks_secret_links():
    """Celery's own logging set-up, which a worker and beat make at start-up, would replace the root logger's handler
    with one without the filter: the process that writes the subject's links into emails."""
    result = run_manage(
        "shell", "-c",
        "import logging; from privacy_portal.celery import app; from privacy_portal.logging import RedactSecretLinks; "
        "app.log.setup_logging_subsystem(); handlers = logging.getLogger().handlers; "
        "print(len(handlers), all(any(isinstance(f, RedactSecretLinks) for f in h.filters) for h in handlers))",
    )
    assert result.stdout.strip().splitlines()[-1] == "1 True", result.stderr
