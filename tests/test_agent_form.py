"""The public form for someone acting for the subject: which of the subject's fields are required, and the questions
that speak of the person the data is about, read without JavaScript."""

import html
import re

import pytest
from django.urls import reverse
from django.utils.html import strip_tags

from requests_app.forms import StaffIntakeForm
from requests_app.models import RequestType

from tests.test_agent_requests import AS_AGENT
from tests.test_public_form import post_form


def subject_email_input(html: str) -> str:
    return re.search(r'<input type="email" name="subject_email"[^>]*>', html).group(0)


@pytest.mark.django_db
def test_the_subjects_email_is_marked_required_unless_an_agent_files(client):
    blank = client.get(reverse("submit")).content.decode()
    assert " required" in subject_email_input(blank)

    # Sent back for another reason: still required of the subject, not of an agent.
    by_the_subject = post_form(client, signature="").content.decode()
    assert " required" in subject_email_input(by_the_subject)
    by_an_agent = post_form(client, **{**AS_AGENT, "agent_permission": None}).content.decode()
    assert "Confirm that you hold their signed permission" in by_an_agent
    assert " required" not in subject_email_input(by_an_agent)
    # The form leaves the checks to the server (an agent without JavaScript is never blocked by the mark).
    assert re.search(r'<form method="post" novalidate', blank)


@pytest.mark.django_db
def test_the_subject_must_still_give_their_email_and_an_agent_need_not(client):
    missing = post_form(client, subject_email="")
    assert missing.context["form"].errors["subject_email"] == ["This field is required."]
    assert post_form(client, **AS_AGENT).status_code == 302


@pytest.mark.django_db
def test_the_questions_about_the_subject_say_so_to_an_agent_without_javascript(client):
    html = client.get(reverse("submit")).content.decode()
    about = re.search(r'<fieldset aria-describedby="about-you-help">(.*?)</fieldset>', html, flags=re.S).group(1)
    assert "<legend>About you, or the person you are acting for</legend>" in about
    assert '<label for="id_relationship">How are you, or the person you are acting for, related to us?</label>' in about
    # The answer picks the law, the deadline and the authority: an agent must not give where they live.
    assert '<label for="id_regime">Where do you, or the person you are acting for, live?</label>' in about
    assert "the IP address used for them" in about and "you used" not in about
    # Our replies go to whoever files, in their language: not a detail of the subject's.
    assert 'name="language"' not in about and '<label for="id_language">Language for our replies:</label>' in html

    missing = post_form(client, **{**AS_AGENT, "relationship": ""})
    assert missing.context["form"].errors["relationship"] == [
        "Choose how you, or the person you are acting for, are related to us."
    ]


def visible_text(page: str) -> str:
    """The page's text as a reader without JavaScript sees it: not the other voice, which waits in data attributes."""
    return html.unescape(strip_tags(page))


# The texts of the form that speak of the subject, in each voice.
SUBJECTS_VOICE = (
    "the personal data we hold about you",
    "Who is making this request?",
    "Access a copy of my data",
    "Erase my data",
    "We delete your data, unless the law requires us to keep it",
    "I contest the accuracy of my data (Art. 18(1)(a))",
    "Which processing or purpose do you object to?",
    "My objection is to direct marketing (including profiling for it).",
    "We must then stop using your data for direct marketing",
    "Which consent do you withdraw?",
    "the organisation that should receive your data from us",
    "If you are acting for someone, sign with your own name.",
    "only to handle your request: to confirm who you are, to find your data",
    "Send my request",
)
AGENTS_VOICE = (
    "the rights of the person you are acting for over the personal data we hold about them",
    "Who is making this request?",
    "Access a copy of their data",
    "Erase their data",
    "We delete their data, unless the law requires us to keep it",
    "The person you are acting for contests the accuracy of their data (Art. 18(1)(a))",
    "Which processing or purpose does the person you are acting for object to?",
    "Their objection is to direct marketing (including profiling for it).",
    "We must then stop using their data for direct marketing",
    "Which consent does the person you are acting for withdraw?",
    "the organisation that should receive their data from us",
    "Sign with your own name, not theirs.",
    "only to handle the request: to confirm who the person you are acting for is and that you may act for them",
    "Send the request",
)


def assert_speaks(page: str, voice: tuple, not_in: tuple) -> None:
    text = visible_text(page)
    for words in voice:
        assert words in text
    for words in set(not_in) - set(voice):
        assert words not in text


@pytest.mark.django_db
def test_the_agents_form_speaks_of_the_person_they_act_for(client):
    page = client.get(reverse("submit"), {"acting": "1"}).content.decode()

    assert_speaks(page, AGENTS_VOICE, not_in=SUBJECTS_VOICE)
    assert re.search(r'<input type="radio" name="filed_by" value="agent"[^>]*checked', page)
    assert " required" not in subject_email_input(page)  # theirs is optional
    # Back to the subject's own form, for a browser without JavaScript.
    assert '<a href="/">Making the request for yourself? Show the form for the person the data is about.</a>' in page


