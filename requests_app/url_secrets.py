"""Passwords and tokens written into a URL the DPO saves. Such a URL is shown to staff and auditors and kept in
the audit trail (never purged): the secret belongs elsewhere, in an environment variable for a source, in the
signing secret for a webhook."""

from urllib.parse import parse_qsl, urlsplit

# Query parameters that carry a credential (?password=..., ?token=...).
SECRET_PARAMETERS = {"password", "passwd", "pwd", "pass", "secret", "token", "access_token", "api_key", "apikey", "key"}


def carries_secret(url: str) -> bool:
    """Whether a URL holds a password or token: user:password@..., or one in its query."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all: its own validation says so
        return False
    return bool(password) or any(name.lower() in SECRET_PARAMETERS for name, _value in parse_qsl(parts.query))
