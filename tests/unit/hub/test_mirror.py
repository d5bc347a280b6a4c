"""The mirror against the real huggingface_hub client, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile

from deployer.hub.mirror import Mirror, MirrorRepo
from tests.support.mirror_faults import FaultyMirror, tamper

REPO = "org/tiny"
WEIGHTS = "model.safetensors"
WEIGHTS_SIZE = 3_000_000
TOKEN = "hf_mirror_test_secret_0123456789"


@pytest.fixture
def hf_env(hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated huggingface_hub client (see conftest) with quick timeouts and no progress
    bars; returns the cache folder."""
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "10")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path / "cache"


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    (folder / "tokenizer.json").write_text('{"version": "1.0"}\n')
    (folder / "sub" / "notes.txt").write_text("nested\n")
    (folder / WEIGHTS).write_bytes(random.Random(0).randbytes(WEIGHTS_SIZE))
    return folder


@pytest.fixture
def mirror(model_folder: Path) -> Iterator[FaultyMirror]:
    # A Mirror that can also be slow or cut a body short (tests/support): with no fault armed
    # it serves exactly as a Mirror.
    with FaultyMirror([MirrorRepo.from_folder(REPO, model_folder)]) as served:
        yield served


def _sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _resolve_gets(mirror: Mirror, filename: str) -> list[tuple[str | None, int]]:
    return [
        (r.range, r.bytes_sent)
        for r in mirror.requests
        if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + filename)
    ]


# --- content and commits -----------------------------------------------------------------------


def test_the_same_folder_gives_the_same_commit(model_folder: Path) -> None:
    first = MirrorRepo.from_folder(REPO, model_folder)
    second = MirrorRepo.from_folder("other/name", model_folder)
    assert first.refs["main"] == second.refs["main"]

    (model_folder / "config.json").write_text("{}")
    assert MirrorRepo.from_folder(REPO, model_folder).refs["main"] != first.refs["main"]


def test_a_commit_id_does_not_depend_on_insertion_order() -> None:
    one, two = MirrorRepo(REPO), MirrorRepo(REPO)
    assert one.commit({"a": b"1", "b": b"2"}) == two.commit({"b": b"2", "a": b"1"})


# --- huggingface_hub against the mirror --------------------------------------------------------


def test_model_info_gives_the_commit_the_lfs_hashes_and_the_license(
    hf_env: Path, mirror: Mirror, model_folder: Path
) -> None:
    api = HfApi(endpoint=mirror.base_url)
    info = api.model_info(REPO, revision="main", files_metadata=True)

    assert info.sha == mirror.repos[REPO].refs["main"]
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {"config.json", "README.md", "tokenizer.json", "sub/notes.txt", WEIGHTS}
    weights = siblings[WEIGHTS]
    assert weights.lfs is not None
    assert weights.lfs.sha256 == _sha256(model_folder / WEIGHTS)
    assert weights.lfs.size == WEIGHTS_SIZE
    assert siblings["config.json"].lfs is None
    assert info.card_data is not None
    assert info.card_data.license == "apache-2.0"


def test_snapshot_download_is_byte_identical_and_a_second_one_moves_no_file_bytes(
    hf_env: Path, mirror: Mirror, model_folder: Path
) -> None:
    url = mirror.base_url
    snapshot = Path(snapshot_download(REPO, revision="main", cache_dir=hf_env, endpoint=url))

    expected = sorted(p.relative_to(model_folder) for p in model_folder.rglob("*") if p.is_file())
    got = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file())
    assert got == expected
    for relative in expected:
        assert (snapshot / relative).read_bytes() == (model_folder / relative).read_bytes()
    assert snapshot.name == mirror.repos[REPO].refs["main"]

    mirror.clear_requests()
    again = snapshot_download(REPO, revision="main", cache_dir=hf_env, endpoint=url)
    assert Path(again) == snapshot
    assert sum(r.bytes_sent for r in mirror.requests if "/resolve/" in r.path) == 0


def test_hf_hub_download_fetches_one_file(hf_env: Path, mirror: Mirror, model_folder: Path) -> None:
    path = hf_hub_download(REPO, WEIGHTS, cache_dir=hf_env, endpoint=mirror.base_url)

    assert _sha256(path) == _sha256(model_folder / WEIGHTS)
    # LFS blobs are cached under their sha256, as from the real hub.
    assert Path(path).resolve().name == _sha256(model_folder / WEIGHTS)


ErrorCall = Callable[[str, Path], object]

ERROR_CASES: list[tuple[str, ErrorCall, type[Exception]]] = [
    (
        "unknown repo, model_info",
        lambda url, cache: HfApi(endpoint=url).model_info("org/missing"),
        RepositoryNotFoundError,
    ),
    (
        "unknown repo, snapshot",
        lambda url, cache: snapshot_download("org/missing", cache_dir=cache, endpoint=url),
        RepositoryNotFoundError,
    ),
    (
        "unknown revision, model_info",
        lambda url, cache: HfApi(endpoint=url).model_info(REPO, revision="nope"),
        RevisionNotFoundError,
    ),
    (
        "unknown revision, snapshot",
        lambda url, cache: snapshot_download(REPO, revision="v9", cache_dir=cache, endpoint=url),
        RevisionNotFoundError,
    ),
    (
        "unknown revision, file",
        lambda url, cache: hf_hub_download(
            REPO, "config.json", revision="f" * 40, cache_dir=cache, endpoint=url
        ),
        RevisionNotFoundError,
    ),
    (
        "unknown file",
        lambda url, cache: hf_hub_download(REPO, "nope.json", cache_dir=cache, endpoint=url),
        EntryNotFoundError,
    ),
]


