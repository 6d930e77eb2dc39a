"""The SMTP email backend, made to tell when the mail server refused some of a message's recipients.

smtplib's sendmail raises only when the server refuses every recipient; when it refuses some, it
sends to the others and returns the refused ones, which Django's backend drops. An alert to the DPO
team's inbox and its members would then reach some of them, and nobody would learn that a staff address
or DPO_EMAIL no longer works. This backend logs an ERROR instead, naming how many were refused and
their domains, never the addresses (logs carry no personal data).

The email still counts as sent: sending it again would give the accepted recipients a second copy.
"""

import logging
import smtplib
from email.utils import parseaddr

from django.core.mail.backends import smtp

logger = logging.getLogger(__name__)


def domain(address: str) -> str:
    """"example.org" for "Dora <dora@Example.org>"; "?" for an address without one (never the address itself)."""
    mailbox = parseaddr(address)[1]
    return mailbox.rpartition("@")[2].lower() if "@" in mailbox else "?"


def log_refused_recipients(refused: dict[str, tuple[int, bytes]], recipient_count: int) -> None:
    """ERROR: how many of the recipients the server refused, their domains and its SMTP codes. Not the
    server's reply text, which often repeats the address."""
    domains = sorted({domain(address) for address in refused})
    codes = sorted({code for code, _reply in refused.values()})
    logger.error(
        "the mail server refused %d of the %d recipients of an email, which went to the others and is not sent again "
        "(refused domains: %s; SMTP %s)",
        len(refused),
        recipient_count,
        ", ".join(domains),
        ", ".join(str(code) for code in codes),
    )


class ReportsRefusedRecipients:
    """An smtplib connection whose sendmail logs the recipients the server refused while it accepted others."""

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):
        refused = super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        if refused:
            log_refused_recipients(refused, len(to_addrs))
        return refused


class SMTP(ReportsRefusedRecipients, smtplib.SMTP):
    pass


class SMTP_SSL(ReportsRefusedRecipients, smtplib.SMTP_SSL):
    pass


class EmailBackend(smtp.EmailBackend):
    """Django's SMTP backend (EMAIL_USE_TLS, EMAIL_USE_SSL and the rest as usual) on connections that
    log a partial refusal."""

    @property
    def connection_class(self):
        return SMTP_SSL if self.use_ssl else SMTP
