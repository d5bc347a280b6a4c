"""vLLM's memory arithmetic: these shapes on these accelerators give this fit, or this refusal."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pytest

from deployer.engines.vllm.memory import (
    BLOCK_SIZE,
    activation_peak_bytes,
    assumed_decode_throughput,
    block_size_for,
    default_max_num_batched_tokens,
    fit,
    kv_bytes_per_token_per_device,
    kv_layout,
    quantized_weight_bytes,
)
from deployer.errors import PlanError
from deployer.sizing.accelerators import GiB, MiB, cpu_accelerator, lookup


@dataclass(frozen=True)
class Shape:
    """A stand-in for ``ModelFacts`` with just what ``memory.ModelShape`` reads."""

    num_layers: int
    hidden_size: int
    intermediate_size: int | None
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    parameter_count: int
    weight_bytes: int
    sliding_window: int | None = None
    num_experts: int | None = None
    experts_per_token: int | None = None
    dtype: str = "bfloat16"
    sliding_layers: int | None = None

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes


SMOLLM2_135M = Shape(30, 576, 1536, 9, 3, 64, 49152, 134_515_008, 269_030_016)
LLAMA_8B = Shape(32, 4096, 14336, 32, 8, 128, 128256, 8_030_000_000, 16_060_000_000)
LLAMA_70B = Shape(80, 8192, 28672, 64, 8, 128, 128256, 70_550_000_000, 141_100_000_000)


# --- KV tokens and concurrency: the CPU log on this machine ---------------------------------


def kv_tokens(kv_bytes: int, per_token: int, block_size: int = BLOCK_SIZE) -> int:
    """The pool's tokens for one group of layers, as the planner counts them."""
    layout = kv_layout(SMOLLM2_135M, 2048, block_size, 0)
    return layout.pool_tokens(layout.num_blocks(kv_bytes, per_token, block_size), block_size)


