"""Revisions: what each apply applied is kept (a re-apply of the same adds none), any two are
diffed, and rolling back names a revision that exists or gets 404 before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployer import api
from deployer.server import auth
from deployer.settings import Settings
from deployer.state import DeploymentStatus, StateStore
from tests.conftest import DEMO_MANIFEST

FIRST = DEMO_MANIFEST.read_text()
SECOND = FIRST.replace("maxModelLen: 2048", "maxModelLen: 1024")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as store:
        store.upsert_deployment(
            "smollm2-demo", target_kind="local", status=DeploymentStatus.HEALTHY
        )
        for text, digest in ((FIRST, "a" * 64), (FIRST, "a" * 64), (SECOND, "b" * 64)):
            store.add_revision(
                "smollm2-demo",
                run_id=None,
                manifest_path=str(DEMO_MANIFEST),
                manifest_digest=digest,
                manifest_text=text,
                lock_text=None,
            )
    return settings


def test_the_same_manifest_again_is_no_new_revision(settings: Settings) -> None:
    assert [r.number for r in api.revisions(settings, "smollm2-demo")] == [2, 1]


def test_two_revisions_are_diffed(settings: Settings) -> None:
    diff = api.revision_diff(settings, "smollm2-demo", 1, 2).diff
    assert "-    maxModelLen: 2048\n" in diff
    assert "+    maxModelLen: 1024\n" in diff
    assert api.revision_diff(settings, "smollm2-demo", 2, 2).diff == ""


def test_the_api_and_the_page_show_revisions_and_their_diff(
    client: TestClient, settings: Settings
) -> None:
    viewer, _ = auth.create_token(settings, "v", "viewer")
    operator, _ = auth.create_token(settings, "o", "operator")
    headers = {"Authorization": f"Bearer {viewer}"}
    listed = client.get("/api/v1/deployments/smollm2-demo/revisions", headers=headers).json()
    assert [r["number"] for r in listed["items"]] == [2, 1]
    diff = client.get("/api/v1/deployments/smollm2-demo/revisions/1/diff/2", headers=headers)
    assert "+    maxModelLen: 1024" in diff.json()["diff"]
    missing = client.post(
        "/api/v1/deployments/smollm2-demo/rollback?revision=7",
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert missing.status_code == 404
    assert "its revisions: 2, 1" in missing.json()["hint"]
    refused = client.post("/api/v1/deployments/smollm2-demo/rollback?revision=1", headers=headers)
    assert refused.status_code == 403

    client.post("/login", data={"token": operator})
    page = client.get("/deployments/smollm2-demo").text
    assert 'id="rollback-1-button"' in page
    assert 'id="rollback-2-button"' not in page  # the latest is what runs
    shown = client.get("/deployments/smollm2-demo/diff?older=1&newer=2").text
    assert '<span class="add">+    maxModelLen: 1024</span>' in shown
