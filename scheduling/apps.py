from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy


def _ensure_stamp_triggers(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from scheduling.db.stamp_triggers import ensure_sqlite_triggers

    ensure_sqlite_triggers(using)


def _ensure_version_triggers(sender: Any, using: str = "default", **kwargs: Any) -> None:
    from scheduling.db.version_triggers import ensure_sqlite_triggers

    ensure_sqlite_triggers(using)


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = gettext_lazy("Scheduling")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_ensure_stamp_triggers, sender=self)
        post_migrate.connect(_ensure_version_triggers, sender=self)
