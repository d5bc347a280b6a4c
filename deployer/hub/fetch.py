"""Fetch a model from a hub into the store: resolve, select, download, verify, check, publish.

Every file is checked against the lock's sha256 (or, without a lock, the hub's LFS sha256 or git
object id) and the supply-chain policy (:mod:`deployer.hub.safety`) before it enters the store,
and the snapshot folder an engine loads appears only when every file is in. A second fetch of a
cached revision moves no bytes; with a lock it does not even contact the hub.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deployer import inputs
from deployer.digests import sha256_file
from deployer.errors import ManifestError, PermanentError, UnsafeModelError
from deployer.events import EventBus
from deployer.hub import remote, safety
from deployer.hub.lock import LockedFile, LockedModel
from deployer.hub.remote import HubUnreachableError, RemoteFile, RemoteListing
from deployer.hub.safetensors_header import parse_header, read_header
from deployer.hub.signing import verify_signature
from deployer.hub.store import ModelStore, git_blob_sha1, repo_key
from deployer.manifest.models import HuggingFaceModel
from deployer.units import human_bytes

STEP = "fetch"
MAX_WORKERS = 4
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class LockMismatchError(PermanentError):
    """The hub serves something other than what the lockfile pins."""

    code = "lock_mismatch"


@dataclass(frozen=True)
class FetchResult:
    repo: str
    commit: str
    snapshot: Path
    files: list[LockedFile]
    downloaded_bytes: int
    reused_bytes: int
    license: str | None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class _Wanted:
    path: str
    size: int | None
    sha256: str | None
    git_oid: str | None


class Fetcher:
    """Fetches one repository's files for one manifest's policy."""

    def __init__(
        self,
        model: HuggingFaceModel,
        *,
        store: ModelStore,
        token: str | None,
        events: EventBus,
        base_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.token = token
        self.events = events
        #: Where relative paths in the manifest (signature keys) start; default: the cwd.
        self.base_dir = base_dir or Path.cwd()
        self.endpoint = remote.effective_endpoint(model.endpoint)
        self._lock = threading.Lock()
        self._stored_bytes = 0

    # --- lock ----------------------------------------------------------------------------------

    def lock(self) -> LockedModel:
        """Resolve the manifest's revision now and describe every file the engine needs.

        Small regular files (config, tokenizer) are downloaded and verified against their git
        object id to learn their sha256; weights take the hub's LFS sha256 as they are.
        """
        listing = self._resolve()
        wanted = self._select(listing)
        hashes = self._download(listing.commit, [w for w in wanted if w.sha256 is None])
        files = [
            LockedFile(path=w.path, size=w.size or 0, sha256=w.sha256 or hashes[w.path])
            for w in wanted
        ]
        self._cache_headers(listing.commit, files)
        return LockedModel(
            repo=self.model.repo,
            revision=self.model.revision,
            commit=listing.commit,
            endpoint=self.endpoint,
            license=listing.license,
            files=files,
        )

    def _cache_headers(self, commit: str, files: list[LockedFile]) -> None:
        """Read and keep each weights file's header (not its weights), parsed strictly, so the
        planner can size the model offline from the lock."""
        for file in files:
            if not file.path.endswith(".safetensors") or self.store.cached_header(file.sha256):
                continue
            raw = remote.safetensors_header(
                self.model.repo, file.path, commit, endpoint=self.endpoint, token=self.token
            )
            parse_header(raw, path=Path(file.path), file_size=file.size, name=file.path)
            self.store.remember_header(file.sha256, raw)

    def resolve_commit(self) -> str:
        """The commit the manifest's revision points at now (remembered for offline use)."""
        return self._resolve().commit

    # --- fetch ---------------------------------------------------------------------------------

    def fetch(self, locked: LockedModel | None) -> FetchResult:
        """Make the snapshot of the locked commit (or of the revision now) complete and verified.

        With ``spec.model.signature``, the snapshot is verified against the signature before it
        is published (a failure publishes nothing), and a snapshot already in the store is
        verified again before it is used.

        Raises LockMismatchError when the hub no longer serves what ``locked`` pins,
        UnsafeModelError when a file breaks the policy or the signature does not hold,
        HubUnreachableError when the hub cannot be reached and the files are not cached.
        """
        if locked is not None:
            for file in locked.files:  # a hand-edited lock must not write outside the store
                safety.check_repo_path(file.path)
            commit = locked.commit
            wanted = [_Wanted(f.path, f.size, f.sha256, None) for f in locked.files]
            license_ = locked.license
        else:
            listing = self._resolve_or_cached()
            if isinstance(listing, FetchResult):
                return listing
            if self.store.has_snapshot(self.model.repo, listing.commit):
                return self._cached_result(listing.commit)
            commit, license_ = listing.commit, listing.license
            wanted = [self._known(w) for w in self._select(listing)]

        missing = [
            w for w in wanted if w.sha256 is None or not self.store.has_blob(w.sha256, w.size)
        ]
        reused = sum(w.size or 0 for w in wanted if w not in missing)
        if missing:
            total = sum(w.size or 0 for w in missing)
            self.events.log(
                f"downloading {len(missing)} file(s), {human_bytes(total)} from {self.endpoint}",
                step=STEP,
            )
        else:
            self.events.log(f"all {len(wanted)} file(s) already in the store", step=STEP)
        hashes = self._download(commit, missing, locked=locked is not None)
        files = [
            LockedFile(path=w.path, size=w.size or 0, sha256=w.sha256 or hashes[w.path])
            for w in wanted
        ]
        snapshot = self.store.build_snapshot(
            self.model.repo,
            commit,
            {f.path: f.sha256 for f in files},
            verify=self._signature_check([f.path for f in files], locked=locked is not None),
        )
        return FetchResult(
            repo=self.model.repo,
            commit=commit,
            snapshot=snapshot,
            files=files,
            downloaded_bytes=sum(w.size or 0 for w in missing),
            reused_bytes=reused,
            license=license_,
        )

    # --- internals -----------------------------------------------------------------------------

    def _resolve(self) -> RemoteListing:
        listing = remote.resolve(
            self.model.repo, self.model.revision, endpoint=self.endpoint, token=self.token
        )
        self.store.remember_ref(self.model.repo, self.model.revision, listing.commit)
        return listing

    def _resolve_or_cached(self) -> RemoteListing | FetchResult:
        try:
            return self._resolve()
        except HubUnreachableError:
            commit = self.store.cached_ref(self.model.repo, self.model.revision)
            if commit is None or not self.store.has_snapshot(self.model.repo, commit):
                raise
            self.events.warn(
                f"hub unreachable: using the cached {self.model.revision} = {commit[:12]}",
                step=STEP,
            )
            return self._cached_result(commit)

    def _cached_result(self, commit: str) -> FetchResult:
        snapshot = self.store.snapshot_path(self.model.repo, commit)
        files = [
            LockedFile(
                path=str(p.relative_to(snapshot)), size=p.stat().st_size, sha256=p.resolve().name
            )
            for p in sorted(snapshot.rglob("*"))
            if p.is_symlink()
        ]
        check = self._signature_check([f.path for f in files], cached=snapshot)
        if check is not None:
            check(snapshot)
        return FetchResult(
            self.model.repo, commit, snapshot, files, 0, sum(f.size for f in files), None
        )

    def _signature_check(
        self, files: Sequence[str], *, locked: bool = False, cached: Path | None = None
    ) -> Callable[[Path], None] | None:
        """The check of ``spec.model.signature`` over a snapshot of ``files``; None without one.

        Raises UnsafeModelError at once when ``files`` lack the signature file: a lock written
        before the manifest asked for a signature, or a snapshot fetched without it.
        """
        spec = self.model.signature
        if spec is None:
            return None
        name = spec.signature_file
        if name not in files:
            if cached is not None:
                hint = f"it was fetched without its signature: remove {cached}, then fetch again"
            elif locked:
                hint = "run: deployer lock --update MANIFEST"
            else:
                hint = "ask the publisher for a signed revision"
            raise UnsafeModelError(
                f"signature file {name} is not among the files of {self.model.repo}", hint=hint
            )

        def check(folder: Path) -> None:
            self.events.log(f"verifying {len(files) - 1} file(s) against {name}", step=STEP)
            verify_signature(folder, spec, base_dir=self.base_dir, files=files)
            self.events.log(f"signature {name} verified ({spec.method})", step=STEP)

        return check

    def _known(self, wanted: _Wanted) -> _Wanted:
        """``wanted`` with its sha256 filled in when the store knows its git object id."""
        if wanted.sha256 is not None or wanted.git_oid is None:
            return wanted
        sha = self.store.sha256_for_git_oid(wanted.git_oid)
        return _Wanted(wanted.path, wanted.size, sha, wanted.git_oid) if sha else wanted

    def _select(self, listing: RemoteListing) -> list[_Wanted]:
        for file in listing.files:
            safety.check_repo_path(file.path)
        selection = safety.select_files(
            [f.path for f in listing.files],
            allow_pickle=self.model.allow_pickle,
            trust_remote_code=self.model.trust_remote_code,
            extra=[self.model.signature.signature_file] if self.model.signature else (),
        )
        by_path = {f.path: f for f in listing.files}
        return [_wanted(by_path[path]) for path in selection.files]

    def _staging_repo(self) -> Path:
        return self.store.staging_dir() / repo_key(self.model.repo)

    def _download(
        self, commit: str, files: list[_Wanted], *, locked: bool = False
    ) -> dict[str, str]:
        """Download, verify and store ``files``; returns path -> sha256.

        Small files go first, so that a config asking for custom code is refused before any
        weights are downloaded.
        """
        if not files:
            return {}
        small = [w for w in files if not _is_weights(w.path)]
        large = [w for w in files if _is_weights(w.path)]
        hashes: dict[str, str] = {}
        self._stored_bytes = 0
        try:
            with self._progress(sum(w.size or 0 for w in files)):
                for group in (small, large):
                    workers = min(MAX_WORKERS, max(1, len(group)))
                    with ThreadPoolExecutor(max_workers=workers) as pool:
                        for path, sha in pool.map(lambda w: self._one(commit, w, locked), group):
                            hashes[path] = sha
                    if group is small:
                        self._check_config(hashes)
        finally:
            # Partial downloads stay for the next fetch to resume; finished ones were moved out.
            if len(hashes) == len(files):
                shutil.rmtree(self._staging_repo(), ignore_errors=True)
        return hashes

    def _one(self, commit: str, wanted: _Wanted, locked: bool) -> tuple[str, str]:
        local, streamed_sha = remote.download(
            self.model.repo,
            wanted.path,
            commit,
            endpoint=self.endpoint,
            token=self.token,
            partial=self._staging_repo() / commit / f"{wanted.path}.part",
            size=wanted.size,
        )
        try:
            sha = self._verify(local, wanted, locked, streamed_sha)
            self._check_policy(local, wanted.path)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        self.store.add_blob(local, sha)
        if wanted.git_oid and wanted.sha256 is None:
            self.store.remember_git_oid(wanted.git_oid, sha)
        with self._lock:
            self._stored_bytes += wanted.size or 0
        self.events.log(f"verified {wanted.path} ({human_bytes(wanted.size or 0)})", step=STEP)
        return wanted.path, sha

    def _verify(
        self, local: Path, wanted: _Wanted, locked: bool, streamed_sha: str | None = None
    ) -> str:
        size = local.stat().st_size
        culprit = "the hub no longer matches the lockfile" if locked else "the download is corrupt"
        hint = (
            "review the change, then run: deployer lock --update MANIFEST"
            if locked
            else "fetch again; if it persists, the hub or mirror serves a tampered file"
        )
        if wanted.size is not None and size != wanted.size:
            raise LockMismatchError(
                f"{wanted.path}: {size} bytes where {wanted.size} were expected ({culprit})",
                hint=hint,
            )
        sha = streamed_sha or sha256_file(local)
        if wanted.sha256 is not None and sha != wanted.sha256:
            raise LockMismatchError(
                f"{wanted.path}: sha256 {sha[:16]}… where {wanted.sha256[:16]}… was expected "
                f"({culprit})",
                hint=hint,
            )
        if wanted.sha256 is None and wanted.git_oid and git_blob_sha1(local) != wanted.git_oid:
            raise LockMismatchError(
                f"{wanted.path}: content does not match the hub's git object id "
                f"{wanted.git_oid[:12]} ({culprit})",
                hint=hint,
            )
        return sha

    def _check_policy(self, local: Path, path: str) -> None:
        if path.endswith(".safetensors"):
            read_header(local, name=path)
        elif path.endswith(_PICKLE_SUFFIXES):
            safety.scan_pickle(local, name=path)

    def _check_config(self, hashes: dict[str, str]) -> None:
        sha = hashes.get("config.json")
        if sha is None:
            return
        try:
            config = inputs.read_json(self.store.blob_path(sha), inputs.MODEL_CONFIG)
        except ManifestError as exc:
            raise PermanentError(f"config.json of {self.model.repo}: {exc.reason}") from None
        except OSError as exc:
            raise PermanentError(
                f"config.json of {self.model.repo}: cannot read: {exc.strerror or exc}"
            ) from exc
        safety.check_remote_code(
            config, trust_remote_code=self.model.trust_remote_code, config_path="config.json"
        )

    @contextmanager
    def _progress(self, total: int) -> Iterator[None]:
        """Report bytes stored plus bytes in flight in the staging cache, twice a second."""
        stop = threading.Event()
        staging = self._staging_repo()
        started = time.monotonic()

        def report() -> None:
            while not stop.wait(0.5):
                done = self._stored_bytes + _bytes_in(staging)
                rate = done / max(time.monotonic() - started, 1e-3)
                self.events.progress(
                    f"{human_bytes(done)} of {human_bytes(total)} ({human_bytes(int(rate))}/s)",
                    step=STEP,
                    completed=float(done),
                    total=float(total) or None,
                )

        thread = threading.Thread(target=report, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _wanted(file: RemoteFile) -> _Wanted:
    return _Wanted(file.path, file.size, file.sha256, file.git_oid)


def _is_weights(path: str) -> bool:
    return path.endswith((".safetensors", *_PICKLE_SUFFIXES))


def _bytes_in(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.part") if folder.is_dir() else []:
        with contextlib.suppress(OSError):  # moved out between glob and stat
            total += path.stat().st_size
    return total
