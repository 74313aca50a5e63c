"""A WSGIRequest that cannot fail while it is being built.

Django's ``WSGIRequest.__init__`` sets ``encoding`` when the Content-Type carries a
charset, and the ``encoding`` setter runs ``hasattr(self, "GET")``, which *parses the
query string* (``GET`` is a cached property). With more than
DATA_UPLOAD_MAX_NUMBER_FIELDS parameters that raises TooManyFieldsSent inside the
request constructor, before any middleware or exception handling: the WSGI server
answers a bare 500. Checking the instance dict instead defers the parse to the first
real use, where the error becomes an ordinary 400.
"""

from __future__ import annotations

from django.core.handlers.wsgi import WSGIHandler, WSGIRequest


class SafeWSGIRequest(WSGIRequest):
    @property
    def encoding(self) -> str | None:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value
        # Only drop what was already parsed; never parse just to throw it away.
        self.__dict__.pop("GET", None)
        if hasattr(self, "_post"):
            del self._post


def install() -> None:
    """Make every WSGIHandler (gunicorn's, runserver's, the test live server's) use it."""
    WSGIHandler.request_class = SafeWSGIRequest
