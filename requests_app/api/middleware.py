"""Refuse oversized API bodies before anything reads them (413, problem details)."""

from django.conf import settings
from django.http import JsonResponse


def api_body_limit(get_response):
    def middleware(request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.API_MAX_BODY_BYTES:
                return JsonResponse(
                    {
                        "type": "about:blank",
                        "title": "Content Too Large",
                        "status": 413,
                        "detail": f"The body is larger than {settings.API_MAX_BODY_BYTES} bytes.",
                    },
                    status=413,
                    content_type="application/problem+json",
                )
        return get_response(request)

    return middleware
