"""Planning for llama.cpp: ``spec.serving`` is a union on ``engine``; llama.cpp's argv, key
variable, health path and refusals (pure; the real server is in tests/integration)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deployer.errors import ManifestError, PlanError
from deployer.kube.values import chart_values
from deployer.manifest.loader import load_manifest
from deployer.manifest.models import LlamaCppServingSpec, ModelDeployment, ServingSpec
from deployer.planner import Facts, make_plan

FACTS = Facts(
    device="cpu",
    model_path="/models/smollm2.Q4_1.gguf",
    model_fingerprint="sha256:2222",
    port=8012,
    engine_package="llama-cpp-python",
    engine_version="0.3.36",
    api_key_source="generated",
    api_key_digest="digest-of-key",
)


def manifest(serving: dict[str, Any], target: dict[str, Any] | None = None) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "tiny"},
            "spec": {
                "model": {"source": "local", "path": "/models/smollm2.Q4_1.gguf"},
                "serving": serving,
                "resources": {"accelerator": "cpu"},
                **({"target": target} if target else {}),
            },
        }
    )


def test_serving_is_vllm_unless_it_says_llamacpp() -> None:
    assert isinstance(manifest({}).spec.serving, ServingSpec)
    assert isinstance(manifest({"engine": "llamacpp"}).spec.serving, LlamaCppServingSpec)


def test_a_vllm_setting_under_llamacpp_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec:\n  model: {source: local, path: m.gguf}\n  serving:\n    engine: llamacpp\n"
        "    tensorParallelSize: 2\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    assert problem.location == f"{path}:8:5"
    assert "tensorParallelSize" in problem.message


def test_the_plan_runs_llamas_server_with_the_key_in_its_variable() -> None:
    plan = make_plan(manifest({"engine": "llamacpp", "maxModelLen": 4096, "threads": 2}), FACTS)
    assert plan.engine.module == "llama_cpp.server"
    assert plan.engine.args == [
        "--model", "/models/smollm2.Q4_1.gguf", "--model_alias", "tiny", "--host", "127.0.0.1",
        "--port", "8012", "--n_ctx", "4096", "--n_threads", "2", "--n_threads_batch", "2",
        "--logits_all", "false",
    ]  # fmt: skip
    assert plan.engine.api_key_env == "API_KEY"
    assert plan.engine.health_path == "/v1/models"
    assert plan.step("ready").reason == "wait for /v1/models"
    assert "PORT" in plan.engine.env_remove
    assert "API_KEY" not in plan.engine.env_remove


def test_llamacpp_needs_a_gguf_file_and_the_cpu() -> None:
    with pytest.raises(PlanError, match=r"serves a \.gguf file"):
        make_plan(manifest({"engine": "llamacpp"}), dataclasses.replace(FACTS, model_path="/m"))
    with pytest.raises(PlanError, match="on CPUs"):
        make_plan(manifest({"engine": "llamacpp"}), dataclasses.replace(FACTS, device="cuda"))


def test_a_setting_in_env_the_server_would_read_over_its_flags_is_refused() -> None:
    with pytest.raises(PlanError, match=r"spec.serving.env.PORT: llama_cpp.server reads it"):
        make_plan(manifest({"engine": "llamacpp", "env": {"PORT": "9"}}), FACTS)


def test_the_chart_refuses_llamacpp() -> None:
    deployment = manifest({"engine": "llamacpp"}, {"kind": "kubernetes"})
    plan = make_plan(deployment, FACTS)
    with pytest.raises(PlanError, match="the model-server chart runs vLLM"):
        chart_values(deployment, plan, None)
