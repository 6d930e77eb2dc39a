"""The cache holds rate-limit counters only: the public forms' limits per client address and per email address
(counted under a keyed hash of it, never the address), the API's per-key
throttle, its per-address budget of calls without a valid key, and the per-address limit of
Content-Security-Policy violation reports. When Redis cannot be reached, those
limits are not enforced for a while, rather than every request being refused: a privacy request must
never be lost to a cache outage. Without Redis (CACHE_URL unset, as with `make run`), a file cache
whose counters keep their expiry when counted (CountingFileBasedCache)."""

import logging
import pickle
import time
import zlib

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.core.files import locks
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


class CountingFileBasedCache(FileBasedCache):
    """Django's file cache, with an incr that keeps the counter's expiry, as Redis's INCR and the
    in-memory cache do.

    Django's file cache counts with get() then set() at the default timeout (300 s): django-ratelimit
    adds its counter for the whole period (an hour for SUBMISSION_RATE_LIMIT), but every hit cut its life
    back to 5 minutes, so the count started again from zero 5 minutes after the last hit and the
    public form's "10/h" let through 24 requests in 26 minutes.
    """

    def incr(self, key, delta=1, version=None):
        # Rewritten in place under an exclusive lock, as FileBasedCache.touch() does, so two processes
        # counting at once both count. A set() meanwhile replaces the file: this count then goes to the
        # old one and is lost, as with Django's own incr.
        try:
            with open(self._key_to_file(key, version), "r+b") as f:
                try:
                    locks.lock(f, locks.LOCK_EX)
                    try:
                        expiry = pickle.load(f)
                    except EOFError:  # an empty file is expired, as FileBasedCache._is_expired() says
                        expiry = 0
                    if expiry is not None and expiry < time.time():
                        raise ValueError(f"Key '{key}' not found")
                    value = pickle.loads(zlib.decompress(f.read())) + delta
                    f.seek(0)
                    f.write(pickle.dumps(expiry, self.pickle_protocol))
                    f.write(zlib.compress(pickle.dumps(value, self.pickle_protocol)))
                    f.truncate()  # the new value may be shorter than the old
                    return value
                finally:
                    locks.unlock(f)
        except FileNotFoundError:
            raise ValueError(f"Key '{key}' not found") from None
