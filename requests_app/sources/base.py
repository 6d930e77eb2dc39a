"""What all connectors share: the error type and how other people's data is masked."""

import os


class SourceError(Exception):
    """A source system failed (unreachable, bad credentials, timeout, malformed data).

    The message names the source and the kind of failure, never the data.
    """


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
