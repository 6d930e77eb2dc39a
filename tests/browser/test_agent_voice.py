"""The public form speaks to whoever fills it in, the person the data is about or someone acting for them, switching
its words in place as they choose at its top, or by a link without JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from requests_app.models import PrivacyRequest, RestrictionGround


@pytest.mark.django_db(transaction=True)
def test_choosing_to_act_for_someone_switches_the_words_in_place_and_keeps_what_was_typed(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("link", name=re.compile("Making the request for someone else"))).to_be_hidden()  # the choice does it
    page.get_by_label("Erase my data").check()
    page.get_by_label("Restrict the processing of my data").check()
    page.get_by_label("Why should the processing be restricted?").select_option(RestrictionGround.ACCURACY_CONTESTED)
    page.get_by_label(re.compile(r"^Full name")).fill("Lisa Peeters")
    page.get_by_label("Anything else we should know (optional)").fill("Her old number too.")

    page.get_by_label("I am acting for them").check()

    rights = page.get_by_role("group", name="What would you like us to do?")
    expect(rights.get_by_label("Erase their data")).to_be_checked()
    expect(rights.get_by_label("Restrict the processing of their data")).to_be_checked()
    expect(rights).not_to_contain_text("my data")
    expect(rights).to_contain_text("We delete their data, unless the law requires us to keep it")
    grounds = page.get_by_label("Why should the processing be restricted?")
    expect(grounds.locator("option:checked")).to_have_text(
        "The person you are acting for contests the accuracy of their data (Art. 18(1)(a))"
    )
    expect(page.get_by_label("Which consent does the person you are acting for withdraw?")).to_be_visible()
    expect(page.get_by_text("Use this form to exercise the rights of the person you are acting for")).to_be_visible()
    expect(page.get_by_role("button", name="Send the request")).to_be_visible()
    expect(page.get_by_label(re.compile(r"^Full name"))).to_have_value("Lisa Peeters")
    expect(page.get_by_label("Anything else we should know (optional)")).to_have_value("Her old number too.")

    # And back, and again: each switch restores the other's words.
    page.get_by_label("I am the person the data is about").check()
    expect(rights.get_by_label("Erase my data")).to_be_checked()
    expect(page.get_by_role("button", name="Send my request")).to_be_visible()
    page.get_by_label("I am acting for them").check()
    expect(rights.get_by_label("Erase their data")).to_be_checked()

    page.get_by_label(re.compile(r"^Your full name")).fill("Marc Peeters")
    page.get_by_label(re.compile(r"^Your email address")).fill("marc@example.org")
    page.get_by_label("You are acting as").select_option(label="Parent or guardian")
    page.get_by_label("I hold the signed permission of the person the data is about").check()
    page.get_by_label("How are you, or the person you are acting for, related to us?").select_option(label="Website visitor")
    page.get_by_label("Signature (type your full name)").fill("Marc Peeters")
    page.get_by_label("I confirm that the information above is correct").check()
    page.get_by_role("button", name="Send the request").click()

    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    request = PrivacyRequest.objects.get()
    assert (request.subject_name, request.agent_name, request.description) == ("Lisa Peeters", "Marc Peeters", "Her old number too.")
    assert {right.right: right.restriction_ground for right in request.rights.all()} == {
        "erasure": "", "restriction": RestrictionGround.ACCURACY_CONTESTED,
    }


@pytest.mark.django_db(transaction=True)
def test_without_javascript_a_link_shows_the_form_for_someone_acting_for_another(browser, live_server):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live_server.url + "/")
        page.get_by_role("link", name="Making the request for someone else? Show the form for someone acting for them.").click()

        expect(page.get_by_label("I am acting for them")).to_be_checked()
        expect(page.get_by_label("Access a copy of their data")).to_be_visible()
        expect(page.get_by_role("button", name="Send the request")).to_be_visible()
        page.get_by_role("link", name="Making the request for yourself? Show the form for the person the data is about.").click()
        expect(page.get_by_label("I am the person the data is about")).to_be_checked()
        expect(page.get_by_label("Access a copy of my data")).to_be_visible()
    finally:
        context.close()
