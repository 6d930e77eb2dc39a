"""A long run's heartbeat, stamped by a timer for as long as its process lives.

A run that claims a row (an export compiling, a source action's dry run or
execution) stamps `heartbeat_at`; one whose stamp is older than a stale window
is taken to be dead, and its work is taken over. Stamped only when the work
makes progress, the window would have to outlast the slowest step (a source
query quiet for many minutes), so a dead run would wait that long too. Stamped
by a timer, the window only has to outlast a few missed beats: a live run is
never taken over, and a dead one is found within minutes, since its beats stop
with its process.

What each kind of run shares: the timer (Heartbeat), how a run that lost its
claim stops (TakenOver), when a stamp is stale (stale_before), when a dead
run's work is queued again (not_queued_since_death) and when it is given up
(ATTEMPTS_BEFORE_GIVING_UP). Each model keeps its own claim: a conditional
update that takes a row not yet taken, or one whose heartbeat is stale.
"""

import datetime
import logging
import threading
from typing import Self

from django import db
from django.db.models import F, Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

# A run that died this many times is not started again by itself: a run that kills its worker each
# time (out of memory, the hard time limit) would otherwise start over every few minutes, for ever.
# It is failed instead, with the reason; a retry by staff starts it again.
ATTEMPTS_BEFORE_GIVING_UP = 3


class TakenOver(Exception):
    """This run lost its claim (another run took the row over, or staff started a new run): it stops here."""


def stale_before(stale_seconds: float, now: datetime.datetime | None = None) -> datetime.datetime:
    """A heartbeat older than this is stale: the run that stamped it is dead."""
    return (now or timezone.now()) - datetime.timedelta(seconds=stale_seconds)


def not_queued_since_death(now: datetime.datetime, lost_after: datetime.timedelta) -> Q:
    """Dead runs to queue again: not queued since their last beat (their `queued_at` field), or queued so
    long ago that the task queued then must be lost too. A dead run is queued once per death."""
    return Q(queued_at__isnull=True) | Q(queued_at__lt=F("heartbeat_at")) | Q(queued_at__lt=now - lost_after)


class Heartbeat:
    """Stamps `heartbeat_at` on `owned` every `every` seconds from a daemon thread, until the block ends.

    `owned` must match the row only while this run owns it (its status and attempt, say): once
    another run took it over, or this one finished it, a stamp matches nothing and the thread stops
    for good (`lost` is set), so it never keeps someone else's claim alive. The thread has its own
    database connection (Django's are per thread) and closes it when it ends. Leaving the block
    stops the thread and waits for it (one beat at most): not inside a transaction that updated
    the row, which a stamp under way would wait for.
    """

    def __init__(self, owned: QuerySet, *, every: float, name: str = "heartbeat"):
        self.owned = owned
        self.every = every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        # Not forever: a stamp stuck on a lock or a dead connection must not hold up the finished
        # run; the thread is a daemon and its stamp, if it ever lands, no longer matches a running run.
        self._thread.join(timeout=self.every)

    def raise_if_lost(self) -> None:
        """Raise TakenOver if a stamp found the row no longer this run's: call it between steps."""
        if self.lost.is_set():
            raise TakenOver

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    stamped = self.owned.update(heartbeat_at=timezone.now())
                except db.Error:
                    # The database went away for a moment: stamp again next time, on a new connection.
                    # The stale window is several beats long for this.
                    logger.warning(
                        "%s: could not stamp the heartbeat, trying again in %s s", self._thread.name, self.every
                    )
                    db.connections.close_all()
                    continue
                if not stamped:
                    self.lost.set()
                    return
        finally:
            db.connections.close_all()  # this thread's own
