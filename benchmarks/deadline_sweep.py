"""Benchmark the periodic deadline sweep on PostgreSQL.

Seeds N open requests (default 1,000,000) in a benchmark database, then
times one sweep twice: with none of them crossing a reminder threshold, and
with 10,000 crossing one. Prints wall time and SQL query count for each.
Targets (issue 3): the empty sweep under 50 ms, the 10,000 sweep under 5 s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/privacy_portal_bench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python benchmarks/deadline_sweep.py [--requests N] [--crossing M]

Seeding is skipped when the database already holds N requests. The sweep's
email tasks go to the broker (Redis DB 15 by default) and are purged after.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import ensure_database  # noqa: E402
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/privacy_portal_bench")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacy_portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")




def seed(count: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM requests_app_privacyrequest")
        existing = cursor.fetchone()[0]
        if existing == count:
            print(f"reusing {count:,} seeded requests")
            return
        print(f"seeding {count:,} open requests ...", flush=True)
        started = time.perf_counter()
        cursor.execute("TRUNCATE requests_app_privacyrequest, requests_app_sentnotification CASCADE")
        # Every NOT NULL column, set in one INSERT ... SELECT: no Python row loop.
        cursor.execute(
            """
            INSERT INTO requests_app_privacyrequest (
                public_id, reference, secret, status, regime, channel, language, received_at,
                subject_name, name_for_search, subject_email, subject_phone, customer_reference, relationship,
                description, signature, verification_nonce, paused_days, extension_reason,
                next_alert_key, due_on, original_due_on, next_alert_on, created_at, updated_at,
                rights_mask, rejection_ground
            )
            SELECT gen_random_uuid(), 'DSR-2026-' || lpad(n::text, 7, '0'), md5(n::text), 'in_progress', 'gdpr', 'web', 'en',
                   now() - interval '5 days', 'Bench Subject', 'benchsubject', 'bench' || n || '@example.com', '', '',
                   'other', '', 'Bench Subject', md5('n' || n::text), 0, '',
                   'remind-7', current_date + 25, current_date + 25, current_date + 18, now(), now(),
                   1, ''
            FROM generate_series(1, %s) AS n
            """,
            [count],
        )
        cursor.execute("ANALYZE requests_app_privacyrequest")
        print(f"seeded in {time.perf_counter() - started:.1f} s")


def reset_thresholds(crossing: int) -> None:
    """Put every request's next alert in the future, then `crossing` of them on today."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM requests_app_sentnotification")
        cursor.execute(
            "UPDATE requests_app_privacyrequest SET next_alert_on = current_date + 18, next_alert_key = 'remind-7', "
            "due_on = current_date + 25 WHERE next_alert_on IS DISTINCT FROM current_date + 18"
        )
        if crossing:
            cursor.execute(
                "UPDATE requests_app_privacyrequest SET next_alert_on = current_date, due_on = current_date + 7 "
                "WHERE id IN (SELECT id FROM requests_app_privacyrequest ORDER BY id LIMIT %s)",
                [crossing],
            )
        cursor.execute("ANALYZE requests_app_privacyrequest")


def timed_sweep() -> tuple[float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from requests_app.services.deadlines import sweep_deadlines

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        claimed = sweep_deadlines()
        elapsed = time.perf_counter() - started
    return elapsed, len(queries.captured_queries), claimed


def purge_broker() -> None:
    from privacy_portal.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--crossing", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the empty sweep (median reported)")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    seed(args.requests)

    reset_thresholds(0)
    timed_sweep()  # warm the connection and caches, as the beat worker is
    empty = [timed_sweep() for _ in range(args.repeat)]
    empty_ms = statistics.median(run[0] for run in empty) * 1000
    print(f"empty sweep ({args.requests:,} open, none crossing): {empty_ms:.1f} ms median of {args.repeat}, "
          f"{empty[0][1]} queries, {empty[0][2]} alerts")

    reset_thresholds(args.crossing)
    elapsed, queries, claimed = timed_sweep()
    print(f"sweep with {args.crossing:,} crossing: {elapsed:.2f} s, {queries} queries, {claimed:,} alerts claimed")
    purge_broker()
    reset_thresholds(0)


if __name__ == "__main__":
    main()
