"""An execution on a PostgreSQL source whose connection is cut, or whose transaction the server rolls back to break a
deadlock, is run again and changes each row once; a commit whose answer is lost is not made a second time.

A trigger in the source counts every change made for good to a subscriber row (its rows roll back with the
transaction), so "changed once" is what the source itself recorded."""

import threading
import time

import psycopg2
import pytest
from sqlalchemy import event

from requests_app.models import ActionStatus, SourceAction
from requests_app.services import actions
from requests_app.sources import sql as sql_sources

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("source_url", ["postgresql"], indirect=True)]

COUNT_CHANGES = [
    "CREATE TABLE changes (subscriber_id INTEGER NOT NULL)",
    """CREATE FUNCTION count_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO changes VALUES (OLD.id); RETURN NEW; END $$""",
    "CREATE TRIGGER count_change AFTER UPDATE OR DELETE ON subscribers FOR EACH ROW EXECUTE FUNCTION count_change()",
]


@pytest.fixture
def approved(crm, erasure_request, dpo_actor, source_db, run):
    """Ana's erasure in the CRM, dry run and approved, with the source counting its changes."""
    for statement in COUNT_CHANGES:
        source_db(statement)
    actions.plan_actions(request=erasure_request, actor=dpo_actor)
    action = run(erasure_request.source_actions.get(source=crm).id, "dry_run", "approve", actor=dpo_actor)
    assert action.status == ActionStatus.APPROVED, action.error
    return action


def execute(action, dpo_actor, run) -> SourceAction:
    return run(action.id, "execute", actor=dpo_actor)


def changes(source_db) -> list[int]:
    return [row["subscriber_id"] for row in source_db("SELECT subscriber_id FROM changes ORDER BY subscriber_id")]


def terminate(source_url: str, pid: int) -> None:
    """End the session `pid` from another one, as a DBA (or a failover) would, and wait until it has ended."""
    with psycopg2.connect(source_url) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        assert cursor.fetchone() == (True,)
    admin.close()


@pytest.fixture
def source_engine(source_url):
    return sql_sources._engine(source_url)


def test_an_execution_whose_connection_is_cut_part_way_is_run_again_and_changes_each_row_once(
    approved, dpo_actor, run, source_db, source_url, source_engine
):
    cut = []

    def cut_before_the_first_update(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE") and not cut:
            cut.append(cursor.connection.info.backend_pid)
            terminate(source_url, cut[0])

    event.listen(source_engine, "before_cursor_execute", cut_before_the_first_update)
    try:
        action = execute(approved, dpo_actor, run)
    finally:
        event.remove(source_engine, "before_cursor_execute", cut_before_the_first_update)

    assert len(cut) == 1
    assert action.status == ActionStatus.DONE, action.error
    assert action.result["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]
    assert changes(source_db) == [1, 2]
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE name = '(erased)'") == [{"n": 2}]


def lose_the_commits_answer(monkeypatch, source_engine, source_url, *, committed: bool) -> list[int]:
    """The first COMMIT's answer is lost: the session is ended once the COMMIT has (or, not `committed`, before it
    has) reached the server, and the client sees the connection closed."""
    lost = []
    real_do_commit = source_engine.dialect.do_commit

    def do_commit(pooled):
        if lost:
            return real_do_commit(pooled)
        lost.append(pooled.dbapi_connection.info.backend_pid)
        if committed:
            real_do_commit(pooled)
        terminate(source_url, lost[0])
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(source_engine.dialect, "do_commit", do_commit)
    return lost


def test_a_commit_whose_answer_is_lost_counts_as_made_and_is_not_made_again(
    approved, dpo_actor, run, source_db, source_url, source_engine, monkeypatch
):
    """Made again, the change would be refused as stale (the rows no longer match the dry run) though it was made,
    and the letter would not state it; with a keyed hash, a second run would hash the hash."""
    lost = lose_the_commits_answer(monkeypatch, source_engine, source_url, committed=True)

    action = execute(approved, dpo_actor, run)

    assert len(lost) == 1
    assert action.status == ActionStatus.DONE, action.error
    assert action.result["categories"] == [{"category": "subscribers", "rows": 2, "fields": 5}]
    assert changes(source_db) == [1, 2]


def test_a_commit_whose_answer_is_lost_and_that_was_not_made_is_made_again(
    approved, dpo_actor, run, source_db, source_url, source_engine, monkeypatch
):
    lost = lose_the_commits_answer(monkeypatch, source_engine, source_url, committed=False)

    action = execute(approved, dpo_actor, run)

    assert len(lost) == 1
    assert action.status == ActionStatus.DONE, action.error
    assert changes(source_db) == [1, 2]


def test_an_execution_the_server_rolls_back_to_break_a_deadlock_is_run_again(approved, dpo_actor, run, source_db, source_url):
    """Another session holds Ana's second row and then asks for her first, which the execution holds while it waits
    for the second: PostgreSQL ends one of the two. The other session waits longer before checking
    (deadlock_timeout), so the one ended is the execution's, and its second attempt goes through."""
    other = psycopg2.connect(source_url)
    deadlocked = threading.Event()

    def other_session():
        with other.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '20s'")
            cursor.execute("SELECT id FROM subscribers WHERE id = 2 FOR UPDATE")
            held.set()
            # Once the execution waits for row 2 (it holds row 1 then), ask for row 1.
            for _ in range(200):
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            cursor.execute("SELECT id FROM subscribers WHERE id = 1 FOR UPDATE")  # deadlock: the execution is ended
            deadlocked.set()
        other.rollback()

    held = threading.Event()
    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        assert held.wait(10)
        action = execute(approved, dpo_actor, run)
    finally:
        thread.join(30)
        other.close()

    assert deadlocked.is_set()
    assert action.status == ActionStatus.DONE, action.error
    assert changes(source_db) == [1, 2]
