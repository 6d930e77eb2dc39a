"""The API's documentation pages load nothing from a third party (their browser test: tests/browser/test_content_security_policy.py)."""

import pytest
from django.contrib.staticfiles import finders

from requests_app.api.docs import SIDECAR_BUNDLE


@pytest.mark.django_db
def test_redoc_runs_the_sidecars_script_without_the_redocly_logos_address(client):
    page = client.get("/api/redoc/").content.decode()
    assert '<script src="/api/redoc/redoc.standalone.js"></script>' in page and "cdn.redoc.ly" not in page
    served = client.get("/api/redoc/redoc.standalone.js")
    assert served.status_code == 200 and served["Content-Type"] == "text/javascript; charset=utf-8"
    with open(finders.find(SIDECAR_BUNDLE), "rb") as bundle:
        sidecar = bundle.read()
    # The release pinned by requirements.txt names the logo's address once, and nothing else changes.
    assert sidecar.count(b"https://cdn.redoc.ly/") == 1 and b"cdn.redoc.ly" not in served.content
    assert served.content == sidecar.replace(b'"https://cdn.redoc.ly/redoc/logo-mini.svg"', b'"data:,"')
