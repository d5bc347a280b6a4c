"""A manifest problem as the API and the pages show it: line, column, field path, message and
hint, with a posted manifest's file (kept under ``home/posted/``) named as "the manifest"."""

from __future__ import annotations

import re
from typing import Any

from deployer.errors import ManifestError

_LOCATION = re.compile(r":(\d+):(\d+)$")
#: Where a posted manifest is kept, as an error would name it.
_POSTED_PATH = re.compile(r"\S*/posted/[0-9a-f]+/posted\.yaml(:\d+:\d+)?")


def located(problem: ManifestError, *, posted: bool = False) -> dict[str, Any]:
    """``{"line", "column", "field", "message", "hint"}`` of one problem (line and column None
    without a location, field None when the problem is not a field's)."""
    location = problem.location or ""
    found = _LOCATION.search(location)
    message = _POSTED_PATH.sub("the manifest", problem.reason) if posted else problem.reason
    return {
        "line": int(found.group(1)) if found else None,
        "column": int(found.group(2)) if found else None,
        "field": problem.field,
        "message": message,
        "hint": problem.hint,
    }


__all__ = ["located"]
