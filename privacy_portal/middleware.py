"""Project-wide response headers."""

from django.utils.cache import add_never_cache_headers


def no_store(get_response):
    """Nothing this application answers may be kept by a browser or a proxy: its pages hold
    personal data (status pages, downloads, the dashboard) or a form's CSRF token. A shared
    computer's back button or cache must not show the last person's request. Static files
    (WhiteNoise, which answers before this) keep their own long-lived caching."""

    def middleware(request):
        response = get_response(request)
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response

    return middleware
