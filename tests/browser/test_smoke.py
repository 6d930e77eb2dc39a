"""The public request form, filled in and sent from a real browser."""

import re

import pytest
from playwright.sync_api import expect

from requests_app.models import PrivacyRequest


def fill_in_and_send_the_form(page) -> None:
    """An access request, as a person fills in the form."""
    page.get_by_label("Access a copy of my data").check()
    # Django's labels end in a colon, and "Signature (type your full name)" also
    # contains "full name": anchor at the start.
    page.get_by_label(re.compile(r"^Full name")).fill("Ada Lovelace")
    page.get_by_label(re.compile(r"^Email address")).fill("ada@example.com")
    page.get_by_label("How are you, or the person you are acting for, related to us?").select_option(label="Website visitor")
    page.get_by_label("Signature (type your full name)").fill("Ada Lovelace")
    page.get_by_label("I confirm that the information above is correct").check()
    page.get_by_role("button", name="Send my request").click()


@pytest.mark.django_db(transaction=True)
def test_subject_submits_the_public_form(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Make a privacy request")).to_be_visible()

    fill_in_and_send_the_form(page)

    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator(".reference")).to_have_text(re.compile(r"^DSR-\d{4}-\d{5}$"))
    assert PrivacyRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_impatient_second_click_does_not_send_the_request_again(page, live_server):
    """On a slow connection a subject clicks again: the second submission must not leave (two requests,
    two verification emails). Checked in the page: a listener after the site's keeps both from leaving."""
    page.goto(live_server.url + "/")
    second_click = page.evaluate(
        """() => new Promise(resolve => {
            const form = document.querySelector("main form[method=post]");
            const seen = [];
            const hold = event => { seen.push(event.defaultPrevented); event.preventDefault(); };
            window.addEventListener("submit", hold);
            form.requestSubmit();
            form.requestSubmit();
            setTimeout(() => resolve({seen, disabled: form.querySelector("button").disabled}), 0);
        })"""
    )
    assert second_click == {"seen": [False, True], "disabled": True}  # the first goes, the second is stopped


@pytest.mark.django_db(transaction=True)
def test_a_refused_form_puts_the_focus_on_the_list_of_what_to_correct(page, live_server):
    """Keyboard and screen-reader users start from the errors, not from the top of the page."""
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Send my request").click()
    expect(page.locator(".error-summary")).to_be_focused()
    assert PrivacyRequest.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_public_pages_fit_a_phone_screen(page, live_server):
    """At 375 px (a small phone) nothing makes the page scroll sideways."""
    from tests.factories import request_in_status
    from requests_app.models import Status

    from requests_app.services import handling

    request = request_in_status(Status.IN_PROGRESS)
    handling.subject_reply(request=request, body="See https://example.com/" + "a-very-long-path/" * 20)  # no spaces to wrap at
    page.set_viewport_size({"width": 375, "height": 800})
    pages = [(path, language) for language in ("en", "fr", "nl", "de")
             for path in ("/", "/lost-link/", f"/status/{request.reference}/{request.secret}/")]
    for path, language in pages:
        page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
            ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
        )
        assert overflow <= 0, (path, language, overflow, wide)


@pytest.mark.django_db(transaction=True)
def test_the_dutch_form_fits_the_narrowest_phone(page, live_server):
    """At 320 px the Dutch privacy notice's regulator address (www.gegevensbeschermingsautoriteit.be, one word)
    made the page scroll sideways."""
    page.set_viewport_size({"width": 320, "height": 800})
    page.context.add_cookies([{"name": "django_language", "value": "nl", "url": live_server.url}])
    page.goto(live_server.url + "/")
    expect(page.locator(".notice")).to_contain_text("gegevensbeschermingsautoriteit")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


@pytest.mark.django_db(transaction=True)
def test_the_first_tab_shows_a_skip_link_that_leads_past_the_header(page, live_server):
    page.goto(live_server.url + "/")
    skip = page.get_by_role("link", name="Skip to content")
    assert skip.bounding_box()["width"] <= 1  # out of sight until it has the focus

    page.keyboard.press("Tab")

    expect(skip).to_be_focused()
    assert skip.bounding_box()["width"] > 10
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))


