"""Every applied revision of a deployment (its manifest file and lock, as applied), the diff of
any two, and rolling back: re-applying a previous revision as a new run.

A revision is re-applied from a copy the state keeps under ``home/revisions/NAME/N/`` (the
manifest under its own file name, the lock beside it), with relative paths still starting in the
folder it was first applied from.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from deployer import atomic
from deployer.api.deploy import ApplyResult, apply_loaded
from deployer.api.runs import get, open_store, reading
from deployer.api.types import Result
from deployer.errors import NotFoundError
from deployer.events import EventBus
from deployer.hub.lock import lock_path
from deployer.manifest.loader import LoadedManifest, load_manifests
from deployer.settings import Settings, check_name
from deployer.state import RevisionRecord


class RevisionDiff(Result):
    """Two revisions of a deployment, and a unified diff of their manifest and lock."""

    deployment: str
    older: int
    newer: int
    diff: str


def revisions(settings: Settings, name: str) -> list[RevisionRecord]:
    """The deployment's revisions, newest first."""
    with reading(settings, name) as store:
        return store.list_revisions(name)


def revision_diff(settings: Settings, name: str, older: int, newer: int) -> RevisionDiff:
    """What changed from revision ``older`` to ``newer`` (manifest, then lock)."""
    a, b = _revision(settings, name, older), _revision(settings, name, newer)
    lines = [
        *difflib.unified_diff(
            a.manifest_text.splitlines(keepends=True),
            b.manifest_text.splitlines(keepends=True),
            f"revision {older}: {Path(a.manifest_path).name}",
            f"revision {newer}: {Path(b.manifest_path).name}",
        ),
        *difflib.unified_diff(
            (a.lock_text or "").splitlines(keepends=True),
            (b.lock_text or "").splitlines(keepends=True),
            f"revision {older}: lock",
            f"revision {newer}: lock",
        ),
    ]
    return RevisionDiff(deployment=name, older=older, newer=newer, diff="".join(lines))


def rollback(name: str, number: int, settings: Settings, events: EventBus) -> ApplyResult:
    """Re-apply revision ``number`` of ``name`` as a new apply run."""
    return apply_loaded(materialize(settings, _revision(settings, name, number)), settings, events)


def _revision(settings: Settings, name: str, number: int) -> RevisionRecord:
    check_name(name)
    store = open_store(settings)
    try:
        get(store, name)
        found = store.get_revision(name, number)
        if found is None:
            known = ", ".join(str(r.number) for r in store.list_revisions(name)) or "none"
            raise NotFoundError(f"{name} has no revision {number}", hint=f"its revisions: {known}")
        return found
    finally:
        store.close()


def materialize(settings: Settings, revision: RevisionRecord) -> LoadedManifest:
    original = Path(revision.manifest_path)
    folder = settings.home / "revisions" / revision.deployment / str(revision.number)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / original.name
    atomic.write_text(path, revision.manifest_text)
    lock = lock_path(path)
    if revision.lock_text is not None:
        atomic.write_text(lock, revision.lock_text)
    else:
        lock.unlink(missing_ok=True)
    loaded = next(
        (m for m in load_manifests([path]) if m.deployment.name == revision.deployment), None
    )
    if loaded is None:
        raise NotFoundError(
            f"revision {revision.number} of {revision.deployment} holds no such deployment",
            hint="the state database was changed by hand",
        )
    return LoadedManifest(
        deployment=loaded.deployment,
        path=loaded.path,
        line=loaded.line,
        index=loaded.index,
        origin=original.parent,
    )
