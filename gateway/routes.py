"""The route table: which upstream serves a request path.

A prefix matches on path-segment boundaries and the longest matching prefix wins, so
``/models`` serves ``/models``, ``/models/1`` and ``/models/1/cancel`` but not ``/modelsX``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from yarl import URL


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    upstream: str
    """Base URL of the upstream service, without a trailing slash."""


def normalize_prefix(prefix: str) -> str:
    if not prefix.startswith("/") or any(c in prefix for c in "?#"):
        raise ValueError(f"route prefix must be a path starting with '/': {prefix!r}")
    return "/" + prefix.strip("/")


def normalize_upstream(upstream: str) -> str:
    url = URL(upstream)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ValueError(f"route upstream must be an http(s) base URL: {upstream!r}")
    return str(url).rstrip("/")


class RouteTable:
    def __init__(self, routes: Mapping[str, str]) -> None:
        self._by_prefix: dict[str, Route] = {}
        for prefix, upstream in routes.items():
            route = Route(normalize_prefix(prefix), normalize_upstream(upstream))
            if route.prefix in self._by_prefix:
                raise ValueError(f"duplicate route prefix: {route.prefix!r}")
            self._by_prefix[route.prefix] = route

    def __iter__(self) -> Iterator[Route]:
        return iter(self._by_prefix.values())

    def __len__(self) -> int:
        return len(self._by_prefix)

    def match(self, path: str) -> Route | None:
        """The route with the longest prefix that ``path`` starts with, segment-wise."""
        # Walk up the path one segment at a time: /a/b/c, /a/b, /a, / — a dict lookup each.
        candidate = path
        while True:
            route = self._by_prefix.get(candidate)
            if route is not None:
                return route
            if candidate == "/":
                return None
            candidate = candidate[: candidate.rfind("/")] or "/"
