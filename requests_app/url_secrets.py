"""Passwords and tokens written into a URL the DPO saves. Such a URL is shown to staff and auditors and kept in
the audit trail (never purged): the secret belongs elsewhere, in an environment variable for a source, in the
signing secret for a webhook."""

from urllib.parse import parse_qsl, urlsplit

# A query parameter whose name contains one of these carries a credential: ?auth_token=, ?client_secret=,
# ?sig= (a presigned or shared-access URL), ?api_key=, ?sslpassword=, ?PWD=. Generous on purpose: a harmless name
# refused (?author=) costs the DPO a rename; a secret let through stays in the audit trail for good.
SECRET_NAME_PARTS = ("token", "secret", "sig", "auth", "pwd", "password", "key", "credential")
# Whole names only: as parts they are in too many harmless words (compass, passenger).
SECRET_NAMES = {"pass", "passwd"}
# What a masked query value reads as in the audit trail.
MASK = "…"


def _secret_name(name: str) -> bool:
    name = name.strip().lower()
    return name in SECRET_NAMES or any(part in name for part in SECRET_NAME_PARTS)


def _connection_string_secret(value: str) -> bool:
    """Whether a parameter's value is a connection string holding a credential: pyodbc's
    ?odbc_connect=DRIVER=...;SERVER=...;UID=app;PWD=s3cret (decoded by then), or another Key=Value;... list."""
    return any(_secret_name(pair.split("=", 1)[0]) for pair in value.split(";") if "=" in pair)


def _web_address(parts) -> bool:
    return parts.scheme.lower() in ("http", "https")


def carries_secret(url: str) -> bool:
    """Whether a URL holds a password or token: user:password@..., in a web address a user name alone too
    (https://ghp_token@..., a token sent as the Basic user name), or one in its query or fragment (an OAuth
    #access_token=...), by name or inside a connection string given as a parameter. A database URL's user name
    alone is no secret (postgresql://app@db/crm, its password in the environment)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all: its own validation says so
        return False
    pairs = parse_qsl(parts.query) + parse_qsl(parts.fragment)
    user_info = bool(password) or (_web_address(parts) and parts.username is not None)
    return user_info or any(_secret_name(name) or _connection_string_secret(value) for name, value in pairs)


def masked(url: str) -> str:
    """`url` without what could be a secret, for the audit trail: its password (in a web address its user name too,
    as carries_secret) and the values of its query and fragment, each parameter's name kept (the trail still says
    that ?region= changed). A URL with a secret is refused when saved (carries_secret); this keeps the trail clean
    of whatever that does not know of. The rest is kept as written."""
    rest, hash_sign, fragment = url.partition("#")
    base, question_mark, query = rest.partition("?")
    try:
        parts = urlsplit(base)
        password, username = parts.password, parts.username
    except ValueError:  # not a URL: nothing in it is taken for a password
        parts, password, username = None, None, None
    if parts is not None and _web_address(parts) and username is not None:
        user_info = f"{MASK}:{MASK}" if password is not None else MASK
        base = base.replace(parts.netloc, f"{user_info}@{parts.netloc.rpartition('@')[2]}", 1)
    elif password is not None:
        base = base.replace(f":{password}@", f":{MASK}@", 1)
    return f"{base}{question_mark}{_masked_values(query)}{hash_sign}{_masked_values(fragment)}"


def _masked_values(text: str) -> str:
    """name=value&... with each value masked; a piece with no name (?s3cret) is masked whole."""
    return "&".join(
        f"{piece.partition('=')[0]}={MASK}" if "=" in piece else (MASK if piece else piece) for piece in text.split("&")
    )
