"""The plan of each deployment's latest revision, kept for the server's life: a revision never
changes, so its plan is made once (planning reads the model's files) and every later look at the
deployment's page or ``/intent`` only asks its engines."""

from __future__ import annotations

import threading

from deployer import api
from deployer.settings import Settings

#: Revisions whose plans are kept (the oldest looked-at goes first).
KEPT = 256


class LatestPlans:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._kept: dict[tuple[str, int], api.Planned] = {}
        self._lock = threading.Lock()

    def of(self, name: str) -> api.Planned:
        """The plan of ``name``'s latest revision (NotFoundError for an unknown name)."""
        revisions = api.revisions(self._settings, name)
        if not revisions:
            return api.planned(self._settings, name, None)
        latest = revisions[0]
        key = (name, latest.number)
        with self._lock:
            found = self._kept.pop(key, None)
            if found is not None:
                self._kept[key] = found  # most recently used last
                return found
        made = api.planned(self._settings, name, latest)
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > KEPT:
                del self._kept[next(iter(self._kept))]
        return made

    def intent(self, name: str) -> api.Intent:
        """``name``'s latest revision and its plan beside what its engines report now."""
        [view] = api.status(self._settings, name)
        return api.intent(self._settings, view, self.of(name))


__all__ = ["LatestPlans"]
