"""What may not reach a log line."""

import logging
import re

# /status/<reference>/<secret>/...: the secret opens the subject's page, letters and downloads;
# /verify/<token>/: confirming the email leads to that page (mail scanners fetch it before the subject does);
# /staff/setup/<account>/<token>/: the token sets a staff account's password and authenticator.
SECRET_LINK = re.compile(r"(/status/[^/\s]+/|/verify/|/staff/setup/[^/\s]+/)[^/\s]+")
SECRET_PATHS = ("/status/", "/verify/", "/staff/setup/")


class RedactSecretLinks(logging.Filter):
    """Blank the secret of a subject's link, or of a staff setup link, in a log line. Django logs the path
    of every 4xx and 5xx answer ("Gone: /status/DSR-2026-00001/<secret>/download/..."), and a log
    reader must not get a link that never expires, or one that sets up a staff account."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(path in message for path in SECRET_PATHS):
            record.msg, record.args = SECRET_LINK.sub(r"\1[secret]", message), None
        return True
