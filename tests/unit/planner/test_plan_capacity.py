"""Plans with capacity: these manifests and these model facts give these placements, or these
refusals with numbers (pure: the published configs shipped with deployer, the catalog GPUs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deployer import api
from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, make_plan
from deployer.settings import Settings
from deployer.sizing.accelerators import cpu_accelerator, lookup
from deployer.sizing.catalog import builtin_config, known_repos
from deployer.sizing.model_facts import facts_from_config

GiB = 1024**3
ROOT = Path(__file__).resolve().parents[3]


def shape(repo: str) -> Any:
    config = builtin_config(repo)
    assert config is not None
    return facts_from_config(config)


def manifest(repo: str, **spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": {
                "model": {"source": "huggingface", "repo": repo},
                "target": {"kind": "kubernetes"},
                **spec,
            },
        }
    )


def facts(repo: str, accelerator: str) -> Facts:
    device = "cpu" if accelerator == "cpu" else "cuda"
    return Facts(
        device=device,
        model_path="/models/x",
        model_fingerprint="f",
        port=8000,
        engine_package="vllm",
        engine_version="0.32.0",
        api_key_source="generated",
        api_key_digest="d",
        model_shape=shape(repo),
        model_shape_source="test",
        accelerator_spec=cpu_accelerator(24 * GiB) if device == "cpu" else lookup(accelerator),
    )


PLACEMENTS = [
    # repo, resources, serving, expected (accelerator, count, tensor parallel)
    (
        "meta-llama/Llama-3.1-8B-Instruct",
        {"accelerator": "L4"},
        {"maxModelLen": 8192},
        ("L4", 1, 1),
    ),
    (
        "meta-llama/Llama-3.1-70B-Instruct",
        {"accelerator": "H100"},
        {"maxModelLen": 8192},
        ("H100-80GB", 2, 2),
    ),
    (
        "meta-llama/Llama-3.1-70B-Instruct",
        {"accelerator": "L40S"},
        {"maxModelLen": 8192},
        ("L40S", 4, 4),
    ),
    (
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        {"accelerator": "A100-80GB"},
        {"maxModelLen": 4096},
        ("A100-80GB", 2, 2),
    ),
    ("Qwen/Qwen2.5-72B-Instruct", {"accelerator": "H200"}, {"maxModelLen": 16384}, ("H200", 2, 2)),
    ("tiiuae/falcon-7b-instruct", {"accelerator": "A10G"}, {"maxModelLen": 2048}, ("A10G", 1, 1)),
]


@pytest.mark.parametrize(("repo", "resources", "serving", "expected"), PLACEMENTS)
def test_the_smallest_placement_that_fits(
    repo: str, resources: dict[str, Any], serving: dict[str, Any], expected: tuple[str, int, int]
) -> None:
    deployment = manifest(repo, resources=resources, serving=serving)
    plan = make_plan(deployment, facts(repo, resources["accelerator"]))
    capacity = plan.capacity
    assert capacity is not None
    assert (capacity.accelerator, capacity.count, capacity.tensor_parallel) == expected
    assert plan.tensor_parallel_size == expected[2]
    assert (f"--tensor-parallel-size {expected[2]}" in " ".join(plan.engine.args)) == (
        expected[2] > 1
    )
    assert capacity.kv_tokens >= serving["maxModelLen"]
    assert capacity.max_concurrency >= 1
    assert {row.item for row in capacity.memory_per_device} >= {"budget", "weights", "KV cache"}


@pytest.mark.parametrize(
    ("repo", "resources", "spec", "message", "hint"),
    [
        pytest.param(
            "meta-llama/Llama-3.1-70B-Instruct",
            {"accelerator": "L40S", "count": 2},
            {"serving": {"maxModelLen": 8192}},
            "GiB of bfloat16 weights",
            "fp8",
            id="70b-on-two-l40s",
        ),
        pytest.param(
            "meta-llama/Llama-3.1-8B-Instruct",
            {"accelerator": "A100-40GB"},
            {"quantize": {"method": "fp8"}},
            "fp8",
            "Ada",
            id="fp8-on-ampere",
        ),
        pytest.param(
            "meta-llama/Llama-3.1-8B-Instruct",
            {"accelerator": "T4"},
            {"serving": {"dtype": "bfloat16"}},
            "bfloat16",
            "float16",
            id="bf16-on-t4",
        ),
        pytest.param(
            "meta-llama/Llama-3.1-70B-Instruct",
            {"accelerator": "H100", "count": 4},
            {"serving": {"tensorParallelSize": 3}},
            "does not divide the model's 64 attention heads",
            "",
            id="heads-not-divisible",
        ),
    ],
)
def test_an_impossible_request_is_refused_with_numbers(
    repo: str, resources: dict[str, Any], spec: dict[str, Any], message: str, hint: str
) -> None:
    deployment = manifest(repo, resources=resources, **spec)
    with pytest.raises(PlanError) as refused:
        make_plan(deployment, facts(repo, resources["accelerator"]))
    assert message in refused.value.message
    assert hint in (refused.value.hint or "") + refused.value.message


def test_the_demo_on_the_cpu_matches_what_vllm_logs() -> None:
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "demo"},
            "spec": {
                "model": {"source": "local", "path": "/m"},
                "serving": {"dtype": "bfloat16", "maxModelLen": 2048, "kvCacheMemory": "512MiB"},
                "resources": {"accelerator": "cpu"},
            },
        }
    )
    base = facts("HuggingFaceTB/SmolLM2-135M-Instruct", "cpu")
    plan = make_plan(deployment, dataclasses.replace(base, device="cpu"))
    assert plan.capacity is not None
    # Logged by the real vLLM CPU build: "CPU KV cache size: 23,296 tokens, Maximum
    # concurrency for 2,048 tokens per request: 11.38x".
    assert plan.capacity.kv_tokens == 23296
    assert plan.capacity.max_concurrency == pytest.approx(11.38, abs=0.01)
    assert plan.capacity.kv_bytes_per_token == 23040
    assert plan.capacity.kv_cache_size_tokens == 23296  # a multiple of the block: the same
    assert plan.capacity.kv_blocks == 182  # its /metrics: vllm:cache_config_info num_gpu_blocks
    assert "in the pool" not in plan.capacity.verdict


def test_a_context_off_the_block_size_gives_vllms_kv_cache_size_beside_the_pool() -> None:
    """maxModelLen 2000 takes 16 blocks of 128 per request: vLLM logs concurrency x context
    (11.375 x 2000: "KV cache size: 22,750 tokens"), less than the pool's 182 blocks."""
    deployment = ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "demo"},
            "spec": {
                "model": {"source": "local", "path": "/m"},
                "serving": {"dtype": "bfloat16", "maxModelLen": 2000, "kvCacheMemory": "512MiB"},
                "resources": {"accelerator": "cpu"},
            },
        }
    )
    plan = make_plan(deployment, facts("HuggingFaceTB/SmolLM2-135M-Instruct", "cpu"))
    assert plan.capacity is not None
    assert plan.capacity.kv_tokens == 182 * 128
    assert plan.capacity.max_concurrency == 11.38
    assert plan.capacity.kv_cache_size_tokens == 22_750
    verdict = plan.capacity.verdict
    assert (
        '23,296 KV-cache tokens in the pool (vLLM logs it as "KV cache size: 22,750 tokens")'
        in (verdict)
    )


