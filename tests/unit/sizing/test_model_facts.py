"""Model facts: these published configs give these shapes, parameter counts and KV sizes."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

import deployer.sizing
from deployer.errors import PlanError, UnsafeModelError
from deployer.hub.safetensors_header import read_header
from deployer.sizing.model_facts import (
    ModelFacts,
    estimate_parameters,
    facts_from_config,
    facts_from_folder,
)

CONFIGS = Path(deployer.sizing.__file__).parent / "configs"
DEMO = Path.home() / ".cache" / "deployer" / "demo" / "SmolLM2-135M-Instruct"


def config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return loaded


# The safetensors totals on the hub. Falcon 40B's is derived: see test_falcon_40b_count.
PARAMETERS = [
    ("llama-3.1-8b-instruct", 8_030_261_248),
    ("llama-3.1-70b-instruct", 70_553_706_496),
    ("mistral-7b-instruct-v0.1", 7_241_732_096),
    ("mistral-7b-instruct-v0.3", 7_248_023_552),
    ("mixtral-8x7b-instruct-v0.1", 46_702_792_704),
    ("falcon-7b-instruct", 6_921_720_704),
    ("falcon-40b-instruct", 41_303_293_952),
    ("bloom-7b1", 7_069_016_064),
    ("qwen2.5-7b-instruct", 7_615_616_512),
    ("qwen2.5-72b-instruct", 72_706_203_648),
    ("SmolLM2-135M-Instruct", 134_515_008),
    ("gpt2", 124_439_808),
    ("qwen3-8b", 8_190_735_360),
    ("gemma-2-9b-it", 9_241_705_984),
    ("phi-3-mini-4k-instruct", 3_821_079_552),
    ("gemma-7b", 8_537_680_896),
    ("starcoder2-7b", 7_173_923_840),
]


@pytest.mark.parametrize(("name", "expected"), PARAMETERS)
def test_estimate_matches_published_count(name: str, expected: int) -> None:
    assert estimate_parameters(config(name)) == expected


def test_falcon_40b_count() -> None:
    # The brief quoted 41,303,347,200, which is not a multiple of hidden_size (8192); every
    # Falcon 40B tensor has a dimension of 8192, so no checkpoint of it can total that.
    # The count from the architecture, tensor by tensor:
    hidden, layers, vocab, qkv = 8192, 60, 65_024, (128 + 2 * 8) * 64
    per_layer = hidden * qkv + hidden * hidden + 2 * hidden * 4 * hidden + 2 * 2 * hidden
    expected = vocab * hidden + layers * per_layer + 2 * hidden
    assert estimate_parameters(config("falcon-40b-instruct")) == expected == 41_303_293_952
    assert expected % hidden == 0


def test_pythia_1b_count() -> None:
    # The parameters only: Pythia's checkpoints may also carry persistent buffers (the causal
    # mask attention.bias, masked_bias, rotary inv_freq) that are not weights and that
    # neither transformers nor vLLM loads. Tensor by tensor:
    hidden, layers, vocab, ffn = 2048, 16, 50_304, 8192
    attention = hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden
    mlp = hidden * ffn + ffn + ffn * hidden + hidden
    per_layer = attention + mlp + 2 * 2 * hidden
    expected = 2 * vocab * hidden + layers * per_layer + 2 * hidden
    assert estimate_parameters(config("pythia-1b")) == expected == 1_011_781_632


# name, attention, layers, kv heads, head_dim, KV bytes per token in bfloat16
SHAPES = [
    ("llama-3.1-8b-instruct", "GQA", 32, 8, 128, 131_072),
    ("llama-3.1-70b-instruct", "GQA", 80, 8, 128, 327_680),
    ("mistral-7b-instruct-v0.1", "GQA", 32, 8, 128, 131_072),
    ("mistral-7b-instruct-v0.3", "GQA", 32, 8, 128, 131_072),
    ("mixtral-8x7b-instruct-v0.1", "GQA", 32, 8, 128, 131_072),
    ("falcon-7b-instruct", "MQA", 32, 1, 64, 8_192),
    ("falcon-40b-instruct", "GQA", 60, 8, 64, 122_880),
    ("bloom-7b1", "MHA", 30, 32, 128, 491_520),
    ("qwen2.5-7b-instruct", "GQA", 28, 4, 128, 57_344),
    ("qwen2.5-72b-instruct", "GQA", 80, 8, 128, 327_680),
    ("SmolLM2-135M-Instruct", "GQA", 30, 3, 64, 23_040),
    ("gpt2", "MHA", 12, 12, 64, 36_864),
    ("qwen3-8b", "GQA", 36, 8, 128, 147_456),
    # Gemma 2's explicit head_dim (256) is not hidden_size / heads (224).
    ("gemma-2-9b-it", "GQA", 42, 8, 256, 344_064),
    ("phi-3-mini-4k-instruct", "MHA", 32, 32, 96, 393_216),
    ("pythia-1b", "MHA", 16, 8, 256, 131_072),
    ("gemma-7b", "MHA", 28, 16, 256, 458_752),
    ("starcoder2-7b", "GQA", 32, 4, 128, 65_536),
]


@pytest.mark.parametrize(("name", "attention", "layers", "kv_heads", "head_dim", "kv_bf16"), SHAPES)
def test_shape_and_kv_bytes(
    name: str, attention: str, layers: int, kv_heads: int, head_dim: int, kv_bf16: int
) -> None:
    facts = facts_from_config(config(name))
    assert facts.attention == attention
    assert (facts.num_layers, facts.num_kv_heads, facts.head_dim) == (layers, kv_heads, head_dim)
    assert facts.kv_bytes_per_token(2) == kv_bf16
    assert facts.kv_bytes_per_token(4) == 2 * kv_bf16


# name, sliding_window, num_experts, experts_per_token, max_position_embeddings, tied
EXTRAS = [
    ("llama-3.1-8b-instruct", None, None, None, 131_072, False),
    ("mistral-7b-instruct-v0.1", 4096, None, None, 32_768, False),
    ("mistral-7b-instruct-v0.3", None, None, None, 32_768, False),
    ("mixtral-8x7b-instruct-v0.1", None, 8, 2, 32_768, False),
    ("falcon-7b-instruct", None, None, None, None, True),
    ("bloom-7b1", None, None, None, None, True),
    # Qwen2 ships sliding_window 131072 with use_sliding_window false: no window.
    ("qwen2.5-7b-instruct", None, None, None, 32_768, False),
    ("SmolLM2-135M-Instruct", None, None, None, 8192, True),
    ("qwen3-8b", None, None, None, 40_960, False),
    # Gemma 2 slides on every other layer; the config's window is reported as it stands.
    ("gemma-2-9b-it", 4096, None, None, 8192, True),
    ("phi-3-mini-4k-instruct", 2047, None, None, 4096, False),
    ("pythia-1b", None, None, None, 2048, False),
    ("gemma-7b", None, None, None, 8192, True),
    ("starcoder2-7b", 4096, None, None, 16_384, True),
]


@pytest.mark.parametrize(("name", "window", "experts", "per_token", "positions", "tied"), EXTRAS)
def test_window_experts_positions(
    name: str,
    window: int | None,
    experts: int | None,
    per_token: int | None,
    positions: int | None,
    tied: bool,
) -> None:
    facts = facts_from_config(config(name))
    assert facts.sliding_window == window
    assert (facts.num_experts, facts.experts_per_token) == (experts, per_token)
    assert facts.max_position_embeddings == positions
    assert facts.tie_word_embeddings is tied


def test_qwen2_window_counts_when_enabled() -> None:
    enabled = {**config("qwen2.5-7b-instruct"), "use_sliding_window": True}
    assert facts_from_config(enabled).sliding_window == 131_072


def test_llama_facts_from_config_alone() -> None:
    facts = facts_from_config(config("llama-3.1-8b-instruct"))
    assert facts == ModelFacts(
        architecture="LlamaForCausalLM",
        model_type="llama",
        num_layers=32,
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        vocab_size=128_256,
        max_position_embeddings=131_072,
        sliding_window=None,
        num_experts=None,
        experts_per_token=None,
        tie_word_embeddings=False,
        dtype="bfloat16",
        parameter_count=8_030_261_248,
        parameter_source="architecture",
        weight_bytes=2 * 8_030_261_248,
        bytes_by_dtype={"BF16": 2 * 8_030_261_248},
        needs_remote_code=False,
    )


@pytest.mark.parametrize(
    ("name", "intermediate"),
    [("falcon-7b-instruct", 4 * 4544), ("bloom-7b1", 4 * 4096), ("gpt2", 4 * 768)],
)
def test_fixed_mlp_width_is_reported(name: str, intermediate: int) -> None:
    assert facts_from_config(config(name)).intermediate_size == intermediate


@pytest.mark.parametrize(
    ("name", "dtype", "weight_bytes"),
    [
        ("mistral-7b-instruct-v0.1", "bfloat16", 2 * 7_241_732_096),
        # No torch_dtype in the config: transformers loads it as float32.
        ("bloom-7b1", "float32", 4 * 7_069_016_064),
        ("gpt2", "float32", 4 * 124_439_808),
    ],
)
def test_estimated_weight_bytes_follow_dtype(name: str, dtype: str, weight_bytes: int) -> None:
    facts = facts_from_config(config(name))
    assert facts.dtype == dtype
    assert facts.weight_bytes == weight_bytes


@pytest.mark.parametrize(
    ("value", "dtype"),
    [("bfloat16", "bfloat16"), ("torch.float16", "float16"), ("fp32", "float32")],
)
def test_dtype_is_normalized(value: str, dtype: str) -> None:
    assert facts_from_config({**config("gpt2"), "torch_dtype": value}).dtype == dtype
    assert facts_from_config({**config("gpt2"), "dtype": value}).dtype == dtype


def test_remote_code_follows_auto_map() -> None:
    assert facts_from_config(config("falcon-7b-instruct")).needs_remote_code
    assert not facts_from_config(config("llama-3.1-8b-instruct")).needs_remote_code
    custom = {**config("llama-3.1-8b-instruct"), "auto_map": {"AutoConfig": "my.Config"}}
    assert facts_from_config(custom).needs_remote_code


def test_falcon_without_multi_query_is_mha() -> None:
    mha = {**config("falcon-7b-instruct"), "multi_query": False}
    assert facts_from_config(mha).attention == "MHA"
    assert facts_from_config(mha).num_kv_heads == 71


def test_qwen3_counts_query_and_key_norms() -> None:
    # Qwen3-8B tensor by tensor: q_norm and k_norm add 2 * head_dim per layer.
    hidden, layers, vocab, head_dim, ffn = 4096, 36, 151_936, 128, 12288
    attention = 2 * hidden * 32 * head_dim + 2 * hidden * 8 * head_dim + 2 * head_dim
    per_layer = attention + 3 * hidden * ffn + 2 * hidden
    expected = 2 * vocab * hidden + layers * per_layer + hidden
    assert estimate_parameters(config("qwen3-8b")) == expected


def test_gemma2_counts_four_norms_per_layer() -> None:
    # Gemma 2 9B tensor by tensor: input, post-attention, pre- and post-feedforward norms.
    hidden, layers, vocab, head_dim, ffn = 3584, 42, 256_000, 256, 14336
    attention = 2 * hidden * 16 * head_dim + 2 * hidden * 8 * head_dim
    per_layer = attention + 3 * hidden * ffn + 4 * hidden
    expected = vocab * hidden + layers * per_layer + hidden
    assert estimate_parameters(config("gemma-2-9b-it")) == expected


def test_phi3_has_no_projection_biases() -> None:
    # transformers' Phi3Attention builds qkv_proj and o_proj without bias, whatever the config.
    biased = {**config("phi-3-mini-4k-instruct"), "attention_bias": True}
    assert estimate_parameters(biased) == 3_821_079_552


@pytest.mark.parametrize(
    ("name", "change", "removed"),
    [
        # Per layer: the q/k/v and dense biases.
        ("pythia-1b", {"attention_bias": False}, 16 * 4 * 2048),
        # Per layer: q/k/v, o_proj, c_fc and c_proj biases.
        ("starcoder2-7b", {"use_bias": False}, 32 * (4608 + 2 * 512 + 4608 + 18432 + 4608)),
    ],
)
def test_bias_flags(name: str, change: dict[str, Any], removed: int) -> None:
    assert (
        estimate_parameters(config(name)) - estimate_parameters({**config(name), **change})
        == removed
    )


def test_untied_flags_add_the_output_projection() -> None:
    untied = {**config("gemma-7b"), "tie_word_embeddings": False}
    assert estimate_parameters(untied) == 8_537_680_896 + 256_000 * 3072
    tied = {**config("pythia-1b"), "tie_word_embeddings": True}
    assert estimate_parameters(tied) == 1_011_781_632 - 50_304 * 2048


def test_qwen2_moe_counts_routed_and_shared_experts() -> None:
    # A miniature Qwen2-MoE: 2 layers, 4 experts of width 8 plus a shared expert of width 16.
    small = {
        "architectures": ["Qwen2MoeForCausalLM"],
        "model_type": "qwen2_moe",
        "hidden_size": 16,
        "intermediate_size": 32,
        "moe_intermediate_size": 8,
        "shared_expert_intermediate_size": 16,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 100,
        "tie_word_embeddings": False,
    }
    attention = 16 * 16 + 2 * 16 * 8 + 16 * 16 + (16 + 2 * 8)
    moe = 4 * 3 * 16 * 8 + 16 * 4 + 3 * 16 * 16 + 16
    expected = 2 * 100 * 16 + 2 * (attention + moe + 2 * 16) + 16
    assert estimate_parameters(small) == expected
    facts = facts_from_config(small)
    assert (facts.num_experts, facts.experts_per_token) == (4, 2)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"num_hidden_layers": None}, "num_hidden_layers"),
        ({"vocab_size": None}, "vocab_size"),
        ({"architectures": None}, "architectures"),
        ({"num_hidden_layers": "32"}, "num_hidden_layers"),
        ({"num_hidden_layers": True}, "num_hidden_layers"),
        ({"num_key_value_heads": 0}, "num_key_value_heads"),
        ({"torch_dtype": "int8"}, "torch_dtype"),
    ],
)
def test_bad_config_names_the_key(change: dict[str, Any], named: str) -> None:
    broken = {**config("llama-3.1-8b-instruct"), **change}
    broken = {key: value for key, value in broken.items() if value is not None}
    with pytest.raises(PlanError, match=named) as caught:
        facts_from_config(broken)
    assert caught.value.hint


def test_missing_layers_is_named_by_estimate_too() -> None:
    broken = {
        k: v for k, v in config("mistral-7b-instruct-v0.1").items() if k != "num_hidden_layers"
    }
    with pytest.raises(PlanError, match="'num_hidden_layers'"):
        estimate_parameters(broken)


def test_unknown_model_type_needs_headers() -> None:
    unknown = {**config("llama-3.1-8b-instruct"), "model_type": "mamba"}
    with pytest.raises(PlanError, match="mamba") as caught:
        estimate_parameters(unknown)
    assert caught.value.hint is not None
    assert "safetensors" in caught.value.hint


# --- folders -----------------------------------------------------------------------------------


def test_demo_folder_counts_from_safetensors() -> None:
    assert DEMO.is_dir(), "the demo model is not prepared: run ./setup.sh"
    facts = facts_from_folder(DEMO)
    header = read_header(DEMO / "model.safetensors")
    assert facts.parameter_source == "safetensors"
    assert (
        facts.parameter_count == 134_515_008 == estimate_parameters(config("SmolLM2-135M-Instruct"))
    )
    assert facts.weight_bytes == sum(info.nbytes for info in header.tensors.values())
    assert facts.bytes_by_dtype == header.bytes_by_dtype
    assert facts.kv_bytes_per_token(2) == 23_040


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file of zeros; ``tensors`` maps names to (dtype, shape)."""
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = sizes[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def test_folder_sums_shards_and_skips_consolidated(tmp_path: Path) -> None:
    shutil.copy(CONFIGS / "gpt2.json", tmp_path / "config.json")
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("F32", [4, 8])})
    write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {"b": ("BF16", [8]), "c": ("F32", [2])}
    )
    write_safetensors(tmp_path / "consolidated.safetensors", {"a": ("F32", [100])})
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    facts = facts_from_folder(tmp_path)
    assert facts.parameter_source == "safetensors"
    assert facts.parameter_count == 32 + 8 + 2
    assert facts.bytes_by_dtype == {"F32": 4 * 34, "BF16": 16}
    assert facts.weight_bytes == 4 * 34 + 16


