"""ReDoc's script, served without the one address it would load from a third party."""

import functools

from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

SIDECAR_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
# ReDoc's sidebar ends in an "API docs by Redocly" link with a logo it always loads from Redocly's CDN; no option
# turns it off. Our Content-Security-Policy refused it, and every visit to /api/redoc/ sent a report to /csp-report/.
# Allowing the CDN would tell Redocly who reads our docs. "data:," (an image the docs' policy allows, decoded as
# nothing) makes the logo fail without a request: ReDoc then drops it (its onError) and the link keeps its text.
REDOCLY_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
NO_LOGO = b'"data:,"'


@functools.cache
def bundle_without_redocly_logo() -> bytes:
    with open(finders.find(SIDECAR_BUNDLE), "rb") as bundle:
        script = bundle.read()
    if REDOCLY_LOGO not in script:
        # A ReDoc upgrade moved it: tests/api/test_docs.py fails rather than the CSP reports coming back unnoticed.
        raise LookupError("ReDoc's bundle no longer names the Redocly logo's address")
    return script.replace(REDOCLY_LOGO, NO_LOGO)


# Not personal data, the same for everyone, and 1 MB: browsers may keep it for a day (the no_store middleware
# leaves an answer that sets its own Cache-Control alone).
@cache_control(public=True, max_age=24 * 3600)
@require_safe
def redoc_bundle(request):
    return HttpResponse(bundle_without_redocly_logo(), content_type="text/javascript; charset=utf-8")
