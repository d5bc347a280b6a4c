"""The lockfile: deterministic bytes, a faithful round trip, clear errors for a broken file, and
never a token, even when the lock was made against a token-protected hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deployer.errors import DeployerError, ManifestError
from deployer.events import EventBus
from deployer.hub.fetch import Fetcher
from deployer.hub.lock import LockedFile, LockedModel, ModelLock, lock_path, read_lock, write_lock
from deployer.hub.mirror import Mirror
from deployer.hub.store import ModelStore
from deployer.manifest.models import ModelDeployment
from tests.integration import hubrepos

TOKEN = "hf_tok_123456789"
MANIFEST = Path("deploy/model.yaml")


@pytest.fixture(autouse=True)
def hf_client(hf_home: Path) -> None:
    """Every test here talks to the hub through an isolated huggingface_hub client."""


def locked_file(path: str, size: int) -> LockedFile:
    return LockedFile(path=path, size=size, sha256=hashlib.sha256(path.encode()).hexdigest())


def locked_model(repo: str, files: list[LockedFile], **extra: str) -> LockedModel:
    fields: dict[str, str] = {
        "revision": "main",
        "commit": hashlib.sha1(repo.encode(), usedforsecurity=False).hexdigest(),
        "endpoint": "https://huggingface.co",
        "license": "apache-2.0",
        **extra,
    }
    return LockedModel(repo=repo, files=files, **fields)


FILES = [
    locked_file("config.json", 700),
    locked_file("model-00001-of-00002.safetensors", 4_000_000_000),
    locked_file("model-00002-of-00002.safetensors", 1_200_000_000),
    locked_file("README.md", 5_000),
    locked_file("tokenizer.json", 2_000_000),
]


def a_lock(*, reverse: bool) -> ModelLock:
    """The same lock, with deployments and files in one order or the other."""

    def ordered(files: list[LockedFile]) -> list[LockedFile]:
        return list(reversed(files)) if reverse else files

    deployments = {
        "zeta": locked_model("acme/zeta", ordered(FILES)),
        "alpha": locked_model("acme/alpha", ordered(FILES[1:]), license="mit"),
        "mid": locked_model("acme/mid", ordered(FILES[:2]), revision="v1.0"),
    }
    names = sorted(deployments, reverse=reverse)
    return ModelLock(deployments={name: deployments[name] for name in names})


def read_yaml(path: Path) -> dict[str, object]:
    data = YAML(typ="safe").load(path.read_text())
    assert isinstance(data, dict)
    return data


# --- writing -----------------------------------------------------------------------------------


def test_write_lock_is_deterministic_whatever_the_order(tmp_path: Path) -> None:
    first, second = tmp_path / "one.lock.yaml", tmp_path / "two.lock.yaml"

    write_lock(first, a_lock(reverse=False), MANIFEST)
    write_lock(second, a_lock(reverse=True), MANIFEST)

    assert first.read_bytes() == second.read_bytes()
    write_lock(first, a_lock(reverse=True), MANIFEST)
    assert first.read_bytes() == second.read_bytes(), "writing again changes nothing"


def test_written_lock_sorts_deployments_and_files(tmp_path: Path) -> None:
    path = tmp_path / "model.lock.yaml"
    write_lock(path, a_lock(reverse=True), MANIFEST)

    data = read_yaml(path)
    deployments = data["deployments"]
    assert isinstance(deployments, dict)
    assert list(deployments) == ["alpha", "mid", "zeta"]
    for entry in deployments.values():
        paths = [f["path"] for f in entry["files"]]
        assert paths == sorted(paths)
    assert [f["path"] for f in deployments["zeta"]["files"]] == sorted(f.path for f in FILES)
    assert list(data)[:2] == ["apiVersion", "kind"]
    assert data["apiVersion"] == "deployer/v1alpha1"
    assert data["kind"] == "ModelLock"


def test_written_lock_header_names_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "model.lock.yaml"
    write_lock(path, a_lock(reverse=False), MANIFEST)

    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header, "the lock starts with a comment"
    assert text.startswith("#")
    assert "model.yaml" in header[0]
    assert any("deployer lock" in line for line in header)


def test_written_lock_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    write_lock(folder / "model.lock.yaml", a_lock(reverse=False), MANIFEST)
    write_lock(folder / "model.lock.yaml", a_lock(reverse=True), MANIFEST)

    assert sorted(p.name for p in folder.iterdir()) == ["model.lock.yaml"]


# --- reading -----------------------------------------------------------------------------------

ROUND_TRIPS = {
    "typical": a_lock(reverse=False),
    "empty": ModelLock(),
    "no licence": ModelLock(
        deployments={
            "tiny": locked_model("acme/tiny", FILES[:1]).model_copy(update={"license": None})
        }
    ),
    "strings YAML would read as other types": ModelLock(
        deployments={
            "yes": LockedModel(
                repo="org/1.0",
                revision="1.0",
                commit="1" * 40,
                endpoint="http://10.0.0.1:8080",
                license="null",
                files=[
                    LockedFile(path="1e5", size=0, sha256="0e" + "1" * 62),
                    LockedFile(path="true", size=2**40, sha256="1" * 64),
                ],
            ),
            "no": locked_model("org/no", FILES[:1], revision="0777"),
            "on": locked_model("org/on", FILES[:1], revision="2024-01-01"),
            "tilde": locked_model("org/t", FILES[:1], revision="~"),
        }
    ),
    "revision with slashes, unicode licence": ModelLock(
        deployments={
            "pr": locked_model("acme/pr", FILES, revision="refs/pr/1", license="licence é")
        }
    ),
}


@pytest.mark.parametrize("lock", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_read_lock_round_trips(tmp_path: Path, lock: ModelLock) -> None:
    path = tmp_path / "model.lock.yaml"
    write_lock(path, lock, MANIFEST)

    back = read_lock(path)

    assert back is not None
    assert back.deployments.keys() == lock.deployments.keys()
    for name, entry in lock.deployments.items():
        expected = entry.model_copy(update={"files": sorted(entry.files, key=lambda f: f.path)})
        assert back.deployments[name] == expected


def test_read_lock_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "model.lock.yaml") is None


def _edited(old: str, new: str) -> bytes:
    """The valid lock text with ``old`` replaced by ``new``."""
    text = _valid_text()
    assert old in text
    return text.replace(old, new).encode()


def _valid_text() -> str:
    return (
        "apiVersion: deployer/v1alpha1\n"
        "kind: ModelLock\n"
        "deployments:\n"
        "  tiny:\n"
        "    repo: acme/tiny\n"
        "    revision: main\n"
        f"    commit: {'a' * 40}\n"
        "    endpoint: https://huggingface.co\n"
        "    files:\n"
        "    - path: config.json\n"
        "      size: 12\n"
        f"      sha256: {'b' * 64}\n"
    )


CORRUPT: dict[str, bytes] = {
    "sha256 too short": _edited("b" * 64, "b" * 63),
    "sha256 too long": _edited("b" * 64, "b" * 65),
    "sha256 upper case": _edited("b" * 64, "B" * 64),
    "commit not hex": _edited("a" * 40, "z" * 40),
    "negative size": _edited("size: 12", "size: -1"),
    "unknown key": _edited("    revision: main\n", "    revision: main\n    x: 1\n"),
    "unknown top-level key": (_valid_text() + "extra: true\n").encode(),
    "missing files": _valid_text().split("    files:")[0].encode(),
    "wrong kind": _edited("kind: ModelLock", "kind: ModelDeployment"),
    "wrong apiVersion": _edited("v1alpha1", "v2"),
    "not YAML": b"deployments: [unclosed\n  : : :\n",
    "a list": b"- apiVersion\n- kind\n",
    "empty": b"",
    "duplicate key": _edited("kind: ModelLock\n", "kind: ModelLock\nkind: X\n"),
    "python tag": b"!!python/object/apply:os.system ['echo pwned']\n",
    "not UTF-8": b"\xff\xfe\x00\x00 binary garbage \x89PNG\r\n",
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_invalid_lock_is_a_manifest_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.lock.yaml"
    path.write_bytes(content)

    with pytest.raises(ManifestError) as caught:
        read_lock(path)

    assert str(path) in caught.value.message
    assert caught.value.hint is not None
    assert "deployer lock --update" in caught.value.hint


def test_the_valid_lock_used_above_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "model.lock.yaml"
    path.write_text(_valid_text())

    lock = read_lock(path)

    assert lock is not None
    assert lock.deployments["tiny"].file("config.json") == LockedFile(
        path="config.json", size=12, sha256="b" * 64
    )
    assert lock.deployments["tiny"].file("absent.json") is None
    assert lock.deployments["tiny"].total_bytes == 12


# --- where it lives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("a/b/model.yaml", "a/b/model.lock.yaml"),
        ("model.yaml", "model.lock.yaml"),
        ("/srv/deploy/llama.prod.yaml", "/srv/deploy/llama.prod.lock.yaml"),
    ],
)
def test_lock_path_is_beside_the_manifest(manifest: str, expected: str) -> None:
    assert lock_path(Path(manifest)) == Path(expected)


# --- secrets -----------------------------------------------------------------------------------


def test_a_lock_made_with_a_token_never_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_TOKEN", TOKEN)
    private = hubrepos.tiny("acme/private", token=TOKEN)
    with Mirror([private]) as mirror:
        deployment = ModelDeployment.model_validate(
            {
                "apiVersion": "deployer/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "private"},
                "spec": {
                    "model": {
                        "source": "huggingface",
                        "repo": "acme/private",
                        "endpoint": mirror.base_url,
                        "token": {"env": "HUB_TOKEN"},
                    },
                    "resources": {"accelerator": "cpu"},
                },
            }
        )
        model = deployment.spec.model
        assert model.source == "huggingface"
        store = ModelStore(tmp_path / "models")
        with pytest.raises(DeployerError):  # the repository really is protected
            Fetcher(model, store=store, token=None, events=EventBus()).lock()

        entry = Fetcher(model, store=store, token=TOKEN, events=EventBus()).lock()
        endpoint = mirror.base_url

    assert entry.commit == private.refs["main"]
    assert entry.endpoint == endpoint
    path = tmp_path / "model.lock.yaml"
    write_lock(path, ModelLock(deployments={deployment.name: entry}), tmp_path / "model.yaml")

    text = path.read_text()
    assert TOKEN not in text
    assert "HUB_TOKEN" not in text
    assert read_lock(path) == ModelLock(deployments={"private": entry})
    for stored in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert TOKEN.encode() not in stored.read_bytes(), f"the token is in {stored}"
