"""Recipes: the manifest's choices and the model's dimensions give this recipe, or a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.errors import PlanError
from deployer.manifest.models import QuantizeSpec
from deployer.quantize.recipe import build_recipe, quantized_input_dims

#: SmolLM2-135M's config: hidden 576 (not a multiple of 128), intermediate 1536.
SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9}
#: Llama 3.1 8B's: every dimension a multiple of 128.
LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32}


def spec(**fields: Any) -> QuantizeSpec:
    return QuantizeSpec.model_validate(fields)


def test_int8_is_smoothquant_then_gptq_with_dynamic_token_activations() -> None:
    recipe = build_recipe(spec(method="int8"), SMOLLM2)

    assert recipe.describe() == "int8 (smoothquant 0.8 + gptq)"
    group = recipe.as_json()["config_group"]
    assert group == {
        "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
        "input_activations": {
            "num_bits": 8,
            "type": "int",
            "symmetric": True,
            "strategy": "token",
            "dynamic": True,
        },
    }
    assert recipe.as_json()["ignore"] == ["lm_head"]


def test_w4a16_auto_group_size_takes_the_largest_that_divides() -> None:
    assert build_recipe(spec(method="w4a16"), SMOLLM2).group_size == 64
    assert build_recipe(spec(method="w4a16"), LLAMA_8B).group_size == 128


def test_w4a16_keeps_activations_in_16_bit() -> None:
    recipe = build_recipe(spec(method="w4a16", groupSize=32, algorithm="rtn"), SMOLLM2)

    assert recipe.describe() == "w4a16 (rtn, group 32)"
    assert "input_activations" not in recipe.as_json()["config_group"]  # type: ignore[operator]


def test_a_group_size_that_does_not_divide_the_model_is_refused_before_quantizing() -> None:
    with pytest.raises(PlanError) as caught:
        build_recipe(spec(method="w4a16", groupSize=128), SMOLLM2)

    assert caught.value.message == (
        "spec.quantize.groupSize 128 does not divide the model's hidden_size 576: every "
        "quantized layer's input must split into whole groups"
    )
    assert caught.value.hint == "use groupSize: 64 (or auto)"


def test_no_auto_group_size_fits_odd_dimensions() -> None:
    with pytest.raises(PlanError, match="no group size of 128, 64, 32 divides") as caught:
        build_recipe(spec(method="w4a16"), {"hidden_size": 100, "intermediate_size": 300})

    assert caught.value.hint is not None


def test_the_dimensions_a_recipe_quantizes() -> None:
    config = {**SMOLLM2, "head_dim": 64}

    assert quantized_input_dims(config) == {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_attention_heads x head_dim": 576,
    }


def test_fp8_is_not_a_recipe_of_deployer() -> None:
    with pytest.raises(PlanError, match="does not quantize method fp8"):
        build_recipe(spec(method="fp8"), SMOLLM2)
