"""Benchmark POST /api/v1/requests/ under gunicorn against a trivial DRF endpoint.

Starts gunicorn (2 sync workers) on a free local port against a benchmark
PostgreSQL database, then drives it from client threads in this process
(http.client, one connection each) for a fixed time per case after a
warm-up: GET /api/v1/ping/ (authenticated, the trivial endpoint) and
POST /api/v1/requests/ (a unique body each time, no Idempotency-Key), each
with 1 and 16 concurrent clients. Prints throughput, p50/p99 latency, errors
and where the CPU went (gunicorn, PostgreSQL, Redis, this client) per
request, then the ratio POST/ping throughput per concurrency level.
Target (issue 7): a ratio of at least 0.5.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/privacy_portal_bench_api \
    BENCH_BROKER_URL=redis://127.0.0.1:6379/13 BENCH_CACHE_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python benchmarks/api.py [--duration S] [--warmup S] [--concurrency 1,16] [--profile N]

(those are the defaults). The benchmark truncates the requests of its database
and empties its broker's Redis DB, so it reads BENCH_* variables only: a
DATABASE_URL exported for the tests or a development server is never used.

The server runs with persistent database connections (DATABASE_CONN_MAX_AGE=60,
as production would), DEBUG off, and the per-key throttle active but set so
high that it never refuses (API_RATE_LIMIT=1000000/min): every call still
counts itself in Redis, one atomic increment, as in production.
Each POST enqueues one follow-up task on commit (routing, webhook,
confirmation): nobody consumes them, and the broker's Redis DB (13 by
default; use a DB of its own) is emptied at the end. Requests filed by
earlier runs are truncated at the start.

The clients share the machine with gunicorn, PostgreSQL and Redis; the CPU
columns show how much each took. gunicorn's sync workers close the
connection after every response, so every request opens a TCP connection.

--profile N also files N requests (and N pings) in-process through Django's
test client under cProfile, with the same settings, and prints the queries
per request and the functions where the time goes. It then measures this
process's CPU per POST with parts of the work left out in turn (the task
published on commit, the audit event, the answer's body): how far a faster
implementation of those parts could take the ratio at best.
"""

import argparse
import contextlib
import cProfile
import http.client
import io
import json
import math
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import ensure_database  # noqa: E402

os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/privacy_portal_bench_api")
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
os.environ["CACHE_URL"] = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/12")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacy_portal.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# The server's settings; this process uses the same ones (setup, --profile).
SERVER_ENV = {
    "DATABASE_CONN_MAX_AGE": "60",
    "API_RATE_LIMIT": "1000000/min",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1",
    "CELERY_TASK_ALWAYS_EAGER": "false",
}
os.environ.update(SERVER_ENV)

