"""``{% front_desk_today as today %}``: the admin index's view of today."""

from __future__ import annotations

from typing import Any

from django import template

from scheduling.front_desk import today_overview

register = template.Library()


@register.simple_tag(takes_context=True)
def front_desk_today(context: Any) -> dict[str, Any] | None:
    request = context.get("request")
    return today_overview(request) if request is not None else None
