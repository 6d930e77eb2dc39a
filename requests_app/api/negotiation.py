"""How the API picks the media type of its answer from the call's Accept header."""

from rest_framework.negotiation import DefaultContentNegotiation

# Not errors.PROBLEM: errors imports rest_framework.views, which imports this module (its default negotiation).
PROBLEM = "application/problem+json"
JSON = "application/json"


class JSONOrProblemNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, reading `application/problem+json` in Accept as `application/json`.

    The API has one representation of each answer: a success is `application/json`, an error
    `application/problem+json` (RFC 9457) whatever Accept says. A client that names only the error format
    (`Accept: application/problem+json`) was refused 406, though it can read every answer: problem+json is
    JSON (its `+json` suffix, RFC 6839), and every error it could meet is written in it.

    Its successes are answered `application/json`, not labelled problem+json: that type promises a problem
    details object (`type`, `title`, `status`...), which a request or a page of them is not, and a client
    dispatching on Content-Type would read a success as an error. Answering a type that Accept did not list
    is what RFC 9110 (section 12.5.1) lets a server do instead of a 406, and what it does for the errors
    of a client that accepts `application/json` only. An Accept that admits neither type (`text/html`)
    is still a 406.
    """

    def get_accept_list(self, request):
        return [_problem_as_json(media_range) for media_range in super().get_accept_list(request)]


def _problem_as_json(media_range: str) -> str:
    """`application/problem+json;q=0.5` as `application/json;q=0.5`; any other media range unchanged."""
    media_type, separator, parameters = media_range.partition(";")
    if media_type.strip().lower() == PROBLEM:
        return f"{JSON}{separator}{parameters}"
    return media_range