@pytest.mark.django_db(transaction=True)
def test_back_then_send_again_shows_the_request_filed_instead_of_filing_a_second(page, live_server):
    """Chromium fetches the form anew on Back (the pages are not cached) and fills every field back in."""
    page.goto(live_server.url + "/")
    fill_in_and_send_the_form(page)
    reference = page.locator(".reference").inner_text()

    page.go_back()
    expect(page.get_by_label(re.compile(r"^Email address"))).to_have_value("ada@example.com")
    page.get_by_role("button", name="Send my request").click()

    expect(page.locator(".reference")).to_have_text(reference)
    expect(page.get_by_role("status")).to_contain_text("You had sent this form already")
    assert PrivacyRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_back_then_send_once_the_request_was_withdrawn_files_it_anew(page, live_server):
    """Withdrawn at once, the same form sent again is a new request, not the withdrawn one shown again."""
    from requests_app.audit import Actor
    from requests_app.services import intake

    page.goto(live_server.url + "/")
    fill_in_and_send_the_form(page)
    withdrawn = PrivacyRequest.objects.get()
    intake.request_withdraw(request=withdrawn, actor=Actor.subject())

    page.go_back()
    expect(page.get_by_label(re.compile(r"^Email address"))).to_have_value("ada@example.com")
    page.get_by_role("button", name="Send my request").click()

    expect(page.locator(".reference")).not_to_have_text(withdrawn.reference)
    expect(page.get_by_text("We have sent you an email with a link to confirm your address")).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)
    assert PrivacyRequest.objects.exclude(pk=withdrawn.pk).get().reference == page.locator(".reference").inner_text()


@pytest.mark.django_db(transaction=True)
def test_switching_language_keeps_what_was_typed_in_the_form(page, live_server):
    page.goto(live_server.url + "/")
    page.get_by_label("Access a copy of my data").check()
    page.get_by_label(re.compile(r"^Full name")).fill("Ada Lovelace")
    page.get_by_label("Anything else we should know (optional)").fill("My calls of March.")

    page.get_by_role("button", name="Français").click()

    expect(page.get_by_role("heading", name="Faire une demande relative à vos données personnelles")).to_be_visible()
    expect(page.get_by_label("Accéder à une copie de mes données")).to_be_checked()
    expect(page.get_by_label(re.compile(r"^Nom complet"))).to_have_value("Ada Lovelace")
    expect(page.get_by_label("Autres informations utiles (facultatif)")).to_have_value("My calls of March.")
    assert page.evaluate("sessionStorage.length") == 0  # taken back out at once


@pytest.mark.django_db(transaction=True)
def test_the_reply_language_follows_the_page_language_until_the_visitor_chooses_one(page, live_server):
    """English was only the English page's default: carried over a switch to Nederlands, every email would have
    come in English to a visitor who never chose it."""
    page.goto(live_server.url + "/")
    page.get_by_label(re.compile(r"^Full name")).fill("Ada Lovelace")
    reply_language = page.locator('select[name="language"]')
    expect(reply_language).to_have_value("en")

    page.get_by_role("button", name="Nederlands").click()

    expect(reply_language).to_have_value("nl")
    expect(page.get_by_label(re.compile(r"^Volledige naam"))).to_have_value("Ada Lovelace")  # what was typed goes along

    reply_language.select_option("de")  # chosen: kept over the next switch, and the one after
    page.get_by_role("button", name="Français").click()
    expect(reply_language).to_have_value("de")
    page.get_by_role("button", name="English").click()
    expect(reply_language).to_have_value("de")


@pytest.mark.django_db(transaction=True)
def test_a_reply_language_sent_with_a_refused_form_is_kept_over_a_language_switch(page, live_server):
    """The refused form shows what was sent: a language other than the page's was the visitor's choice."""
    page.goto(live_server.url + "/")
    page.locator('select[name="language"]').select_option("de")
    page.get_by_role("button", name="Send my request").click()  # nothing else filled in: refused
    expect(page.locator(".error-summary")).to_be_visible()  # a new page: the choice is what it shows as sent

    page.get_by_role("button", name="Nederlands").click()

    expect(page.locator('select[name="language"]')).to_have_value("de")