def max_concurrency(
    tokens: int,
    max_model_len: int,
    window: int | None = None,
    *,
    block_size: int = BLOCK_SIZE,
    in_flight_tokens: int = 0,
) -> float:
    """vLLM's concurrency for a pool of ``tokens``: its blocks over one request's blocks, with
    every layer windowed by ``window`` (or none)."""
    shape = dataclasses.replace(SMOLLM2_135M, sliding_window=window)
    layout = kv_layout(shape, max_model_len, block_size, in_flight_tokens)
    return (tokens // block_size) / layout.blocks_per_request


def test_smollm2_kv_bytes_per_token_is_23040() -> None:
    assert SMOLLM2_135M.kv_bytes_per_token(2) == 23040


@pytest.mark.parametrize(
    ("kv_bytes", "per_token", "tokens"),
    [
        # vLLM CPU log: "CPU KV cache size: 23,296 tokens" for 512 MiB and SmolLM2-135M.
        (512 * MiB, 23040, 23_296),
        (16 * 23040 - 1, 23040, 0),  # less than one block
        (16 * 23040, 23040, 16),
        (0, 23040, 0),
        (-5, 23040, 0),
    ],
)
def test_kv_tokens_counts_whole_blocks(kv_bytes: int, per_token: int, tokens: int) -> None:
    assert kv_tokens(kv_bytes, per_token) == tokens


@pytest.mark.parametrize(
    ("tokens", "max_model_len", "window", "in_flight", "expected"),
    [
        # "Maximum concurrency for 2,048 tokens per request: 11.38x"
        (23_296, 2048, None, 0, 11.375),
        (23_296, 2000, None, 0, 1456 / 125),  # 2000 tokens take 125 whole blocks
        (8192, 8192, None, 0, 1.0),
        # window 4096 within 32k: cdiv(4095 + 0, 16) + 1 = 257 blocks per request
        (257 * 16, 32768, 4096, 0, 1.0),
        # a window at or above the context still costs one more block: cdiv(2048, 16) + 1 = 129
        # (issue 13: the CPU build logged 240.94x, 4,096 blocks of 128 / 17, for Mistral's 4096
        # window at maxModelLen 2048)
        (257 * 16, 2048, 4096, 0, 257 / 129),
    ],
)
def test_max_concurrency(
    tokens: int, max_model_len: int, window: int | None, in_flight: int, expected: float
) -> None:
    result = max_concurrency(tokens, max_model_len, window, in_flight_tokens=in_flight)
    assert result == pytest.approx(expected, abs=1e-9)


def test_concurrency_prints_like_vllm() -> None:
    assert f"{max_concurrency(23_296, 2048):.2f}x" in {"11.38x", "11.37x"}
    assert f"{kv_tokens(512 * MiB, 23040):,}" == "23,296"


def test_cpu_fit_reproduces_the_engine_log() -> None:
    result = fit(
        SMOLLM2_135M,
        cpu_accelerator(24 * GiB),
        max_model_len=2048,
        kv_cache_bytes=512 * MiB,
    )
    assert result.kv_tokens == 23_296
    assert result.max_concurrency == pytest.approx(11.375)
    assert (result.count, result.tensor_parallel) == (1, 1)
    assert result.breakdown.kv_cache == 512 * MiB
    assert result.breakdown.cuda_graphs == 0
    labels = [row[0] for row in result.breakdown.rows()]
    assert labels == [
        "budget",
        "weights",
        "activation peak",
        "CUDA graphs",
        "non-torch",
        "KV cache",
    ]


def test_cpu_needs_an_explicit_kv_cache_size() -> None:
    with pytest.raises(PlanError, match="explicit KV cache size") as raised:
        fit(SMOLLM2_135M, cpu_accelerator(24 * GiB), max_model_len=2048)
    assert "kv_cache_bytes" in (raised.value.hint or "")


def test_cpu_uses_the_cpu_builds_block_size() -> None:
    # Measured on this machine: a 6-layer Qwen2 (3,072 B/token) with 64 MiB logs 21,760 tokens,
    # 170 blocks of 128; blocks of 16 would give 21,840.
    assert kv_tokens(64 * MiB, 3072, block_size_for(cpu_accelerator(24 * GiB))) == 21760
    assert block_size_for(lookup("L4")) == 16


def test_cpu_refuses_a_kv_cache_larger_than_the_host() -> None:
    with pytest.raises(PlanError, match=r"CPU has 4\.0 GiB"):
        fit(SMOLLM2_135M, cpu_accelerator(4 * GiB), max_model_len=2048, kv_cache_bytes=4 * GiB)


def test_cpu_refuses_too_small_a_pool_and_suggests_a_length() -> None:
    with pytest.raises(PlanError) as raised:
        fit(SMOLLM2_135M, cpu_accelerator(24 * GiB), max_model_len=32768, kv_cache_bytes=64 * MiB)
    # The CPU build's blocks hold 128 tokens: 64 MiB / (128 x 23040 B) = 22 blocks = 2816 tokens
    assert "2,816 tokens" in str(raised.value)
    assert "maxModelLen 2,048 fits" in (raised.value.hint or "")


# --- GPUs ----------------------------------------------------------------------------------------


def test_llama_8b_fits_one_l4() -> None:
    result = fit(LLAMA_8B, lookup("L4"), count=1, max_model_len=8192)
    assert (result.count, result.tensor_parallel) == (1, 1)
    b = result.breakdown
    assert b.budget == pytest.approx(0.9 * lookup("L4").memory_bytes, abs=1)
    assert b.weights == 16_060_000_000
    assert b.kv_cache == b.budget - b.weights - b.activation_peak - b.cuda_graphs - b.non_torch
    # About 3.3 GiB of KV at 128 KiB per token.
    assert 8192 < result.kv_tokens < 32_768
    assert result.kv_tokens == kv_tokens(b.kv_cache, LLAMA_8B.kv_bytes_per_token(2))
    assert result.max_concurrency == pytest.approx(result.kv_tokens / 8192)


def test_llama_70b_bf16_refused_on_two_l40s_with_numbers_and_a_fit() -> None:
    with pytest.raises(PlanError) as raised:
        fit(LLAMA_70B, lookup("L40S"), count=2, max_model_len=8192, model_name="Llama-3.1-70B")
    # 141.1e9 B = 131.4 GiB; 2 x 46,068 MiB x 0.9 = 81.0 GiB.
    assert str(raised.value) == (
        "Llama-3.1-70B needs 131.4 GiB of bfloat16 weights; 2 x L40S give 81.0 GiB at "
        "0.90 utilization"
    )
    assert raised.value.hint == (
        "4 x L40S (tensor parallel 4), or quantize: fp8 (67.7 GiB) fits 2 x L40S"
    )


def test_llama_70b_fp8_fits_two_l40s() -> None:
    # fp8 quantizes the linear layers, 80 x 855.6M = 68.45e9 params -> 1 B each; embeddings and
    # lm_head (2 x 128256 x 8192 = 2.1e9 params) stay bf16: 72.6e9 B = 67.7 GiB, 33.8 GiB per
    # L40S at tensor parallel 2, inside the 40.5 GiB budget with about 4 GiB left for KV.
    weights = quantized_weight_bytes(LLAMA_70B, "fp8")
    assert weights == pytest.approx(72.65e9, rel=1e-3)
    result = fit(LLAMA_70B, lookup("L40S"), count=2, max_model_len=8192, quantization="fp8")
    assert result.tensor_parallel == 2
    assert result.kv_tokens > 8192
    assert any("fp8 weights estimated" in note for note in result.notes)


@pytest.mark.parametrize(
    ("max_model_len", "tensor_parallel"),
    [
        (8192, 2),  # 65.7 GiB of weights per H100 leaves about 2.5 GiB: ~16k tokens
        (131_072, 4),  # a 128k request needs 20 GiB of KV per device at tp 2: tp 4
    ],
)
def test_llama_70b_on_h100_picks_the_smallest_tensor_parallel(
    max_model_len: int, tensor_parallel: int
) -> None:
    result = fit(LLAMA_70B, lookup("H100"), max_model_len=max_model_len)
    assert result.tensor_parallel == tensor_parallel
    assert result.count == tensor_parallel
    assert LLAMA_70B.num_attention_heads % result.tensor_parallel == 0
    assert result.kv_tokens >= max_model_len


def test_kv_too_small_suggests_a_shorter_context_and_more_devices() -> None:
    with pytest.raises(PlanError) as raised:
        fit(LLAMA_70B, lookup("H100"), count=2, max_model_len=131_072)
    message, hint = str(raised.value), raised.value.hint or ""
    assert "maxModelLen 131,072 needs 20.0 GiB of KV cache per device" in message
    assert "2 x H100-80GB (tensor parallel 2)" in message
    fits = re.search(r"maxModelLen ([\d,]+) fits", hint)
    assert fits is not None
    assert 8192 <= int(fits.group(1).replace(",", "")) < 131_072
    assert "4 x H100-80GB (tensor parallel 4)" in hint


def test_count_larger_than_tensor_parallel_means_replicas() -> None:
    result = fit(LLAMA_8B, lookup("H100"), count=4, max_model_len=8192)
    assert (result.count, result.tensor_parallel) == (4, 1)
    assert "4 replicas of tensor parallel 1" in result.notes


@pytest.mark.parametrize(
    ("accelerator", "kwargs", "message", "hint"),
    [
        (
            "A100",
            {"quantization": "fp8"},
            "fp8 needs an Ada or Hopper GPU",
            "int8 or w4a16",
        ),
        ("T4", {"dtype": "bfloat16"}, "T4 (turing) does not run bfloat16", "float16"),
        (
            "H100",
            {"tensor_parallel": 3},
            "tensor parallel 3 does not divide the model's 64 attention heads",
            "1, 2, 4 or 8",
        ),
        ("H100", {"tensor_parallel": 4, "count": 2}, "needs a multiple of 4", "count"),
        ("H100", {"quantization": "awq"}, "unknown quantization", "w4a16"),
        ("H100", {"gpu_memory_utilization": 1.5}, "gpuMemoryUtilization", "0.9"),
    ],
)
def test_refusals(accelerator: str, kwargs: dict[str, object], message: str, hint: str) -> None:
    with pytest.raises(PlanError) as raised:
        fit(LLAMA_70B, lookup(accelerator), max_model_len=8192, **kwargs)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert hint in (raised.value.hint or "")
    assert "\n" not in str(raised.value)


def test_t4_runs_float16() -> None:
    result = fit(
        dataclasses.replace(LLAMA_8B, num_layers=4, parameter_count=10**9, weight_bytes=2 * 10**9),
        lookup("T4"),
        dtype="float16",
        max_model_len=4096,
    )
    assert result.tensor_parallel == 1


def test_fp8_fits_where_bf16_does_not_on_one_l4() -> None:
    with pytest.raises(PlanError):
        fit(LLAMA_8B, lookup("L4"), count=1, max_model_len=131_072)
    result = fit(LLAMA_8B, lookup("L4"), count=1, quantization="fp8", max_model_len=32768)
    assert result.kv_tokens >= 32768


def test_bf16_70b_on_eight_t4s_hint_names_quantization() -> None:
    with pytest.raises(PlanError) as raised:
        fit(LLAMA_70B, lookup("T4"), dtype="float16", max_model_len=8192)
    assert "8 x T4 give" in str(raised.value)
    # int8 halves the weights to 67.7 GiB: 8.5 GiB per T4 of the 13.5 GiB budget.
    assert "quantize: int8 (67.7 GiB) fits 8 x T4" in (raised.value.hint or "")


def test_explicit_kv_cache_on_a_gpu_ignores_utilization_and_is_checked() -> None:
    result = fit(LLAMA_8B, lookup("H100"), max_model_len=8192, kv_cache_bytes=4 * GiB)
    assert result.breakdown.kv_cache == 4 * GiB
    assert result.breakdown.budget == lookup("H100").memory_bytes
    assert result.kv_tokens == kv_tokens(4 * GiB, LLAMA_8B.kv_bytes_per_token(2))
    with pytest.raises(PlanError, match="does not fit") as raised:
        fit(LLAMA_8B, lookup("L4"), count=1, max_model_len=8192, kv_cache_bytes=16 * GiB)
    assert "kv_cache_bytes" in (raised.value.hint or "")


# --- the pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor_parallel", "per_token"),
    [
        (1, 2 * 80 * 8 * 128 * 2),
        (2, 2 * 80 * 4 * 128 * 2),
        (8, 2 * 80 * 1 * 128 * 2),
        # 8 KV heads on 16 devices: vLLM replicates, one head per device
        (16, 2 * 80 * 1 * 128 * 2),
    ],
)
def test_kv_heads_split_then_replicate(tensor_parallel: int, per_token: int) -> None:
    assert kv_bytes_per_token_per_device(LLAMA_70B, 2, tensor_parallel) == per_token


