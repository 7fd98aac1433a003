"""Plain-text rendering of the nested statistics and metric dicts the CLI prints."""
from __future__ import annotations

from typing import Any, Mapping

INDENT = "  "
FLOAT_DIGITS = 4


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{FLOAT_DIGITS}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def format_nested(data: Mapping[str, Any], depth: int = 0) -> str:
    """Render a nested mapping as indented ``key: value`` lines."""
    lines = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"{INDENT * depth}{key}:")
            lines.append(format_nested(value, depth + 1))
        else:
            lines.append(f"{INDENT * depth}{key}: {_format_value(value)}")
    return "\n".join(line for line in lines if line)


def format_world_stats(stats: Mapping[str, Any]) -> str:
    """The world statistics block that `ega world` and `make demo` print."""
    return "World statistics\n" + format_nested(stats, depth=1)
