"""The completion certificate in a real browser: staff read it on a phone, and print it."""

import pytest
from django.db import transaction
from django.utils import translation
from playwright.sync_api import expect

from requests_app.audit import Actor, record_event
from requests_app.models import Status
from requests_app.services import certificate
from tests.factories import released_package, request_in_status


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "de"])  # German's labels are the longest
def test_the_certificate_fits_a_phone_and_prints_its_tables_whole(page, language):
    """It was 453 px wide on a 390 px phone: the audit trail's five columns, with a hash each, are wider than the
    screen. They scroll in their own box, each label sits above its value; printed, the tables are tables again."""
    request = request_in_status(Status.COMPLETED)
    released_package(request)
    with transaction.atomic():  # the longest code of an event, which the trail shows, on one line
        record_event(request, "source_action_dry_run_started", actor=Actor.system())
    with translation.override(language):
        html = certificate.render_certificate_html(request)

    page.set_content(html)
    for width in (320, 390):
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate("window.innerWidth") == width
    trail = page.locator("table").last
    assert trail.evaluate("t => t.scrollWidth > t.clientWidth")  # the trail scrolls in its own box
    # A time on one line, not a number a line.
    lines = "e => { const range = document.createRange(); range.selectNodeContents(e); return range.getClientRects().length; }"
    assert page.locator("td.time").first.evaluate(lines) == 1

    page.emulate_media(media="print")
    assert trail.evaluate("t => getComputedStyle(t).display") == "table"
    assert page.locator("dl").first.evaluate("e => getComputedStyle(e).display") == "grid"


@pytest.mark.django_db
def test_the_certificate_is_the_pages_main_content(page):
    """A screen reader's "main" landmark: the page had none. Everything it shows is inside, and prints the same."""
    request = request_in_status(Status.COMPLETED)
    page.set_content(certificate.render_certificate_html(request))

    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name="Request handling certificate", level=1)).to_be_visible()
    assert page.evaluate("[...document.body.children].map(child => child.tagName)") == ["MAIN"]
    page.emulate_media(media="print")
    assert main.evaluate("m => getComputedStyle(m).display") == "block"
