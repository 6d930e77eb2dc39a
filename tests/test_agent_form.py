"""The public form for someone acting for the subject: which of the subject's fields are required, and the questions
that speak of the person the data is about, read without JavaScript."""

import re

import pytest
from django.urls import reverse

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
