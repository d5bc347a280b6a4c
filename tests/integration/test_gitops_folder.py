"""GitOps over a folder of manifests on the local target, for real: two deployments of the demo
model served by the real vLLM CPU build, reconciled as a pipeline would (apply, re-apply, diff's
exit codes, prune with and without --dry-run). The tests run in file order and share the folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO_MANIFEST
from tests.integration.cli import Result, deployer

pytestmark = pytest.mark.engine
NAMES = ("gitops-a", "gitops-b")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("home")
    yield path
    for name in NAMES:
        deployer("destroy", name, home=path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifests")
    for name in NAMES:
        text = DEMO_MANIFEST.read_text().replace("name: smollm2-demo", f"name: {name}")
        (path / f"{name}.yaml").write_text(text)
    return path


def status(home: Path) -> dict[str, dict[str, object]]:
    result = deployer("status", "-o", "json", home=home)
    assert result.code == 0, result.output
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


def run(home: Path, *args: str) -> Result:
    return deployer(*args, home=home, timeout=900)


def test_a_folder_is_applied_deployment_by_deployment(home: Path, folder: Path) -> None:
    first = run(home, "apply", str(folder))
    assert first.code == 0, first.output
    assert "gitops-a deployed" in first.stdout
    assert "gitops-b deployed" in first.stdout
    assert "2 applied, 0 failed" in first.stdout
    assert first.stdout.count("pass: chat: What is the capital of France? -> ") == 2
    assert all(status(home)[name]["status"] == "healthy" for name in NAMES)


def test_a_second_apply_of_the_folder_changes_nothing(home: Path, folder: Path) -> None:
    pids = {name: status(home)[name]["pid"] for name in NAMES}
    again = run(home, "apply", str(folder), "-o", "json")
    assert again.code == 0, again.output
    report = json.loads(again.stdout)
    assert [(r["deployment"], r["changed"]) for r in report["applied"]] == [
        ("gitops-a", False),
        ("gitops-b", False),
    ]
    assert {name: status(home)[name]["pid"] for name in NAMES} == pids, "no engine restarted"


def test_diff_exits_0_when_nothing_would_change(home: Path, folder: Path) -> None:
    result = run(home, "diff", str(folder))
    assert result.code == 0, result.output
    assert "= gitops-a (local): nothing would change" in result.stdout


def test_diff_exits_2_after_an_edit_and_names_what_differs(home: Path, folder: Path) -> None:
    path = folder / "gitops-b.yaml"
    path.write_text(path.read_text().replace("maxModelLen: 2048", "maxModelLen: 1024"))
    result = run(home, "diff", str(folder), "-o", "json")
    assert result.code == 2, result.output
    by_name = {d["deployment"]: d for d in json.loads(result.stdout)}
    assert not by_name["gitops-a"]["changed"]
    [change] = by_name["gitops-b"]["changes"]
    assert change.startswith("deploy: update: restart: --max-model-len 2048 -> 1024")


def test_diff_names_an_environment_change_that_argv_cannot_show(home: Path, folder: Path) -> None:
    """runtime.json records what the spec digest was made of, so a change outside argv is named
    (not "model files, engine version, key or environment changed")."""
    path = folder / "gitops-a.yaml"
    original = path.read_text()
    path.write_text(
        original.replace("    maxModelLen: 2048\n", "    maxModelLen: 2048\n    env: {TZ: UTC}\n")
    )
    try:
        result = run(home, "diff", str(path), "-o", "json")
    finally:
        path.write_text(original)
    assert result.code == 2, result.output
    [entry] = json.loads(result.stdout)
    assert entry["changes"] == ["deploy: update: restart: spec.serving.env changed"]


def test_prune_dry_run_only_says_so(home: Path, folder: Path) -> None:
    (folder / "gitops-a.yaml").unlink()
    dry = run(home, "apply", str(folder), "--prune", "--dry-run")
    assert dry.code == 0, dry.output
    assert "would prune gitops-a" in dry.stdout
    assert status(home)["gitops-a"]["running"] is True
    assert "gitops-b deployed" not in dry.stdout, "a dry run applies nothing"


def test_prune_destroys_what_the_folder_no_longer_declares(home: Path, folder: Path) -> None:
    result = run(home, "apply", str(folder), "--prune")
    assert result.code == 0, result.output
    assert "gitops-b deployed" in result.stdout, "the edited one restarted"
    assert "pruned gitops-a" in result.stdout
    assert "gitops-a" not in status(home), "destroyed deployments leave status"
    assert run(home, "diff", str(folder)).code == 0
