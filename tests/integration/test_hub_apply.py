"""The demo through the hub path: locked, fetched, verified from a mirror, served by real vLLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.hub.mirror import Mirror, MirrorRepo
from tests.conftest import MANIFESTS
from tests.integration.cli import deployer

pytestmark = pytest.mark.engine
DEMO_FOLDER = Path.home() / ".cache" / "deployer" / "demo" / "SmolLM2-135M-Instruct"
REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with Mirror([MirrorRepo.from_folder(REPO, DEMO_FOLDER)]) as served:
        yield served


def test_the_demo_comes_through_a_mirror_and_says_paris(mirror: Mirror, tmp_path: Path) -> None:
    text = (MANIFESTS / "demo" / "smollm2-135m-mirror.yaml").read_text()
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(text.replace("http://127.0.0.1:8089", mirror.base_url))
    home = tmp_path / "home"
    try:
        locked = deployer("lock", str(manifest), home=home)
        assert locked.code == 0, locked.output
        commit = mirror.repos[REPO].refs["main"]
        assert commit in (tmp_path / "demo.lock.yaml").read_text()

        applied = deployer("apply", str(manifest), home=home)
        assert applied.code == 0, applied.output
        assert f"locked main = {commit[:12]}" in applied.stdout
        assert "pass: chat: What is the capital of France?" in applied.stdout
        assert "snapshots/HuggingFaceTB--SmolLM2-135M-Instruct/" + commit in deployer(
            "plan", str(manifest), home=home
        ).stdout.replace("\n", "")

        mirror.clear_requests()
        again = deployer("apply", str(manifest), home=home)
        assert again.code == 0, again.output
        assert "fetch: skip" in again.stdout
        assert mirror.requests == []
    finally:
        deployer("destroy", "smollm2-mirror", home=home)
