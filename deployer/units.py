"""Numbers for people: sizes in binary units."""

from __future__ import annotations


def human_bytes(value: int | None) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``None`` -> ``'-'``. Bytes below 1 KiB stay whole."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