def test_folder_without_dtype_takes_the_weights_dtype(tmp_path: Path) -> None:
    shutil.copy(CONFIGS / "bloom-7b1.json", tmp_path / "config.json")
    write_safetensors(tmp_path / "model.safetensors", {"a": ("F16", [64]), "b": ("F32", [2])})
    assert facts_from_folder(tmp_path).dtype == "float16"


def test_folder_without_weights_estimates(tmp_path: Path) -> None:
    shutil.copy(CONFIGS / "mistral-7b-instruct-v0.3.json", tmp_path / "config.json")
    facts = facts_from_folder(tmp_path)
    assert facts.parameter_source == "architecture"
    assert facts.parameter_count == 7_248_023_552


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"config\.json"):
        facts_from_folder(tmp_path)


def test_folder_with_broken_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(PlanError, match="JSON"):
        facts_from_folder(tmp_path)


def test_folder_with_a_renamed_pickle(tmp_path: Path) -> None:
    shutil.copy(CONFIGS / "gpt2.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04" + bytes(64))
    with pytest.raises(UnsafeModelError):
        facts_from_folder(tmp_path)


@pytest.mark.parametrize(
    ("name", "changes", "sliding"),
    [
        ("gemma-2-9b-it", {}, 21),  # every other one of 42 layers
        ("gemma-2-9b-it", {"layer_types": ["sliding_attention", "full_attention"] * 21}, 21),
        ("gemma-2-9b-it", {"layer_types": ["full_attention"] * 42}, 0),
        ("mistral-7b-instruct-v0.1", {}, None),  # every layer windowed
        ("llama-3.1-8b-instruct", {}, None),  # no window
    ],
)
def test_which_layers_apply_the_window(
    name: str, changes: dict[str, Any], sliding: int | None
) -> None:
    assert facts_from_config({**config(name), **changes}).sliding_layers == sliding


