"""A manifest sent as text (the server's ``POST /api/v1/plan`` and ``/apply``), kept under
``home/posted/<sha256>/`` so that the run that applies it, and later ``smoke`` and rollbacks,
find the file. Relative paths in it start in that folder: a posted manifest names its model
folders, inventories and secret files by absolute or ``~`` paths.
"""

from __future__ import annotations

import hashlib

from deployer import atomic
from deployer.errors import ManifestError
from deployer.manifest.loader import LoadedManifest, load_manifests
from deployer.settings import Settings

#: The name a posted manifest is kept and reported under.
POSTED_NAME = "posted.yaml"


def posted_manifest(settings: Settings, text: str) -> LoadedManifest:
    """The one deployment in ``text``; :class:`ManifestError` with every problem otherwise,
    located by line and column in the text."""
    folder = settings.home / "posted" / hashlib.sha256(text.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / POSTED_NAME
    atomic.write_text(path, text)
    loaded = load_manifests([path])
    if len(loaded) != 1:
        raise ManifestError(
            f"{path}:1:1: expected one deployment, found {len(loaded)}",
            location=f"{path}:1:1",
            hint="post one manifest document at a time",
        )
    return loaded[0]
