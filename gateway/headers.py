"""Which headers cross the gateway, in each direction, and the ones it adds."""

from __future__ import annotations

import uuid

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.cors import CORS_POLICY, add_cors_headers
from servicekit.app import REQUEST_ID

X_REQUEST_ID = "X-Request-ID"
X_FORWARDED_FOR = "X-Forwarded-For"
X_FORWARDED_PROTO = "X-Forwarded-Proto"
X_FORWARDED_HOST = "X-Forwarded-Host"

# RFC 9110 section 7.6.1, plus the de-facto Keep-Alive and Proxy-Connection.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers the gateway recomputes or sets itself instead of passing the client's on.
_REQUEST_REPLACED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
)
_RESPONSE_REPLACED = frozenset({"x-request-id"})


def request_id_from(headers: CIMultiDictProxy[str]) -> str:
    """The client's X-Request-ID if it is a sane token, else a fresh one: the services'
    rule (servicekit.app), so an id given at the gateway is the one every service logs."""
    given = headers.get(X_REQUEST_ID)
    if given is not None and REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Header names listed in Connection, which are hop-by-hop for this one hop."""
    return {
        token.strip().lower()
        for value in headers.getall(hdrs.CONNECTION, ())
        for token in value.split(",")
        if token.strip()
    }


def _is_hop_by_hop(name: str, connection_tokens: set[str]) -> bool:
    return name in _HOP_BY_HOP or name.startswith("proxy-") or name in connection_tokens


def _end_to_end(
    headers: CIMultiDictProxy[str], drop: frozenset[str] | set[str]
) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones and without those named (lower case) in ``drop``."""
    tokens = _connection_tokens(headers)
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if not (_is_hop_by_hop(lower, tokens) or lower in drop):
            kept.add(name, value)
    return kept


def upstream_request_headers(
    headers: CIMultiDictProxy[str],
    *,
    request_id: str,
    client_ip: str | None,
    scheme: str,
    host: str | None,
) -> CIMultiDict[str]:
    """The headers to send upstream for a client request carrying ``headers``."""
    forwarded = _end_to_end(headers, _REQUEST_REPLACED)
    prior = ", ".join(headers.getall(X_FORWARDED_FOR, ()))
    if client_ip:
        forwarded[X_FORWARDED_FOR] = f"{prior}, {client_ip}" if prior else client_ip
    elif prior:
        forwarded[X_FORWARDED_FOR] = prior
    forwarded[X_FORWARDED_PROTO] = scheme
    if host:
        forwarded[X_FORWARDED_HOST] = host
    forwarded[X_REQUEST_ID] = request_id
    return forwarded


def downstream_response_headers(
    headers: CIMultiDictProxy[str], *, keep_content_length: bool
) -> CIMultiDict[str]:
    """The upstream response headers to pass back to the client.

    Content-Length is dropped because the gateway sends the body it read and aiohttp counts
    it, except when there is no body to count (HEAD, 304) and the upstream's figure is the
    one the client needs. Content-Encoding stays: the body is passed on still encoded.
    """
    drop = _RESPONSE_REPLACED if keep_content_length else {*_RESPONSE_REPLACED, "content-length"}
    return _end_to_end(headers, drop)


# --- on every response ------------------------------------------------------------

SERVER_NAME = "nocode-gateway"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
JSON_TYPES = ("application/json", "application/problem+json")


async def finish_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook, for every response the gateway sends.

    ``Server`` names the gateway only: neither aiohttp's version nor the upstream's server
    software is anyone's business. ``nosniff`` on every answer and ``no-store`` on JSON
    ones (API answers: one user's data), unless the answer says how it may be cached: the
    console's HTML and static assets keep theirs. Then the CORS headers, where CORS is on.
    """
    response.headers[hdrs.SERVER] = SERVER_NAME
    response.headers.update(SECURITY_HEADERS)
    if response.content_type in JSON_TYPES and hdrs.CACHE_CONTROL not in response.headers:
        response.headers[hdrs.CACHE_CONTROL] = "no-store"
    policy = request.app.get(CORS_POLICY)
    if policy is not None:
        add_cors_headers(policy, request, response)
