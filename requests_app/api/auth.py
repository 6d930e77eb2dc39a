"""API keys: who is calling, and what they may do.

A key belongs to an organisation (a business customer) and has a scope:
"read" follows requests, "write" also files and acts on them; "suppression"
(for the company's own systems) reads the suppression lists and nothing else. Keys are
hashed at rest, revocable and expiring (djangorestframework-api-key).
"""

import math
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_ratelimit import core as ratelimit_core
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework_api_key.permissions import KeyParser

from privacy_portal.cache import CacheUnreachable

from requests_app.models import APIKeyScope, OrganisationAPIKey


class OrganisationKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>`. A wrong, expired or revoked key is a 401."""

    keyword = "Api-Key"

    def authenticate(self, request):
        key = KeyParser().get(request)
        if not key:
            return None
        # The library's get_from_key (revoked keys are not usable), with the
        # organisation in the same query: every endpoint needs it.
        usable = OrganisationAPIKey.objects.get_usable_keys().select_related("organisation")
        try:
            api_key = usable.get(prefix=key.partition(".")[0])
        except OrganisationAPIKey.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("The API key is not valid.")) from None
        if not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed(_("The API key is not valid."))
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed(_("The API key has expired."))
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword


class AnyOrganisationKey(permissions.BasePermission):
    """Any valid key, whatever its scope: checking a key (ping) is for every key, the suppression scope's too."""

    def has_permission(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            raise exceptions.NotAuthenticated(_("Send an API key: Authorization: Api-Key <key>."))
        return True


class HasOrganisationKey(AnyOrganisationKey):
    """A portal's key: any reads requests; writing (POST) needs a key with the write scope."""

    message = gettext_lazy("This API key may only read: writing needs a key with the write scope.")

    def has_permission(self, request, view):
        super().has_permission(request, view)
        if request.auth.scope == APIKeyScope.SUPPRESSION:
            raise exceptions.PermissionDenied(_("This API key reads the suppression lists only."))
        if request.method not in view.allowed_methods:
            return True  # a 405 follows, whatever the key: no key may PUT there, a write key would not help
        return request.method in permissions.SAFE_METHODS or request.auth.scope == APIKeyScope.WRITE


class DownloadsNeedAWriteKey(permissions.BasePermission):
    """A package holds a subject's data: a read key lists packages but does not download them. A permission, not a
    check in the view, so that it refuses before the throttle counts the call, as a read key's POST is."""

    message = gettext_lazy("Downloading a subject's data needs a key with the write scope.")

    def has_permission(self, request, view):
        # Only the download itself: another method is a 405 whatever the key, and OPTIONS describes it to any key.
        return request.method != "GET" or request.auth.scope == APIKeyScope.WRITE


@dataclass(frozen=True)
class Budget:
    """What is left of a caller's budget after counting its call, as the throttle counted it."""

    limit: int
    remaining: int
    reset: int  # whole seconds until the window ends and the budget is whole again
    window: int  # the window's length, in seconds

    def headers(self) -> dict[str, str]:
        """The RateLimit fields of draft-ietf-httpapi-ratelimit-headers-06 (the README says why this draft)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }


# Where a throttle leaves the Budget on the Django request, for api.middleware.api_rate_limit_headers.
BUDGET_ATTRIBUTE = "api_budget"


class FixedWindowThrottle(throttling.SimpleRateThrottle):
    """A request budget counted in fixed windows (a minute, for "120/min") by an atomic increment in
    Redis (the cache production uses; the development file cache, privacy_portal.cache.CountingFileBasedCache,
    increments under a file lock).

    DRF's own SimpleRateThrottle reads the client's history, appends to it and writes it back: calls
    made in parallel overwrite each other's, and a client calling from 16 threads got more than twice
    its budget in one minute. A fixed window lets a client spend its budget at the end of one window
    and again at the start of the next: never more than twice it in any minute. One round trip to
    Redis per call; while Redis is down, none is refused.

    The count the increment answers is the caller's budget: it is left on the request (BUDGET_ATTRIBUTE) for the
    answer's RateLimit headers, with no other trip to Redis. A call the cache could not count leaves none: no
    budget is claimed while none is kept.
    """

    def allow_request(self, request, view):
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        counter = f"{key}:{window}"
        try:
            calls = self.cache.incr(counter)
        except CacheUnreachable:
            return True  # the limits are not enforced while Redis is down (privacy_portal.cache)
        except ValueError:  # the window's first call
            # add() is atomic too: of two first calls, one creates the counter and the other counts on it.
            calls = 1 if self.cache.add(counter, 1, timeout=self.duration + 1) else self._incr_or_allow(counter)
        self.retry_after = (window + 1) * self.duration - now
        if calls:
            budget = Budget(
                limit=self.num_requests,
                remaining=max(self.num_requests - calls, 0),
                # Rounded up, as DRF rounds Retry-After: on a 429 the two say the same.
                reset=math.ceil(self.retry_after),
                window=self.duration,
            )
            # On Django's request (a DRF Request wraps it): the middleware sees that one.
            setattr(getattr(request, "_request", request), BUDGET_ATTRIBUTE, budget)
        return calls <= self.num_requests

    def _incr_or_allow(self, counter: str) -> int:
        """Count on a counter another call just created; 0 (allowed) when the cache cannot count."""
        try:
            return self.cache.incr(counter)
        except ValueError:
            return 0

    def wait(self):
        return self.retry_after


class OrganisationKeyThrottle(FixedWindowThrottle):
    """A request budget per key (API_RATE_LIMIT); past it, 429 with Retry-After."""

    scope = "organisation_key"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}


def client_address(request) -> str:
    """The caller's address as the public form's rate limit counts it, by django-ratelimit's own function
    (its key="ip"; the version is pinned), so that the two never tell addresses apart differently: the
    settings' privacy_portal.client_address, an IPv6 address by its /64."""
    return ratelimit_core._get_ip(request)


class UnauthenticatedThrottle(FixedWindowThrottle):
    """A budget per client address for the calls that end in a 401, with no key or a wrong, expired or
    revoked one (API_UNAUTHENTICATED_RATE_LIMIT); past it they are answered 429 with Retry-After.

    DRF authenticates before it throttles, so a call whose key fails never reaches the throttles: this
    one is counted where a 401 is answered (errors.problem_exception_handler). An authenticated call
    never counts here, so it pays nothing for this budget: no query, no round trip to Redis.
    """

    scope = "unauthenticated"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


def unauthenticated_budget(exc, request, view):
    """The 429 (Throttled) to answer instead of `exc`, a 401, once the caller's address has used up its
    budget of calls without a valid key; `exc` itself while it has not."""
    throttle = UnauthenticatedThrottle()
    if throttle.allow_request(request, view):
        return exc
    return exceptions.Throttled(throttle.wait(), detail=_("Too many calls without a valid API key from your address."))


class OrganisationKeyScheme(OpenApiAuthenticationExtension):
    """Describes the API key to the OpenAPI schema (drf-spectacular)."""

    target_class = "requests_app.api.auth.OrganisationKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: the key your DPO gave you (shown once).",
        }
