"""API keys: who is calling, and what they may do.

A key belongs to an organisation (a business customer) and has a scope:
"read" follows requests, "write" also files and acts on them; "suppression"
(for the company's own systems) reads the suppression lists and nothing else. Keys are
hashed at rest, revocable and expiring (djangorestframework-api-key).
"""

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
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        if not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("The API key has expired.")
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword


class HasOrganisationKey(permissions.BasePermission):
    """Any valid key reads; writing (POST) needs a key with the write scope."""

    message = "This API key may only read: writing needs a key with the write scope."

    def has_permission(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            raise exceptions.NotAuthenticated("Send an API key: Authorization: Api-Key <key>.")
        if request.auth.scope == APIKeyScope.SUPPRESSION:
            raise exceptions.PermissionDenied("This API key reads the suppression lists only.")
        return request.method in permissions.SAFE_METHODS or request.auth.scope == APIKeyScope.WRITE


class OrganisationKeyThrottle(throttling.SimpleRateThrottle):
    """A request budget per key (API_RATE_LIMIT); past it, 429 with Retry-After.

    Counted in fixed windows (a minute, for "120/min") by an atomic increment in Redis (the cache
    production uses; the development file cache counts approximately). DRF's own SimpleRateThrottle
    reads the key's history, appends to it and writes it back: calls made in parallel overwrite each
    other's, and a client calling from 16 threads got more than twice its budget in one minute. A
    fixed window lets a client spend its budget at the end of one window and again at the start of
    the next: never more than twice it in any minute.
    """

    scope = "organisation_key"

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, OrganisationAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}

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
        if calls <= self.num_requests:
            return True
        self.retry_after = (window + 1) * self.duration - now
        return False

    def _incr_or_allow(self, counter: str) -> int:
        """Count on a counter another call just created; 0 (allowed) when the cache cannot count."""
        try:
            return self.cache.incr(counter)
        except ValueError:
            return 0

    def wait(self):
        return self.retry_after


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
