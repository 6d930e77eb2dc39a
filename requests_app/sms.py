"""Text messages, behind a pluggable backend (SMS_BACKEND).

The gateway is outside this machine, so the development default writes each
message to a file under var/sms/, like the development email backend;
production has no backend unless one is configured. A real gateway is
one small class with a `send(phone, text)` method that raises SMSError (or
OSError) when the message did not go: the sending task retries.
"""

import threading
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string


class SMSError(Exception):
    """The gateway did not take the message; a later try may succeed. Backends raise it (or OSError)."""


def available() -> bool:
    """Whether a backend is configured (SMS_BACKEND; production has none by default)."""
    return bool(settings.SMS_BACKEND)


def send(phone: str, text: str) -> None:
    if not available():
        raise SMSError("no SMS gateway is configured (SMS_BACKEND)")
    import_string(settings.SMS_BACKEND)().send(phone, text)


class FileBackend:
    def send(self, phone: str, text: str) -> None:
        folder = Path(settings.SMS_FILE_PATH)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{timezone.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.txt"
        (folder / name).write_text(f"To: {phone}\n\n{text}\n", encoding="utf-8")


class LocmemBackend:
    """For tests: messages are kept in `outbox`."""

    outbox: list[tuple[str, str]] = []
    _lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        with self._lock:
            LocmemBackend.outbox.append((phone, text))
