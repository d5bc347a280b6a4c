"""Where a deployment's model comes from, as facts the planner can use before anything moves.

For a local folder: the folder, checked, and its fingerprint. For a hub model: the commit (from
the lockfile, else resolved now, else the last resolution cached for offline use), the snapshot
folder it will be served from, and whether the store already holds it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deployer.errors import ManifestError
from deployer.events import EventBus
from deployer.hub.fetch import Fetcher
from deployer.hub.local import inspect_folder
from deployer.hub.lock import LockedModel, ModelLock
from deployer.hub.remote import HubUnreachableError
from deployer.hub.store import ModelStore
from deployer.manifest.models import HuggingFaceModel, LocalModel


@dataclass(frozen=True)
class ModelSourceFacts:
    path: Path
    #: Changes whenever the files the engine loads change.
    fingerprint: str
    action: Literal["check", "create", "skip"]
    reason: str
    commit: str | None = None
    locked: LockedModel | None = None


def local_facts(model: LocalModel, folder: Path) -> ModelSourceFacts:
    facts = inspect_folder(folder, trust_remote_code=model.trust_remote_code)
    return ModelSourceFacts(
        path=facts.path,
        fingerprint=facts.fingerprint,
        action="check",
        reason=f"use {facts.path} ({facts.files} files)",
    )


def locked_entry(
    model: HuggingFaceModel, lock: ModelLock | None, name: str, lock_file: Path
) -> LockedModel | None:
    """The lock's entry for deployment ``name``; ManifestError when it pins another model."""
    entry = lock.deployments.get(name) if lock else None
    if entry is None:
        return None
    if (entry.repo, entry.revision) != (model.repo, model.revision):
        raise ManifestError(
            f"{lock_file}: {name} is locked to {entry.repo}@{entry.revision}, but the manifest "
            f"asks for {model.repo}@{model.revision}",
            hint="run: deployer lock --update MANIFEST",
        )
    return entry


def hub_facts(
    model: HuggingFaceModel,
    *,
    locked: LockedModel | None,
    store: ModelStore,
    token: str | None,
    events: EventBus,
) -> ModelSourceFacts:
    """Facts about a hub model; contacts the hub only when there is no lock."""
    if locked is not None:
        commit, pinned = locked.commit, f"locked {model.revision} = {locked.commit[:12]}"
    else:
        try:
            commit = Fetcher(model, store=store, token=token, events=events).resolve_commit()
            pinned = f"{model.revision} = {commit[:12]} (not locked)"
        except HubUnreachableError:
            cached = store.cached_ref(model.repo, model.revision)
            if cached is None:
                raise
            commit, pinned = cached, f"{model.revision} = {cached[:12]} (cached; hub unreachable)"
    path = store.snapshot_path(model.repo, commit)
    cached_snapshot = store.has_snapshot(model.repo, commit)
    size = f", {_gib(locked.total_bytes)}" if locked else ""
    return ModelSourceFacts(
        path=path,
        fingerprint=hashlib.sha256(f"{model.repo}\0{commit}".encode()).hexdigest(),
        action="skip" if cached_snapshot else "create",
        reason=(
            f"{model.repo} {pinned}: in the store"
            if cached_snapshot
            else f"{model.repo} {pinned}: download{size}"
        ),
        commit=commit,
        locked=locked,
    )


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"
