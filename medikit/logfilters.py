"""Logging filters (referenced from settings.LOGGING)."""

from __future__ import annotations

import logging


class NoTracebackForSecurityEvents(logging.Filter):
    """Log Django's security events (bad Host header, too many fields, ...) as one line.

    Django logs each SuspiciousOperation with its traceback; they are the client's doing,
    arrive in bursts from scanners, and the stack is always the same request-parsing code.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security"):
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True
