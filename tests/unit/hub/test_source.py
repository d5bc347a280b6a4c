"""Facts about a hub model before anything moves: the lock's entry (or a clear error when it pins
another model), the commit (locked, resolved now against a real mirror, or cached when the hub is
down), and whether the store already holds its snapshot. Also which endpoint is used."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.errors import ManifestError
from deployer.events import EventBus
from deployer.hub import remote
from deployer.hub.fetch import Fetcher
from deployer.hub.lock import LockedFile, LockedModel, ModelLock
from deployer.hub.mirror import Mirror
from deployer.hub.remote import HubUnreachableError
from deployer.hub.source import ModelSourceFacts, hub_facts, locked_entry
from deployer.hub.store import ModelStore
from deployer.manifest.models import HuggingFaceModel, ModelDeployment
from deployer.units import human_bytes
from tests.integration import hubrepos

REPO = "acme/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOCK_FILE = Path("deploy/model.lock.yaml")


@pytest.fixture(autouse=True)
def hf_client(hf_home: Path) -> None:
    """Every test here talks to the hub through an isolated huggingface_hub client."""


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with Mirror([hubrepos.tiny(REPO)]) as served:
        yield served


@pytest.fixture
def closed_endpoint() -> str:
    """The URL of a mirror that has stopped: nothing answers there."""
    with Mirror() as gone:
        url = gone.base_url
    return url


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def hf_model(
    repo: str = REPO, revision: str = "main", endpoint: str | None = None
) -> HuggingFaceModel:
    return HuggingFaceModel(source="huggingface", repo=repo, revision=revision, endpoint=endpoint)


def locked(
    repo: str = REPO, revision: str = "main", commit: str = COMMIT, sizes: tuple[int, ...] = (10,)
) -> LockedModel:
    files = [
        LockedFile(path=f"f{i}.json", size=size, sha256=hashlib.sha256(b"%d" % i).hexdigest())
        for i, size in enumerate(sizes)
    ]
    return LockedModel(
        repo=repo, revision=revision, commit=commit, endpoint="https://huggingface.co", files=files
    )


def facts_for(
    model: HuggingFaceModel, store: ModelStore, entry: LockedModel | None = None
) -> ModelSourceFacts:
    return hub_facts(model, locked=entry, store=store, token=None, events=EventBus())


# --- the lock's entry --------------------------------------------------------------------------


def test_locked_entry_without_a_lock_is_none() -> None:
    assert locked_entry(hf_model(), None, "tiny", LOCK_FILE) is None


def test_locked_entry_for_a_deployment_the_lock_does_not_name_is_none() -> None:
    lock = ModelLock(deployments={"other": locked()})
    assert locked_entry(hf_model(), lock, "tiny", LOCK_FILE) is None


@pytest.mark.parametrize("revision", ["main", "v1.0", COMMIT])
def test_locked_entry_when_repo_and_revision_match(revision: str) -> None:
    entry = locked(revision=revision)
    lock = ModelLock(deployments={"tiny": entry, "other": locked("acme/other")})

    assert locked_entry(hf_model(revision=revision), lock, "tiny", LOCK_FILE) == entry


@pytest.mark.parametrize(
    ("manifest", "lock"),
    [
        (("acme/tiny", "main"), ("acme/other", "main")),
        (("acme/tiny", "v2"), ("acme/tiny", "v1")),
        (("acme/tiny", "main"), ("acme/Tiny", "dev")),
    ],
    ids=["another repo", "another revision", "both differ"],
)
def test_locked_entry_that_pins_another_model_is_a_manifest_error(
    manifest: tuple[str, str], lock: tuple[str, str]
) -> None:
    model = hf_model(repo=manifest[0], revision=manifest[1])
    the_lock = ModelLock(deployments={"tiny": locked(repo=lock[0], revision=lock[1])})

    with pytest.raises(ManifestError) as caught:
        locked_entry(model, the_lock, "tiny", LOCK_FILE)

    message = caught.value.message
    assert str(LOCK_FILE) in message
    assert f"{manifest[0]}@{manifest[1]}" in message
    assert f"{lock[0]}@{lock[1]}" in message
    assert "tiny" in message
    assert caught.value.hint is not None
    assert "deployer lock --update" in caught.value.hint


# --- with a lock: no hub needed ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [(3 * 1024**2,), (512 * 1024, 1024, 1024), (1024**3, 1024**3 // 2), (4_000_000_000,) * 2],
    ids=["3 MiB", "514 KiB in 3 files", "1.5 GiB in 2 files", "7.5 GiB in 2 files"],
)
def test_locked_model_not_in_the_store_is_to_download(
    store: ModelStore, closed_endpoint: str, sizes: tuple[int, ...]
) -> None:
    entry = locked(sizes=sizes)

    facts = facts_for(hf_model(endpoint=closed_endpoint), store, entry)

    assert facts.action == "create"
    assert "download" in facts.reason
    assert human_bytes(sum(sizes)) in facts.reason, "the size, as deployer writes sizes"
    assert REPO in facts.reason
    assert COMMIT[:12] in facts.reason
    assert facts.commit == COMMIT
    assert facts.locked == entry
    assert facts.path == store.snapshot_path(REPO, COMMIT)
    assert not facts.path.exists()


def test_locked_model_in_the_store_is_skipped(store: ModelStore, closed_endpoint: str) -> None:
    entry = locked()
    store.build_snapshot(REPO, COMMIT, {f.path: f.sha256 for f in entry.files})

    facts = facts_for(hf_model(endpoint=closed_endpoint), store, entry)

    assert facts.action == "skip"
    assert "in the store" in facts.reason
    assert "download" not in facts.reason
    assert facts.path == store.snapshot_path(REPO, COMMIT)
    assert facts.commit == COMMIT


def test_lock_fetch_then_facts_against_a_real_mirror(mirror: Mirror, store: ModelStore) -> None:
    model = hf_model(endpoint=mirror.base_url)
    entry = Fetcher(model, store=store, token=None, events=EventBus()).lock()
    commit = mirror.repos[REPO].refs["main"]
    assert entry.commit == commit

    before = facts_for(model, store, entry)
    assert before.action == "create"
    assert "download" in before.reason

    result = Fetcher(model, store=store, token=None, events=EventBus()).fetch(entry)
    mirror.stop()  # with a lock, the facts need no hub

    after = facts_for(model, store, entry)
    assert after.action == "skip"
    assert "in the store" in after.reason
    assert after.path == result.snapshot
    assert after.commit == commit
    assert after.fingerprint == before.fingerprint
    assert (after.path / "config.json").is_file()


# --- without a lock ----------------------------------------------------------------------------


def test_unlocked_model_resolves_the_current_commit(mirror: Mirror, store: ModelStore) -> None:
    repo = mirror.repos[REPO]
    model = hf_model(endpoint=mirror.base_url)

    facts = facts_for(model, store)

    assert facts.commit == repo.refs["main"]
    assert facts.action == "create"
    assert "not locked" in facts.reason
    assert "download" in facts.reason
    assert facts.locked is None
    assert store.cached_ref(REPO, "main") == repo.refs["main"], "remembered for offline use"

    newer = repo.commit({"config.json": b'{"model_type": "llama", "hidden_size": 8}'})
    moved = facts_for(model, store)
    assert moved.commit == newer
    assert moved.fingerprint != facts.fingerprint
    assert moved.path != facts.path


def test_unlocked_model_resolves_a_tag(mirror: Mirror, store: ModelStore) -> None:
    repo = mirror.repos[REPO]
    first = repo.refs["main"]
    repo.set_ref("v1", first)
    repo.commit({"config.json": b"{}"})

    facts = facts_for(hf_model(revision="v1", endpoint=mirror.base_url), store)

    assert facts.commit == first
    assert "v1" in facts.reason
    assert "not locked" in facts.reason


def test_unlocked_model_uses_the_cached_ref_when_the_hub_is_down(
    mirror: Mirror, store: ModelStore
) -> None:
    model = hf_model(endpoint=mirror.base_url)
    online = facts_for(model, store)
    mirror.stop()

    offline = facts_for(model, store)

    assert offline.commit == online.commit
    assert offline.fingerprint == online.fingerprint
    assert "cached; hub unreachable" in offline.reason
    assert offline.action == "create"


def test_unlocked_model_fetched_before_is_skipped_when_the_hub_is_down(
    mirror: Mirror, store: ModelStore
) -> None:
    model = hf_model(endpoint=mirror.base_url)
    result = Fetcher(model, store=store, token=None, events=EventBus()).fetch(None)
    mirror.stop()

    facts = facts_for(model, store)

    assert facts.action == "skip"
    assert facts.path == result.snapshot
    assert "cached; hub unreachable" in facts.reason
    assert "in the store" in facts.reason


def test_unlocked_model_with_no_cache_and_the_hub_down_is_unreachable(
    store: ModelStore, closed_endpoint: str
) -> None:
    with pytest.raises(HubUnreachableError) as caught:
        facts_for(hf_model(endpoint=closed_endpoint), store)

    assert REPO in caught.value.message
    assert closed_endpoint in caught.value.message


def test_a_cached_ref_of_another_revision_is_not_used(
    store: ModelStore, closed_endpoint: str
) -> None:
    store.remember_ref(REPO, "dev", COMMIT)

    with pytest.raises(HubUnreachableError):
        facts_for(hf_model(endpoint=closed_endpoint), store)


# --- the endpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "env", "expected"),
    [
        ("http://mirror.local:8080", "http://env.local", "http://mirror.local:8080"),
        ("http://mirror.local:8080/", None, "http://mirror.local:8080"),
        (None, "http://env.local:9000", "http://env.local:9000"),
        (None, "http://env.local:9000/", "http://env.local:9000"),
        ("", "http://env.local", "http://env.local"),
        (None, None, "https://huggingface.co"),
        (None, "", "https://huggingface.co"),
    ],
    ids=[
        "manifest wins",
        "manifest, slash stripped",
        "HF_ENDPOINT",
        "HF_ENDPOINT, slash stripped",
        "empty manifest endpoint",
        "public hub",
        "empty HF_ENDPOINT",
    ],
)
def test_effective_endpoint(
    monkeypatch: pytest.MonkeyPatch, manifest: str | None, env: str | None, expected: str
) -> None:
    if env is None:
        monkeypatch.delenv("HF_ENDPOINT", raising=False)
    else:
        monkeypatch.setenv("HF_ENDPOINT", env)

    assert remote.effective_endpoint(manifest) == expected


def test_a_manifest_endpoint_reaches_the_fetcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://env.local")
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "tiny"},
            "spec": {
                "model": {
                    "source": "huggingface",
                    "repo": REPO,
                    "endpoint": "http://mirror.local:8080/",
                },
                "resources": {"accelerator": "cpu"},
            },
        }
    )
    model = deployment.spec.model
    assert isinstance(model, HuggingFaceModel)

    fetcher = Fetcher(model, store=ModelStore(Path("unused")), token=None, events=EventBus())

    assert fetcher.endpoint == "http://mirror.local:8080"
