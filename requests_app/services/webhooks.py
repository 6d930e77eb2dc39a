"""Signed webhooks to the organisations that file requests over the API.

Events are recorded as WebhookDelivery rows in the transaction that causes
them (for `request.created`, the intake's follow-up task, or the first other
event to an endpoint not yet sent it, whichever comes first: emit_created) and sent after commit. A failed attempt stores its next attempt time
(exponential backoff); a periodic job sends what is due, through an index.
After WEBHOOK_RETRY_WINDOW of failures the delivery fails, the endpoint is
disabled and the DPO is told.

Signature: header `Webhook-Signature: t=<unix time>,v1=<hex>` where hex is
HMAC-SHA256(secret, f"{t}.{body}"). While an endpoint's secret is being rolled
(roll_secret), the previous secret signs too: a second `v1=`, last, so that a
receiver that reads only the last one and still holds the old secret goes on
working. Each attempt is signed with the secrets valid when it is made. The
README shows how to check it.

The body's `created_at` is written as the API writes its times (api.fields.MomentField:
ISO 8601 in TIME_ZONE with its offset, six digits of microseconds), so a portal reads one
format; the signature's `t` stays Unix seconds.
"""

import contextvars
import datetime
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import zoneinfo
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from requests_app import deadlines, roles, tasks
from requests_app.api.fields import MomentField
from requests_app.audit import Actor, record_event
from requests_app.lifecycle import RequestError
from requests_app.models import (
    DeliveryStatus,
    PrivacyRequest,
    SentNotification,
    Status,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_webhook_secret,
)
from requests_app.purging import delete_in_batches
from requests_app.url_secrets import carries_secret

logger = logging.getLogger(__name__)

MAX_BACKOFF = datetime.timedelta(hours=1)
# A minute: the job that sends due retries runs every minute (dispatch-due-webhooks), so a
# shorter first wait would only be rounded up to it.
FIRST_BACKOFF_SECONDS = 60


def request_payload(request: PrivacyRequest) -> dict:
    """What an event says about a request: ids, reference, state and dates; no personal data."""
    return {
        "request": str(request.public_id),
        "reference": request.reference,
        "status": request.status,
        "due_on": request.due_on.isoformat() if request.due_on else None,
    }


def emit_created(request: PrivacyRequest) -> None:
    """Queue `request.created` for each endpoint of the request's organisation not yet sent it, inside the caller's
    transaction: once per endpoint, claimed by a SentNotification row keyed by the endpoint (unique: of two
    transactions claiming at once, the second waits for the first, then finds it claimed).

    The intake's follow-up task sends it; any other event about the request sends it first to each endpoint not yet
    sent it (the task has not run yet, a backlog or a lost message; or the endpoint was added since), so a portal
    never hears of a request's change before the request itself. It describes the request as filed: new, with its
    first due date.
    """
    with transaction.atomic():  # a savepoint in the caller's transaction; the lock needs one
        current = _lock_request(request)
        endpoints = WebhookEndpoint.objects.filter(organisation_id=current.organisation_id)
        untold = [endpoint for endpoint in endpoints if _claim_created(current, endpoint)]
        if untold:
            # The first due date as intake.set_first_deadline set it, not original_due_on: that one has the finished
            # pauses added, so a request.created sent after a pause would give a later date than the API did at filing.
            filed_due_on = deadlines.due_date(current.regime, current.received_at, rights=current.requested_rights)
            as_filed = {"status": Status.NEW, "due_on": filed_due_on.isoformat()}
            _queue(current, WebhookEvent.REQUEST_CREATED, as_filed, untold)


def _lock_request(request: PrivacyRequest) -> PrivacyRequest:
    """The request, locked and read again, before any event row is written: in the order every writer takes its
    locks (the request first, then its packages, actions, claims and deliveries).

    A claim row inserted first takes a share lock on the request (its foreign key) and holds it: a status change
    holding the request's lock then waited for that claim, the claim's transaction for the request's lock, and
    PostgreSQL broke the deadlock by failing one of them (the follow-up task, or the staff's change). Also, the
    caller's copy may lag behind, and events about one request are dated one transaction after another
    (_event_moment reads the ones before). A caller that changed the request holds the lock already.
    """
    return PrivacyRequest.objects.select_for_update().get(pk=request.pk)