@pytest.mark.parametrize(
    ("quantization", "dtype_bytes", "expected"),
    [
        ("none", 2, 141_100_000_000),
        ("none", 4, 282_200_000_000),  # served in float32
        ("int8", 2, 72_648_958_720),
        ("w4a16", 2, 39_492_985_600),
    ],
)
def test_quantized_weight_bytes(quantization: str, dtype_bytes: int, expected: int) -> None:
    assert quantized_weight_bytes(LLAMA_70B, quantization, dtype_bytes) == pytest.approx(
        expected, rel=1e-6
    )


def test_activation_peak_formula() -> None:
    # N x 2 x (4h + (H + 2K)d + 3I) + S x V x 8 for Llama-3-8B, N = 8192, S = 256
    expected = 8192 * 2 * (4 * 4096 + 48 * 128 + 3 * 14336) + 256 * 128256 * 8
    peak = activation_peak_bytes(
        LLAMA_8B, tensor_parallel=1, max_num_batched_tokens=8192, max_num_seqs=256
    )
    assert peak == expected


@pytest.mark.parametrize(
    ("name", "tokens"),
    [("H200", 8192), ("H100", 8192), ("MI300X", 16384), ("A100", 2048), ("L4", 2048)],
)
def test_default_batched_tokens_follow_vllm(name: str, tokens: int) -> None:
    assert default_max_num_batched_tokens(lookup(name)) == tokens


