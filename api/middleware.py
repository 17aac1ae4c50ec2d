"""Request context: request id, checks before the body, one log line and metrics per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.logging import REQUEST_ID, log_event
from api.errors import problem_response
from api.request_guard import (
    MULTIPART_OVERHEAD_BYTES,
    PRE_AUTHENTICATED,
    body_limit_for,
    needs_pre_authentication,
    pre_authenticate,
)
from api.security_headers import security_headers
from api.service import Service

__all__ = ["MULTIPART_OVERHEAD_BYTES", "RequestContextMiddleware"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_LOG = logging.getLogger("api.request")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Pure ASGI middleware (streams untouched) around every HTTP request.

    - adds the security headers to every response (:mod:`api.security_headers`);
    - takes a well-formed ``X-Request-ID`` from the client or makes one, exposes it to logs
      (:data:`api.core.logging.REQUEST_ID`) and returns it in the response header;
    - answers 401 before reading the body of a request to ``/api/v1`` that carries no valid
      credential (:func:`api.request_guard.pre_authenticate`);
    - refuses bodies larger than the route's limit (:func:`api.request_guard.body_limit_for`)
      with 413, from ``Content-Length`` before reading anything, and while streaming for
      chunked bodies;
    - logs one line per request with the route *template* (no ids beyond our own UUIDs, no
      query string) and records Prometheus metrics;
    - answers an unexpected exception with a 500 problem body carrying the request id.
    """

    def __init__(self, app: ASGIApp, *, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        context_token = REQUEST_ID.set(request_id)
        metrics = self.service.metrics
        metrics.in_flight.inc()
        started = time.perf_counter()
        path = str(scope.get("path", ""))
        limit = body_limit_for(path, self.service.settings)
        state: dict[str, Any] = {"status": 500, "started": False, "received": 0}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise HTTPException(413, f"the request body exceeds the limit of {limit} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(security_headers(headers, scope, self.service.settings))
                message = {**message, "headers": headers}
            await send(message)

        try:
            length_text = _header(scope, b"content-length")
            length = int(length_text) if length_text and length_text.isdigit() else 0
            if needs_pre_authentication(str(scope.get("method", "")), path):
                principal = await pre_authenticate(self.service, scope)
                if principal is None:
                    await problem_response(
                        401,
                        "a valid bearer token or sign-in is required",
                        headers={"WWW-Authenticate": "Bearer"},
                    )(scope, receive, send_with_id)
                    return
                scope.setdefault("state", {})[PRE_AUTHENTICATED] = principal
            if length > limit:
                await problem_response(
                    413, f"the request body ({length} bytes) exceeds the limit of {limit} bytes"
                )(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except HTTPException as exc:
            if state["started"]:
                raise
            await problem_response(exc.status_code, str(exc.detail))(scope, receive, send_with_id)
        except Exception:
            _LOG.exception("unhandled error")
            if state["started"]:
                raise
            await problem_response(500, "internal error; quote the request id when reporting it")(
                scope, receive, send_with_id
            )
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            metrics.in_flight.dec()
            metrics.requests.labels(method, route, str(state["status"])).inc()
            metrics.latency.labels(method, route).observe(elapsed)
            principal = scope.get("state", {}).get("principal")
            log_event(
                "request",
                method=method,
                route=route,
                status=state["status"],
                duration_ms=round(elapsed * 1000, 2),
                token_id=getattr(principal, "token_id", None),
            )
            REQUEST_ID.reset(context_token)
