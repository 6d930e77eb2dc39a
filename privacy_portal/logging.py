"""What may not reach a log line."""

import logging
import re

# /status/<reference>/<secret>/...: the secret opens the subject's page, letters and downloads;
# /status/<reference>/<secret>/download/<token>/: the token downloads the subject's package until it expires;
# /verify/<token>/: confirming the email leads to that page (mail scanners fetch it before the subject does);
# /staff/setup/<account>/<token>/: the token sets a staff account's password and authenticator.
SECRET_LINK = re.compile(r"(/status/[^/\s]+/|/verify/(?:agent/)?|/transfer/|/staff/setup/[^/\s]+/)[^/\s]+(?:(/download/)[^/\s]+)?")
SECRET_PATHS = ("/status/", "/verify/", "/transfer/", "/staff/setup/")


def _blanked(match: re.Match) -> str:
    download = f"{match[2]}[secret]" if match[2] else ""
    return f"{match[1]}[secret]{download}"


class RedactSecretLinks(logging.Filter):
    """Blank the secret of a subject's link and the token of its download, the token of a link sending a package to
    another organisation, or the token of a staff setup link, in a log line. Django logs the path of every request (runserver) and of every 4xx and 5xx answer ("Gone:
    /status/DSR-2026-00001/<secret>/download/<token>/"), and a log reader must not get a link that never expires,
    a package's download, or one that sets up a staff account."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(path in message for path in SECRET_PATHS):
            record.msg, record.args = SECRET_LINK.sub(_blanked, message), None
        return True