@pytest.mark.parametrize(
    ("call", "error"), [case[1:] for case in ERROR_CASES], ids=[case[0] for case in ERROR_CASES]
)
def test_hub_errors_map_to_huggingface_hub_errors(
    hf_env: Path, mirror: Mirror, call: ErrorCall, error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(mirror.base_url, hf_env)


def test_unknown_paths_are_a_json_404(mirror: Mirror) -> None:
    response = httpx.get(f"{mirror.base_url}/api/agent-harnesses")
    assert response.status_code == 404
    assert "error" in response.json()


def test_a_moved_branch_resolves_to_the_new_commit_and_the_old_commit_stays(
    hf_env: Path, mirror: Mirror
) -> None:
    repo = mirror.repos[REPO]
    old = repo.refs["main"]
    new = repo.commit({"config.json": b'{"moved": true}'}, branch="next")
    repo.set_ref("main", new)
    url = mirror.base_url

    assert HfApi(endpoint=url).model_info(REPO, revision="main").sha == new
    moved = hf_hub_download(REPO, "config.json", revision="main", cache_dir=hf_env, endpoint=url)
    assert Path(moved).read_bytes() == b'{"moved": true}'
    kept = hf_hub_download(REPO, "config.json", revision=old, cache_dir=hf_env, endpoint=url)
    assert json.loads(Path(kept).read_text()) == {"architectures": ["LlamaForCausalLM"]}


def test_a_cut_download_resumes_with_a_range_request(hf_env: Path, mirror: FaultyMirror) -> None:
    # huggingface_hub writes what it receives in 10 MiB chunks and resumes from the last one
    # written, so the cut must come after the first 10 MiB.
    content = random.Random(1).randbytes(12 * 1024 * 1024)
    mirror.repos[REPO].commit({"big.bin": content})
    cut = 11 * 1024 * 1024
    mirror.cut_next_download(after_bytes=cut)

    path = hf_hub_download(REPO, "big.bin", cache_dir=hf_env, endpoint=mirror.base_url)

    assert Path(path).read_bytes() == content
    (first_range, first_sent), (resume_range, resume_sent) = _resolve_gets(mirror, "big.bin")
    assert (first_range, first_sent) == (None, cut)
    assert resume_range is not None
    start = int(resume_range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= cut
    assert resume_sent == len(content) - start


_DOWNLOAD_SCRIPT = """
import sys
from huggingface_hub import hf_hub_download
hf_hub_download(sys.argv[1], sys.argv[2], cache_dir=sys.argv[3], endpoint=sys.argv[4])
"""


def test_a_killed_download_is_completed_by_the_next_one(hf_env: Path, mirror: FaultyMirror) -> None:
    # The client writes 10 MiB chunks: 24 MiB at 2 MiB/s leaves 7 s between the first write
    # to the .incomplete file and the end of the download, room enough on a busy machine.
    content = random.Random(2).randbytes(24 * 1024 * 1024)
    mirror.repos[REPO].commit({"big.bin": content})
    mirror.throttle_bytes_per_second = 2 * 1024 * 1024
    env = {**os.environ, "HF_ENDPOINT": mirror.base_url}
    argv = [sys.executable, "-c", _DOWNLOAD_SCRIPT, REPO, "big.bin", str(hf_env), mirror.base_url]
    child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    blobs = hf_env / f"models--{REPO.replace('/', '--')}" / "blobs"
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in blobs.glob("*.incomplete")):
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    mirror.throttle_bytes_per_second = None

    path = hf_hub_download(REPO, "big.bin", cache_dir=hf_env, endpoint=mirror.base_url)

    assert Path(path).read_bytes() == content
    (_, killed), (last_range, last_sent) = _resolve_gets(mirror, "big.bin")
    assert 0 < killed < len(content)
    # huggingface_hub 2.x downloads into a new per-process temporary file, so it starts over;
    # whichever it asks for, the mirror sends exactly the rest of the file.
    start = int(last_range.removeprefix("bytes=").removesuffix("-")) if last_range else 0
    assert last_sent == len(content) - start


def test_a_token_protected_repo_needs_the_token_and_it_is_stored_nowhere(
    hf_env: Path, model_folder: Path
) -> None:
    repo = MirrorRepo.from_folder("org/private", model_folder, token=TOKEN)
    with Mirror([repo]) as mirror:
        url = mirror.base_url
        with pytest.raises(GatedRepoError):
            hf_hub_download("org/private", "config.json", cache_dir=hf_env, endpoint=url)
        with pytest.raises(HfHubHTTPError) as wrong:
            hf_hub_download("org/private", "config.json", cache_dir=hf_env, endpoint=url, token="x")
        assert wrong.value.response.status_code == 401
        with pytest.raises(GatedRepoError):
            snapshot_download("org/private", cache_dir=hf_env, endpoint=url)

        snapshot = snapshot_download("org/private", cache_dir=hf_env, endpoint=url, token=TOKEN)

        assert _sha256(Path(snapshot) / WEIGHTS) == _sha256(model_folder / WEIGHTS)
        assert TOKEN not in repr(mirror.requests) + repr(repo) + "".join(mirror.server_log)
    for path in hf_env.parent.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path


# --- the HTTP contract, directly ---------------------------------------------------------------


def test_resolve_headers_and_ranges(mirror: Mirror, model_folder: Path) -> None:
    repo = mirror.repos[REPO]
    commit = repo.refs["main"]
    weights = (model_folder / WEIGHTS).read_bytes()
    url = f"{mirror.base_url}/{REPO}/resolve/main/{WEIGHTS}"
    with httpx.Client() as client:
        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["X-Repo-Commit"] == commit
        assert head.headers["ETag"] == f'"{_sha256(model_folder / WEIGHTS)}"'
        assert head.headers["X-Linked-Etag"] == head.headers["ETag"]
        assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(WEIGHTS_SIZE)
        assert head.headers["Accept-Ranges"] == "bytes"

        config = client.head(f"{mirror.base_url}/{REPO}/resolve/{commit}/config.json")
        blob = (model_folder / "config.json").read_bytes()
        git_oid = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
        assert config.headers["ETag"] == f'"{git_oid}"'
        assert "X-Linked-Etag" not in config.headers

        for header, status, body in [
            ("bytes=10-", 206, weights[10:]),
            ("bytes=2-4", 206, weights[2:5]),
            ("bytes=-3", 206, weights[-3:]),
            (f"bytes={WEIGHTS_SIZE}-", 416, None),
        ]:
            response = client.get(url, headers={"Range": header})
            assert response.status_code == status, header
            if body is not None:
                assert response.content == body, header
                assert response.headers["Content-Range"].endswith(f"/{WEIGHTS_SIZE}")


def test_tree_lists_files_folders_and_lfs_metadata(mirror: Mirror, model_folder: Path) -> None:
    api = HfApi(endpoint=mirror.base_url)
    recursive = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    top = {e.path for e in api.list_repo_tree(REPO)}
    nested = {e.path for e in api.list_repo_tree(REPO, path_in_repo="sub")}

    weights = recursive[WEIGHTS]
    assert isinstance(weights, RepoFile)
    assert weights.lfs is not None
    assert weights.lfs.sha256 == _sha256(model_folder / WEIGHTS)
    assert weights.size == WEIGHTS_SIZE
    assert "sub/notes.txt" in recursive
    assert "sub/notes.txt" not in top
    assert "sub" in top
    assert nested == {"sub/notes.txt"}


def test_hostile_paths_and_tampered_files_are_served_as_crafted(
    hf_env: Path, mirror: Mirror, model_folder: Path
) -> None:
    repo = mirror.repos[REPO]
    repo.commit({"../../evil.json": b"{}", "/abs/path": b"x"})
    original = (model_folder / WEIGHTS).read_bytes()
    tampered = bytes(reversed(original))
    tamper(repo, WEIGHTS, tampered)
    api = HfApi(endpoint=mirror.base_url)

    paths = {e.path for e in api.list_repo_tree(REPO, recursive=True)}
    assert {"../../evil.json", "/abs/path"} <= paths
    info = api.model_info(REPO, files_metadata=True)
    weights = next(s for s in info.siblings or [] if s.rfilename == WEIGHTS)
    assert weights.lfs is not None
    assert weights.lfs.sha256 == hashlib.sha256(original).hexdigest()
    served = httpx.get(f"{mirror.base_url}/{REPO}/resolve/main//abs/path")
    assert served.content == b"x"
    # huggingface_hub does not check the sha256 of what it downloads: the caller must.
    path = hf_hub_download(REPO, WEIGHTS, cache_dir=hf_env, endpoint=mirror.base_url)
    assert Path(path).read_bytes() == tampered


def test_a_stopped_mirror_answers_nothing(model_folder: Path) -> None:
    mirror = Mirror([MirrorRepo.from_folder(REPO, model_folder)])
    url = mirror.start()
    with httpx.Client() as client:
        assert client.get(f"{url}/api/models/{REPO}").status_code == 200
        mirror.stop()
        mirror.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"{url}/api/models/{REPO}")


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_serves_folders_until_interrupted(model_folder: Path, hf_env: Path) -> None:
    argv = [sys.executable, "-m", "deployer", "mirror", "serve", "--port", "0"]
    argv += ["--repo", f"{REPO}={model_folder}"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        listing = child.stdout.readline()
        assert url.startswith("http://127.0.0.1:"), url
        commit = MirrorRepo.from_folder(REPO, model_folder).refs["main"]
        assert REPO in listing
        assert commit in listing

        assert HfApi(endpoint=url).model_info(REPO).sha == commit
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"/api/models/{REPO}" in err