def _claim_created(request: PrivacyRequest, endpoint: WebhookEndpoint) -> bool:
    _, first = SentNotification.objects.get_or_create(
        request=request,
        kind="webhook",
        key=f"{WebhookEvent.REQUEST_CREATED}:{endpoint.public_id}",
        # Sent when queued: the delivery retries on its own, and an unsent claim
        # would wait in the deadline sweep's index of unsent alerts.
        defaults={"sent_at": timezone.now()},
    )
    return first


# The error of a delivery not attempted because its endpoint is switched off.
ENDPOINT_DISABLED = "endpoint disabled"


def emit(request: PrivacyRequest, event: str, extra: dict | None = None) -> None:
    """Queue `event` about `request` for each endpoint of its organisation (inside the caller's transaction), after
    `request.created` for those not yet sent it (emit_created)."""
    if request.organisation_id is None:
        return
    with transaction.atomic():  # a savepoint in the caller's transaction; the lock needs one
        current = _lock_request(request)
        endpoints = list(WebhookEndpoint.objects.filter(organisation_id=current.organisation_id))
        if not endpoints:
            return
        emit_created(current)
        # Read again: emit_created may have moved updated_at on (_event_moment).
        _queue(_lock_request(current), event, extra, endpoints)


def _queue(current: PrivacyRequest, event: str, extra: dict | None, endpoints: Sequence[WebhookEndpoint]) -> None:
    """One delivery of `event` per endpoint, sent once the caller's transaction commits. `current` is the request as
    locked by _lock_request.

    A disabled endpoint's delivery is recorded failed, not attempted: the delivery log keeps what happened
    during the outage, for the DPO to redeliver once the endpoint is switched on again.
    """
    data = {**request_payload(current), **(extra or {})}
    for endpoint in endpoints:
        occurred_at = _event_moment(current, event, endpoint)
        if not endpoint.active:
            WebhookDelivery.objects.create(
                endpoint=endpoint, event=event, payload=data, request_public_id=current.public_id,
                status=DeliveryStatus.FAILED, last_error=ENDPOINT_DISABLED, occurred_at=occurred_at,
            )
            continue
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event=event, payload=data, request_public_id=current.public_id,
            next_attempt_at=timezone.now(), occurred_at=occurred_at,
        )
        tasks.queue_after_commit(tasks.deliver_webhook, delivery.id)


def _event_moment(current: PrivacyRequest, event: str, endpoint: WebhookEndpoint) -> datetime.datetime:
    """The event's `created_at`: a moment after every event about the request queued to the endpoint before it, the
    order receivers are told to sort them in.

    `request.created` is dated when the request was created, even when it is queued late, just before the change
    that made it due: dated with that change it tied with it, and a receiver could put a withdrawn request back to
    new. Any other event is dated with the request's `updated_at`, so that a portal asking for `updated_since` that
    moment finds the request; where that would tie with an earlier event (two in one transaction: a due date moved
    by a status change), it is a microsecond after it, and the request's `updated_at` moves there too, for the same
    reason.
    """
    moment = current.created_at if event == WebhookEvent.REQUEST_CREATED else current.updated_at
    latest = WebhookDelivery.objects.filter(endpoint=endpoint, request_public_id=current.public_id).aggregate(
        latest=Max("occurred_at")
    )["latest"]
    if latest is not None and moment <= latest:
        moment = latest + datetime.timedelta(microseconds=1)
        if moment > current.updated_at:
            PrivacyRequest.objects.filter(pk=current.pk).update(updated_at=moment)
            current.updated_at = moment
    return moment