def test_assumed_decode_throughput_is_bandwidth_bound() -> None:
    # 300 GB/s x 0.6 / 16.06 GB per step = 11.2 steps/s; x 8 sequences = 89.7 tokens/s
    tps = assumed_decode_throughput(LLAMA_8B, lookup("L4"), 1, 8)
    assert tps == pytest.approx(8 * 300e9 * 0.6 / 16.06e9)
    assert assumed_decode_throughput(LLAMA_70B, lookup("H100"), 4, 1) == pytest.approx(
        2 * assumed_decode_throughput(LLAMA_70B, lookup("H100"), 2, 1)
    )
    assert assumed_decode_throughput(LLAMA_8B, lookup("L4"), 1, 0) == 0.0


def test_block_size_is_vllms_default() -> None:
    assert BLOCK_SIZE == 16


def test_a_window_at_or_above_the_context_matches_the_cpu_builds_log() -> None:
    """Issue 13's measurement: a tiny Mistral with a 4096 window at maxModelLen 2048 on the CPU
    build (blocks of 128) got 4,096 blocks and logged "Maximum concurrency ... 240.94x"."""
    concurrency = max_concurrency(4096 * 128, 2048, 4096, block_size=128)
    assert round(concurrency, 2) == 240.94


TINY_GEMMA2 = Shape(
    num_layers=4,
    hidden_size=256,
    intermediate_size=512,
    num_attention_heads=4,
    num_kv_heads=1,
    head_dim=256,
    vocab_size=49152,
    parameter_count=14_000_000,
    weight_bytes=28_000_000,
    sliding_window=4096,
    sliding_layers=2,
)


