"""Reading a Stigg connection (edges/node, pageInfo) page by page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


def nodes_in_pages(
    fetch: Callable[[dict], dict], *, page_size: int, max_pages: int, what: str
) -> Iterator[dict]:
    """Every node, following end cursors. `fetch(paging)` answers one connection. Stops at
    the last page or after `max_pages` (logged: a customer with that many objects can hide
    the one we look for)."""
    after = None
    for _page in range(max_pages):
        paging = {"first": page_size}
        if after is not None:
            paging["after"] = after
        connection = fetch(paging)
        for edge in connection.get("edges") or []:
            if edge.get("node"):
                yield edge["node"]
        page_info = connection.get("pageInfo") or {}
        after = page_info.get("endCursor")
        if not page_info.get("hasNextPage") or not after:
            return
    log.warning(f"{what} look-up stopped after {max_pages} pages of {page_size}")


def find_in_pages(
    fetch: Callable[[dict], dict],
    wanted: Callable[[dict], bool],
    *,
    page_size: int,
    max_pages: int,
    what: str,
) -> dict | None:
    """The first node `wanted` accepts, reading no further pages than needed."""
    nodes = nodes_in_pages(fetch, page_size=page_size, max_pages=max_pages, what=what)
    return next((node for node in nodes if wanted(node)), None)
