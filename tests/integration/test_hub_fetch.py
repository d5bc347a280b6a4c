"""Fetching from a hub, for real: deployer's mirror serves the hub's HTTP protocol on loopback and
deployer talks to it through huggingface_hub, as it would to huggingface.co or a company mirror.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deployer.hub.mirror import Mirror
from tests.integration import hubrepos
from tests.integration.cli import Result, deployer
from tests.support.mirror_faults import FaultyMirror, tamper

TOKEN = "hf_s3cretTokenValue1234567890"


@pytest.fixture(scope="module")
def mirror() -> Iterator[Mirror]:
    repos = [hubrepos.tiny(), hubrepos.tiny("acme/private", token=TOKEN), *hubrepos.bad_repos()]
    with Mirror(repos) as served:
        yield served


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An empty model store and state for each test; never the public hub."""
    return {
        "DEPLOYER_CACHE": str(tmp_path / "cache"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # a closed port: only the manifest's endpoint works
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def manifest(tmp_path: Path, endpoint: str, repo: str = "acme/tiny", **model: object) -> Path:
    extra = "".join(f"\n    {key}: {value}" for key, value in model.items())
    path = tmp_path / "model.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: deployer/v1alpha1
            kind: ModelDeployment
            metadata:
              name: tiny
            spec:
              model:
                source: huggingface
                repo: {repo}
                endpoint: {endpoint}"""
        )
        + extra
        + "\n  resources: {accelerator: cpu}\n"
    )
    return path


def run(*args: str, tmp_path: Path, env: dict[str, str]) -> Result:
    return deployer(*args, home=tmp_path / "home", env=env)


def store_files(env: dict[str, str]) -> list[Path]:
    models = Path(env["DEPLOYER_CACHE"]) / "models"
    return sorted(p for p in models.rglob("*") if p.is_file() and "staging" not in p.parts)


def assert_refused(result: Result, *fragments: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    assert len([x for x in result.stderr.splitlines() if x.startswith("error:")]) == 1
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "hint:" in result.stderr


# --- lock and fetch ----------------------------------------------------------------------------


def test_lock_pins_commit_hashes_and_licence(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, mirror.base_url)
    result = run("lock", str(path), tmp_path=tmp_path, env=env)
    assert result.code == 0, result.output
    commit = mirror.repos["acme/tiny"].refs["main"]
    assert f"tiny: created at {commit}" in result.stdout

    lock = YAML(typ="safe").load((tmp_path / "model.lock.yaml").read_text())
    entry = lock["deployments"]["tiny"]
    assert entry["commit"] == commit
    assert entry["license"] == "apache-2.0"
    assert entry["endpoint"] == mirror.base_url
    paths = [f["path"] for f in entry["files"]]
    assert paths == sorted(paths)
    assert "model.safetensors" in paths
    assert "config.json" in paths
    assert "original/consolidated.pth" not in paths, "only what the engine loads is locked"
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in entry["files"])

    again = run("lock", str(path), tmp_path=tmp_path, env=env)
    assert again.code == 0
    assert "tiny: unchanged" in again.stdout
    assert (tmp_path / "model.lock.yaml").read_text().count(commit) == 1


def test_fetch_then_refetch_moves_no_bytes(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, mirror.base_url)
    assert run("lock", str(path), tmp_path=tmp_path, env=env).code == 0
    first = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert first.code == 0, first.output
    assert "verified" in first.stdout
    snapshot = Path(first.stdout.split("snapshot: ")[1].strip())
    assert (snapshot / "config.json").read_text() == (hubrepos.base_files()["config.json"].decode())
    assert not (snapshot / "original").exists()

    mirror.clear_requests()
    second = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert second.code == 0, second.output
    assert "downloaded 0 B" in second.stdout
    assert mirror.requests == [], "a locked, cached revision needs no request at all"


def test_fetch_without_lock_resolves_and_moves_no_bytes_the_second_time(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, mirror.base_url)
    assert run("fetch", str(path), tmp_path=tmp_path, env=env).code == 0
    mirror.clear_requests()
    again = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert again.code == 0, again.output
    assert sum(r.bytes_sent for r in mirror.requests if "/resolve/" in r.path) <= 200
    assert not [r for r in mirror.requests if "/resolve/" in r.path and "safetensors" in r.path]


def test_a_moved_branch_fails_lock_until_update_and_fetch_keeps_the_pin(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = hubrepos.tiny("acme/moving")
    with Mirror([repo]) as mirror:
        path = manifest(tmp_path, mirror.base_url, repo="acme/moving")
        assert run("lock", str(path), tmp_path=tmp_path, env=env).code == 0
        old = repo.refs["main"]
        new = repo.commit({"config.json": b'{"architectures": ["Moved"]}'})

        checked = run("lock", str(path), tmp_path=tmp_path, env=env)
        assert_refused(checked, f"is now {new[:12]}", f"pins {old[:12]}", "deployer lock --update")

        fetched = run("fetch", str(path), tmp_path=tmp_path, env=env)
        assert fetched.code == 0, fetched.output
        assert f"acme/moving@{old[:12]}" in fetched.stdout

        updated = run("lock", "--update", str(path), tmp_path=tmp_path, env=env)
        assert updated.code == 0, updated.output
        assert f"tiny: updated at {new}" in updated.stdout


def test_offline_once_cached(mirror: Mirror, tmp_path: Path, env: dict[str, str]) -> None:
    repo = hubrepos.tiny("acme/offline")
    with Mirror([repo]) as temporary:
        path = manifest(tmp_path, temporary.base_url, repo="acme/offline")
        assert run("lock", str(path), tmp_path=tmp_path, env=env).code == 0
        assert run("fetch", str(path), tmp_path=tmp_path, env=env).code == 0
    offline = run("fetch", str(path), tmp_path=tmp_path, env=env)  # the mirror is gone
    assert offline.code == 0, offline.output


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "model", "fragments"),
    [
        pytest.param(
            "acme/tampered", {}, ["model.safetensors", "sha256", "expected"], id="tampered-file"
        ),
        pytest.param(
            "acme/pickle-bomb", {}, ["pytorch_model.bin", "allowPickle"], id="only-pickle-weights"
        ),
        pytest.param(
            "acme/pickle-bomb",
            {"allowPickle": "true"},
            ["pytorch_model.bin", "system"],
            id="pickle-with-os-system",
        ),
        pytest.param(
            "acme/renamed-pickle",
            {},
            ["model.safetensors", "not a valid safetensors file"],
            id="pickle-renamed-safetensors",
        ),
        pytest.param(
            "acme/remote-code",
            {},
            ["config.json", "custom code", "trustRemoteCode"],
            id="remote-code",
        ),
        pytest.param("acme/hostile", {}, ["../../evil.json"], id="hostile-filename"),
    ],
)
def test_a_bad_repo_is_refused_and_nothing_reaches_the_store(
    mirror: Mirror,
    tmp_path: Path,
    env: dict[str, str],
    repo: str,
    model: dict[str, object],
    fragments: list[str],
) -> None:
    path = manifest(tmp_path, mirror.base_url, repo=repo, **model)
    result = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert_refused(result, *fragments)
    snapshots = Path(env["DEPLOYER_CACHE"]) / "models" / "snapshots"
    assert not list(snapshots.rglob("*")) if snapshots.exists() else True
    blobs = {p.name for p in store_files(env) if "blobs" in p.parts}
    bad = {"model.safetensors", "pytorch_model.bin"}
    served = mirror.repos[repo].resolve("main")
    assert served is not None
    bad_hashes = {served.files[name].digest.sha256 for name in bad if name in served.files}
    assert not blobs & bad_hashes, "a refused file must not be in the store"
    assert not (tmp_path.parent / "evil.json").exists()
    assert not Path("/tmp/deployer-pwned").exists()


def test_remote_code_allowed_is_locked_by_hash(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, mirror.base_url, repo="acme/remote-code", trustRemoteCode="true")
    assert run("lock", str(path), tmp_path=tmp_path, env=env).code == 0
    lock = YAML(typ="safe").load((tmp_path / "model.lock.yaml").read_text())
    paths = [f["path"] for f in lock["deployments"]["tiny"]["files"]]
    assert "modeling_tiny.py" in paths

    # Another machine (an empty store) fetches with the committed lock after the code changed.
    tamper(mirror.repos["acme/remote-code"], "modeling_tiny.py", b"import os; os.system('x')\n")
    elsewhere = {**env, "DEPLOYER_CACHE": str(tmp_path / "other-cache")}
    tampered = run("fetch", str(path), tmp_path=tmp_path, env=elsewhere)
    assert_refused(tampered, "modeling_tiny.py", "no longer matches the lockfile")


# --- secrets and interruptions -----------------------------------------------------------------


def test_the_token_is_sent_and_written_nowhere(
    mirror: Mirror, tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, mirror.base_url, repo="acme/private", token="{env: HUB_TOKEN}")
    missing = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert_refused(missing, "HUB_TOKEN is not set")

    with_token = {**env, "HUB_TOKEN": TOKEN}
    locked = run("lock", str(path), tmp_path=tmp_path, env=with_token)
    fetched = run("fetch", str(path), tmp_path=tmp_path, env=with_token)
    assert locked.code == 0, locked.output
    assert fetched.code == 0, fetched.output
    assert all(r.authorized for r in mirror.requests if "acme/private" in r.path)

    for output in (missing, locked, fetched):
        assert TOKEN not in output.output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "model.lock.yaml" for p in written)
    for file in written:
        assert TOKEN.encode() not in file.read_bytes(), f"the token leaked into {file}"


def test_a_killed_fetch_resumes_and_ends_verified(tmp_path: Path, env: dict[str, str]) -> None:
    repo = hubrepos.big()
    with FaultyMirror([repo], throttle_bytes_per_second=4 * 1024 * 1024) as mirror:
        path = manifest(tmp_path, mirror.base_url, repo="acme/big")
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer", "fetch", str(path)],
            env={**os.environ, **env, "DEPLOYER_HOME": str(tmp_path / "home")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        staging = Path(env["DEPLOYER_CACHE"]) / "models" / "staging"
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline:
            partial = [p for p in staging.rglob("*.part") if p.stat().st_size > 2 << 20]
            if partial:
                break
            time.sleep(0.1)
        assert partial, "the download never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (Path(env["DEPLOYER_CACHE"]) / "models" / "snapshots").exists()

        mirror.throttle_bytes_per_second = None
        mirror.clear_requests()
        resumed = run("fetch", str(path), tmp_path=tmp_path, env=env)
        assert resumed.code == 0, resumed.output
        ranges = [r.range for r in mirror.requests if r.range and "safetensors" in r.path]
        assert ranges, "the second fetch should resume with a Range request"
        assert not ranges[0].startswith("bytes=0-")
        snapshot = Path(resumed.stdout.split("snapshot: ")[1].strip())
        served = repo.resolve("main")
        assert served is not None
        from deployer.digests import sha256_file

        assert sha256_file(snapshot / "model.safetensors") == (
            served.files["model.safetensors"].digest.sha256
        )


def test_a_signed_repo_fetches_with_its_key_and_is_refused_with_another(
    tmp_path: Path, env: dict[str, str]
) -> None:
    import model_signing
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = tmp_path / "keys"
    keys.mkdir()
    private = {}
    for name in ("publisher", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        private[name] = keys / f"{name}.pem"
        private[name].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (keys / f"{name}.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    # The publisher signs exactly the files deployer serves, as `model_signing sign key` does.
    folder = tmp_path / "publisher" / "tiny"
    files = hubrepos.base_files()
    del files["original/consolidated.pth"]
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=private["publisher"]
    ).set_hashing_config(hashing).sign(folder, folder / "model.sig")
    repo = hubrepos.MirrorRepo("acme/signed")
    repo.commit({**files, "model.sig": (folder / "model.sig").read_bytes()})
    snapshots = Path(env["DEPLOYER_CACHE"]) / "models" / "snapshots"

    with Mirror([repo]) as served:
        wrong = manifest(
            tmp_path,
            served.base_url,
            repo="acme/signed",
            signature="{method: key, publicKey: keys/other.pub}",
        )
        refused = run("fetch", str(wrong), tmp_path=tmp_path, env=env)
        assert_refused(refused, "model.sig")
        assert not list(snapshots.glob("*/*")), "a refused snapshot must not appear"

        right = manifest(
            tmp_path,
            served.base_url,
            repo="acme/signed",
            signature="{method: key, publicKey: keys/publisher.pub}",
        )
        fetched = run("fetch", str(right), tmp_path=tmp_path, env=env)
        assert fetched.code == 0, fetched.output
        snapshot = Path(fetched.stdout.split("snapshot: ")[1].strip())
        assert sorted(p.name for p in snapshot.iterdir()) == sorted([*files, "model.sig"])

        # The snapshot is checked again for every manifest that requires a signature.
        wrong = manifest(
            tmp_path,
            served.base_url,
            repo="acme/signed",
            signature="{method: key, publicKey: keys/other.pub}",
        )
        again = run("fetch", str(wrong), tmp_path=tmp_path, env=env)
        assert_refused(again, "model.sig")
        assert snapshot.is_dir()


def test_an_unreachable_hub_is_one_line_without_library_noise(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = manifest(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    result = run("fetch", str(path), tmp_path=tmp_path, env=env)
    assert_refused(result, "cannot reach the hub", "http://127.0.0.1:9")
    assert "Trying to resume" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3