PING = "/api/v1/ping/"
REQUESTS = "/api/v1/requests/"
ORGANISATION = "Bench API Operator"
BODY = {
    "rights": ["access", "erasure"],
    "subject_name": "Ana Peeters",
    "subject_email": "ana@example.com",
    "subject_phone": "+32475123456",
    "relationship": "end_user",
    "signature": "Ana Peeters",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- setup -------------------------------------------------------------------


def prepare_database() -> str:
    """Migrate, clear earlier runs' requests, and return a fresh write-scope key."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from requests_app.models import Organisation, OrganisationAPIKey

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE requests_app_privacyrequest CASCADE")
    organisation, _ = Organisation.objects.get_or_create(name=ORGANISATION)
    OrganisationAPIKey.objects.filter(organisation=organisation).delete()
    _, key = OrganisationAPIKey.objects.create_key(name="bench api", organisation=organisation, scope="write")
    connection.close()
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, workers: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **SERVER_ENV}
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"), "privacy_portal.wsgi",
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_until_up(port: int, headers: dict, server: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", PING, headers=headers)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200:
                return
            sys.exit(f"gunicorn answers {response.status} to {PING}: {body[:500]!r}")
        except OSError:
            time.sleep(0.2)
    sys.exit(f"gunicorn did not answer within {timeout:.0f} s:\n{log_path.read_text()}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def purge_broker() -> None:
    import redis

    redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()


# --- CPU accounting ----------------------------------------------------------


def processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (ppid, command name, CPU seconds so far), for every process we can read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(entry)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


def machine_busy() -> float:
    """CPU seconds spent by the whole machine (all cores), not idle or waiting on I/O."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def is_ours(pid: int, database: str) -> bool:
    """A PostgreSQL process serving the benchmark database, or a shared one (WAL writer, checkpointer...)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            title = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if f" {database} " in title:
        return True
    return "(" not in title and "[local]" not in title  # not another database's connection


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds so far by group; 'other' is the rest of the machine (other people's work)."""
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[-1]
    groups = {"gunicorn": 0.0, "postgres": 0.0, "redis": 0.0}
    for pid, (ppid, name, seconds) in processes().items():
        if pid == server_pid or ppid == server_pid:
            groups["gunicorn"] += seconds
        elif name == "postgres" and is_ours(pid, database):
            groups["postgres"] += seconds
        elif name.startswith("redis-server"):
            groups["redis"] += seconds
    times = os.times()
    groups["client"] = times.user + times.system
    groups["machine"] = machine_busy()
    groups["other"] = groups["machine"] - sum(groups[name] for name in ("gunicorn", "postgres", "redis", "client"))
    return groups


# --- load --------------------------------------------------------------------


def run_case(port: int, method: str, path: str, headers: dict, clients: int, warmup: float, duration: float,
             server_pid: int, tag: str) -> dict:
    """Closed loop: each client sends its next request when the last one answers.

    Counts the responses that arrive inside the measured window, after the warm-up.
    """
    start = time.perf_counter() + 0.2
    measure_from, measure_to = start + warmup, start + warmup + duration
    results: list[list] = [[] for _ in range(clients)]
    statuses: list[dict] = [{} for _ in range(clients)]
    first_error: list = []
    snapshots: dict = {}

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies, seen = results[index], statuses[index]
        n = 0
        while time.perf_counter() < start:
            time.sleep(0.001)
        while True:
            began = time.perf_counter()
            if began >= measure_to:
                break
            body = None
            if method == "POST":
                n += 1
                body = json.dumps({
                    **BODY,
                    "subject_name": f"Bench Subject {tag} {index} {n}",
                    "subject_email": f"bench.{tag}.{index}.{n}@example.com",
                })
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                status, payload = 0, repr(error).encode()
            ended = time.perf_counter()
            seen[status] = seen.get(status, 0) + 1
            if not 200 <= status < 300 and not first_error:
                first_error.append(f"{status}: {payload[:300]!r}")
            if measure_from <= ended < measure_to:
                latencies.append((ended - began, status))
        conn.close()

    def snapshot_at(moment: float, name: str) -> None:
        time.sleep(max(0.0, moment - time.perf_counter()))
        snapshots[name] = cpu_snapshot(server_pid)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads += [
        threading.Thread(target=snapshot_at, args=(measure_from, "from")),
        threading.Thread(target=snapshot_at, args=(measure_to, "to")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    window = [item for per_client in results for item in per_client]
    ok = sorted(latency for latency, status in window if 200 <= status < 300)
    errors = len(window) - len(ok)
    all_statuses: dict = {}
    for seen in statuses:
        for status, count in seen.items():
            all_statuses[status] = all_statuses.get(status, 0) + count
    cpu = {name: snapshots["to"][name] - snapshots["from"][name] for name in snapshots["to"]}
    completed = len(window)
    return {
        "method": method,
        "path": path,
        "clients": clients,
        "seconds": duration,
        "completed": completed,
        "ok": len(ok),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(all_statuses.items())},
        "first_error": first_error[0] if first_error else None,
        "throughput": len(ok) / duration,
        "p50_ms": percentile(ok, 50) * 1000 if ok else None,
        "p99_ms": percentile(ok, 99) * 1000 if ok else None,
        "mean_ms": statistics.fmean(ok) * 1000 if ok else None,
        # CPU milliseconds per completed request, by who spent them.
        "cpu_ms_per_request": {name: round(seconds * 1000 / max(completed, 1), 2) for name, seconds in cpu.items()},
        "machine_cpu_busy": round(cpu["machine"] / duration / os.cpu_count(), 3),
        "other_cpu_share": round(max(cpu["other"], 0.0) / duration / os.cpu_count(), 3),
    }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# --- in-process profile ------------------------------------------------------


def profile(key: str, count: int) -> dict:
    """Time and profile `count` POSTs and pings in this process, through Django's test client."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_HOST="127.0.0.1")
    counter = iter(range(10**9))

    def post():
        n = next(counter)
        body = {**BODY, "subject_name": f"Profile Subject {n}", "subject_email": f"profile.{n}@example.com"}
        response = client.post(REQUESTS, json.dumps(body), content_type="application/json")
        assert response.status_code == 201, response.content[:300]

    def ping():
        response = client.get(PING)
        assert response.status_code == 200, response.content[:300]

    found = {}
    for name, call in (("ping", ping), ("post", post)):
        for _ in range(20):  # warm up: imports, connections, caches
            call()
        with CaptureQueriesContext(connection) as queries:
            call()
        sql = [q["sql"] for q in queries.captured_queries]
        started = time.perf_counter()
        for _ in range(count):
            call()
        wall_ms = (time.perf_counter() - started) * 1000 / count
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            call()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
        found[name] = {"ms_per_request": round(wall_ms, 2), "queries": len(sql), "sql": sql, "profile": out.getvalue()}
    found["leave_out"] = leave_out(ping, post, count)
    return found


def leave_out(ping, post, count: int) -> dict[str, float]:
    """This process's CPU ms per ping, per POST, and per POST with more and more of its work replaced by nothing.

    A measurement only (the requests filed this way have no audit event and no task): if even a POST without
    those parts costs more than twice a ping, no faster way of doing them reaches the ratio of 0.5.
    """
    from types import SimpleNamespace
    from unittest import mock

    def cpu_ms(call) -> float:
        for _ in range(20):
            call()
        started = time.process_time()
        for _ in range(count):
            call()
        return round((time.process_time() - started) * 1000 / count, 2)

    steps = [
        ("without the task published on commit", mock.patch("requests_app.tasks.queue_after_commit")),
        ("and without the audit event", mock.patch("requests_app.services.intake.record_event")),
        ("and without the answer's body", mock.patch(
            "requests_app.api.serializers.RequestSerializer", lambda request: SimpleNamespace(data={})
        )),
    ]
    costs = {"ping": cpu_ms(ping), "POST": cpu_ms(post)}
    with contextlib.ExitStack() as left_out:
        for name, patch in steps:
            left_out.enter_context(patch)
            costs[f"POST {name}"] = cpu_ms(post)
    return costs


# --- main --------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each case")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated client counts")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also cProfile N in-process POSTs and pings")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    before = machine_busy()
    time.sleep(1)
    busy_before = (machine_busy() - before) / os.cpu_count()
    ensure_database(os.environ["DATABASE_URL"])
    key = prepare_database()
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json", "Accept": "application/json"}
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    log_path = log_dir / "gunicorn.log"
    server = start_gunicorn(port, args.workers, log_path)
    cases = []
    try:
        wait_until_up(port, headers, server, log_path)
        print(f"gunicorn {args.workers} sync workers on 127.0.0.1:{port}, {os.cpu_count()} CPUs; "
              f"{args.warmup:g} s warm-up + {args.duration:g} s measured per case", flush=True)
        for clients in levels:
            for method, path in (("GET", PING), ("POST", REQUESTS)):
                tag = uuid.uuid4().hex[:8]
                case = run_case(port, method, path, headers, clients, args.warmup, args.duration, server.pid, tag)
                cases.append(case)
                print(f"  {method} {path} x{clients}: {case['throughput']:.1f} req/s, p99 {case['p99_ms'] or 0:.1f} ms, "
                      f"{case['errors']} errors", flush=True)
    finally:
        stop(server)
        purge_broker()
    server_log = log_path.read_text().strip()

    import django

    django.setup()
    from requests_app.models import PrivacyRequest

    created = sum(case["statuses"].get("201", 0) for case in cases)
    stored = PrivacyRequest.objects.filter(organisation__name=ORGANISATION).count()

    print()
    print(f"{'case':<27} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ok':>7} {'errors':>6}"
          f"   CPU ms/request: {'gunicorn':>8} {'postgres':>8} {'redis':>6} {'client':>6} {'other':>6}  machine busy")
    for case in cases:
        cpu = case["cpu_ms_per_request"]
        print(f"{case['method'] + ' ' + case['path']:<27} {case['clients']:>7} {case['throughput']:>8.1f} "
              f"{case['p50_ms'] or 0:>8.1f} {case['p99_ms'] or 0:>8.1f} {case['ok']:>7} {case['errors']:>6}"
              f"   {'':>15} {cpu['gunicorn']:>8.2f} {cpu['postgres']:>8.2f} {cpu['redis']:>6.2f} {cpu['client']:>6.2f} {cpu['other']:>6.2f}"
              f"  {case['machine_cpu_busy']:>11.0%}")
    ratios = {}
    for clients in levels:
        by_path = {case["path"]: case for case in cases if case["clients"] == clients}
        ping_rate = by_path[PING]["throughput"]
        ratios[str(clients)] = round(by_path[REQUESTS]["throughput"] / ping_rate, 3) if ping_rate else None
    print()
    for clients, ratio in ratios.items():
        verdict = "meets" if ratio is not None and ratio >= 0.5 else "misses"
        print(f"ratio POST/ping at {clients:>2} client(s): {ratio} ({verdict} the 0.5 target)")
    errors = [case for case in cases if case["errors"]]
    for case in errors:
        print(f"errors in {case['method']} {case['path']} x{case['clients']}: {case['statuses']}; first: {case['first_error']}")
    print(f"201 answers: {created}, requests stored for the benchmark organisation: {stored}")
    if server_log:
        print(f"gunicorn log ({log_path}):\n{server_log[-2000:]}")
    print("note: the client threads run on the same machine as gunicorn, PostgreSQL and Redis; "
          "their CPU share is the 'client' column. gunicorn sync workers close each connection, "
          "so every request includes a TCP connect.")
    busy_elsewhere = [case for case in cases if case["other_cpu_share"] > 0.1]
    if busy_elsewhere or busy_before > 0.1:
        during = ", ".join(
            f"{case['method']} x{case['clients']}: {case['other_cpu_share']:.0%}" for case in busy_elsewhere
        )
        print(f"WARNING: other processes were using the CPU (just before the run: {busy_before:.0%} of the machine; "
              f"during cases: {during or 'no'}): the figures are not reliable, rerun on a quiet machine.")

    profiled = None
    if args.profile:
        profiled = profile(key, args.profile)
        for name in ("ping", "post"):
            found = profiled[name]
            print(f"\n=== in-process {name}: {found['ms_per_request']} ms/request (test client, no profiler), "
                  f"{found['queries']} SQL queries ===")
            for sql in found["sql"]:
                print(f"  {sql[:200]}")
            print(found["profile"])
        print("=== in-process CPU of this process (no PostgreSQL, no network), ms per call ===")
        costs = profiled["leave_out"]
        for name, cost in costs.items():
            print(f"  {name:<75} {cost:>6.2f}   {cost / costs['ping']:.2f} x the ping")
        purge_broker()

    summary = {
        "benchmark": "api",
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cases": [{k: v for k, v in case.items() if k != "first_error"} for case in cases],
        "ratio": ratios,
        "target_ratio": 0.5,
        "target_met": all(r is not None and r >= 0.5 for r in ratios.values()),
        "created": created,
        "stored": stored,
        "machine_busy_before": round(busy_before, 3),
    }
    if profiled:
        summary["profile"] = {name: {"ms_per_request": profiled[name]["ms_per_request"], "queries": profiled[name]["queries"]}
                              for name in ("ping", "post")}
        summary["profile"]["cpu_ms_leaving_out"] = profiled["leave_out"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
