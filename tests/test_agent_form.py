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
