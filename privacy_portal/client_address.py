"""The client's address, as every limit counts it: the public forms' rate limits (django-ratelimit), the API's
throttles and the staff sign-in lockout (django-axes). The settings point both libraries here, so that they
never tell clients apart differently."""

import ipaddress

from django.conf import settings


# One IPv6 subscriber holds a whole /64 (RFC 6177) and picks any address in it: counted one by one, a guesser
# would change address at each lockout. django-ratelimit masks by the same width (its RATELIMIT_IPV6_MASK).
IPV6_CLIENT_PREFIX = 64


def client_address(request) -> str:
    """Behind a proxy, the last address in CLIENT_ADDRESS_HEADER: the one the proxy saw itself (an
    X-Forwarded-For that the proxy extends starts with whatever the client sent); behind TRUSTED_PROXY_COUNT
    proxies that each extend it, the one the outermost saw, that many places from the end. A call without
    the header, or with fewer addresses than proxies (one that did not come through them all), counts under
    REMOTE_ADDR, and one without any address (a WSGI server may leave REMOTE_ADDR out) under 0.0.0.0: one
    budget for all such calls. An IPv6 address counts by its /64 ("2001:db8:1:2::"), as one client."""
    header = settings.CLIENT_ADDRESS_HEADER
    forwarded = request.META.get(header, "").split(",") if header else []
    seen_by_outermost_proxy = forwarded[-settings.TRUSTED_PROXY_COUNT] if len(forwarded) >= settings.TRUSTED_PROXY_COUNT else ""
    for candidate in (seen_by_outermost_proxy, request.META.get("REMOTE_ADDR") or ""):
        address = _without_port(candidate.strip())
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            continue
        if parsed.version == 6:
            return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False).network_address)
        return str(parsed)
    return "0.0.0.0"


def _without_port(address: str) -> str:
    """An address as some proxies write it with its port ("192.0.2.1:5678", "[2001:db8::1]:5678"), without."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    host, colon, port = address.rpartition(":")
    return host if colon and "." in host and port.isdigit() else address