def sign(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<timestamp>,v1=<hex>`, with one `v1=` per secret, in the order given."""
    signed = f"{timestamp}.".encode() + body
    digests = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])


def api_datetime(moment: datetime.datetime) -> str:
    """`moment` as the API's serializers write it (MomentField), in TIME_ZONE whatever time
    zone the sending thread has active, so that every attempt of an event says the same."""
    return MomentField(default_timezone=zoneinfo.ZoneInfo(settings.TIME_ZONE)).to_representation(moment)


def backoff(attempts: int) -> datetime.timedelta:
    """1 min, 2 min, 4 min, ... capped at an hour."""
    return min(datetime.timedelta(seconds=FIRST_BACKOFF_SECONDS * 2 ** (attempts - 1)), MAX_BACKOFF)


def deliver(*, delivery_id: int) -> bool:
    """Try to send one delivery now. Safe to run twice. Returns whether this call delivered it.

    The attempt is claimed in a short transaction that moves `next_attempt_at`
    on (a lease: no other run takes it meanwhile); the HTTP call runs outside
    any transaction, so a slow endpoint holds no database lock; the outcome
    is recorded in a second short transaction.
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None or (delivery.next_attempt_at and delivery.next_attempt_at > now):
            return False
        if not delivery.endpoint.active:
            delivery.status, delivery.next_attempt_at, delivery.last_error = DeliveryStatus.FAILED, None, ENDPOINT_DISABLED
            delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
            return False
        delivery.attempts += 1
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        delivery.save(update_fields=["attempts", "next_attempt_at"])

    endpoint = delivery.endpoint
    body = json.dumps(
        {"id": str(delivery.event_id), "type": delivery.event, "created_at": api_datetime(delivery.occurred_at), "data": delivery.payload},
        separators=(",", ":"),
    ).encode()
    status_code, error = None, ""
    try:
        # The secrets valid at this attempt: a retry after a roll carries the new secret's signature.
        status_code = post_signed(endpoint.url, secrets=endpoint.signing_secrets(), webhook_id=str(delivery.event_id), body=body)
    except AttemptFailed as failure:
        error = failure.message
    except SoftTimeLimitExceeded:
        # The task's time limit came first: still an attempt, recorded and retried as any other.
        error = TooSlow.message
    except (requests.RequestException, ValidationError) as failure:
        error = type(failure).__name__
    except Exception as failure:
        # Whatever else went wrong is a failed attempt too. Let through, it would skip the outcome below:
        # the delivery would stay pending with no error, never failed, its endpoint never disabled.
        logger.exception("webhook %s attempt %s failed", delivery.public_id, delivery.attempts)
        error = type(failure).__name__
    ok = status_code is not None and 200 <= status_code < 300

    with transaction.atomic():
        outcome = {"last_status_code": status_code, "last_error": error[:300]}
        if ok:
            outcome.update(status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None)
        elif timezone.now() - delivery.created_at >= settings.WEBHOOK_RETRY_WINDOW:
            outcome.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
            # Only an endpoint that took nothing for the whole window is switched off: one that refuses this
            # event but takes the others works, and this one waits in the log to be redelivered.
            if not WebhookDelivery.objects.filter(endpoint=endpoint, delivered_at__gte=delivery.created_at).exists():
                _disable(endpoint)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**outcome)
    logger.info("webhook %s attempt %s: %s", delivery.public_id, delivery.attempts, outcome.get("status", "retry"))
    return ok


def post_signed(url: str, *, secrets: Sequence[str], webhook_id: str, body: bytes) -> int:
    """POST `body` signed with each of `secrets`; returns the HTTP status. Raises ValidationError for a
    plain-http URL in production, InternalAddressRefused (nothing sent) for a host that resolves to an
    internal address, TooSlow for an endpoint (ResolutionTooSlow for its host name) that did not answer within
    WEBHOOK_TIMEOUT_SECONDS, and requests' errors for the network's other failures.

    The host name is resolved once, here, and the request connects to the address checked: a name
    whose DNS answer changes between a check and a connection (DNS rebinding) cannot slip through.
    TLS still sends the host name (SNI) and checks the certificate against it, and the Host header
    is the URL's. Proxy environment variables are not used: a proxy would resolve the name again.

    The whole attempt (resolving the name, connecting, sending, and reading the status and headers of the answer)
    ends within WEBHOOK_TIMEOUT_SECONDS of its start, however slowly the resolver answers (_resolve: ResolutionTooSlow)
    or the endpoint sends (_Deadline: TooSlow). The answer's body is never read, so neither its size nor its pace
    matters: its status is all a delivery uses.
    """
    check_scheme(url)
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as failure:  # "[::1", a port past 65535: the URL field refuses them when saved
        raise requests.exceptions.InvalidURL(str(failure)) from failure
    with _Deadline(settings.WEBHOOK_TIMEOUT_SECONDS) as deadline:
        try:
            return _post_pinned(parts, port, deadline, secrets=secrets, webhook_id=webhook_id, body=body)
        except AttemptFailed:
            raise
        except Exception as failure:
            if deadline.expired:  # the deadline shut the connection down under it
                raise TooSlow() from failure
            raise


def _post_pinned(parts, port: int, deadline: "_Deadline", *, secrets: Sequence[str], webhook_id: str, body: bytes) -> int:
    userinfo, _at, host_and_port = parts.netloc.rpartition("@")
    addresses = _checked_addresses(parts.hostname or "", port, deadline)
    for address in addresses:
        if deadline.expired:
            raise TooSlow()
        pinned_netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        pinned_url = urlunsplit(parts._replace(netloc=f"{userinfo}@{pinned_netloc}" if userinfo else pinned_netloc))
        with requests.Session() as session:
            session.trust_env = False
            adapter = _PinnedAdapter(parts.hostname)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            try:
                with session.post(
                    pinned_url,
                    data=body,
                    headers={
                        "Host": host_and_port,
                        "Content-Type": "application/json",
                        "User-Agent": "PrivacyPortal-Webhooks/1",
                        "Webhook-Id": webhook_id,
                        "Webhook-Signature": sign(secrets, int(time.time()), body),
                    },
                    timeout=deadline.left(),
                    allow_redirects=False,
                    stream=True,  # returns once the headers are in; closing the answer leaves its body unread
                ) as response:
                    if deadline.expired:
                        # Ended by the deadline's shutdown, which reads as the end of the headers (or of the body).
                        raise TooSlow()
                    return response.status_code
            except requests.ConnectionError:
                # Not connected (an IPv6 address this server cannot reach, say): the next address, as a client
                # resolving the name itself would try, until the last one's failure is the delivery's.
                if address == addresses[-1] or deadline.expired:
                    raise
                continue


class AttemptFailed(Exception):
    """An attempt that failed in a way the delivery log and the notice say in words: `message` is an msgid,
    translated where shown."""

    message = ""

    def __init__(self):
        super().__init__(self.message)


class InternalAddressRefused(AttemptFailed):
    """The URL's host resolves to an internal address: nothing was sent. (The address itself is not
    said, so that the log does not tell what an internal name resolves to.)"""

    message = gettext_noop("Refused: the host resolves to an internal address (loopback, private, link-local or reserved).")


class TooSlow(AttemptFailed):
    """The endpoint had not answered (a status and its headers) when the attempt's time was up."""

    message = gettext_noop("Too slow: the endpoint did not answer in time.")


class ResolutionTooSlow(TooSlow):
    """The resolver had not answered for the URL's host name when the attempt's time was up: nothing was sent.
    (A DNS problem, not the endpoint's: the log says so. The name itself is not said.)"""

    message = gettext_noop("Too slow: the host name did not resolve in time.")


# The deadline of the attempt under way in this thread, which watches each connection the attempt opens.
_attempt_deadline: contextvars.ContextVar["_Deadline"] = contextvars.ContextVar("webhook_attempt_deadline")


class _Deadline:
    """The whole time an attempt may take, enforced. A socket's timeout counts each read apart: an endpoint sending
    its answer a byte every few seconds never trips it, and held the worker until the task's time limit. When this
    deadline is up, the attempt's connections are shut down instead, and the read or write blocked on one ends."""

    def __init__(self, seconds: float):
        self.ends_at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def left(self) -> float:
        """Seconds left, for the sockets' own timeouts (connecting, and the TLS handshake, which count as one)."""
        return max(self.ends_at - time.monotonic(), 0.01)

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the socket's descriptor: shutting it down shuts the connection down, TLS or not, and being
        # ours, it cannot be closed and its number given to another socket before the timer fires.
        duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        with self._lock:
            self._watched.append(duplicate)
            if self.expired:
                _shut_down(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for duplicate in self._watched:
                _shut_down(duplicate)

    def __enter__(self) -> "_Deadline":
        self._token = _attempt_deadline.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        _attempt_deadline.reset(self._token)
        with self._lock:
            for duplicate in self._watched:
                duplicate.close()
            self._watched.clear()


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


class _Watched:
    """A connection the attempt's deadline watches from the moment it connects, its TLS handshake included."""

    def _new_conn(self):
        sock = super()._new_conn()
        _attempt_deadline.get().watch(sock)
        return sock


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _PinnedAdapter(HTTPAdapter):
    """Connects to the address in the URL (the one checked), under the attempt's deadline; TLS sends and verifies
    `host_name`."""

    def __init__(self, host_name: str):
        self.host_name = host_name  # before super().__init__(), which builds the pool manager
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, server_hostname=self.host_name, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def _checked_addresses(host: str, port: int, deadline: "_Deadline") -> list[str]:
    """The addresses to connect to, in the resolver's order: those `host` resolves to, if none of them is
    internal (unless WEBHOOK_ALLOW_PRIVATE_ADDRESSES). The only lookup of the attempt: it connects to these."""
    try:
        answers = _resolve(host, port, deadline)
    except (socket.gaierror, UnicodeError) as failure:
        raise requests.ConnectionError(f"cannot resolve the host: {failure}") from failure
    addresses = list(dict.fromkeys(sockaddr[0] for *_rest, sockaddr in answers))
    if not settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES and any(_is_internal(address) for address in addresses):
        raise InternalAddressRefused()
    return addresses


# Lookups started by this process whose resolver has not answered yet, at most WEBHOOK_MAX_PENDING_LOOKUPS.
_pending_lookups = 0
_pending_lookups_lock = threading.Lock()


def _resolve(host: str, port: int, deadline: "_Deadline") -> list[tuple]:
    """socket.getaddrinfo(host, port), given up on (ResolutionTooSlow) when the attempt's deadline is up.

    getaddrinfo has no timeout of its own: behind a slow or black-holed DNS server it waits as long as the
    system's resolver settings allow, and with several nameservers and search domains that is far past the
    deadline, holding the worker all the while (_Deadline watches sockets, and the resolver's are not ours).
    So it runs in a thread of its own, waited for until the deadline only. A lookup still blocked then is left to
    end by itself (the resolver gives up in the end): its thread is a daemon, so it holds up neither this
    attempt nor the worker's exit, and its answer is dropped. A thread rather than another resolver (dnspython,
    say): the name is resolved exactly as before, /etc/hosts and the system's DNS settings included.

    While DNS is black-holed every attempt would leave one more such thread behind, each waiting out the
    resolver's retries: a worker sending a steady flow of deliveries and notices piled them up. So at most
    WEBHOOK_MAX_PENDING_LOOKUPS lookups are in flight per process; with all of them still waiting, the attempt
    fails at once (ResolutionTooSlow, nothing sent) and the delivery is tried again at its next attempt, as one
    whose lookup ran out of time.
    """
    global _pending_lookups
    with _pending_lookups_lock:
        if _pending_lookups >= settings.WEBHOOK_MAX_PENDING_LOOKUPS:
            raise ResolutionTooSlow()
        _pending_lookups += 1
    outcome: dict[str, object] = {}

    def look_up() -> None:
        global _pending_lookups
        try:
            outcome["answers"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as failure:  # handed to the attempt, which says what it was
            outcome["failure"] = failure
        finally:
            with _pending_lookups_lock:
                _pending_lookups -= 1

    lookup = threading.Thread(target=look_up, name="webhook-resolve", daemon=True)
    try:
        lookup.start()
    except RuntimeError:  # no thread to be had: the slot taken above is given back, or it would be lost for good
        with _pending_lookups_lock:
            _pending_lookups -= 1
        raise
    lookup.join(deadline.left())
    if lookup.is_alive():
        raise ResolutionTooSlow()
    if "failure" in outcome:
        raise outcome["failure"]
    return outcome["answers"]


def _is_internal(address: str) -> bool:
    """Whether `address` (an IPv4 or IPv6 address) is one no webhook may reach: loopback, private,
    shared (carrier-grade NAT), link-local, site-local, multicast, reserved or unspecified, and the
    same behind an IPv4-mapped or 6to4 IPv6 address (::ffff:127.0.0.1, 2002:7f00:1::)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour):
        ip = ip.ipv4_mapped or ip.sixtofour  # the IPv4 address it carries (a 6to4 relay would reach it)
    # is_global is false for the private, loopback, link-local, unspecified and shared ranges (IANA's
    # special-purpose registries) but true for multicast and some reserved ranges, hence those too.
    site_local = ip.version == 6 and ip.is_site_local
    return not ip.is_global or ip.is_multicast or ip.is_reserved or site_local


def check_scheme(url: str) -> None:
    """HTTPS only; plain http:// too with WEBHOOK_ALLOW_HTTP (development and tests, on 127.0.0.1), and never
    another scheme (ftp://), which no delivery could use."""
    allowed = ("https://", "http://") if settings.WEBHOOK_ALLOW_HTTP else ("https://",)
    if not url.lower().startswith(allowed):
        raise ValidationError(_("Use an https:// address: events and notices are sent only over HTTPS."))


def check_url(url: str) -> None:
    """A URL the DPO saves: its scheme (check_scheme), no password or token in it (carries_secret) and, unless
    WEBHOOK_ALLOW_PRIVATE_ADDRESSES, a host that is not an internal address as written (127.0.0.1, [::1],
    2130706433, localhost). A host name is not resolved here (its answer may change, and a name not yet in DNS
    is no error): post_signed resolves it at each delivery and refuses an internal answer."""
    check_scheme(url)
    if carries_secret(url):
        # The URL shows on the webhooks page, in the disabled-endpoint email and in audit events, kept for good.
        raise ValidationError(
            _("Leave passwords and tokens out of the address (user:password@, ?token=...): staff see it and the audit trail keeps it. Events and notices are signed with a secret of their own.")
        )
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return  # not a URL: the URL field's own validation says so
    if host == "localhost" or host.endswith(".localhost") or _is_internal_literal(host):
        raise ValidationError(
            _("This address is internal (loopback, private, link-local or reserved): events and notices are sent only to public addresses.")
        )


def _is_internal_literal(host: str) -> bool:
    """Whether `host` is an IP address, in any form the resolver reads as one (127.1, 0x7f000001), that is internal."""
    try:
        answers = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return False  # a name, checked when it is resolved, at each delivery
    return any(_is_internal(sockaddr[0]) for *_rest, sockaddr in answers)


def _disable(endpoint: WebhookEndpoint) -> None:
    """An endpoint that failed for the whole retry window stops receiving events; the DPO is told (the alert is owed
    with the disabling: the lost-work sweep sends it if its task is lost)."""
    now = timezone.now()
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(
        active=False, disabled_at=now, disabled_alert_queued_at=now, disabled_alert_sent_at=None
    ):
        tasks.queue_after_commit(tasks.send_webhook_disabled_email, endpoint.id)
        logger.warning("webhook endpoint %s disabled after failing for the retry window", endpoint.public_id)


def dispatch_due(*, now: datetime.datetime | None = None, limit: int = 500) -> int:
    """Queue the deliveries whose next attempt is due (a partial index keeps this cheap)."""
    due = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now or timezone.now())
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
    for delivery_id in due:
        tasks.deliver_webhook.delay(delivery_id)
    return len(due)


def purge_deliveries(*, batch_size: int = 1000) -> int:
    """Delete the deliveries done (delivered or failed) and queued more than WEBHOOK_DELIVERY_RETENTION ago; returns
    how many. A pending one stays, however old: it is still being sent, and its row is what sends it.

    A batch at a time, oldest first, each deleted in its own short statement: the first run after years of log
    neither holds a long transaction nor locks every old row at once. Safe to run twice or concurrently: a
    delivery done stays done (a redelivery is a new one), so the second run finds fewer, or none.
    """
    cutoff = timezone.now() - settings.WEBHOOK_DELIVERY_RETENTION
    old = WebhookDelivery.objects.filter(created_at__lt=cutoff, status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED])
    purged = delete_in_batches(old, order_by=("created_at", "id"), batch_size=batch_size)
    if purged:
        logger.info("purged %d webhook deliveries queued before %s", purged, cutoff.date())
    return purged


def redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Staff send a delivered or failed event again: a new delivery (with its own log line and
    retries) of the same event, under the same `Webhook-Id`. Refused while the event is still
    being sent to that endpoint, which would send it twice at once."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)  # one redelivery at a time
        if not endpoint.active:
            raise RequestError(_("The endpoint is disabled: re-activate it first."))
        if WebhookDelivery.objects.filter(
            endpoint_id=delivery.endpoint_id, event_id=delivery.event_id, status=DeliveryStatus.PENDING
        ).exists():
            raise RequestError(_("This event is still being delivered to that endpoint: wait for the outcome."))
        copy = WebhookDelivery.objects.create(
            event_id=delivery.event_id,
            occurred_at=delivery.occurred_at,
            endpoint=endpoint,
            event=delivery.event,
            payload=delivery.payload,
            request_public_id=delivery.request_public_id,
            next_attempt_at=timezone.now(),
        )
        tasks.queue_after_commit(tasks.deliver_webhook, copy.id)
    return copy


def roll_secret(*, endpoint: WebhookEndpoint, actor: Actor, secret_seen_at: datetime.datetime | None) -> str:
    """Issue the endpoint a new secret and return it, for the DPO to see once (it is neither logged nor audited).

    The secret it replaces goes on signing beside the new one for WEBHOOK_SECRET_OVERLAP, so the
    organisation can deploy the new one without missing an event. Rolling again during an overlap
    makes the current secret the previous one, for a whole new overlap, and stops the secret before
    it at once: no more than two ever sign, and the one rolled away from is always given the overlap.
    `secret_seen_at` is the `secret_created_at` the DPO's page showed: if the secret has been rolled
    since (a form sent twice, or two DPOs at once), nothing is rolled (RequestError). DPOs only.
    """
    roles.require_dpo(actor, _("Only the DPO may roll or expire a webhook secret."))
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if locked.secret_created_at != secret_seen_at:
            raise RequestError(_("This secret has been rolled since you loaded the page: nothing was rolled again. Reload and try again."))
        now = timezone.now()
        # A roll during an overlap stops the secret before the current one, which was to sign until then.
        cut_short = locked.previous_secret_expires_at if locked.previous_secret_signs(now) else None
        overlap_ends = now + settings.WEBHOOK_SECRET_OVERLAP
        if overlap_ends > now:
            locked.previous_secret, locked.previous_secret_expires_at = locked.secret, overlap_ends
        else:
            locked.previous_secret, locked.previous_secret_expires_at = "", None
        locked.secret, locked.secret_created_at = new_webhook_secret(), now
        locked.save(update_fields=["secret", "secret_created_at", "previous_secret", "previous_secret_expires_at"])
        record_event(
            None, "webhook_secret_rolled", actor=actor,
            data={
                "endpoint": str(locked.public_id),
                "name": locked.url[:200],
                "old_secret_signs_until": overlap_ends.isoformat() if locked.previous_secret else None,
                "older_secret_stopped_instead_of": cut_short.isoformat() if cut_short else None,
            },
        )
    logger.info("webhook endpoint %s: secret rolled", locked.public_id)
    return locked.secret


def expire_previous_secret(*, endpoint: WebhookEndpoint, actor: Actor) -> None:
    """End a roll's overlap now: from the next attempt on, only the current secret signs.
    Refused (RequestError) when no previous secret is signing. DPOs only."""
    roles.require_dpo(actor, _("Only the DPO may roll or expire a webhook secret."))
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not locked.previous_secret_signs():
            raise RequestError(_("No old secret is signing for this endpoint: there is nothing to expire."))
        planned_end = locked.previous_secret_expires_at
        locked.previous_secret, locked.previous_secret_expires_at = "", None
        locked.save(update_fields=["previous_secret", "previous_secret_expires_at"])
        record_event(
            None, "webhook_old_secret_expired", actor=actor,
            data={"endpoint": str(locked.public_id), "name": locked.url[:200], "was_to_sign_until": planned_end.isoformat()},
        )


def forget_expired_secrets(*, now: datetime.datetime | None = None) -> int:
    """Blank the previous secrets whose overlap has ended: no longer used, so no longer kept.
    (Signing checks the end time itself; this only clears the column.)"""
    return WebhookEndpoint.objects.filter(previous_secret_expires_at__lte=now or timezone.now()).update(
        previous_secret="", previous_secret_expires_at=None
    )


__all__ = [
    "AttemptFailed",
    "InternalAddressRefused",
    "TooSlow",
    "WebhookEvent",
    "api_datetime",
    "check_url",
    "deliver",
    "dispatch_due",
    "emit",
    "expire_previous_secret",
    "forget_expired_secrets",
    "post_signed",
    "redeliver",
    "roll_secret",
    "sign",
]
