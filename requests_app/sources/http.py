"""HTTP sources: a partner system's JSON API.

The category's `query` is a path template with {identity}, joined to the
source's base URL. The token comes from the environment variable named by
the source and goes in its auth header. A response is either a JSON list of
records, or an object {"results": [...], "next": <url or null>}; `next`
links are followed page by page, so only one page is held at a time.

An identity (and below, a record key) goes into the path as one segment,
every "/" in it encoded. One that is "." or ".." is refused: it would take
the request up the path, to every customer's records say. Every URL built
from a value is checked, as it will be sent, to stay under the part of the
path before the value, or it is not sent.

Erasure, rectification, restriction and its lifting (the contract in sources/actions.py)
ask this of the partner's API, with the same token:

- The records to act on are read as for an export: GET on the category's
  path for each identity, every page. Each record carries the field named
  by the category's `record_key`, and lives at
  <the category's path for the identity>/<url-quoted key>.
- Erasure by deletion: DELETE on the record. A 404 counts as already
  deleted, so running it again is harmless.
- Erasure by anonymisation, rectification and restriction by flag: PATCH on
  the record with a JSON object of only the fields whose value changes. A
  record with nothing to change gets no request, so a second run sends none.
- Restriction to a list (the source's `restriction_list`, a path starting
  with /): POST {"identity": ...} to <base URL><path> for each identity.
  The partner must treat an identity already on the list as a no-op: every
  run posts every identity.
- Lifting a restriction: PATCH the flag back to false, as above, and DELETE
  <base URL><path>/<url-quoted identity> for each identity; a 404 counts as
  not on the list (any more), so running it again is harmless.

HTTP has no transaction. `apply` first re-reads every record and refuses
(StaleDryRun) if they no longer match the dry run, before changing
anything. A failure part-way through leaves the earlier records changed;
the retry then sees records that differ from the dry run and refuses too,
so staff run the dry run again and approve what is left. That is intended:
nothing is changed that a person did not approve. The error carries what
the run changed before failing (`changed_before_failing`), so the action's
result, and in the end the letter and the certificate, count it too. A run
that dies (its worker killed) cannot say so: `on_progress` hears what is
changed so far after every write ("changed", in the same form), so the action
keeps it for the run that takes over (services/actions.py).

A call that may succeed a moment later (it timed out, could not connect, its
page broke off, or it was answered 429, 502, 503 or 504) is made again after
each of HTTP_SOURCE_RETRY_DELAYS, or after the wait its Retry-After asks for
when longer (up to HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS; asked for more, it
fails at once, saying so). Every call above may be made twice, which is what
makes this safe even when the first one reached the partner and only its
answer was lost: a GET reads, a DELETE answered 404 is done, a PATCH sets
values (not adds to them), and a POST to the list is a no-op for an identity
already on it. Other answers are not retried: a 4xx says the request is wrong,
and a 500 says nothing of passing (a partner's bug one record sets off
answers it every time), so asking again would only delay the error and load
a system already failing. The run's heartbeat is stamped by a timer
(requests_app.heartbeat), so waiting between attempts never makes it look dead.
"""

import datetime
import email.utils
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from requests_app.models import ActionKind
from requests_app.sources.actions import (
    ActionPlan,
    CategoryWork,
    Fingerprint,
    StaleDryRun,
    changed_fields,
    combined_fingerprint,
    dated_before,
    differs,
    fingerprinted,
    new_values,
    refuse_identifiers_held,
)
from requests_app.sources.base import PassingFailure, SourceError, mask_value, retrying, secret_from_env

TIMEOUT = (5, 30)  # seconds to connect, seconds between bytes
MAX_PAGES = 100_000
# Answers that say the partner cannot answer for a moment, not that the request is wrong: asked again.
PASSING_STATUSES = frozenset({429, 502, 503, 504})

T = TypeVar("T")


