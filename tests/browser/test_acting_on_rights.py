"""Acting on an erasure request from a real browser.

A DPO signs in with TOTP, opens an erasure request, plans the erasure in a
real SQLite source, runs the dry run, approves and executes it, waives the
Art. 19 notice to a recipient nobody can reach, and completes the request.
Celery runs eagerly (tests/conftest.py), so each step's task has finished
when the page comes back.
"""

import re

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from requests_app import roles
from requests_app.models import (
    ActionStatus,
    NoticeStatus,
    Recipient,
    RequestType,
    Status,
)
from tests.actions.conftest import (  # noqa: F401 (fixtures)
    ANA_EMAIL,
    crm,
    source_db,
    source_url,
    verified_request,
)
from tests.browser.support import PASSWORD, current_code
from tests.factories import UserFactory


@pytest.mark.parametrize("source_url", ["sqlite"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_dpo_erases_in_a_source_waives_a_notice_and_completes(page, live_server, crm, source_db):  # noqa: F811 (fixtures)
    for name in roles.ROLES:  # flushed by earlier transactional tests; the data migration made them
        Group.objects.get_or_create(name=name)
    dpo = UserFactory(username="dora", is_superuser=True)
    device = TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True)
    # No address: the notice fails, and telling this recipient is impossible.
    Recipient.objects.create(source=crm, name="Old mailing partner", country="BE")
    erasure = verified_request(RequestType.ERASURE)

    page.goto(f"{live_server.url}/staff/requests/{erasure.reference}/")
    page.get_by_label("Username").fill(dpo.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Code from your authenticator app").fill(current_code(device))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(erasure.reference)

    panel = page.locator("#source-actions")
    expect(panel.get_by_role("heading", name="Actions in source systems")).to_be_visible()
    panel.get_by_role("button", name="Plan actions").click()
    expect(page.get_by_role("status")).to_contain_text("Planned 1 action.")
    row = panel.get_by_role("row").filter(has_text="CRM")
    expect(row).to_contain_text("Planned: dry run needed")
    # On a phone the table scrolls in its own box, and so do the column headers only a screen reader reads: the
    # page itself does not scroll sideways.
    viewport = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    page.set_viewport_size(viewport)

    # Each row's buttons are named with their source for a screen reader ("Dry run: CRM"), the source hidden on screen
    # (Chromium reads a space before the hidden part's colon: it is positioned, so a block of its own).
    row.get_by_role("button", name=re.compile(r"^Dry run ?: CRM$")).click()
    expect(row).to_contain_text("Dry run ready: awaiting approval")
    expect(row).to_contain_text("subscribers: 2 rows, 5 fields")
    row.get_by_role("button", name="Approve").click()
    expect(row).to_contain_text("dora, ")
    row.get_by_role("button", name=re.compile(r"^Execute ?: CRM$")).click()
    # Asked first, with what the dry run found: the erasure cannot be undone.
    expect(page.get_by_role("heading", level=1)).to_have_text("Carry out the erasure in CRM?")
    expect(page.locator("main, body").first).to_contain_text("subscribers: 2 rows, 5 fields")
    page.get_by_role("button", name="Carry out the erasure in CRM").click()
    expect(row.locator(".action-status")).to_have_text("Done")

    notice = panel.get_by_role("row").filter(has_text="Old mailing partner")
    expect(notice).to_contain_text("No email address or webhook URL is recorded for this recipient.")
    notice.get_by_text("Waive", exact=True).click()
    notice.get_by_label("Why not").select_option("impossible")
    notice.get_by_label("Explanation").fill("The partnership ended in 2024; nobody receives this data any more.")
    notice.get_by_role("button", name="Record why not").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: this recipient will not be notified.")
    expect(notice).to_contain_text("Impossible: The partnership ended in 2024")

    page.get_by_text("Complete", exact=True).click()
    page.get_by_label("What we did (goes into the completion letter)").fill("We erased your data from our CRM.")
    # The letter as it would go, then sent from the preview, without retyping anything.
    page.get_by_role("button", name="Preview the letter, then complete").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Preview of the letter")
    expect(page.locator(".letter-preview")).to_contain_text("We erased your data from our CRM.")
    assert erasure.messages.count() == 0
    page.get_by_role("button", name="Complete and send the letter").click()
    expect(page.get_by_role("status")).to_contain_text("Request completed")
    expect(page.locator("h1 .status")).to_have_text("Completed")
    expect(panel.get_by_role("link", name="PDF")).to_have_attribute("href", f"/staff/requests/{erasure.reference}/certificate.pdf")

    erasure.refresh_from_db()
    assert erasure.status == Status.COMPLETED
    assert erasure.source_actions.get().status == ActionStatus.DONE
    assert erasure.recipient_notices.get().status == NoticeStatus.WAIVED
    assert source_db("SELECT count(*) AS n FROM subscribers WHERE email = :e", e=ANA_EMAIL) == [{"n": 0}]
