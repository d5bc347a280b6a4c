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
from deployer.hub.local import inspect_folder
from deployer.hub.lock import LockedModel, ModelLock
from deployer.hub.remote import HubUnreachableError
from deployer.hub.signing import verify_signature
from deployer.hub.store import ModelStore, repo_key
from deployer.manifest.models import HuggingFaceModel, LocalModel
from deployer.units import human_bytes


@dataclass(frozen=True)
class ModelSourceFacts:
    path: Path
    #: Changes whenever the files the engine loads change.
    fingerprint: str
    action: Literal["check", "create", "skip"]
    reason: str
    commit: str | None = None
    locked: LockedModel | None = None


def local_facts(
    model: LocalModel, folder: Path, *, base_dir: Path | None = None
) -> ModelSourceFacts:
    """Facts about a local folder, checked by the supply-chain policy.

    With ``model.signature``, the folder's files (all of them but hidden ones: the engine may
    read any) must be exactly what the signature signs; key paths are relative to ``base_dir``
    (default: the cwd). This hashes every file, on every plan. Raises UnsafeModelError.
    """
    facts = inspect_folder(folder, trust_remote_code=model.trust_remote_code)
    signed = ""
    if model.signature is not None:
        files = [
            path.relative_to(folder).as_posix()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        ]
        verify_signature(folder, model.signature, base_dir=base_dir or Path.cwd(), files=files)
        signed = f", signature {model.signature.signature_file} verified"
    return ModelSourceFacts(
        path=facts.path,
        fingerprint=facts.fingerprint,
        action="check",
        reason=f"use {facts.path} ({facts.files} files{signed})",
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
    offline: bool = False,
) -> ModelSourceFacts:
    """Facts about a hub model. With a lock the hub is not contacted; without one the revision is
    resolved now, unless ``offline`` (planning), when the last resolution cached in the store is
    used, or none: then apply will resolve it."""
    commit: str | None
    if locked is not None:
        commit, pinned = locked.commit, f"locked {model.revision} = {locked.commit[:12]}"
    elif offline:
        commit = store.cached_ref(model.repo, model.revision)
        pinned = (
            f"{model.revision} = {commit[:12]} (cached, not locked)"
            if commit
            else f"{model.revision} (not locked: apply resolves it; deployer lock pins it)"
        )
    else:
        from deployer.hub.fetch import Fetcher  # the hub client: only when it is asked

        try:
            commit = Fetcher(model, store=store, token=token, events=events).resolve_commit()
            pinned = f"{model.revision} = {commit[:12]} (not locked)"
        except HubUnreachableError:
            commit = store.cached_ref(model.repo, model.revision)
            if commit is None:
                raise
            pinned = f"{model.revision} = {commit[:12]} (cached; hub unreachable)"
    if commit is None:
        return ModelSourceFacts(
            path=store.snapshots / repo_key(model.repo) / model.revision,
            fingerprint=hashlib.sha256(f"{model.repo}\0{model.revision}".encode()).hexdigest(),
            action="create",
            reason=f"{model.repo} {pinned}",
        )
    path = store.snapshot_path(model.repo, commit)
    cached_snapshot = store.has_snapshot(model.repo, commit)
    size = f", {human_bytes(locked.total_bytes)}" if locked else ""
    # A signed model's snapshot is verified again on every apply: another manifest, with
    # another key or none, may have fetched it.
    checked = f"; verify {model.signature.signature_file}" if model.signature else ""
    return ModelSourceFacts(
        path=path,
        fingerprint=hashlib.sha256(f"{model.repo}\0{commit}".encode()).hexdigest(),
        action=("check" if model.signature else "skip") if cached_snapshot else "create",
        reason=(
            f"{model.repo} {pinned}: in the store{checked}"
            if cached_snapshot
            else f"{model.repo} {pinned}: download{size}"
        ),
        commit=commit,
        locked=locked,
    )
