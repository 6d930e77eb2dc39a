"""Serve Privacy Portal on the embedded defaults: migrate, create the demo
account and data, then run the web server and a Celery worker with its
periodic jobs (beat) until Ctrl-C. Called by `make run`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = os.environ.get("PORT", "8000")
# As the settings read it (privacy_portal/settings.py): where the embedded defaults keep their files.
VAR_DIR = Path(os.environ.get("VAR_DIR", ROOT / "var"))


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def main() -> int:
    # A plain `kill` stops the server and the worker too, as Ctrl-C does (see the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    os.environ.setdefault("SITE_URL", f"http://{HOST}:{PORT}")
    manage("migrate", "--noinput")
    manage("setup_demo")
    processes = [
        subprocess.Popen([PYTHON, "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"], cwd=ROOT),
        subprocess.Popen(
            # Beat keeps its schedule where the settings say (CELERY_BEAT_SCHEDULE_FILENAME, under VAR_DIR).
            [PYTHON, "-m", "celery", "-A", "privacy_portal", "worker", "--beat", "--concurrency=1", "-Q", "celery,long"],
            cwd=ROOT,
        ),
    ]
    site = os.environ["SITE_URL"]
    print(
        f"""
Privacy Portal is running (Ctrl-C to stop).
  Request form:   {site}/
  Staff:          {site}/staff/   users: dpo / demo-dpo-password, handler / demo-handler-password,
                  auditor / demo-auditor-password
                  two-factor code: {PYTHON} manage.py totp_code dpo   (or handler, auditor)
  Admin:          {site}/admin/   (the same accounts and codes; the DPO sees everything)
  API docs:       {site}/api/docs/  (keys are issued in the admin: Organisation API keys)
  Emails:         written to {VAR_DIR / 'mail'} (open the newest file for the verification link)
  Worker + beat:  running on the filesystem broker in {VAR_DIR / 'celery'}
""",
        flush=True,
    )
    try:
        # If either process dies, stop the other: half a product is confusing.
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        print("A process stopped; shutting down.", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