def test_interleaved_windows_share_one_pool_as_vllm_lays_them_out() -> None:
    """Issue 13's measurement: a 4-layer Gemma 2 (two windowed layers, two full) at 2,048
    tokens on the CPU build logged 248.24x. vLLM's hybrid manager makes two groups of two
    layers, a block of 128 tokens of one group's layers, and a request takes 16 blocks for the
    full group and 17 for the windowed one: 8,192 / 33. Treating every layer as windowed (the
    old plan) gave 4,096 / 17 = 240.94x."""
    full_blocks = 4096
    kv_bytes = full_blocks * 128 * TINY_GEMMA2.kv_bytes_per_token(2)
    result = fit(
        TINY_GEMMA2, cpu_accelerator(24 * GiB), max_model_len=2048, kv_cache_bytes=kv_bytes
    )
    assert round(result.max_concurrency, 2) == 248.24
    assert result.kv_tokens == full_blocks * 128  # the pool, across all layers
    layout = kv_layout(TINY_GEMMA2, 2048, 128, 0)
    assert (layout.group_layers, layout.blocks_per_request) == (2, 33)


@pytest.mark.parametrize(
    ("full", "sliding", "group"),
    [
        (1, 5, 1),  # Gemma 3's 5:1: six groups of one layer
        (12, 13, 13),  # close counts: the larger one (gpt-oss-20b's 12 + 13 -> 13)
        (10, 20, 10),  # 1:2, three groups of ten
    ],
)
def test_hybrid_group_sizes(full: int, sliding: int, group: int) -> None:
    shape = Shape(
        num_layers=full + sliding,
        hidden_size=256,
        intermediate_size=512,
        num_attention_heads=4,
        num_kv_heads=1,
        head_dim=64,
        vocab_size=1000,
        parameter_count=1,
        weight_bytes=2,
        sliding_window=512,
        sliding_layers=sliding,
    )
    layout = kv_layout(shape, 4096, 16, 0)
    assert layout.group_layers == group
    window_blocks = -(-511 // 16) + 1
    expected = -(-full // group) * 256 + -(-sliding // group) * window_blocks
    assert layout.blocks_per_request == expected
