"""Security headers on every response, not only the review page's.

An API answer is never a document to render or frame: ``default-src 'none'`` and
``frame-ancestors 'none'`` unless the route set its own policy (the review page's, in
:mod:`api.web`); ``nosniff``, no referrer, no framing. ``Strict-Transport-Security`` is sent
when the request came over HTTPS (uvicorn ``--ssl-*``, or a trusted proxy's
``X-Forwarded-Proto`` with ``--forwarded-allow-ips``) or ``IGRT_HSTS`` says the service is only
reached over TLS.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Scope

from api.core.config import Settings

__all__ = ["HSTS", "security_headers"]

HSTS = "max-age=31536000"
"""One year; no ``includeSubDomains``: the hospital's other hosts are not ours to pin."""

_DEFAULTS = (
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def security_headers(
    present: Sequence[tuple[bytes, bytes]], scope: Scope, settings: Settings
) -> list[tuple[bytes, bytes]]:
    """The headers to add to a response that already has ``present``."""
    have = {bytes(name).lower() for name, _ in present}
    extra = [(name, value) for name, value in _DEFAULTS if name not in have]
    if settings.hsts or scope.get("scheme") == "https":
        extra.append((b"strict-transport-security", HSTS.encode()))
    return extra