def test_an_interleaved_layout_is_planned_as_one_shared_pool() -> None:
    """Gemma 2 windows 21 of its 42 layers: vLLM's hybrid layout, named in a note, gives more
    concurrency than treating every layer as windowed would."""
    gemma = shape("google/gemma-2-9b-it")
    assert (gemma.sliding_window, gemma.sliding_layers) == (4096, 21)
    spec = {"resources": {"accelerator": "L4"}, "serving": {"maxModelLen": 8192}}
    plan = make_plan(manifest("google/gemma-2-9b-it", **spec), facts("google/gemma-2-9b-it", "L4"))
    assert plan.capacity is not None
    assert "21 of 42 layers use a 4,096-token window, the rest full attention" in " ".join(
        plan.capacity.notes
    )
    uniform = dataclasses.replace(gemma, sliding_layers=None)
    base = facts("google/gemma-2-9b-it", "L4")
    as_if_all_windowed = make_plan(
        manifest("google/gemma-2-9b-it", **spec), dataclasses.replace(base, model_shape=uniform)
    )
    assert as_if_all_windowed.capacity is not None
    assert plan.capacity.max_concurrency != as_if_all_windowed.capacity.max_concurrency
    assert shape("mistralai/Mistral-7B-Instruct-v0.1").sliding_layers is None  # all windowed


@pytest.mark.parametrize(
    "path",
    sorted(
        p for p in (ROOT / "model_manifests").rglob("*.yaml") if not p.name.endswith(".lock.yaml")
    ),
    ids=lambda p: p.name,
)
def test_every_example_plans_offline_with_a_verdict(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no hub: planning is offline
    settings = Settings(home=tmp_path / "home", cache=Path.home() / ".cache" / "deployer")
    plan = api.plan(path, settings)
    assert plan.capacity is not None, plan.notes
    assert plan.capacity.kv_tokens >= plan.capacity.max_model_len
    assert plan.capacity.verdict.startswith("fits on ")


def test_the_manifest_price_overrides_the_catalog() -> None:
    repo = "meta-llama/Llama-3.1-8B-Instruct"
    listed = make_plan(manifest(repo, resources={"accelerator": "L4"}), facts(repo, "L4"))
    own = make_plan(
        manifest(repo, resources={"accelerator": "L4", "hourlyPrice": 0.4}), facts(repo, "L4")
    )
    assert listed.capacity is not None
    assert own.capacity is not None
    assert own.capacity.cost_per_hour_usd == pytest.approx(0.4 * own.capacity.count)
    assert own.capacity.cost_per_million_tokens_usd == pytest.approx(
        listed.capacity.cost_per_million_tokens_usd
        * own.capacity.cost_per_hour_usd
        / listed.capacity.cost_per_hour_usd
    )


@pytest.mark.parametrize("repo", known_repos())
def test_every_catalog_model_has_facts(repo: str) -> None:
    facts = shape(repo)
    assert facts.parameter_count > 0
    assert facts.kv_bytes_per_token(2) > 0


def test_a_mixture_of_experts_and_an_unmodelled_layout_are_named_in_the_notes() -> None:
    repo = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    spec = {"resources": {"accelerator": "A100-80GB"}, "serving": {"maxModelLen": 4096}}
    plan = make_plan(manifest(repo, **spec), facts(repo, "A100-80GB"))
    assert plan.capacity is not None
    notes = " ".join(plan.capacity.notes)
    assert "mixture of experts: 8 experts, 2 per token; every expert's weights are loaded" in notes
    assert "not modelled" not in notes
    caveat = "chunked local attention (8,192-token chunks) is not modelled: ..."
    base = facts(repo, "A100-80GB")
    shaped = dataclasses.replace(base.model_shape, unmodelled=(caveat,))
    flagged = make_plan(manifest(repo, **spec), dataclasses.replace(base, model_shape=shaped))
    assert flagged.capacity is not None
    assert caveat in flagged.capacity.notes
