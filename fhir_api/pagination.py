"""Searchset Bundles with absolute, followable paging links (CONTRACT section 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rest_framework.request import Request

T = TypeVar("T")

DEFAULT_COUNT = 50
MAX_COUNT = 500


def _link(request: Request, offset: int, count: int) -> str:
    params = request.query_params.copy()
    params["_offset"] = str(offset)
    params["_count"] = str(count)
    return f"{request.build_absolute_uri(request.path)}?{params.urlencode(safe='|,:/')}"


def searchset(
    request: Request,
    items: Sequence[T],
    *,
    offset: int,
    count: int,
    to_entry: Callable[[T], tuple[str, dict[str, Any]]],
) -> dict[str, Any]:
    """A Bundle of one page of ``items``; only that page is mapped (the cost is per page).

    ``to_entry`` returns (fullUrl, resource). ``total`` counts every match, before paging.
    """
    total = len(items)
    page = items[offset : offset + count]
    links = [{"relation": "self", "url": _link(request, offset, count)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": _link(request, offset + count, count)})
    if offset > 0 and count:
        links.append({"relation": "previous", "url": _link(request, max(0, offset - count), count)})
    entries = []
    for item in page:
        full_url, resource = to_entry(item)
        entries.append({"fullUrl": full_url, "resource": resource, "search": {"mode": "match"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
