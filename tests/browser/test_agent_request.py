"""Filing the public form as someone acting for the data subject, from a real browser."""

import re

import pytest
from playwright.sync_api import expect

from requests_app.models import AgentCapacity, PrivacyRequest


@pytest.mark.django_db(transaction=True)
def test_a_parent_files_for_their_child(page, live_server):
    page.goto(live_server.url + "/")
    agent_details = page.get_by_role("group", name="If you are acting for someone")
    expect(agent_details).to_be_hidden()  # not needed by the subject: hidden once the script runs
    subject_email = page.get_by_label(re.compile(r"^Email address"))
    expect(subject_email).to_have_js_property("required", True)  # required of the subject

    page.get_by_label("I am acting for them").check()
    expect(agent_details).to_be_visible()
    expect(subject_email).to_have_js_property("required", False)  # optional for an agent
    page.get_by_label("I am the person the data is about").check()
    expect(subject_email).to_have_js_property("required", True)
    page.get_by_label("I am acting for them").check()
    page.get_by_label("Access a copy of their data").check()  # the form now speaks of the person they act for
    page.get_by_label(re.compile(r"^Your full name")).fill("Marc Peeters")
    page.get_by_label(re.compile(r"^Your email address")).fill("marc@example.org")
    page.get_by_label("You are acting as").select_option(label="Parent or guardian")
    page.get_by_label(re.compile(r"^Full name")).fill("Lisa Peeters")  # the child's; her address is optional
    page.get_by_label("How are you, or the person you are acting for, related to us?").select_option(label="Website visitor")
    page.get_by_label("Signature (type your full name)").fill("Marc Peeters")
    page.get_by_label("I confirm that the information above is correct").check()
    page.get_by_role("button", name="Send the request").click()

    # The permission statement is required: the page says so by the box, and keeps the choice and what was typed.
    expect(page.locator(".error-summary")).to_be_focused()
    expect(page.get_by_text("Confirm that you hold their signed permission")).to_have_count(2)  # summary and field
    expect(agent_details).to_be_visible()
    page.get_by_label("I hold the signed permission of the person the data is about").check()
    page.get_by_label("I confirm that the information above is correct").check()
    page.get_by_role("button", name="Send the request").click()

    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.get_by_text("m•••@example.org")).to_be_visible()
    request = PrivacyRequest.objects.get()
    assert (request.subject_name, request.subject_email) == ("Lisa Peeters", "")
    assert (request.agent_name, request.agent_email, request.agent_capacity) == (
        "Marc Peeters", "marc@example.org", AgentCapacity.PARENT_OR_GUARDIAN
    )
