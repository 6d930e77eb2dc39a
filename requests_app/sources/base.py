"""What all connectors share: the error types, how other people's data is masked, and how a call that failed
for a moment is made again."""

import logging
import math
import os
from collections.abc import Callable, Sequence
from time import sleep
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SourceError(Exception):
    """A source system failed (unreachable, bad credentials, timeout, malformed data).

    The message names the source and the kind of failure, never the data.
    """


class PassingFailure(Exception):
    """A failure another attempt may not meet (a connection cut, a server busy or restarting for a moment): what
    went wrong, naming no value, and the wait in seconds the source asked for (an HTTP Retry-After), if it asked."""

    def __init__(self, reason: str, asked_wait: float | None = None):
        super().__init__(reason)
        self.asked_wait = asked_wait


def retrying(source, attempt: Callable[[], T], delays: Sequence[int]) -> T:
    """attempt()'s result, calling it again after each of `delays` (seconds) while it raises PassingFailure, waiting
    the longer of the delay and the wait the source asked for. Each attempt must be safe to make again after one
    that failed so (the connector's docstring says why). The error once it is given up says how many times it was
    tried (a source's admin asked "was it only a blip?" can tell), and, like every other, names only the source and
    the kind of failure."""
    for tried, delay in enumerate(delays, start=1):
        try:
            return attempt()
        except PassingFailure as failure:
            wait = max(delay, failure.asked_wait or 0)
            logger.warning("%s: %s on attempt %s of %s, trying again in %s s", source.slug, failure, tried,
                           len(delays) + 1, math.ceil(wait))
            sleep(wait)
    try:
        return attempt()
    except PassingFailure as failure:
        times = f", tried {len(delays) + 1} times" if delays else ""
        raise SourceError(f"{source.slug}: {failure}{times}") from None


MASK = "*****"
# The last two characters are kept only when at least four others stay hidden: "ab" or "1234" would show half
# of the value, or all of it.
KEEP_TAIL_FROM_LENGTH = 6


def mask_value(value):
    """Hide a value that identifies someone else, keeping its last two characters when it is long enough.

    A masked phone number still lets the subject recognise a call
    (*****34) without revealing the other party (Art. 15(4)).
    """
    if value is None:
        return None
    text = str(value)
    return MASK + text[-2:] if len(text) >= KEEP_TAIL_FROM_LENGTH else MASK


# Only variables named for sources can be read: an inventory entry must not be
# able to send the app's own secrets (SECRET_KEY, DATABASE_URL) to a source.
SOURCE_ENV_PREFIX = "SOURCE_"


def secret_from_env(source) -> str:
    """The secret (database URL, API token) named by the source's `connection_env`."""
    if not source.connection_env:
        return ""
    if not source.connection_env.startswith(SOURCE_ENV_PREFIX):
        raise SourceError(f"{source.slug}: secret variables must be named {SOURCE_ENV_PREFIX}...")
    value = os.environ.get(source.connection_env)
    if value is None:
        raise SourceError(f"{source.slug}: the environment variable {source.connection_env} is not set")
    return value
