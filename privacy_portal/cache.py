"""The cache holds rate-limit counters only: the public form's per-address limit, the API's per-key
throttle, its per-address budget of calls without a valid key, and the per-address limit of
Content-Security-Policy violation reports. When Redis cannot be reached, those
limits are not enforced for a while, rather than every request being refused: a privacy request must
never be lost to a cache outage."""

import logging

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)

UNREACHABLE = (ConnectionError, TimeoutError)


class CacheUnreachable(ValueError):
    """What incr raises while Redis is down: a ValueError, as for a missing key, so that
    django-ratelimit counts nothing and lets the request through; the API's throttle tells the two
    apart and allows at once, rather than trying Redis again."""


def _unreachable(error: Exception) -> None:
    logger.warning("cache unreachable, rate limits not enforced: %s", error.__class__.__name__)


class FailOpenRedisCache(RedisCache):
    """Django's Redis cache, with the four calls the rate limits make answering "nothing stored"
    instead of raising when Redis is down. django-ratelimit (RATELIMIT_FAIL_OPEN) and DRF's
    throttle then let the request through."""

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            return super().add(key, value, timeout, version)
        except UNREACHABLE as error:
            _unreachable(error)
            return False

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except UNREACHABLE as error:
            _unreachable(error)
            return default

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        try:
            super().set(key, value, timeout, version)
        except UNREACHABLE as error:
            _unreachable(error)

    def incr(self, key, delta=1, version=None):
        try:
            return super().incr(key, delta, version)
        except UNREACHABLE as error:
            _unreachable(error)
            raise CacheUnreachable("the cache is unreachable") from error
