"""The model store: one content-addressed copy of every verified file, shared by all manifests.

Layout under ``<cache>/models``::

    blobs/sha256/<hex>                  a verified file, read-only; named by its content
    index/git-sha1/<oid>                the sha256 of a regular file the hub names by git id
    index/safetensors/<sha256>          the JSON header of a weights file (planning offline)
    snapshots/<org>--<name>/<commit>/   a folder an engine loads: symlinks into blobs/
    refs/<org>--<name>/<revision>       the commit a branch or tag resolved to last (offline use)
    staging/                            huggingface_hub's cache for downloads in flight

A blob enters ``blobs/`` only after its sha256 and size were checked, by an atomic rename; a
snapshot folder appears only complete, also by rename. Nothing an engine reads is ever partial
or unverified, whatever moment a fetch is killed at.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from deployer import atomic

_CHUNK = 1 << 20


def git_blob_sha1(path: Path) -> str:
    """The git object id of ``path``'s content (how the hub names a regular, non-LFS file)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def repo_key(repo: str) -> str:
    return repo.replace("/", "--")


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.snapshots = root / "snapshots"
        self.refs = root / "refs"
        self.staging = root / "staging"

    # --- blobs ---------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        try:
            actual = self.blob_path(sha256).stat().st_size
        except OSError:
            return False
        return size is None or actual == size

    def add_blob(self, source: Path, sha256: str) -> Path:
        """Move the verified file ``source`` into the store as ``sha256``; idempotent.

        The caller has checked ``source``'s content against ``sha256``. The move is a rename
        within the store's file system (a copy first when ``source`` lives elsewhere).
        """
        target = self.blob_path(sha256)
        if target.exists():
            source.unlink(missing_ok=True)
            return target
        self.blobs.mkdir(parents=True, exist_ok=True)
        # Unique per call: parallel downloads of identical files (two empty JSON files, say)
        # add the same blob at the same moment.
        tmp = self.blobs / f".{sha256}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.replace(source, tmp)
        except OSError:  # another file system
            shutil.copyfile(source, tmp)
            source.unlink(missing_ok=True)
        tmp.chmod(0o444)
        os.replace(tmp, target)  # atomic; the same content may land twice, harmlessly
        return target

    # --- snapshots -----------------------------------------------------------------------------

    def snapshot_path(self, repo: str, commit: str) -> Path:
        return self.snapshots / repo_key(repo) / commit

    def has_snapshot(self, repo: str, commit: str) -> bool:
        return self.snapshot_path(repo, commit).is_dir()

    def build_snapshot(
        self,
        repo: str,
        commit: str,
        files: Mapping[str, str],
        *,
        verify: Callable[[Path], None] | None = None,
    ) -> Path:
        """Make the folder ``snapshots/<repo>/<commit>`` of symlinks (path -> blob sha256).

        Every blob must be in the store. The folder is assembled under a temporary name and
        renamed into place, so it is either absent or complete. Idempotent.

        ``verify`` (a signature check) is called on the complete temporary folder before the
        rename; when it raises, the temporary folder is removed, nothing is published and the
        error propagates. When the snapshot already exists, ``verify`` is called on it instead
        (an error then leaves it in place: an engine may be reading it).
        """
        target = self.snapshot_path(repo, commit)
        if target.is_dir():
            if verify is not None:
                verify(target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{commit}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for relative, sha256 in sorted(files.items()):
                link = tmp / relative
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(self.blob_path(sha256), link.parent))
            tmp.mkdir(parents=True, exist_ok=True)
            if verify is not None:
                verify(tmp)
        except BaseException:  # a failed build or check publishes nothing and leaves nothing
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same snapshot first
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    # --- git object ids ------------------------------------------------------------------------

    def remember_git_oid(self, oid: str, sha256: str) -> None:
        """Record that the regular file with git id ``oid`` is blob ``sha256``."""
        path = self.root / "index" / "git-sha1" / oid
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, sha256 + "\n")

    def sha256_for_git_oid(self, oid: str) -> str | None:
        with contextlib.suppress(OSError):
            return (self.root / "index" / "git-sha1" / oid).read_text().strip() or None
        return None

    # --- safetensors headers ------------------------------------------------------------------

    def remember_header(self, sha256: str, raw: bytes) -> None:
        """Keep the JSON header of the safetensors file ``sha256`` (for offline planning)."""
        path = self.root / "index" / "safetensors" / sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, raw.decode("utf-8"))

    def cached_header(self, sha256: str) -> bytes | None:
        with contextlib.suppress(OSError):
            return (self.root / "index" / "safetensors" / sha256).read_bytes()
        return None

    # --- refs ----------------------------------------------------------------------------------

    def remember_ref(self, repo: str, revision: str, commit: str) -> None:
        path = self.refs / repo_key(repo) / revision
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, commit + "\n")

    def cached_ref(self, repo: str, revision: str) -> str | None:
        with contextlib.suppress(OSError):
            return (self.refs / repo_key(repo) / revision).read_text().strip() or None
        return None

    def staging_dir(self) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging
