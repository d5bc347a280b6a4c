"""From ``spec.quantize`` and the model's dimensions to a checked quantization recipe. Pure.

The recipe is what the worker turns into llmcompressor modifiers, and it is part of the
artifact's cache key, so every choice deployer makes for the user (the group size, SmoothQuant's
strength, the layers left alone) is written into it explicitly: a default that changes in a
later release makes a new key instead of silently reusing an artifact made another way.

What runs where (measured on the vLLM CPU build, see REAL_COMPONENTS.md): W8A8 int8 and W4A16
load as compressed-tensors checkpoints without a flag. A group size that does not divide a
quantized layer's input dimension does not load, so it is refused here, before minutes of
calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deployer.errors import PlanError
from deployer.manifest.models import QuantizeSpec

#: Group sizes tried, largest first, for ``groupSize: auto``.
AUTO_GROUP_SIZES = (128, 64, 32)
DEFAULT_SMOOTHING_STRENGTH = 0.8
#: Layers never quantized: the output head (tied to the embeddings in small models) is the
#: most sensitive layer and a small share of the weights.
IGNORED_LAYERS = ("lm_head",)
#: Bumped when the worker changes how it quantizes or measures, so old artifacts are not reused.
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class Recipe:
    """A quantization recipe with every choice explicit."""

    method: str
    algorithm: str
    weight_bits: int
    activation_bits: int | None
    group_size: int | None
    smoothing_strength: float | None
    ignore: tuple[str, ...] = IGNORED_LAYERS

    def describe(self) -> str:
        """``w4a16 (gptq, group 64)``, ``int8 (smoothquant 0.8 + gptq)``."""
        parts = [self.algorithm]
        if self.smoothing_strength is not None:
            parts.insert(0, f"smoothquant {self.smoothing_strength:g} +")
        if self.group_size is not None:
            parts[-1] += f", group {self.group_size}"
        return f"{self.method} ({' '.join(parts)})"

    def as_json(self) -> dict[str, object]:
        """What the worker reads and the cache key hashes: llmcompressor's own vocabulary."""
        weights: dict[str, object] = {
            "num_bits": self.weight_bits,
            "type": "int",
            "symmetric": True,
            "strategy": "group" if self.group_size else "channel",
        }
        if self.group_size:
            weights["group_size"] = self.group_size
        group: dict[str, object] = {"weights": weights}
        if self.activation_bits is not None:
            group["input_activations"] = {
                "num_bits": self.activation_bits,
                "type": "int",
                "symmetric": True,
                "strategy": "token",
                "dynamic": True,
            }
        return {
            "format": RECIPE_FORMAT,
            "method": self.method,
            "algorithm": self.algorithm,
            "smoothing_strength": self.smoothing_strength,
            "config_group": group,
            "ignore": list(self.ignore),
        }


def build_recipe(spec: QuantizeSpec, config: Mapping[str, object]) -> Recipe:
    """The recipe for ``spec`` on the model whose ``config.json`` is ``config``.

    Raises :class:`PlanError` (one line with the dimensions and a hint) when the group size does
    not divide a dimension the recipe quantizes, or the method is not one deployer quantizes.
    """
    if spec.method == "int8":
        return Recipe(
            method="int8",
            algorithm=spec.algorithm,
            weight_bits=8,
            activation_bits=8,
            group_size=None,
            smoothing_strength=spec.smoothing_strength or DEFAULT_SMOOTHING_STRENGTH,
        )
    if spec.method == "w4a16":
        return Recipe(
            method="w4a16",
            algorithm=spec.algorithm,
            weight_bits=4,
            activation_bits=None,
            group_size=_group_size(spec.group_size, quantized_input_dims(config)),
            smoothing_strength=None,
        )
    raise PlanError(
        f"deployer does not quantize method {spec.method} itself",
        hint="int8 and w4a16 are quantized by deployer; fp8 is done by the engine on the GPU",
    )


def quantized_input_dims(config: Mapping[str, object]) -> dict[str, int]:
    """The input dimensions of the linear layers a recipe quantizes, by a name for messages.

    Groups run along a layer's input: q/k/v, gate and up take the hidden size; o_proj takes
    heads x head_dim; down_proj takes the intermediate size. Missing keys are left out.
    """
    dims: dict[str, int] = {}
    hidden = _int(config, "hidden_size", "n_embd", "d_model")
    if hidden:
        dims["hidden_size"] = hidden
    intermediate = _int(config, "intermediate_size", "ffn_hidden_size", "n_inner")
    if intermediate:
        dims["intermediate_size"] = intermediate
    heads = _int(config, "num_attention_heads", "n_head")
    head_dim = _int(config, "head_dim")
    if heads and head_dim:
        dims["num_attention_heads x head_dim"] = heads * head_dim
    return dims


def _group_size(requested: int | str, dims: Mapping[str, int]) -> int:
    if requested == "auto":
        for size in AUTO_GROUP_SIZES:
            if all(value % size == 0 for value in dims.values()):
                return size
        raise PlanError(
            "no group size of " + ", ".join(map(str, AUTO_GROUP_SIZES)) + " divides the "
            "model's dimensions " + _describe(dims),
            hint="set spec.quantize.groupSize to a divisor of every dimension listed",
        )
    size = int(requested)
    bad = {name: value for name, value in dims.items() if value % size}
    if bad:
        fits = [s for s in (*AUTO_GROUP_SIZES, 16) if all(v % s == 0 for v in dims.values())]
        raise PlanError(
            f"spec.quantize.groupSize {size} does not divide the model's {_describe(bad)}: "
            "every quantized layer's input must split into whole groups",
            hint=f"use groupSize: {fits[0]} (or auto)" if fits else "use groupSize: auto",
        )
    return size


def _describe(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {value}" for name, value in dims.items())


def _int(config: Mapping[str, object], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
