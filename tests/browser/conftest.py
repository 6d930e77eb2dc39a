"""Real-browser tests: Playwright drives Debian's Chromium against `live_server`.

A test asks for `page` and pytest-django's `live_server`:

    @pytest.mark.django_db(transaction=True)
    def test_something(page, live_server):
        page.goto(live_server.url + "/")

`transaction=True` because the live server answers from another thread, which
cannot see data inside the test's transaction.

Never run `playwright install`: the browser is Debian's `chromium` package
(`apt-get install chromium`, which `.ci/run` does). Every test in this folder
gets the `browser` marker, so `-m "not browser"` leaves them out.

Why `browser` is package-scoped, not session-scoped like pytest-playwright's:
while Playwright's sync API is started, it marks an asyncio loop as running in
the test thread, and Django then refuses ORM calls there
(SynchronousOnlyOperation) unless DJANGO_ALLOW_ASYNC_UNSAFE is set. A session
fixture would keep that loop marked for every test that runs after this folder,
and setting the variable at import time leaks it into the whole run, including
the subprocesses of other tests (`manage.py check --deploy` then fails with
async.E001). So Playwright runs, and the variable is set, only while the tests
of this folder run.
"""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # We run as root, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    # Keep Chromium off the network: the only server it may talk to is live_server.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "browser: real-browser test with Playwright and Chromium "
        "(fails instead of skipping when PRIVACY_PORTAL_REQUIRE_SERVICES=1 and Chromium is missing)",
    )


def pytest_collection_modifyitems(config, items):
    # This hook sees the whole session's items: mark only the ones in this folder.
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") and not os.access(CHROMIUM, os.X_OK):
        reason = f"needs Chromium at {CHROMIUM}: apt-get install chromium (never `playwright install`)"
        # In CI a missing browser is a failure, never a silent skip.
        if os.environ.get("PRIVACY_PORTAL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (PRIVACY_PORTAL_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options (--headed, --slowmo), pointed at Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="package")
def browser(browser_type_launch_args, browser_name):
    """One Chromium for the tests of this folder.

    Replaces pytest-playwright's session-scoped `browser`; see the module
    docstring for why.
    """
    if browser_name != "chromium":
        pytest.skip(f"browser tests run on Debian's Chromium only, not {browser_name}")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    # The documented workaround for pytest-django with Playwright: allows the
    # test's own queries and the transactional_db flush after each test.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(**browser_type_launch_args)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def context(browser):
    """A fresh browser context (cookies, storage) per test."""
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()
