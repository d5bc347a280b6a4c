"""The Kubernetes target's rollback after a failed smoke gate: the ``helm rollback`` it runs and
the error when Helm cannot. No Kubernetes API server can run on these machines, so ``helm`` here
is a stand-in script that records its arguments (and fails when asked to); the real helm's
upgrade is exercised in tests/integration/test_kube_apply.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import EngineStartError
from deployer.events import EventBus
from deployer.kube.helm import Helm
from deployer.manifest.models import KubernetesTargetSpec
from deployer.settings import Settings
from deployer.targets.base import RollsBack
from deployer.targets.kubernetes.target import ROLLBACK_TIMEOUT, KubernetesTarget


def target(tmp_path: Path, *, fails: bool) -> tuple[KubernetesTarget, Path]:
    record = tmp_path / "argv"
    script = tmp_path / "helm"
    failure = "echo 'Error: release: not found' >&2; exit 1" if fails else "echo ok"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n{failure}\n')
    script.chmod(0o755)
    spec = KubernetesTargetSpec.model_validate(
        {"kind": "kubernetes", "namespace": "demo", "context": "prod"}
    )
    made = KubernetesTarget(spec, Settings(home=tmp_path / "home", cache=tmp_path / "cache"))
    made._helm = Helm(path=script, version="v3.19.0", source="test")
    return made, record


def test_roll_back_runs_helm_rollback_to_the_previous_revision_and_waits(tmp_path: Path) -> None:
    kube, record = target(tmp_path, fails=False)
    assert isinstance(kube, RollsBack)

    serving = kube.roll_back("smollm2-k8s", EventBus())

    assert record.read_text().split() == [
        "--namespace", "demo", "--kube-context", "prod",
        "rollback", "smollm2-k8s", "--wait", "--timeout", f"{ROLLBACK_TIMEOUT}s",
    ]  # fmt: skip
    assert serving == "helm release smollm2-k8s's previous revision"


def test_a_rollback_helm_refuses_is_one_error_naming_the_release(tmp_path: Path) -> None:
    kube, _ = target(tmp_path, fails=True)

    with pytest.raises(EngineStartError) as failed:
        kube.roll_back("smollm2-k8s", EventBus())

    assert failed.value.message == "helm could not roll smollm2-k8s back in demo"
    assert failed.value.hint == "helm --namespace demo history smollm2-k8s"
    assert "release: not found" in (failed.value.details or "")
