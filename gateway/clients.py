"""Who is at the other end: the client's address behind a known number of proxies.

Behind the Istio ingress (or any reverse proxy) every request comes from the proxy's
address, so limits per socket address would put every client in one bucket. With
``GATEWAY_TRUSTED_PROXY_HOPS`` = N, the client is the address the N-th proxy from here
saw: the N-th entry from the right of ``X-Forwarded-For`` (each proxy appends the
address it received the request from). Entries further left were written by the client
and are never believed. With N = 0 (the default) the header is ignored.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from gateway.state import SETTINGS

UNKNOWN = "unknown"


def client_address(request: web.Request) -> str:
    settings = request.app.get(SETTINGS)
    hops = settings.trusted_proxy_hops if settings is not None else 0
    peer = request.remote or UNKNOWN
    if hops <= 0:
        return peer
    forwarded = [
        part.strip()
        for header in request.headers.getall("X-Forwarded-For", ())
        for part in header.split(",")
    ]
    if len(forwarded) < hops:
        return peer  # fewer proxies than configured: the nearest one is all we know
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer
