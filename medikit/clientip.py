"""The address of the client behind the request, from a proxy header only when configured.

Behind the TLS proxy every connection comes from the proxy, so keying rate limits and
admin lockouts on REMOTE_ADDR would lock the whole clinic out at once. Guessing from
``X-Forwarded-For`` without a proxy in front would let any client pick its own address.
So the header is read only when ``TRUSTED_PROXY_HEADER`` names it, and only the entry the
trusted proxy appended (``TRUSTED_PROXY_COUNT`` from the right) counts.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _meta_key(header: str) -> str:
    key = header.strip().upper().replace("-", "_")
    if key in ("REMOTE_ADDR",) or key.startswith("HTTP_"):
        return key
    return f"HTTP_{key}"


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address as text; REMOTE_ADDR unless a trusted proxy header is set.

    None when there is none (django-axes stores the address in an inet column).
    """
    remote = str(request.META.get("REMOTE_ADDR") or "")
    header = str(getattr(settings, "TRUSTED_PROXY_HEADER", "") or "")
    if header:
        count = max(1, int(getattr(settings, "TRUSTED_PROXY_COUNT", 1)))
        values = [
            part.strip()
            for part in str(request.META.get(_meta_key(header), "")).split(",")
            if part.strip()
        ]
        if len(values) >= count:
            candidate = values[-count]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass  # a forged or garbled entry: fall back to the connection's address
    return remote or None