def _retry_after(response: requests.Response) -> float | None:
    """The seconds a Retry-After header asks to wait, given as seconds or as an HTTP date; None without one
    that can be read (the connector's own delays apply then)."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, said not to be local time
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _origin(url: str) -> str:
    """scheme://host:port, the part of a URL a credential is bound to."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _as_sent(url: str) -> str:
    """`url` as requests puts it on the wire. Not always as built: requests (urllib3) resolves "." and ".." segments,
    then decodes %2E to "." (an unreserved character), leaving dots for the server to resolve."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url


class HTTPConnector:
    def __init__(self, source, session: requests.Session | None = None):
        self.source = source
        self.session = session or requests.Session()
        token = secret_from_env(source)
        if token:
            header = source.http_auth_header or "Authorization"
            self.session.headers[header] = f"Bearer {token}" if header.lower() == "authorization" else token
        self.session.headers["Accept"] = "application/json"

    def _url(self, path: str) -> str:
        return urljoin(self.source.connection_url.rstrip("/") + "/", path.lstrip("/"))

    def _category_url(self, category, identity: str) -> str:
        fixed_part = category.query.split("{identity}", 1)[0]
        url = self._url(category.query.format(identity=self._segment(identity)))
        return self._under(self._url(fixed_part), url)

    def _segment(self, value: str) -> str:
        """An identity or a record key as one path segment: every "/" in it encoded. A value of "." or ".." would
        still be a dot segment, which takes the request up the path (to every customer's records, say), and no
        encoding helps: requests turns %2E back into "." (_as_sent). So it is refused, naming no value."""
        segment = quote(value, safe="")
        if segment in (".", ".."):
            raise SourceError(f"{self.source.slug}: an identifier or record key of only dots cannot go in a path")
        return segment

    def _under(self, prefix: str, url: str) -> str:
        """`url`, once sure that, as sent, it reaches only paths under `prefix`: it starts with it, and has no "."
        or ".." segment for the server to resolve (sent as dots or as %2E). The last check before a request
        built from a value goes out, whatever built it."""
        sent = _as_sent(url)
        dot_segments = [segment for segment in urlsplit(sent).path.split("/") if unquote(segment) in (".", "..")]
        if dot_segments or not sent.startswith(_as_sent(prefix)):
            raise SourceError(f"{self.source.slug}: a request would leave the path it was built under; not sent")
        return url

    def _call(self, method: str, url: str, *, missing_ok: bool = False, **kwargs) -> requests.Response:
        """The request, made again while it fails in a way that may pass (see the module docstring)."""
        return self._retrying(partial(self._attempt, method, url, missing_ok=missing_ok, **kwargs))

    def _retrying(self, attempt: Callable[[], T]) -> T:
        return retrying(self.source, attempt, settings.HTTP_SOURCE_RETRY_DELAYS)

    def _attempt(self, method: str, url: str, *, missing_ok: bool = False, **kwargs) -> requests.Response:
        """One request. Failures name the source and their kind, never the response body (it may quote data);
        one that may pass is a PassingFailure."""
        if _origin(url) != _origin(self.source.connection_url):
            # The credential goes with every call: never to a host the DPO did not configure.
            raise SourceError(f"{self.source.slug}: a link leads outside the source ({_origin(url)})")
        try:
            # Redirects are not followed either, for the same reason.
            response = self.session.request(method, url, timeout=TIMEOUT, allow_redirects=False, **kwargs)
        # requests' own messages quote the URL, whose path may hold an identifier: the error names only their kind
        # (ConnectTimeout, SSLError...) and does not chain them, so no logged traceback carries the URL either.
        except requests.exceptions.SSLError as error:
            # A certificate refused is refused again: not asked twice.
            raise SourceError(f"{self.source.slug}: connection failed ({type(error).__name__})") from None
        except requests.Timeout as error:
            raise PassingFailure(f"timed out ({type(error).__name__})") from None
        except requests.ConnectionError as error:
            raise PassingFailure(f"connection failed ({type(error).__name__})") from None
        refusal = self._refusal(response, missing_ok)
        if refusal:
            response.close()  # a page read as a stream (_pages) holds its connection until closed
            if response.status_code in PASSING_STATUSES:
                asked, most = _retry_after(response) or 0, settings.HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS
                if asked > most:
                    raise SourceError(
                        f"{self.source.slug}: {refusal}, and the source asks to be called again in {math.ceil(asked)} s, "
                        f"longer than the {most} s waited at most (HTTP_SOURCE_RETRY_AFTER_MAX_SECONDS)"
                    )
                raise PassingFailure(refusal, asked)
            raise SourceError(f"{self.source.slug}: {refusal}")
        return response

    @staticmethod
    def _refusal(response: requests.Response, missing_ok: bool) -> str:
        """What is wrong with the answer's status, or "" for none."""
        if 300 <= response.status_code < 400:
            return f"redirected (HTTP {response.status_code}); give the final address"
        if response.status_code in (401, 403):
            return f"credentials refused (HTTP {response.status_code})"
        if response.status_code >= 400 and not (missing_ok and response.status_code == 404):
            return f"HTTP {response.status_code}"
        return ""

    def _pages(self, url: str) -> Iterator[list[dict]]:
        seen = set()
        for _ in range(MAX_PAGES):
            if url in seen:
                raise SourceError(f"{self.source.slug}: a next link leads back to a page already read")
            seen.add(url)
            content = self._retrying(partial(self._page, url))
            if content is None:
                return  # no record of this identity
            try:
                body = json.loads(content)
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

    def _page(self, url: str) -> bytes | None:
        """One attempt at the page at `url`: its body, or None for a 404 (no record of this identity). A page
        that broke off is asked for again as a whole, as one that failed to start."""
        response = self._attempt("GET", url, missing_ok=True, stream=True)
        if response.status_code == 404:
            response.close()
            return None
        return self._page_content(response)

    def _page_content(self, response: requests.Response) -> bytes:
        """The page's body, read up to HTTP_SOURCE_MAX_PAGE_BYTES: past it, a SourceError, not a worker out of memory."""
        limit = settings.HTTP_SOURCE_MAX_PAGE_BYTES
        content = bytearray()
        with response:
            try:
                for chunk in response.iter_content(chunk_size=1024 * 1024):
                    content += chunk
                    if len(content) > limit:
                        raise SourceError(
                            f"{self.source.slug}: a page is larger than {limit:,} bytes "
                            "(HTTP_SOURCE_MAX_PAGE_BYTES): the API should page its answer ({results, next})"
                        )
            except requests.RequestException as error:  # cut, or silent, part-way: as _attempt, the URL is left out
                raise PassingFailure(f"the answer broke off ({type(error).__name__})") from None
        return bytes(content)

    def _identity_records(self, url: str) -> Iterator[dict]:
        for page in self._pages(url):
            for record in page:
                if not isinstance(record, dict):
                    raise SourceError(f"{self.source.slug}: a record is not a JSON object")
                yield record

    def _records(self, category, identities: list[str]) -> Iterator[dict]:
        for identity in identities:
            yield from self._identity_records(self._category_url(category, identity))

    def stream(self, category, identities: list[str]) -> tuple[list[str], Iterator[tuple]]:
        """Columns are every key any record has, in the order first seen: records need not share their
        keys, and a field only a later record has is the subject's data too. So the records go to an
        anonymous temporary file first (one page in memory at a time, nothing left on disk after), and
        the rows are read back from it."""
        spool = tempfile.TemporaryFile("w+", encoding="utf-8")
        columns = {}
        try:
            for record in self._records(category, identities):
                columns.update(dict.fromkeys(record))
                spool.write(json.dumps(record, cls=DjangoJSONEncoder) + "\n")
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        masked = set(category.masked_field_list)

        def rows():
            with spool:
                for line in spool:
                    record = json.loads(line)
                    yield tuple(mask_value(record.get(c)) if c in masked else record.get(c) for c in columns)

        return list(columns), rows()

    # --- Erasure, rectification, restriction and its lifting (see sources/actions.py)

    def preview(self, plan: ActionPlan) -> dict:
        scans = [self._scan(plan, work) for work in plan.categories]
        self._refuse_identifiers_held(plan, scans)
        return {
            "categories": [scan["counts"] for scan in scans],
            "list_entries": len(self._list_writes(plan)),
            "fingerprint": combined_fingerprint([scan["fingerprint"] for scan in scans]),
        }

    def apply(self, plan: ActionPlan, fingerprint: str, on_progress=lambda progress: None) -> dict:
        """Changes nothing unless every record still matches the dry run; see the module docstring
        for what a failure part-way leaves behind."""
        scans = [self._scan(plan, work) for work in plan.categories]
        if combined_fingerprint([scan["fingerprint"] for scan in scans]) != fingerprint:
            raise StaleDryRun(f"{self.source.slug}: the records changed since the dry run")
        list_writes = self._list_writes(plan)  # a misconfigured list, or an entry it cannot send, fails before any change
        self._refuse_identifiers_held(plan, scans)
        # What this run changed, per category, for a failure part-way to report (there is no rollback).
        changed = [{"category": scan["counts"]["category"], "rows": 0, "fields": 0, "deleted": scan["deletes"]} for scan in scans]

        def so_far() -> list[dict]:
            return [dict(counts) for counts in changed if counts["rows"]]

        try:
            for done, (scan, counts) in enumerate(zip(scans, changed), start=1):
                for method, url, body, fields in scan["writes"]:
                    if method == "DELETE":
                        self._call("DELETE", url, missing_ok=True)  # already gone is what we want
                    else:
                        # DjangoJSONEncoder writes the dates and decimals a rectification may carry.
                        self._call("PATCH", url, data=json.dumps(body, cls=DjangoJSONEncoder),
                                   headers={"Content-Type": "application/json"})
                    counts["rows"] += 1
                    counts["fields"] += fields
                    # After every write: what is changed for good so far is recorded at once (a run that
                    # dies leaves it for the next to count), and a run that lost its claim stops here.
                    on_progress({"categories_done": done - 1, "categories_total": len(scans), "changed": so_far()})
                on_progress({"categories_done": done, "categories_total": len(scans), "changed": so_far()})
            for method, url, body in list_writes:
                if method == "DELETE":
                    self._call("DELETE", url, missing_ok=True)  # not on the list (any more) is what we want
                else:
                    self._call("POST", url, json=body)
                on_progress({"categories_done": len(scans), "categories_total": len(scans), "changed": so_far()})
        except Exception as error:
            error.changed_before_failing = {"categories": so_far()}
            raise
        return {"categories": [scan["counts"] for scan in scans], "list_entries": len(list_writes)}

    def _refuse_identifiers_held(self, plan: ActionPlan, scans: list[dict]) -> None:
        refuse_identifiers_held(self.source, plan, [scan["counts"]["rows"] for scan in scans], self._count_found_by)

    def _count_found_by(self, category, value: str) -> int:
        """How many records a search of `category` by `value` finds, read as the package and the actions read them."""
        if not category.query:
            return 0
        return sum(1 for _record in self._identity_records(self._category_url(category, value)))

    def _scan(self, plan: ActionPlan, work: CategoryWork) -> dict:
        """Read the category's records: their count, the fields the action changes, their fingerprint,
        and the requests that make the change (held for one subject's records)."""
        category = work.category
        if not category.record_key:
            raise SourceError(f"{self.source.slug}: category {category.slug} has no record key to act on")
        deletes = plan.kind == ActionKind.ERASE and work.deletes
        fingerprint, rows, fields, writes = Fingerprint(), 0, 0, []
        for identity in plan.identities:
            read_url = self._category_url(category, identity)
            # A query string in the path template is for reading; records live under the path itself.
            records_url = read_url.split("?", 1)[0].rstrip("/")
            for record in self._identity_records(read_url):
                if work.kept_from is not None and not dated_before(record.get(work.dated_by), work.kept_from):
                    continue  # recent enough for the category's rolling legal hold: kept
                key = record.get(category.record_key)
                if key is None or key == "":
                    raise SourceError(
                        f"{self.source.slug}: a record of category {category.slug} has no {category.record_key!r} field"
                    )
                fingerprint.add(fingerprinted(work, plan.kind, record))
                rows += 1
                record_fields = changed_fields(work, plan.kind, record)
                fields += record_fields
                url = self._under(f"{records_url}/", f"{records_url}/{self._segment(str(key))}")
                if deletes:
                    writes.append(("DELETE", url, None, record_fields))
                    continue
                patch = {
                    name: value for name, value in new_values(work, plan.kind, record).items()
                    if differs(record.get(name), value)
                }
                if patch:
                    writes.append(("PATCH", url, patch, record_fields))
        return {
            "counts": {"category": category.slug, "rows": rows, "fields": fields},
            "fingerprint": fingerprint.hexdigest(),
            "writes": writes,
            "deletes": bool(deletes),
        }

    def _list_writes(self, plan: ActionPlan) -> list[tuple[str, str, dict | None]]:
        """The requests (method, URL, JSON body) by which a restriction posts each identity to the source's
        restriction list, or its lifting removes each from it: none without a list."""
        if plan.kind not in (ActionKind.RESTRICT, ActionKind.LIFT_RESTRICTION) or not plan.restriction_list:
            return []
        if not plan.restriction_list.startswith("/"):
            raise SourceError(f"{self.source.slug}: an HTTP restriction list must be a path starting with /")
        list_url = self._url(plan.restriction_list)
        if plan.kind == ActionKind.LIFT_RESTRICTION:
            entries = f"{list_url.rstrip('/')}/"
            return [("DELETE", self._under(entries, entries + self._segment(identity)), None) for identity in plan.identities]
        return [("POST", list_url, {"identity": identity}) for identity in plan.identities]

