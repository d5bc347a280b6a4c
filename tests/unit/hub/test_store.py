"""The model store: read-only content-addressed blobs, snapshots of relative symlinks that appear
whole, refs and git ids remembered for offline use, and hashes that agree with git and hashlib."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from deployer.digests import sha256_file
from deployer.hub.store import ModelStore, git_blob_sha1

REPO = "acme/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": bytes(range(256)) * 64,
    "sub/notes.txt": b"nested\n",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def filled_store(tmp_path: Path) -> tuple[ModelStore, dict[str, str]]:
    """A store holding every file of FILES as a blob; returns it and path -> sha256."""
    store = ModelStore(tmp_path / "models")
    for index, data in enumerate(FILES.values()):
        store.add_blob(source_file(tmp_path / "downloads", f"f{index}", data), sha(data))
    return store, {path: sha(data) for path, data in FILES.items()}


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- blobs -------------------------------------------------------------------------------------


def test_add_blob_moves_the_file_in_read_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    data = b"weights" * 1000
    source = source_file(tmp_path / "downloads", "model.safetensors.part", data)

    blob = store.add_blob(source, sha(data))

    assert blob == store.blob_path(sha(data))
    assert not source.exists(), "the file is moved, not copied"
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert entries(store.blobs) == [sha(data)], "no temporary file left beside the blob"


STORED = b"stored content"


@pytest.mark.parametrize(
    ("sha256", "size", "expected"),
    [
        (sha(STORED), None, True),
        (sha(STORED), len(STORED), True),
        (sha(STORED), len(STORED) + 1, False),
        (sha(b"never stored"), None, False),
        (sha(b"never stored"), 12, False),
    ],
    ids=["stored", "stored, right size", "stored, wrong size", "absent", "absent, any size"],
)
def test_has_blob(tmp_path: Path, sha256: str, size: int | None, expected: bool) -> None:
    store = ModelStore(tmp_path / "models")
    store.add_blob(source_file(tmp_path, "x.part", STORED), sha(STORED))

    assert store.has_blob(sha256, size) is expected


def test_add_blob_twice_keeps_one_blob_and_removes_the_second_source(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    data = b"the same content"
    first = store.add_blob(source_file(tmp_path / "a", "x.part", data), sha(data))
    inode = first.stat().st_ino

    again = source_file(tmp_path / "b", "y.part", data)
    second = store.add_blob(again, sha(data))

    assert second == first
    assert not again.exists()
    assert first.stat().st_ino == inode, "the first blob is kept as it was"
    assert entries(store.blobs) == [sha(data)]
    assert first.read_bytes() == data


def test_add_blob_from_parallel_downloads_of_the_same_content(tmp_path: Path) -> None:
    # A fetch downloads up to four files at once; two files of a repository can have the same
    # content (several tokenizer files holding "{}"), hence the same sha256.
    # The race is in timing: switch threads often, and try many times, to meet it reliably.
    data = b"{}"
    workers = 4
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for attempt in range(200):
            _add_concurrently(tmp_path / str(attempt), data, workers)
    finally:
        sys.setswitchinterval(interval)


def _add_concurrently(folder: Path, data: bytes, workers: int) -> None:
    """``workers`` threads add a file of ``data`` each to one store, at the same moment."""
    store = ModelStore(folder / "models")
    sources = [source_file(folder / "downloads", f"f{i}.part", data) for i in range(workers)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def add(source: Path) -> None:
        barrier.wait()
        try:
            store.add_blob(source, sha(data))
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [], f"{folder.name}: concurrent add_blob failed: {errors!r}"
    assert entries(store.blobs) == [sha(data)]
    assert store.blob_path(sha(data)).read_bytes() == data
    assert not any(source.exists() for source in sources)


# --- snapshots ---------------------------------------------------------------------------------


def test_build_snapshot_links_every_file_to_its_blob(tmp_path: Path) -> None:
    store, files = filled_store(tmp_path)

    snapshot = store.build_snapshot(REPO, COMMIT, files)

    assert snapshot == store.snapshot_path(REPO, COMMIT) == store.snapshots / "acme--tiny" / COMMIT
    assert store.has_snapshot(REPO, COMMIT)
    for path, data in FILES.items():
        link = snapshot / path
        assert link.is_symlink(), path
        assert not os.path.isabs(os.readlink(link)), f"{path}: the link must be relative"
        assert link.resolve() == store.blob_path(sha(data)).resolve()
        assert link.read_bytes() == data
    linked = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*"))
    assert linked == sorted([*FILES, "sub"])


def test_build_snapshot_appears_whole_with_no_temporary_folder(tmp_path: Path) -> None:
    store, files = filled_store(tmp_path)
    assert not store.has_snapshot(REPO, COMMIT)

    store.build_snapshot(REPO, COMMIT, files)

    assert entries(store.snapshots / "acme--tiny") == [COMMIT]


def test_build_snapshot_is_idempotent(tmp_path: Path) -> None:
    store, files = filled_store(tmp_path)
    first = store.build_snapshot(REPO, COMMIT, files)
    before = {p: os.readlink(p) for p in first.rglob("*") if p.is_symlink()}

    second = store.build_snapshot(REPO, COMMIT, files)

    assert second == first
    assert {p: os.readlink(p) for p in second.rglob("*") if p.is_symlink()} == before
    assert entries(store.snapshots / "acme--tiny") == [COMMIT]


def test_a_failed_snapshot_build_leaves_neither_snapshot_nor_temporary_folder(
    tmp_path: Path,
) -> None:
    store, files = filled_store(tmp_path)
    # "config.json" is a file, so "config.json/extra" cannot be made: the build fails midway.
    broken = {**files, "config.json/extra": files["config.json"]}

    with pytest.raises(FileExistsError):
        store.build_snapshot(REPO, COMMIT, broken)

    assert not store.has_snapshot(REPO, COMMIT)
    assert entries(store.snapshots / "acme--tiny") == []


def test_the_store_folder_can_be_moved(tmp_path: Path) -> None:
    store, files = filled_store(tmp_path)
    store.build_snapshot(REPO, COMMIT, files)

    moved = tmp_path / "elsewhere" / "models"
    shutil.copytree(store.root, moved, symlinks=True)
    shutil.rmtree(store.root)

    copy = ModelStore(moved)
    snapshot = copy.snapshot_path(REPO, COMMIT)
    assert copy.has_snapshot(REPO, COMMIT)
    for path, data in FILES.items():
        link = snapshot / path
        assert link.is_symlink()
        assert link.resolve() == copy.blob_path(sha(data)).resolve()
        assert link.read_bytes() == data


# --- refs and git ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "revision"),
    [
        ("acme/tiny", "main"),
        ("acme/tiny", "v1.0"),
        ("Org-1/model.v2_x", "release-2024"),
        ("acme/tiny", "refs/pr/1"),
    ],
)
def test_remember_ref_then_cached_ref(tmp_path: Path, repo: str, revision: str) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.cached_ref(repo, revision) is None

    store.remember_ref(repo, revision, COMMIT)
    assert store.cached_ref(repo, revision) == COMMIT
    assert ModelStore(tmp_path / "models").cached_ref(repo, revision) == COMMIT

    newer = "f" * 40
    store.remember_ref(repo, revision, newer)
    assert store.cached_ref(repo, revision) == newer


def test_refs_are_per_repo_and_revision(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.remember_ref("acme/tiny", "main", "a" * 40)
    store.remember_ref("acme/tiny", "dev", "b" * 40)
    store.remember_ref("acme/other", "main", "c" * 40)

    assert store.cached_ref("acme/tiny", "main") == "a" * 40
    assert store.cached_ref("acme/tiny", "dev") == "b" * 40
    assert store.cached_ref("acme/other", "main") == "c" * 40
    assert store.cached_ref("acme/other", "dev") is None


def test_remember_git_oid_then_sha256_for_git_oid(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    oid, other = "1" * 40, "2" * 40
    assert store.sha256_for_git_oid(oid) is None

    store.remember_git_oid(oid, sha(b"config"))

    assert store.sha256_for_git_oid(oid) == sha(b"config")
    assert ModelStore(tmp_path / "models").sha256_for_git_oid(oid) == sha(b"config")
    assert store.sha256_for_git_oid(other) is None


# --- hashes ------------------------------------------------------------------------------------

CONTENTS = {
    "empty": b"",
    "text": b'{"model_type": "llama"}\n',
    "binary with NUL": b"\x00\x01\xff\x00" * 100,
    "larger than one read (1 MiB)": os.urandom(3 * 1024 * 1024 + 17),
}


@pytest.mark.parametrize("data", CONTENTS.values(), ids=CONTENTS.keys())
def test_git_blob_sha1_matches_git_hash_object(tmp_path: Path, data: bytes) -> None:
    path = source_file(tmp_path, "file", data)
    expected = subprocess.run(
        ["git", "hash-object", "--no-filters", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()

    assert git_blob_sha1(path) == expected


@pytest.mark.parametrize("data", CONTENTS.values(), ids=CONTENTS.keys())
def test_sha256_file_matches_hashlib(tmp_path: Path, data: bytes) -> None:
    path = source_file(tmp_path, "file", data)

    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