# The config keys of layouts the planner does not model, as DeepSeek V2/V3, Llama 4, Jamba,
# Qwen3-Next, Nemotron-H and Llama 3.2 Vision publish them, on Llama 3.1 8B's shape (8 KV heads
# of 128: the plan counts 2,048 K and V values per layer and token).
UNMODELLED = [
    pytest.param(
        {"kv_lora_rank": 512, "qk_rope_head_dim": 64},
        "multi-head latent attention (kv_lora_rank 512) is not modelled: vLLM's "
        "MLAAttentionSpec caches 576 values per layer and token where the plan counts 2048, "
        "so the planned KV tokens and concurrency may be 3.6x too low",
        id="deepseek-mla",
    ),
    pytest.param(
        {"attention_chunk_size": 8192},
        "chunked local attention (8,192-token chunks) is not modelled",
        id="llama4-chunked",
    ),
    pytest.param(
        {"layers_block_type": ["mamba"] * 28 + ["attention"] * 4},
        "28 of 32 layers are state-space or linear attention, not modelled: vLLM keeps a fixed "
        "state per request for them (MambaSpec) where the plan counts KV per token, so the "
        "planned KV tokens may be off either way, by up to 8.0x",
        id="jamba-mamba",
    ),
    pytest.param(
        {"layer_types": ["linear_attention"] * 24 + ["full_attention"] * 8},
        "24 of 32 layers are state-space or linear attention",
        id="qwen3-next-linear",
    ),
    pytest.param(
        {"hybrid_override_pattern": "M-M-M*-" + "M" * 2},
        "5 of 32 layers are state-space or linear attention",
        id="nemotron-h-pattern",
    ),
    pytest.param(
        {"cross_attention_layers": [3, 8, 13]},
        "cross-attention to an encoder is not modelled",
        id="mllama-cross",
    ),
]


@pytest.mark.parametrize(("extra", "note"), UNMODELLED)
def test_a_layout_the_planner_does_not_model_is_named_with_its_error(
    extra: dict[str, Any], note: str
) -> None:
    facts = facts_from_config({**config("llama-3.1-8b-instruct"), **extra})
    assert len(facts.unmodelled) == 1
    assert note in facts.unmodelled[0]


@pytest.mark.parametrize("name", [name for name, _ in PARAMETERS])
def test_the_families_deployer_models_have_no_unmodelled_layout(name: str) -> None:
    assert facts_from_config(config(name)).unmodelled == ()
