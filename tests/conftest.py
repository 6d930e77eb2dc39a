import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from django.utils import translation

from privacy_portal.celery import app as celery_app

REQUIRE_SERVICES = os.environ.get("PRIVACY_PORTAL_REQUIRE_SERVICES") == "1"


def _missing(reason: str):
    # In CI a missing service is a failure, never a silent skip.
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (PRIVACY_PORTAL_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else ""


def redis_is_up(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres"):
        from django.conf import settings

        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            _missing("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis"):
        url = redis_url()
        if not url:
            _missing("needs Redis: set CELERY_BROKER_URL=redis://...")
        elif not redis_is_up(url):
            _missing(f"Redis at {urlparse(url).netloc} is not answering")


@pytest.fixture(autouse=True)
def _isolated_side_effects(settings, tmp_path):
    """Run tasks inline, keep uploads in a temporary folder, start each test with an empty cache, and
    end it back in the default language (a request in German leaves German active in this thread)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    # An HTTP or SQL source's passing failures are still tried again (three attempts), without the waits between.
    settings.HTTP_SOURCE_RETRY_DELAYS = (0, 0)
    settings.SQL_SOURCE_RETRY_DELAYS = (0, 0)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    translation.deactivate()
    cache.clear()


@pytest.fixture
def staff_user(db):
    """A DPO (superuser)."""
    from tests.factories import UserFactory

    return UserFactory(is_superuser=True)


def login_staff(client, user):
    """Sign `user` in with both factors, as the TOTP step would."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="test", confirmed=True
    )
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def post_confirmed(client, url: str, data: dict, **extra):
    """Post a form that closes a request (staff.views.CONFIRMED) as staff do: the first post shows the letter, and
    its page's button posts the same fields again with the letter confirmed. Any other answer to the first post (a
    refusal, or an action that closes nothing) is returned."""
    shown = client.post(url, data, **extra)
    if shown.status_code != 200 or not shown.context or "letter" not in shown.context:
        return shown
    return client.post(url, {**data, "confirmed_letter": shown.context["letter"].digest()}, **extra)


class SMTPServer:
    """What a real SMTP server on 127.0.0.1 accepted. It refuses recipients whose address starts
    with "gone" for good (550 5.1.1), "busy" for now (450), and "relay" as a relay it does not
    serve (554 5.7.1)."""

    def __init__(self):
        self.accepted = []  # (recipients, message bytes) per message
        self.refused = []  # addresses, once per refusal

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusals = {
            "gone": "550 5.1.1 No such mailbox",
            "busy": "450 4.2.1 Mailbox busy, try later",
            "relay": "554 5.7.1 Relay access denied",  # our set-up's fault, not the address's
        }
        reply = next((text for prefix, text in refusals.items() if address.startswith(prefix)), None)
        if reply:
            self.refused.append(address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def smtp_server(settings):
    """Django sends its email to a real SMTP server on 127.0.0.1 for this test."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SMTPServer()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "privacy_portal.mail.EmailBackend"  # production's
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield server
    controller.stop()


class AnsweringEndpoint:
    """A real HTTP server on 127.0.0.1 that takes a POST, sends `head` at once, then `tail_size` bytes more: one every
    `pause` seconds (an endpoint that trickles its answer), or with no pause as fast as the client takes them. It
    stops when the client goes away, or after `for_seconds`. `sent` counts the bytes of the answer that left."""

    def __init__(self, head: bytes, *, tail_size: int, pause: float = 0, for_seconds: float = 20):
        import socketserver
        import threading
        import time

        self.received = 0
        self.sent = 0
        endpoint = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    name, _colon, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                self.rfile.read(length)
                endpoint.received += 1
                stop_at, left = time.monotonic() + for_seconds, tail_size
                chunk = b"a" if pause else b"a" * (1 << 20)
                try:
                    self.wfile.write(head)
                    endpoint.sent += len(head)
                    while left > 0 and time.monotonic() < stop_at:
                        piece = chunk[:left]
                        self.wfile.write(piece)
                        endpoint.sent += len(piece)
                        left -= len(piece)
                        time.sleep(pause)
                except OSError:
                    pass  # the client went away

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
