"""What applying rendered objects would change in a cluster: pure comparison of each rendered
object with its live version.

The API server adds defaults, status and bookkeeping to every object, so a live object is
compared as a superset: a rendered field that is missing or different in the live object is a
change, a field only the server added is not (as ``kubectl diff`` reads after a server-side
dry run, without needing one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["create", "update", "unchanged"]
#: Metadata the API server or Helm owns; never a change deployer makes.
_IGNORED_METADATA = {"namespace", "resourceVersion", "uid", "creationTimestamp", "generation"}


@dataclass(frozen=True)
class ObjectChange:
    kind: str
    name: str
    action: Action
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        what = f"{self.kind}/{self.name}"
        if self.action == "update":
            return f"~ {what}: {', '.join(self.fields[:6])}"
        return f"{'+' if self.action == 'create' else '='} {what}"


def compare(desired: dict[str, object], live: dict[str, object] | None) -> ObjectChange:
    metadata = desired.get("metadata")
    name = str(metadata.get("name")) if isinstance(metadata, dict) else "?"
    kind = str(desired.get("kind"))
    if live is None:
        return ObjectChange(kind, name, "create")
    fields = tuple(changed_fields(desired, live))
    return ObjectChange(kind, name, "update" if fields else "unchanged", fields)


def changed_fields(desired: object, live: object, path: str = "") -> list[str]:
    """Dotted paths where ``desired`` is not contained in ``live``."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "(root)"]
        changes: list[str] = []
        for key, value in desired.items():
            if path == "metadata" and key in _IGNORED_METADATA:
                continue
            child = f"{path}.{key}" if path else str(key)
            if key not in live:
                changes.append(child)
            else:
                changes += changed_fields(value, live[key], child)
        return changes
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return [path]
        return [c for d, v in zip(desired, live, strict=True) for c in changed_fields(d, v, path)]
    if _scalar(desired) != _scalar(live):
        return [path]
    return []


def _scalar(value: object) -> object:
    # Quantities and ports come back from the server as strings or numbers alike.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
