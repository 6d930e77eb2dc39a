"""Benchmark the export package on PostgreSQL against a raw COPY baseline.

Seeds one subject with N call detail records (default 1,000,000) in a
PostgreSQL source database, compiles their access package through the same
code as the Celery task (services.exports.compile_export) in a fresh child
process, and measures its wall time, rows per second and peak RSS. In the
same run it times a baseline: a raw `COPY (SELECT the same rows) TO STDOUT`
written into a ZIP at the same compression level. The last line is one JSON
object: rows, export_seconds, export_peak_rss_mb, baseline_seconds, ratio.

    .venv/bin/python benchmarks/export.py [--rows N]

Targets (issue 5): ratio (baseline_seconds / export_seconds) at least 0.5;
peak RSS under 200 MB, and within 20% between 100,000 and 1,000,000 rows.
Databases: privacy_portal_bench_export (the app) and
privacy_portal_bench_sources (the source), created when missing.
"""

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import ensure_database  # noqa: E402
APP_URL = "postgres://postgres@127.0.0.1:5432/privacy_portal_bench_export"
SOURCE_URL = "postgresql://postgres@127.0.0.1:5432/privacy_portal_bench_sources"


def environment(work: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", APP_URL),
        "DEMO_SOURCES_URL": os.environ.get("BENCH_SOURCES_URL", SOURCE_URL),
        # The export is compiled in the child directly: no worker, and the queued task goes nowhere.
        "CELERY_BROKER_URL": "memory://",
        "MEDIA_ROOT": f"{work}/media",
        "EXPORT_WORK_DIR": f"{work}/export-work",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "privacy_portal.settings",
    }




def child_compile(reference: str) -> None:
    """In a fresh process, so its peak RSS is the export's: compile and print the timing."""
    import django

    django.setup()
    from requests_app.audit import Actor
    from requests_app.models import PrivacyRequest
    from requests_app.services import exports

    request = PrivacyRequest.objects.get(reference=reference)
    export = exports.export_start(request=request, actor=Actor.system())
    started = time.perf_counter()
    name = exports.compile_export(export_id=export.id)
    elapsed = time.perf_counter() - started
    export.refresh_from_db()
    if name is None:
        raise SystemExit(f"export failed: {export.error}")
    print(json.dumps({
        "seconds": elapsed,
        "rows": export.manifest["rows"],
        "size": export.size,
        # This process (the worker's share) and its CSV child process, each at its peak.
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "child_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }))


def baseline(rows_queries: list[str], work: str, level: int) -> float:
    """A raw COPY of the same rows as CSV, a member per query, written into a ZIP: the floor any export has to stand on."""
    import psycopg2

    from requests_app.sources.sql import normalise_url

    url = os.environ.get("BENCH_SOURCES_URL", SOURCE_URL)
    connection = psycopg2.connect(normalise_url(url).replace("postgresql+psycopg2://", "postgresql://"))
    started = time.perf_counter()
    with connection.cursor() as cursor, zipfile.ZipFile(
        f"{work}/baseline.zip", "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level
    ) as archive:
        for number, rows_query in enumerate(rows_queries):
            with archive.open(f"rows-{number}.csv", "w", force_zip64=True) as member:
                buffered = io.BufferedWriter(member, 1024 * 1024)
                cursor.copy_expert(f"COPY ({rows_query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffered)
                buffered.flush()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_compile(args.child)
        return

    work = tempfile.mkdtemp(prefix="export-bench-")
    env = environment(work)
    os.environ.update(env)
    ensure_database(env["DATABASE_URL"])
    ensure_database(env["DEMO_SOURCES_URL"])
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    print(f"seeding one subject with {args.rows:,} CDRs ...", flush=True)
    started = time.perf_counter()
    seeded = subprocess.run(
        [*manage, "seed_demo", "--subjects", "1", "--cdrs-per-subject", str(args.rows), "--web-logs-per-subject", "5"],
        env=env, check=True, cwd=ROOT, capture_output=True, text=True,
    )
    reference = seeded.stdout.strip().splitlines()[-1]
    print(f"seeded in {time.perf_counter() - started:.1f} s; request {reference}", flush=True)

    result = subprocess.run(
        [sys.executable, __file__, "--child", reference], env=env, check=True, cwd=ROOT, capture_output=True, text=True
    )
    export = json.loads(result.stdout.strip().splitlines()[-1])
    peak_kb = export["rss_kb"]

    import django

    django.setup()
    from django.conf import settings

    from requests_app.models import SourceCategory

    # The subject's call records, made and received: what the package's call files hold between them.
    rows_queries = [
        calls.query.replace(":identities", "('+32470000000')")
        for calls in SourceCategory.objects.filter(source__slug="cdr").order_by("slug")
    ]
    baseline_seconds = baseline(rows_queries, work, settings.EXPORT_COMPRESSLEVEL)

    summary = {
        "rows": export["rows"],
        "export_seconds": round(export["seconds"], 2),
        "export_rows_per_second": round(export["rows"] / export["seconds"]),
        "export_peak_rss_mb": round(peak_kb / 1024, 1),
        "csv_process_peak_rss_mb": round(export["child_rss_kb"] / 1024, 1),
        "package_mb": round(export["size"] / 1e6, 1),
        "baseline_seconds": round(baseline_seconds, 2),
        "ratio": round(baseline_seconds / export["seconds"], 2),
    }
    print(f"export:   {summary['export_seconds']} s, {summary['export_rows_per_second']:,} rows/s, "
          f"peak RSS {summary['export_peak_rss_mb']} MB (CSV child process {summary['csv_process_peak_rss_mb']} MB), "
          f"package {summary['package_mb']} MB")
    print(f"baseline: {summary['baseline_seconds']} s (raw COPY of the same rows into a ZIP)")
    print(json.dumps({key: summary[key] for key in ("rows", "export_seconds", "export_peak_rss_mb", "baseline_seconds", "ratio")}))


if __name__ == "__main__":
    main()
