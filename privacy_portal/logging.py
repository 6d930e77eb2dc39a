"""What may not reach a log line."""

import logging
import re

# /status/<reference>/<secret>/...: the secret opens the subject's page, letters and downloads.
SUBJECT_LINK = re.compile(r"(/status/[^/\s]+/)[^/\s]+")


class RedactSubjectLinks(logging.Filter):
    """Blank the secret of a subject's link in a log line. Django logs the path of every 4xx and 5xx
    answer ("Gone: /status/DSR-2026-00001/<secret>/download/..."), and a log reader must not get
    a link that never expires."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/status/" in message:
            record.msg, record.args = SUBJECT_LINK.sub(r"\1[secret]", message), None
        return True
