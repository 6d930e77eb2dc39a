"""Write one PostgreSQL query as CSV into a single-member ZIP, in a child process.

The export writes a category's JSON lines and its CSV at the same time, to
use both cores. Threads cannot do it: psycopg2 hands every COPY row to Python
under the GIL, so two COPYs in two threads take turns. A child process has a
GIL of its own. It imports the parent's snapshot, so both files hold the same
rows, and stops if its parent dies (a killed worker leaves no orphan writing).

Job on stdin (JSON, so the password never shows in the process list):
{"connect", "snapshot", "query", "path", "compresslevel"}, where "connect" are
psycopg2.connect keyword arguments. Result on stdout: {"sha256", "bytes"}.
It imports only psycopg2 and the standard library, to start fast.
"""

import codecs
import hashlib
import json
import os
import sys
import zipfile

import psycopg2


class _PartWriter:
    """Hashes and compresses in 1 MiB chunks; gives up if the parent process is gone."""

    def __init__(self, target, parent_pid: int):
        self.target, self.parent_pid = target, parent_pid
        self.digest, self.size, self.buffer = hashlib.sha256(), 0, bytearray()

    def write(self, data):
        self.buffer += data
        if len(self.buffer) >= 1024 * 1024:
            self.flush()
        return len(data)

    def flush(self):
        if os.getppid() != self.parent_pid:
            raise SystemExit("parent process died")
        chunk = bytes(self.buffer)
        self.buffer.clear()
        self.digest.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)


def run(job: dict, parent_pid: int) -> dict:
    raw = psycopg2.connect(**job["connect"])
    try:
        raw.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with raw.cursor() as cursor, zipfile.ZipFile(
            job["path"], "w", compression=zipfile.ZIP_DEFLATED, compresslevel=job["compresslevel"]
        ) as part, part.open("part", "w", force_zip64=True) as member:
            cursor.execute("SET TRANSACTION SNAPSHOT %s", [job["snapshot"]])
            writer = _PartWriter(member, parent_pid)
            writer.write(codecs.BOM_UTF8)  # for spreadsheets, as package.CSV_BYTE_ORDER_MARK says
            cursor.copy_expert(f"COPY ({job['query']}) TO STDOUT WITH (FORMAT csv, HEADER)", writer)
            writer.flush()
        raw.rollback()
    finally:
        raw.close()
    return {"sha256": writer.digest.hexdigest(), "bytes": writer.size}


def main() -> None:
    job = json.load(sys.stdin)
    parent_pid = os.getppid()
    try:
        result = run(job, parent_pid)
    except BaseException:
        if os.path.exists(job["path"]):
            os.unlink(job["path"])
        raise
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