@pytest.mark.django_db
def test_the_subjects_form_speaks_to_them_and_links_to_the_agents(client):
    page = client.get(reverse("submit")).content.decode()

    assert_speaks(page, SUBJECTS_VOICE, not_in=AGENTS_VOICE)
    assert re.search(r'<input type="radio" name="filed_by" value="subject"[^>]*checked', page)
    assert '<a href="/?acting=1">Making the request for someone else? Show the form for someone acting for them.</a>' in page


@pytest.mark.django_db
@pytest.mark.parametrize("acting", ["", "1"])
def test_who_makes_the_request_is_asked_first_then_the_agents_details(client, acting):
    text = visible_text(client.get(reverse("submit"), {"acting": acting}).content.decode())

    order = ["Who is making this request?", "If you are acting for someone", "What would you like us to do?", "Full name"]
    assert [text.index(heading) for heading in order] == sorted(text.index(heading) for heading in order)


@pytest.mark.django_db
def test_each_text_carries_both_voices_for_the_script_to_switch(client):
    for page in (client.get(reverse("submit")).content.decode(), client.get(reverse("submit"), {"acting": "1"}).content.decode()):
        assert 'data-subject-voice-label="Erase my data" data-agent-voice-label="Erase their data"' in page
        assert (
            'data-subject-voice="I contest the accuracy of my data (Art. 18(1)(a))" '
            'data-agent-voice="The person you are acting for contests the accuracy of their data (Art. 18(1)(a))"'
        ) in page
        assert 'data-subject-voice="Send my request" data-agent-voice="Send the request"' in page
        assert 'data-subject-voice-label="Which consent do you withdraw?"' in page
    assert '<form method="post" novalidate data-keep-on-language-switch data-voice="subject">' in client.get(reverse("submit")).content.decode()


@pytest.mark.django_db
def test_a_form_sent_back_by_an_agent_speaks_to_them_and_its_messages_too(client):
    page = post_form(
        client, **AS_AGENT, rights=["objection", "portability"], consent_withdrawn="The newsletter",
        recipient_name="Other Telecom", customer_reference="--",
    ).content.decode()

    assert_speaks(page, AGENTS_VOICE, not_in=SUBJECTS_VOICE)
    text = visible_text(page)
    for message in (
        "Tell us which processing or purpose the person you are acting for objects to.",
        # The box to tick, as this page names it.
        "You filled this in without ticking “Withdraw their consent”: tick it above, or empty this field.",
        "Give the email address of the organisation you want their data sent to.",
        "enter it as their contract or invoice shows it",
    ):
        assert message in text
    assert "Withdraw my consent" not in text and "your data sent to" not in text and "your contract" not in text

    own_address = post_form(
        client, **AS_AGENT, rights=["portability"], recipient_name="Other Telecom", recipient_email="marc@example.org"
    )
    assert own_address.context["form"].errors["recipient_email"] == [
        "This is your own email address or theirs: you get a copy of their data on the status page. Give the other "
        "organisation's address, or leave both fields empty."
    ]


@pytest.mark.django_db
def test_a_form_sent_back_by_the_subject_speaks_to_them_as_before(client):
    page = post_form(client, rights=["objection"], consent_withdrawn="The newsletter").content.decode()

    assert_speaks(page, SUBJECTS_VOICE, not_in=AGENTS_VOICE)
    text = visible_text(page)
    assert "Tell us which processing or purpose you object to." in text
    assert "You filled this in without ticking “Withdraw my consent”: tick it above, or empty this field." in text


@pytest.mark.django_db
def test_the_agent_chosen_on_the_subjects_page_is_checked_as_before(client):
    """The voice changes the words only: an agent who chose on the subject's page without JavaScript, or who sent the
    agent's page back as the subject, is checked by the same rules."""
    assert post_form(client, **AS_AGENT).status_code == 302
    refused = post_form(client, **{**AS_AGENT, "filed_by": "subject"})
    assert refused.context["form"].errors == {"subject_email": ["This field is required."]}


def test_staff_intake_keeps_its_own_words_and_order_whoever_made_the_request():
    for data in (None, {"filed_by": "agent"}):
        form = StaffIntakeForm(data)
        assert list(form.fields)[:2] == ["rights", "rectification_data"]
        assert form.fields["rights"].label == "Rights the subject asks for"
        assert dict(form.fields["rights"].choices)[RequestType.ERASURE] == "Erase their data"
        assert form.fields["objection_processing"].label == "Processing or purpose the subject objects to"
        assert form.fields["recipient_name"].help_text == "For data portability, as the subject named it."
        assert not form.speaks_to_an_agent and not hasattr(form.fields["objection_processing"], "voices")
