"""What all connectors share: the error type and how other people's data is masked."""

import os


class SourceError(Exception):
    """A source system failed (unreachable, bad credentials, timeout, malformed data).

    The message names the source and the kind of failure, never the data.
    """


MASK = "*****"


def mask_value(value):
    """Hide a value that identifies someone else, keeping its last two characters.

    A masked phone number still lets the subject recognise a call
    (*****34) without revealing the other party (Art. 15(4)).
    """
    if value is None:
        return None
    return MASK + str(value)[-2:]


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
