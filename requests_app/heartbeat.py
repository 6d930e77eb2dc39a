"""A long run's heartbeat, stamped by a timer for as long as its process lives.

A run that claims a row (an export compiling) stamps `heartbeat_at`; one whose
stamp is older than a stale window is taken to be dead, and its work is taken
over. Stamped only when the work makes progress, the window would have to
outlast the slowest step (a source query quiet for many minutes), so a dead
run would wait that long too. Stamped by a timer, the window only has to
outlast a few missed beats: a live run is never taken over, and a dead one is
found within minutes, since its beats stop with its process.
"""

import logging
import threading
from typing import Self

from django import db
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)


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
