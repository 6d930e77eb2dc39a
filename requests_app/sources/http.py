"""HTTP sources: a partner system's JSON API.

The category's `query` is a path template with {identity}, joined to the
source's base URL. The token comes from the environment variable named by
the source and goes in its auth header. A response is either a JSON list of
records, or an object {"results": [...], "next": <url or null>}; `next`
links are followed page by page, so only one page is held at a time.
"""

from collections.abc import Iterator
from urllib.parse import quote, urljoin

import requests

from requests_app.sources.base import SourceError, mask_value, secret_from_env

TIMEOUT = (5, 30)  # seconds to connect, seconds between bytes
MAX_PAGES = 100_000


class HTTPConnector:
    def __init__(self, source, session: requests.Session | None = None):
        self.source = source
        self.session = session or requests.Session()
        token = secret_from_env(source)
        if token:
            header = source.http_auth_header or "Authorization"
            self.session.headers[header] = f"Bearer {token}" if header.lower() == "authorization" else token
        self.session.headers["Accept"] = "application/json"

    def _pages(self, url: str) -> Iterator[list[dict]]:
        for _ in range(MAX_PAGES):
            try:
                response = self.session.get(url, timeout=TIMEOUT)
            except requests.Timeout as error:
                raise SourceError(f"{self.source.slug}: timed out") from error
            except requests.ConnectionError as error:
                raise SourceError(f"{self.source.slug}: connection failed") from error
            if response.status_code in (401, 403):
                raise SourceError(f"{self.source.slug}: credentials refused (HTTP {response.status_code})")
            if response.status_code == 404:
                return  # no record of this identity
            if response.status_code >= 400:
                raise SourceError(f"{self.source.slug}: HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError as error:
                raise SourceError(f"{self.source.slug}: the response is not valid JSON") from error
            if isinstance(body, list):
                yield body
                return
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise SourceError(f"{self.source.slug}: unexpected JSON (expected a list or {{results, next}})")
            yield body["results"]
            if not body.get("next"):
                return
            url = urljoin(url, body["next"])
        raise SourceError(f"{self.source.slug}: more than {MAX_PAGES} pages")

    def _records(self, category, identities: list[str]) -> Iterator[dict]:
        base = self.source.connection_url.rstrip("/") + "/"
        for identity in identities:
            url = urljoin(base, category.query.lstrip("/").format(identity=quote(identity, safe="")))
            for page in self._pages(url):
                for record in page:
                    if not isinstance(record, dict):
                        raise SourceError(f"{self.source.slug}: a record is not a JSON object")
                    yield record

    def stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """Columns are the keys of the first record, in order; later records are fitted to them."""
        records = self._records(category, identities)
        first = next(records, None)
        if first is None:
            return [], iter(())
        columns = list(first)
        masked = set(category.masked_field_list)

        def rows():
            for record in _chain_first(first, records):
                yield tuple(mask_value(record.get(c)) if c in masked else record.get(c) for c in columns)

        return columns, rows()


def _chain_first(first, rest):
    yield first
    yield from rest
