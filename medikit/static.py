"""Static files: WhiteNoise, quiet about a STATIC_ROOT it does not use."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # untyped
    """WhiteNoise that skips a missing STATIC_ROOT while it serves from the finders.

    In development and tests (``WHITENOISE_USE_FINDERS``) the files come from the apps'
    static folders and ``collectstatic`` has never run, so WhiteNoise's "No directory at:
    .../staticfiles/" warning was noise every newcomer saw. With collected files (production)
    a missing STATIC_ROOT is a real mistake, and the warning stays.
    """

    def add_files(self, root: str, prefix: str | None = None) -> None:
        unused = (
            self.use_finders
            and Path(root).resolve() == Path(settings.STATIC_ROOT).resolve()
            and not Path(root).is_dir()
        )
        if not unused:
            super().add_files(root, prefix)
