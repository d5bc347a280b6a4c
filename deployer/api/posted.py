"""A manifest sent as text (the server's ``POST /api/v1/plan`` and ``/apply``), kept under
``home/posted/<sha256>/`` so that the run that applies it, and later ``smoke`` and rollbacks,
find the file. Relative paths in it start in that folder: a posted manifest names its model
folders, inventories and secret files by absolute or ``~`` paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from deployer import atomic
from deployer.errors import ManifestError
from deployer.hub.lock import lock_path
from deployer.manifest.loader import LoadedManifest, load_manifests
from deployer.settings import Settings
from deployer.state import RevisionRecord

#: The name a posted manifest is kept and reported under.
POSTED_NAME = "posted.yaml"


def posted_manifest(
    settings: Settings, text: str, like: RevisionRecord | None = None
) -> LoadedManifest:
    """The one deployment in ``text``; :class:`ManifestError` with every problem otherwise,
    located by line and column in the text.

    ``like``: a revision of the same deployment that ``text`` changes (the dashboard's "apply a
    changed manifest"). Its lock is kept beside the text, so the locked model stays locked, and
    relative paths start where that revision's manifest came from."""
    lock_text = like.lock_text if like else None
    seed = "\0".join([text, lock_text or "", like.manifest_path if like else ""])
    folder = settings.home / "posted" / hashlib.sha256(seed.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / POSTED_NAME
    atomic.write_text(path, text)
    if lock_text is not None:
        atomic.write_text(lock_path(path), lock_text)
    loaded = load_manifests([path])
    if len(loaded) != 1:
        raise ManifestError(
            f"{path}:1:1: expected one deployment, found {len(loaded)}",
            location=f"{path}:1:1",
            hint="post one manifest document at a time",
        )
    [found] = loaded
    if like is None:
        return found
    if found.deployment.name != like.deployment:
        raise ManifestError(
            f"{path}:{found.line}:1: this manifest is for {found.deployment.name}, not "
            f"{like.deployment}",
            location=f"{path}:{found.line}:1",
            hint=f"keep metadata.name: {like.deployment}, or apply it as a new deployment",
        )
    return dataclasses.replace(found, origin=Path(like.manifest_path).parent)
