"""WSGI entry point: `gunicorn medikit.wsgi`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medikit.settings")

# Same key as fhir_api.middleware.CLOSE_CONNECTION (not imported: settings load first).
_CLOSE_CONNECTION = "medikit.close_connection"

StartResponse = Callable[..., Any]


def close_unread_connections(app: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    """Close the connection after a response whose request body was never read.

    The middleware cannot say ``Connection: close`` itself: WSGI forbids hop-by-hop
    headers from applications (wsgiref asserts it) and gunicorn drops them. Gunicorn's
    response object is ``start_response.__self__``; ``force_close()`` makes it answer
    ``Connection: close`` and close, instead of promising keep-alive and then dropping
    the socket when it cannot drain a large unread body.
    """

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(_CLOSE_CONNECTION):
                server_response = getattr(start_response, "__self__", None)
                force_close = getattr(server_response, "force_close", None)
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


application = close_unread_connections(get_wsgi_application())
