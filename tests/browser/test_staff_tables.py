"""The staff pages' wide tables on a phone: they scroll in a box of their own, which the keyboard reaches, and their
words stay whole."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from requests_app import roles
from requests_app.models import Status
from tests.browser.support import sign_in, staff_with_authenticator
from tests.factories import request_in_status

# The words (letters only: a hyphen may break a word where it should) of the table's cells that the browser drew on
# more than one line.
SPLIT_WORDS = """table => {
  const split = [];
  for (const cell of table.querySelectorAll("td")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      for (const word of walker.currentNode.data.matchAll(/\\p{L}+/gu)) {
        const range = document.createRange();
        range.setStart(walker.currentNode, word.index);
        range.setEnd(walker.currentNode, word.index + word[0].length);
        if (new Set([...range.getClientRects()].map(rect => Math.round(rect.top))).size > 1) split.push(word[0]);
      }
    }
  }
  return split;
}"""


@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_timeline_keeps_its_words_whole_and_scrolls_in_a_box_the_keyboard_reaches(page, live_server):
    """At 320 px its columns were 54 to 64 px wide, "received" split mid-word, the table 2,900 px tall."""
    _dpo, device = staff_with_authenticator(roles.DPO, "dora")
    request = request_in_status(Status.IN_PROGRESS)
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, live_server, "dora", device)
    page.goto(live_server.url + reverse("staff:request", args=[request.reference]))

    timeline = page.get_by_role("region", name="Timeline")
    table = timeline.get_by_role("table")
    expect(table.get_by_role("cell", name="Request received → Awaiting email verification")).to_be_visible()
    assert table.evaluate(SPLIT_WORDS) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 320  # the box scrolls, not the page
    timeline.focus()
    expect(timeline).to_be_focused()


@pytest.mark.django_db(transaction=True)
def test_the_dashboards_tables_scroll_in_named_boxes_the_keyboard_reaches(page, live_server):
    _dpo, device = staff_with_authenticator(roles.DPO, "dora")
    request_in_status(Status.IN_PROGRESS)
    page.set_viewport_size({"width": 320, "height": 640})
    sign_in(page, live_server, "dora", device)

    page.goto(live_server.url + reverse("staff:queue"))
    queue = page.get_by_role("region", name="Queue")
    expect(queue.get_by_role("table")).to_be_visible()
    assert queue.evaluate("box => box.scrollWidth > box.clientWidth")  # nine columns: wider than a phone
    queue.focus()
    page.keyboard.press("ArrowRight")  # the box, not the table inside it, scrolls: the keyboard moves it
    page.wait_for_function("() => document.activeElement.scrollLeft > 0")

    page.goto(live_server.url + reverse("staff:home"))
    for heading in ["My open requests", "Overdue", "Due within 7 days", "Clock paused", "Unassigned", "Awaiting email verification"]:
        expect(page.get_by_role("region", name=heading)).to_have_attribute("tabindex", "0")
