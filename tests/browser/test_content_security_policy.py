"""The Content-Security-Policy, as Chromium enforces it: every page works without breaking it.

Chromium reports each resource, inline script or inline style the policy
blocks on the console ("Refused to ..."). A page that still used an inline
script would lose its behaviour silently; these tests make that a failure.
"""

import re

import pytest
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from requests_app import roles
from requests_app.models import ExportPackage, ExportStatus, Status
from tests.browser.support import sign_in
from tests.factories import request_in_status, staff_in_role


def watch_for_violations(page) -> list[str]:
    """The policy violations Chromium reports on this page from now on."""
    violations = []
    page.on(
        "console",
        lambda message: violations.append(f"{page.url}: {message.text}") if "Content Security Policy" in message.text else None,
    )
    return violations


def sign_in_as_dpo(page, live_server):
    for name in roles.ROLES:
        Group.objects.get_or_create(name=name)
    dpo = staff_in_role(roles.DPO, username="dora", is_superuser=True)
    sign_in(page, live_server, dpo.username, TOTPDevice.objects.create(user=dpo, name="phone", confirmed=True))
    expect(page.get_by_role("heading", name="Today")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_public_pages_break_no_rule(page, live_server):
    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    violations = watch_for_violations(page)
    errors = []  # any console error, a resource that failed to load included
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    for path in ("/", "/lost-link/", f"/status/{request.reference}/{request.secret}/"):
        response = page.goto(live_server.url + path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Send my request").click()  # a refused form: the error summary takes focus
    expect(page.locator(".error-summary")).to_be_focused()
    page.wait_for_load_state("networkidle")
    assert violations == [] and errors == []


@pytest.mark.django_db(transaction=True)
def test_staff_pages_and_their_scripts_work_under_the_policy(page, live_server):
    violations = watch_for_violations(page)
    sign_in_as_dpo(page, live_server)
    request = request_in_status(Status.IN_PROGRESS, subject_email="ana@example.com")
    export = ExportPackage.objects.create(request=request, kind="access", status=ExportStatus.QUEUED)

    page.goto(live_server.url + f"/staff/requests/{request.reference}/")
    # The time-left badge takes its colour from the stylesheet, not from a style attribute.
    expect(page.locator(".due").first).to_have_css("color", "rgb(30, 123, 52)")
    # The progress script is a file now: it still polls and shows what the worker reports.
    ExportPackage.objects.filter(pk=export.pk).update(
        status=ExportStatus.RUNNING, progress={"rows": 42, "sources_done": 1, "sources_total": 3}
    )
    expect(page.locator(".export-rows")).to_have_text(re.compile(r"^42 rows, 1/3 sources$"), timeout=10_000)

    for path in ("/staff/", "/staff/requests/", "/staff/inventory/", "/staff/password/",
                 f"/staff/requests/{request.reference}/certificate/"):
        page.goto(live_server.url + path)
    assert violations == []


@pytest.mark.django_db(transaction=True)
def test_the_admin_breaks_no_rule(page, live_server):
    violations = watch_for_violations(page)
    sign_in_as_dpo(page, live_server)
    request = request_in_status(Status.IN_PROGRESS)
    for path in ("/admin/", f"/admin/requests_app/privacyrequest/{request.pk}/change/", "/admin/requests_app/privacyrequest/"):
        page.goto(live_server.url + path)
    expect(page.locator("td.field-time_left .due")).to_have_css("color", "rgb(30, 123, 52)")
    assert violations == []


@pytest.mark.django_db(transaction=True)
def test_the_admin_intake_form_is_sent_once_by_the_sites_script(page, live_server):
    """Staff record letters and calls in the admin: a double click there must not record the request twice."""
    violations = watch_for_violations(page)
    sign_in_as_dpo(page, live_server)
    page.goto(live_server.url + "/admin/requests_app/privacyrequest/intake/")
    page.wait_for_load_state("load")  # forms.js is deferred
    # Checked in the page: a listener after forms.js keeps both submissions from leaving, and reports them.
    seen = page.evaluate(
        """() => {
            const form = document.querySelector("#content form");
            const seen = [];
            window.addEventListener("submit", event => { seen.push(event.defaultPrevented); event.preventDefault(); });
            form.requestSubmit();
            form.requestSubmit();
            return seen;
        }"""
    )
    assert seen == [False, True]  # the first goes, the second is stopped
    assert violations == []


@pytest.mark.django_db(transaction=True)
def test_the_api_documentation_renders_under_its_policy(page, live_server):
    violations = watch_for_violations(page)
    requested, blocked = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: blocked.append(r.url) if r.failure == "csp" else None)

    page.goto(live_server.url + "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Privacy Portal API", timeout=30_000)
    page.goto(live_server.url + "/api/redoc/")
    expect(page.get_by_role("heading", name=re.compile("Privacy Portal API"))).to_be_visible(timeout=30_000)
    # ReDoc's "API docs by Redocly" link is drawn with the menu; its logo, an image on cdn.redoc.ly, was blocked
    # by the policy and reported (to /csp-report/) after the page showed. Served without that address, the link
    # keeps its text and no logo.
    expect(page.get_by_role("link", name="API docs by Redocly")).to_be_attached()
    page.wait_for_load_state("networkidle")
    assert violations == []
    # No third party (ReDoc's page asks Google for its fonts by default, its script Redocly for the logo) learns
    # who reads the docs: the browser asked for nothing elsewhere.
    elsewhere = [url for url in requested if not url.startswith((live_server.url, "blob:", "data:"))]
    assert elsewhere == blocked == []
