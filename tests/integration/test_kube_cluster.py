"""apply, diff and destroy for kubernetes targets when no cluster answers.

No Kubernetes API server can run on these machines, so the live-cluster path (helm upgrade
--install, the rollout, smoke checks through a port-forward, helm uninstall) is NOT exercised
here. What is tested is what a user without a reachable cluster meets: one error line naming
the context and the server, a hint, no traceback, and nothing deployed or recorded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer.settings import Settings
from deployer.state import DeploymentStatus, StateStore
from tests.integration.cli import Result, deployer
from tests.integration.kubetools import real_helm
from tests.support.kubeapi import UNREACHABLE_KUBECONFIG

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ROOT / "model_manifests" / "llama31-8b-instruct.yaml"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A kubeconfig whose only context points at a closed port (nothing listens on 9)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    return {
        "KUBECONFIG": str(kubeconfig),
        "DEPLOYER_CACHE": str(tmp_path / "cache"),
        "PATH": f"{real_helm().path.parent}{os.pathsep}{os.environ['PATH']}",
        "HF_TOKEN": "hf_notUsedBecauseNothingIsReached000",
    }


def manifest(tmp_path: Path, context: str | None = None) -> Path:
    text = LLAMA.read_text()
    if context is not None:
        text = text.replace(
            "    kind: kubernetes\n", f"    kind: kubernetes\n    context: {context}\n"
        )
    path = tmp_path / "llama.yaml"
    path.write_text(text)
    return path


def run(*args: str, tmp_path: Path, env: dict[str, str]) -> Result:
    return deployer(*args, home=tmp_path / "home", env=env, timeout=120)


def assert_unreachable(result: Result) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: cannot reach the Kubernetes API of context 'prod' (https://127.0.0.1:9): "
        "connection refused"
    ], result.stderr
    assert "hint: check it with: kubectl --context prod cluster-info" in result.stderr


@pytest.mark.parametrize("context", [None, "prod"])
def test_apply_without_a_reachable_cluster_is_one_line_naming_the_context(
    tmp_path: Path, env: dict[str, str], context: str | None
) -> None:
    result = run("apply", str(manifest(tmp_path, context)), tmp_path=tmp_path, env=env)
    assert_unreachable(result)
    status = run("status", tmp_path=tmp_path, env=env)
    assert "llama31-8b-instruct" not in status.stdout, "nothing recorded as deployed"


def test_diff_without_a_reachable_cluster_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    assert_unreachable(run("diff", str(manifest(tmp_path)), tmp_path=tmp_path, env=env))


def record_deployment(tmp_path: Path) -> None:
    """A kubernetes deployment as apply records it (written by the test: no cluster here)."""
    path = manifest(tmp_path)
    store = StateStore(Settings(home=tmp_path / "home", cache=tmp_path / "cache").database_url)
    store.upsert_deployment(
        "llama31-8b-instruct",
        target_kind="kubernetes",
        status=DeploymentStatus.HEALTHY,
        manifest_path=str(path),
        manifest_digest="d",
        spec_digest="s",
        endpoint="http://llama31-8b-instruct.llm.svc:8000/v1",
        served_model_name="llama31-8b-instruct",
        message="recorded by the test: no cluster can run here",
    )
    store.close()


def test_destroy_without_a_reachable_cluster_is_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    record_deployment(tmp_path)
    assert_unreachable(run("destroy", "llama31-8b-instruct", tmp_path=tmp_path, env=env))
    status = run("status", "llama31-8b-instruct", tmp_path=tmp_path, env=env)
    assert "destroyed" not in status.stdout.lower(), "a failed destroy changes no record"


def test_status_and_logs_without_a_reachable_cluster(tmp_path: Path, env: dict[str, str]) -> None:
    record_deployment(tmp_path)
    status = run("status", tmp_path=tmp_path, env=env)
    assert status.code == 0, status.output
    assert "llama31-8b-instruct" in status.stdout
    assert_unreachable(run("logs", "llama31-8b-instruct", tmp_path=tmp_path, env=env))


def test_an_unknown_context_is_one_line_listing_the_known_ones(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = run("diff", str(manifest(tmp_path, "staging")), tmp_path=tmp_path, env=env)
    assert result.code == 1, result.output
    assert "error: kubeconfig has no context 'staging'" in result.stderr
    assert "hint: known contexts: prod" in result.stderr
    assert "Traceback" not in result.output
