"""FHIR JSON in: orjson parsing with a clear message for malformed bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class FHIRJSONParser(BaseParser):
    media_type = "application/fhir+json"
    media_types = ("application/fhir+json", "application/json")

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            raise ParseError("The request body is empty; send a FHIR JSON resource.")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise ParseError("The request body must be a JSON object (a FHIR resource).")
        return data
