"""Browsers' Content-Security-Policy violation reports: logged without personal data or secrets, never stored."""

import json
import logging

import pytest
from django.test import Client
from django.urls import reverse

from privacy_portal.csp_reports import REPORT_MAX_BYTES

STATUS_PATH = "/status/DSR-2026-00042/s3cr3t-status-key/"
DOWNLOAD_PATH = f"{STATUS_PATH}download/d0wnl0ad-token/"


def firefox_report(**fields) -> bytes:
    """A report-uri body, as Firefox and Safari send it."""
    report = {
        "document-uri": f"https://privacy.example{STATUS_PATH}?lang=fr&email=ana@example.com",
        "referrer": "https://mail.example/inbox/ana@example.com",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'none'; script-src 'self'",
        "blocked-uri": "https://tracker.example/collect.js?visitor=ana@example.com",
        "script-sample": "alert('ana@example.com')",
        "status-code": 200,
    }
    return json.dumps({"csp-report": report | fields}).encode()


def chromium_reports(*bodies) -> bytes:
    """A Reporting API body, as Chromium sends it to the report-to group."""
    return json.dumps(
        [{"type": "csp-violation", "age": 10, "url": body["documentURL"], "user_agent": "Chrome", "body": body} for body in bodies]
    ).encode()


def post_report(client, body: bytes, content_type="application/csp-report", **extra):
    return client.post(reverse("csp_report"), body, content_type=content_type, **extra)


def logged(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.name == "privacy_portal.csp_reports")


def test_a_report_logs_the_directive_the_blocked_host_and_the_page_name_only(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = post_report(client, firefox_report())
    assert response.status_code == 204
    assert logged(caplog) == "CSP violation: script-src-elem blocked https://tracker.example on page status"
    for secret in ("s3cr3t", "ana@example.com", "collect.js", "lang=fr", "alert", "mail.example"):
        assert secret not in caplog.text


def test_a_download_link_is_logged_by_its_pattern_name_without_its_tokens(client, caplog):
    body = firefox_report(**{"document-uri": f"https://privacy.example{DOWNLOAD_PATH}?x=1", "blocked-uri": "inline"})
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body).status_code == 204
    assert logged(caplog) == "CSP violation: script-src-elem blocked inline on page download"
    assert "s3cr3t" not in caplog.text and "d0wnl0ad" not in caplog.text


def test_an_older_browser_names_the_directive_with_its_sources(client, caplog):
    body = firefox_report(**{"effective-directive": "", "violated-directive": "style-src 'self'", "blocked-uri": "eval"})
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body).status_code == 204
    assert logged(caplog) == "CSP violation: style-src blocked eval on page status"


def test_a_page_that_is_not_ours_and_an_address_that_is_not_one_are_logged_as_unknown(client, caplog):
    body = firefox_report(
        **{"document-uri": "https://elsewhere.example/ana@example.com/", "blocked-uri": "https://ana@ex ample.com/", "effective-directive": "<b>ana</b>"}
    )
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body).status_code == 204
    assert logged(caplog) == "CSP violation: unknown blocked unknown on page unknown"


def test_a_data_address_is_logged_by_its_scheme_alone(client, caplog):
    body = firefox_report(**{"blocked-uri": "data:image/png;base64,iVBORw0KGgo=", "effective-directive": "img-src"})
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body).status_code == 204
    assert logged(caplog) == "CSP violation: img-src blocked data: on page status"


def test_a_reporting_api_body_logs_each_violation_and_skips_other_reports(client, caplog):
    staff_page = {"documentURL": "https://privacy.example/staff/?q=ana", "effectiveDirective": "style-src-elem", "blockedURL": "inline"}
    status_page = {
        "documentURL": f"https://privacy.example{STATUS_PATH}",
        "effectiveDirective": "img-src",
        "blockedURL": "https://pixel.example:8443/p.gif?id=ana",
        "sample": "ana@example.com",
    }
    body = json.loads(chromium_reports(staff_page, status_page))
    body.append({"type": "deprecation", "url": "https://privacy.example/", "body": {"message": "old API"}})
    with caplog.at_level(logging.WARNING):
        response = post_report(client, json.dumps(body).encode(), content_type="application/reports+json")
    assert response.status_code == 204
    assert logged(caplog).splitlines() == [
        "CSP violation: style-src-elem blocked inline on page staff:home",
        "CSP violation: img-src blocked https://pixel.example on page status",
    ]
    assert "ana" not in caplog.text and "s3cr3t" not in caplog.text


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"not json", "application/csp-report"),
        (b"\xff\xfe\x00garbage", "application/csp-report"),
        (b"[" * 5000, "application/reports+json"),
        (b'{"csp-report": "a string"}', "application/csp-report"),
        (b'["a string"]', "application/reports+json"),
        (b'{"type": "csp-violation"}', "application/reports+json"),
    ],
)
def test_a_body_that_is_not_a_report_is_refused_and_logs_nothing(client, caplog, body, content_type):
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body, content_type=content_type).status_code == 400
    assert logged(caplog) == ""


def test_a_body_of_another_type_is_refused(client):
    assert post_report(client, firefox_report(), content_type="text/plain").status_code == 415


def test_a_body_larger_than_a_report_is_refused_before_it_is_read(client, caplog):
    body = firefox_report(**{"script-sample": "x" * REPORT_MAX_BYTES})
    with caplog.at_level(logging.WARNING):
        assert post_report(client, body).status_code == 413
    assert logged(caplog) == ""


def test_reports_past_the_rate_limit_are_refused_per_client_address(client, settings, caplog):
    settings.CSP_REPORT_RATE_LIMIT = "2/h"
    with caplog.at_level(logging.WARNING):
        assert [post_report(client, firefox_report()).status_code for _ in range(3)] == [204, 204, 429]
        assert post_report(client, firefox_report(), REMOTE_ADDR="192.0.2.7").status_code == 204
    assert len(logged(caplog).splitlines()) == 3


def test_a_report_needs_no_csrf_token():
    assert post_report(Client(enforce_csrf_checks=True), firefox_report()).status_code == 204


def test_only_a_post_is_a_report(client):
    assert client.get(reverse("csp_report")).status_code == 405


@pytest.mark.django_db
def test_with_reports_off_the_address_is_not_found(client, settings, caplog):
    settings.CSP_REPORTS = False
    with caplog.at_level(logging.WARNING):
        assert post_report(client, firefox_report()).status_code == 404
    assert logged(caplog) == ""
