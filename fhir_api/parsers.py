"""FHIR JSON in: orjson parsing with a clear message for malformed bodies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from fhir_api.middleware import control_character_error, has_control_characters

#: What a JSON text must hold for a string or key in it to carry a control character
#: (``middleware.CONTROL_CHARACTERS``): a backslash (every escape starts with one), DEL
#: (which JSON allows raw) or a C0 control itself (JSON allows none raw in a string; listed
#: so the test does not lean on the decoder's strictness). A text without any of them is
#: not walked: the walk was most of the parsing of a small body.
_MAYBE_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\\]")


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
        if _MAYBE_CONTROL.search(raw) is not None:
            bad = control_character_path(data)
            if bad is not None:
                raise control_character_error(bad)
        return data


def control_character_path(data: dict[str, Any]) -> str | None:
    """The FHIRPath-ish location of the first string (or key) carrying a control character.

    Checked at the edge because PostgreSQL refuses NUL in text (a 500 deep inside a
    service otherwise) and no FHIR element has a use for the other C0 controls.
    """
    root = data.get("resourceType") if isinstance(data.get("resourceType"), str) else None
    stack: list[tuple[str, Any]] = [(root or "(body)", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if has_control_characters(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if has_control_characters(key):
                    return f"{path}.(key)"
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None
