"""Scanning a Stigg connection (edges/node, pageInfo) page by page for one node."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def find_in_pages(
    fetch: Callable[[dict], dict],
    wanted: Callable[[dict], bool],
    *,
    page_size: int,
    max_pages: int,
    what: str,
) -> dict | None:
    """The first node `wanted` accepts. `fetch(paging)` answers one connection; pages are
    followed by their end cursor until the last one, or `max_pages` (then it is logged:
    a customer with that many objects can hide the one we look for)."""
    after = None
    for _page in range(max_pages):
        paging = {"first": page_size}
        if after is not None:
            paging["after"] = after
        connection = fetch(paging)
        for edge in connection.get("edges") or []:
            node = edge.get("node") or {}
            if wanted(node):
                return node
        page_info = connection.get("pageInfo") or {}
        after = page_info.get("endCursor")
        if not page_info.get("hasNextPage") or not after:
            return None
    log.warning(f"{what} look-up stopped after {max_pages} pages of {page_size}")
    return None
