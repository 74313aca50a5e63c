"""API views whose request, response and view are freed as soon as a response is done.

DRF ties a request's objects into reference cycles: the view keeps the request and the
response, the request's ``parser_context`` names the view and the request itself, the
response's ``renderer_context`` names the view and the request, and Django's ``View.setup``
stores the bound ``self.get`` as ``self.head``. Nothing but the garbage collector frees a
cycle, so every API request left its whole object graph (a search page's hundred resource
dicts included) for the next collection to find: measured through the WSGI application on
the stored-slot clinic (bench/load_data.py), 34,000 objects per collection of the youngest
generation, and 11-16 % of the CPU of a cached search. Breaking the cycles once the response
is rendered lets reference counting free it all on the spot.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class AcyclicAPIView(APIView):
    """An APIView that renders its response in ``dispatch`` and then drops the references
    that tie the request, the response and the view into cycles (see the module)."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().dispatch(request, *args, **kwargs)
        if isinstance(response, Response):
            # Rendered here, while the renderer context still has what it needs; Django's
            # handler then finds it rendered (rendering twice is a no-op).
            response.render()
            response.renderer_context = {}  # type: ignore[attr-defined]  # (not in the stubs)
        drf_request = self.__dict__.get("request")
        if isinstance(drf_request, Request):
            drf_request.parser_context = {}
        # The view is done with: nothing reads it after dispatch.
        self.__dict__.clear()
        return response
