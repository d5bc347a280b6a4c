"""vLLM's memory arithmetic: what fits where, and how many tokens its KV cache holds.

Pure: numbers in, a :class:`Fit` or a :class:`~deployer.errors.PlanError` out. The budgeting follows
vLLM 0.32 (read in the CPU build's source; the GPU worker is the same package):

1. Budget per device = total memory x ``gpu_memory_utilization``
   (``vllm/v1/worker/utils.py``, ``request_memory``).
2. The worker loads the weights, runs one dummy forward pass of ``max_num_batched_tokens`` tokens
   plus a dummy sampler pass, and measures the peak (``vllm/v1/worker/gpu_worker.py``,
   ``Worker.determine_available_memory``; ``vllm/utils/mem_utils.py``, ``memory_profiling``:
   non-KV memory = weights + activation peak + non-torch memory). Since v0.21 it also profiles
   CUDA-graph memory and subtracts it (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``, default on).
3. KV cache = budget - non-KV memory, or exactly ``--kv-cache-memory-bytes`` when given (then
   vLLM skips the budget and ignores ``gpu_memory_utilization``). On the CPU backend
   (``vllm/v1/worker/cpu_worker.py``, ``CPUWorker.determine_available_memory``) the explicit size
   is the whole story: it is only checked against the host's available memory.
4. Blocks = KV bytes // (block_size x bytes per token) and a request at ``max_model_len`` needs
   ``cdiv(max_model_len, block_size)`` blocks (``vllm/v1/core/kv_cache_utils.py``,
   ``get_kv_cache_config_from_groups`` and ``get_max_concurrency_for_kv_cache_config``;
   ``vllm/v1/kv_cache_interface.py``, ``FullAttentionSpec.max_memory_usage_bytes``). vLLM refuses
   to start when the pool holds fewer blocks than one such request
   (``_check_enough_kv_cache_memory``).

Steps 1, 3 and 4 are vLLM's own arithmetic. The activation peak, CUDA graphs and non-torch memory
of step 2 are measured by vLLM at start-up; here they are estimates, labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from deployer.errors import PlanError
from deployer.sizing.accelerators import Accelerator, GiB, MiB
from deployer.units import human_bytes

#: vLLM's default KV block size in tokens
#: (``vllm/config/cache.py``, ``CacheConfig.DEFAULT_BLOCK_SIZE``).
BLOCK_SIZE = 16
#: The CPU build's default block size: ``vllm/platforms/cpu.py`` ``check_and_update_config`` sets
#: ``block_size = 128`` when none is given (checked here: 64 MiB of a 6-layer Qwen2 at 3,072
#: B/token is logged as 21,760 tokens = 170 blocks of 128, not 1,365 blocks of 16).
CPU_BLOCK_SIZE = 128


def block_size_for(accelerator: Accelerator) -> int:
    """The KV block size vLLM uses on ``accelerator`` when the manifest does not set one."""
    return CPU_BLOCK_SIZE if accelerator.vendor == "cpu" else BLOCK_SIZE


#: Quantization methods and how many bytes a linear layer's parameter takes after them.
#: fp8 and int8 store one byte per weight plus a per-channel scale (negligible). w4a16 stores half
#: a byte plus one 16-bit scale per group of 128 weights (GPTQ/AWQ's usual group size).
W4A16_GROUP_SIZE = 128
LINEAR_BYTES_PER_PARAM: dict[str, float] = {
    "fp8": 1.0,
    "int8": 1.0,
    "w4a16": 0.5 + 2 / W4A16_GROUP_SIZE,
}
QUANTIZATIONS = ("none", *LINEAR_BYTES_PER_PARAM)

#: Bytes per element of the dtypes a manifest can serve in.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}

#: Estimate: memory the captured CUDA graphs keep per GPU. vLLM measures it at start-up
#: (``GPUModelRunner.profile_cudagraph_memory``); its logs show about 0.3 to 1 GiB for 7B to 70B
#: models with the default capture sizes. Zero with ``enforce_eager`` and on the CPU.
CUDA_GRAPHS_BYTES = 1 * GiB

#: Estimate: memory a GPU worker uses outside torch's allocator (cuBLAS workspaces, attention
#: backend buffers), and the extra NCCL buffers when tensor parallel > 1.
NON_TORCH_BYTES = 512 * MiB
NCCL_BYTES = 512 * MiB

#: Measured on the CPU build here: Python, torch and the API server take about 1.4 GiB besides
#: weights and KV cache (2.2 GiB peak for SmolLM2-135M with a 512 MiB KV cache).
CPU_RUNTIME_BYTES = 1536 * MiB

#: Tensor-parallel sizes tried, smallest first.
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)

#: Assumption for :func:`assumed_decode_throughput`: the share of peak memory bandwidth a decode
#: step achieves (kernels rarely exceed 60 to 80%).
DECODE_BANDWIDTH_EFFICIENCY = 0.6


class ModelShape(Protocol):
    """The model facts this module reads (``deployer.sizing.model_facts.ModelFacts`` has them)."""

    @property
    def num_layers(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def intermediate_size(self) -> int | None: ...
    @property
    def num_attention_heads(self) -> int: ...
    @property
    def num_kv_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def sliding_window(self) -> int | None: ...
    @property
    def sliding_layers(self) -> int | None: ...
    @property
    def num_experts(self) -> int | None: ...
    @property
    def experts_per_token(self) -> int | None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def parameter_count(self) -> int: ...
    @property
    def weight_bytes(self) -> int: ...

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V bytes one token takes across all layers, unsharded."""
        ...


@dataclass(frozen=True)
class KVLayout:
    """How vLLM's KV cache manager lays a model's layers out in its one block pool.

    Every layer windowed or none: one group of all layers, a block holds ``block_size`` tokens
    of every layer. Some layers windowed and the rest not (Gemma 2): the hybrid manager
    (``kv_cache_utils.py``, ``_get_kv_cache_groups_uniform_page_size``) splits each kind into
    groups of ``group_layers`` layers (the smaller kind's count, or the larger's when it is less
    than 1.5 times that), a block holds ``block_size`` tokens of one group's layers
    (``_get_kv_cache_bytes_per_block``), and a request takes blocks from every group out of the
    same pool (``get_max_concurrency_for_kv_cache_config``: the sum over groups).
    """

    group_layers: int
    num_layers: int
    blocks_per_request: int

    def bytes_per_block(self, bytes_per_token: int, block_size: int) -> int:
        """One block: ``block_size`` tokens of one group's layers (``bytes_per_token`` is all
        layers')."""
        return block_size * bytes_per_token * self.group_layers // self.num_layers

    def num_blocks(self, kv_cache_bytes: int, bytes_per_token: int, block_size: int) -> int:
        """Blocks a pool of ``kv_cache_bytes`` holds: ``available_memory // page_size``
        (``kv_cache_utils.py``, ``get_kv_cache_config_from_groups``). Checked against the CPU
        build here: 512 MiB for SmolLM2-135M (23,040 B/token in bf16) gives 1,456 blocks of 16,
        logged as "23,296 tokens"."""
        per_block = self.bytes_per_block(bytes_per_token, block_size)
        return kv_cache_bytes // per_block if per_block > 0 and kv_cache_bytes > 0 else 0

    def pool_tokens(self, num_blocks: int, block_size: int) -> int:
        """The pool's tokens, counted across all layers (as for a model of one group)."""
        return num_blocks * block_size * self.group_layers // self.num_layers


def kv_layout(
    model: ModelShape, max_model_len: int, block_size: int, in_flight_tokens: int
) -> KVLayout:
    """The layout of ``model``'s KV cache at ``max_model_len`` (see :class:`KVLayout`)."""
    layers, window, sliding = model.num_layers, model.sliding_window, model.sliding_layers
    if window is None or not sliding:
        # One group: every layer windowed (sliding None) or none (no window, or 0 windowed).
        uniform = window if sliding is None else None
        per_request = _blocks_per_request(max_model_len, uniform, block_size, in_flight_tokens)
        return KVLayout(group_layers=layers, num_layers=layers, blocks_per_request=per_request)
    full = layers - sliding
    group = min(full, sliding)
    if max(full, sliding) < group * 1.5:
        group = max(full, sliding)
    per_request = -(-full // group) * _blocks_per_request(
        max_model_len, None, block_size, in_flight_tokens
    ) + -(-sliding // group) * _blocks_per_request(
        max_model_len, window, block_size, in_flight_tokens
    )
    return KVLayout(group_layers=group, num_layers=layers, blocks_per_request=per_request)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Where one device's memory goes, in bytes."""

    budget: int
    weights: int
    activation_peak: int
    cuda_graphs: int
    non_torch: int
    kv_cache: int
    kv_cache_given: bool = False
    cpu: bool = False

    def rows(self) -> list[tuple[str, int, str]]:
        """``(label, bytes, where the number comes from)`` for a table, budget first."""
        if self.cpu:
            budget_note = "host memory (the KV cache size is explicit)"
            non_torch_note = "measured: Python, torch and the API server"
        elif self.kv_cache_given:
            budget_note = "device memory (kv_cache_bytes given: utilization not applied)"
            non_torch_note = "estimate: CUDA context buffers, cuBLAS, NCCL"
        else:
            budget_note = "memory x gpu_memory_utilization (vLLM request_memory)"
            non_torch_note = "estimate: CUDA context buffers, cuBLAS, NCCL"
        kv_note = (
            "kv_cache_bytes as given (--kv-cache-memory-bytes)"
            if self.kv_cache_given
            else "budget - the rest (vLLM determine_available_memory)"
        )
        return [
            ("budget", self.budget, budget_note),
            ("weights", self.weights, "checkpoint or quantized size / tensor parallel"),
            ("activation peak", self.activation_peak, "estimate of vLLM's profile run"),
            ("CUDA graphs", self.cuda_graphs, "estimate; vLLM profiles it at start-up"),
            ("non-torch", self.non_torch, non_torch_note),
            ("KV cache", self.kv_cache, kv_note),
        ]

    @property
    def used(self) -> int:
        return self.weights + self.activation_peak + self.cuda_graphs + self.non_torch


@dataclass(frozen=True)
class Fit:
    """A placement that works: ``count`` devices, ``tensor_parallel`` of them per replica."""

    accelerator: Accelerator
    count: int
    tensor_parallel: int
    breakdown: MemoryBreakdown
    kv_tokens: int
    kv_blocks: int
    """The pool's blocks per device: vLLM's ``num_gpu_blocks`` (on a CPU too)."""
    max_concurrency: float
    notes: list[str] = field(default_factory=list)


def fit(
    model: ModelShape,
    accelerator: Accelerator,
    *,
    max_model_len: int,
    count: int | None = None,
    tensor_parallel: int | None = None,
    quantization: str = "none",
    dtype: str = "bfloat16",
    weight_dtype_bytes: float | None = None,
    kv_dtype_bytes: int | None = None,
    gpu_memory_utilization: float = 0.9,
    kv_cache_bytes: int | None = None,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int | None = None,
    enforce_eager: bool = False,
    model_name: str = "the model",
    weight_bytes: int | None = None,
) -> Fit:
    """Place ``model`` on ``count`` x ``accelerator`` (``None``: as few as work, up to 8).

    ``tensor_parallel=None`` picks the smallest of 1, 2, 4, 8 (at most ``count`` and dividing it)
    that divides the attention heads and leaves a KV pool for at least one request of
    ``max_model_len`` tokens; ``count`` above that size means ``count / tensor_parallel`` replicas.
    ``weight_dtype_bytes`` and ``kv_dtype_bytes`` default to ``dtype``'s width (vLLM's
    ``kv_cache_dtype=auto``). On the CPU, ``kv_cache_bytes`` is required (the CPU build fails
    without ``--kv-cache-memory-bytes``) and there is one device. ``weight_bytes`` is the
    weights' measured size when a quantized checkpoint exists (instead of the estimate from
    ``quantization``).

    Raises :class:`PlanError` (one line with the numbers and a hint naming what would fit) when
    the dtype or quantization does not run on the accelerator, the heads do not divide, the
    weights do not fit, or the KV pool is smaller than one request.
    """
    req = _Request(
        model=model,
        accelerator=accelerator,
        quantization=quantization,
        dtype=dtype,
        weight_dtype_bytes=(
            weight_dtype_bytes if weight_dtype_bytes is not None else DTYPE_BYTES.get(dtype, 2)
        ),
        kv_dtype_bytes=kv_dtype_bytes if kv_dtype_bytes is not None else DTYPE_BYTES.get(dtype, 2),
        max_model_len=max_model_len,
        utilization=gpu_memory_utilization,
        kv_cache_bytes=kv_cache_bytes,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enforce_eager=enforce_eager,
        model_name=model_name,
        weight_bytes=weight_bytes,
    )
    _check_inputs(req, count, tensor_parallel)
    if accelerator.vendor == "cpu":
        return _fit_cpu(req, count, tensor_parallel)
    return _fit_gpu(req, count, tensor_parallel)


def quantized_weight_bytes(
    model: ModelShape, quantization: str, weight_dtype_bytes: float = 2
) -> int:
    """Bytes of all weights after ``quantization`` (an approximation for the quantized methods).

    ``"none"``: the checkpoint's ``weight_bytes`` as vLLM loads it, rescaled when served in another
    float width (an fp32 checkpoint served in bf16 takes half); a checkpoint already quantized
    (compressed-tensors) is loaded as it is. fp8, int8 and w4a16 quantize the linear layers
    (attention q/k/v/o and the MLP or experts); embeddings, lm_head and norms stay at
    ``weight_dtype_bytes``. Linear parameters are counted from the shape
    (``L x (2·h·H·d + 2·h·K·d + 3·h·I·E)``), the rest is ``parameter_count`` minus that.
    """
    if quantization == "none":
        checkpoint = DTYPE_BYTES.get(model.dtype)
        if checkpoint is None:
            return model.weight_bytes
        return round(model.weight_bytes * weight_dtype_bytes / checkpoint)
    linear = min(_linear_parameters(model), model.parameter_count)
    rest = model.parameter_count - linear
    return round(linear * LINEAR_BYTES_PER_PARAM[quantization] + rest * weight_dtype_bytes)


def activation_peak_bytes(
    model: ModelShape,
    *,
    tensor_parallel: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    activation_bytes: int = 2,
) -> int:
    """Estimate of the activation peak vLLM's profile run measures on one device.

    The profile run pushes ``N = max_num_batched_tokens`` dummy tokens through the model and then
    samples for up to ``max_num_seqs`` of them (``GPUModelRunner.profile_run``). Layers run one
    after another, so the peak is one layer's live tensors plus the sampler's logits:

    ``N x b x (4·h + (H + 2·K)·d / t + 3·I·k / t)  +  min(S, N) x V x 4 x 2``

    (residual, norm output, attention output and hidden state; q/k/v; the gate-up output and the
    activation; ``k`` experts per token for MoE; logits and probabilities in fp32). For
    Llama-3-8B with N = 8192 and S = 256 this gives 1.24 GiB. Attention workspaces and
    backend-specific buffers are not modelled.
    """
    h, t = model.hidden_size, tensor_parallel
    experts = model.experts_per_token if model.num_experts and model.experts_per_token else 1
    qkv = (model.num_attention_heads + 2 * model.num_kv_heads) * model.head_dim
    per_token = 4 * h + qkv / t + 3 * _mlp_width(model) * experts / t
    layer = max_num_batched_tokens * activation_bytes * per_token
    sampler = min(max_num_seqs, max_num_batched_tokens) * model.vocab_size * 4 * 2
    return math.ceil(layer + sampler)


def default_max_num_batched_tokens(accelerator: Accelerator, tensor_parallel: int = 1) -> int:
    """vLLM's OpenAI-server default for ``max_num_batched_tokens`` on this accelerator.

    ``vllm/engine/arg_utils.py``, ``EngineArgs.get_batch_defaults``: 16384 on devices of
    160 GiB or more, 8192 from 70 GiB (but not A100), else 2048; on the CPU 2048 x world size.
    """
    if accelerator.vendor == "cpu":
        return 2048 * tensor_parallel
    if accelerator.memory_bytes >= 160 * GiB:
        return 16384
    if accelerator.memory_bytes >= 70 * GiB and "a100" not in accelerator.name.lower():
        return 8192
    return 2048


def kv_bytes_per_token_per_device(
    model: ModelShape, kv_dtype_bytes: int, tensor_parallel: int
) -> int:
    """KV bytes per token on one device: the KV heads are split over tensor parallel ranks.

    vLLM keeps ``max(1, num_kv_heads // tp)`` heads per rank (``vllm/config/model.py``,
    ``ModelConfig.get_num_kv_heads``): with fewer KV heads than ranks they are replicated.
    """
    heads = model.num_kv_heads
    per_device = max(1, heads // tensor_parallel)
    return model.kv_bytes_per_token(kv_dtype_bytes) * per_device // heads


def assumed_decode_throughput(
    model: ModelShape,
    accelerator: Accelerator,
    tensor_parallel: int,
    concurrency: float,
    *,
    weight_bytes: int | None = None,
) -> float:
    """An assumption, not a measurement: decode tokens/s when memory bandwidth is the limit.

    Each decode step reads every weight once, spread over ``tensor_parallel`` devices, and yields
    one token per running sequence:
    ``concurrency x bandwidth x t x DECODE_BANDWIDTH_EFFICIENCY / weight_bytes``.
    It ignores KV-cache reads (which grow with context), compute limits at large batches and
    communication between ranks, so treat it as optimistic; benchmark for real numbers.
    ``weight_bytes`` defaults to the checkpoint's (pass the quantized size when quantizing).
    """
    weights = weight_bytes if weight_bytes is not None else model.weight_bytes
    if weights <= 0 or concurrency <= 0:
        return 0.0
    bandwidth = accelerator.bandwidth_gb_s * 1e9 * tensor_parallel * DECODE_BANDWIDTH_EFFICIENCY
    return concurrency * bandwidth / weights


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    model: ModelShape
    accelerator: Accelerator
    quantization: str
    dtype: str
    weight_dtype_bytes: float
    kv_dtype_bytes: int
    max_model_len: int
    utilization: float
    kv_cache_bytes: int | None
    max_num_seqs: int
    max_num_batched_tokens: int | None
    enforce_eager: bool
    model_name: str
    #: Measured bytes of a quantized checkpoint; None: estimate from ``quantization``.
    weight_bytes: int | None = None

    def with_quantization(self, quantization: str) -> _Request:
        return _Request(**{**self.__dict__, "quantization": quantization, "weight_bytes": None})


@dataclass(frozen=True)
class _Attempt:
    tensor_parallel: int
    breakdown: MemoryBreakdown
    total_weights: int
    room: int
    kv_per_token: int
    kv_tokens: int
    blocks_per_request: int
    block_size: int = BLOCK_SIZE
    #: Blocks in the pool and the bytes of one (all layers of a group: see KVLayout).
    num_blocks: int = 0
    bytes_per_block: int = 0

    @property
    def weights_fit(self) -> bool:
        """Weights, activations and the runtime leave some memory for a KV cache."""
        return self.room > 0

    @property
    def kv_given_fits(self) -> bool:
        return self.room >= self.breakdown.kv_cache

    @property
    def fits(self) -> bool:
        return (
            self.weights_fit and self.kv_given_fits and self.num_blocks >= self.blocks_per_request
        )


def _check_inputs(req: _Request, count: int | None, tensor_parallel: int | None) -> None:
    acc = req.accelerator
    if req.quantization not in QUANTIZATIONS:
        raise PlanError(
            f"unknown quantization {req.quantization!r}",
            hint=f"use one of: {', '.join(QUANTIZATIONS)}",
        )
    if req.max_model_len < 1:
        raise PlanError(f"maxModelLen must be positive, got {req.max_model_len}")
    if not 0 < req.utilization <= 1:
        raise PlanError(
            f"gpuMemoryUtilization must be in (0, 1], got {req.utilization}",
            hint="0.9 is vLLM's default",
        )
    if count is not None and count < 1:
        raise PlanError(f"count must be at least 1, got {count}")
    if not acc.supports_dtype(req.dtype):
        alternative = "float16" if acc.supports_dtype("float16") else "float32"
        raise PlanError(
            f"{acc.name} ({acc.architecture}) does not run {req.dtype}",
            hint=f"use dtype {alternative}",
        )
    if not acc.supports_quantization(req.quantization):
        if req.quantization == "fp8":
            message = (
                f"fp8 needs an Ada or Hopper GPU (L4, L40S, RTX-4090, H100, H200) or an MI300X; "
                f"{acc.name} is {acc.architecture}"
            )
        else:
            message = f"{acc.name} ({acc.architecture}) does not run {req.quantization}"
        others = sorted(acc.quantization)
        hint = f"use quantization {' or '.join(others)}" if others else "use quantization none"
        raise PlanError(message, hint=f"{hint}, or an accelerator that runs {req.quantization}")
    heads = req.model.num_attention_heads
    if tensor_parallel is not None:
        if tensor_parallel < 1 or heads % tensor_parallel:
            divisors = [t for t in TENSOR_PARALLEL_SIZES if heads % t == 0]
            raise PlanError(
                f"tensor parallel {tensor_parallel} does not divide the model's {heads} "
                "attention heads",
                hint=f"use tensor parallel {_either(divisors)}",
            )
        if count is not None and count % tensor_parallel:
            raise PlanError(
                f"tensor parallel {tensor_parallel} needs a multiple of {tensor_parallel} "
                f"devices, got count {count}",
                hint=f"set count to {tensor_parallel} or lower tensor parallel",
            )


def _fit_cpu(req: _Request, count: int | None, tensor_parallel: int | None) -> Fit:
    acc = req.accelerator
    if (count or 1) != 1 or (tensor_parallel or 1) != 1:
        raise PlanError(
            "the CPU target runs one engine on one host (count 1, tensor parallel 1)",
            hint="remove count and tensorParallelSize, or use a GPU target",
        )
    if req.kv_cache_bytes is None:
        raise PlanError(
            "the CPU build of vLLM needs an explicit KV cache size",
            hint="pass kv_cache_bytes (vLLM's --kv-cache-memory-bytes), e.g. 512 MiB",
        )
    attempt = _attempt(req, 1)
    b = attempt.breakdown
    if not attempt.weights_fit or not attempt.kv_given_fits:
        raise PlanError(
            f"{req.model_name} needs {human_bytes(b.weights)} of {_weights_label(req)} weights, "
            f"{human_bytes(b.kv_cache)} of KV cache and about "
            f"{human_bytes(b.activation_peak + b.non_torch)} for activations and the runtime; "
            f"{acc.name} has {human_bytes(b.budget)}",
            hint="lower kv_cache_bytes, quantize (int8 or w4a16), or use a larger host",
        )
    if not attempt.fits:
        raise _kv_error(req, attempt, count=1, hint_more=None)
    return _result(req, attempt, count=1)


def _fit_gpu(req: _Request, count: int | None, tensor_parallel: int | None) -> Fit:
    limit = count if count is not None else TENSOR_PARALLEL_SIZES[-1]
    if tensor_parallel is not None:
        candidates: list[int] = [tensor_parallel]
    else:
        candidates = [
            t
            for t in TENSOR_PARALLEL_SIZES
            if t <= limit and req.model.num_attention_heads % t == 0 and limit % t == 0
        ]
    attempts = [_attempt(req, t) for t in candidates]
    for attempt in attempts:
        if attempt.fits:
            return _result(
                req, attempt, count=count if count is not None else attempt.tensor_parallel
            )
    roomy = [a for a in attempts if a.weights_fit]
    if roomy:
        best = roomy[-1]
        more = _first_fit(req, [t for t in TENSOR_PARALLEL_SIZES if t > best.tensor_parallel])
        raise _kv_error(req, best, count=count or best.tensor_parallel, hint_more=more)
    raise _weights_error(req, attempts[-1], count=count or attempts[-1].tensor_parallel)


def _attempt(req: _Request, tensor_parallel: int) -> _Attempt:
    model, acc, t = req.model, req.accelerator, tensor_parallel
    cpu = acc.vendor == "cpu"
    total_weights = (
        req.weight_bytes
        if req.weight_bytes is not None
        else quantized_weight_bytes(model, req.quantization, req.weight_dtype_bytes)
    )
    weights = math.ceil(total_weights / t)
    batched = req.max_num_batched_tokens or default_max_num_batched_tokens(acc, t)
    activation = activation_peak_bytes(
        model,
        tensor_parallel=t,
        max_num_batched_tokens=batched,
        max_num_seqs=req.max_num_seqs,
        activation_bytes=4 if req.weight_dtype_bytes >= 4 else 2,
    )
    if cpu:
        graphs, non_torch = 0, CPU_RUNTIME_BYTES
    else:
        graphs = 0 if req.enforce_eager else CUDA_GRAPHS_BYTES
        non_torch = NON_TORCH_BYTES + (NCCL_BYTES if t > 1 else 0)
    given = req.kv_cache_bytes is not None
    budget = acc.memory_bytes if given else math.ceil(acc.memory_bytes * req.utilization)
    room = budget - (weights + activation + graphs + non_torch)
    kv_bytes = req.kv_cache_bytes if req.kv_cache_bytes is not None else max(0, room)
    per_token = kv_bytes_per_token_per_device(model, req.kv_dtype_bytes, t)
    block = block_size_for(acc)
    layout = kv_layout(model, req.max_model_len, block, batched)
    num_blocks = layout.num_blocks(kv_bytes, per_token, block)
    breakdown = MemoryBreakdown(
        budget=budget,
        weights=weights,
        activation_peak=activation,
        cuda_graphs=graphs,
        non_torch=non_torch,
        kv_cache=kv_bytes,
        kv_cache_given=given,
        cpu=cpu,
    )
    return _Attempt(
        tensor_parallel=t,
        breakdown=breakdown,
        total_weights=total_weights,
        room=room,
        kv_per_token=per_token,
        kv_tokens=layout.pool_tokens(num_blocks, block),
        blocks_per_request=layout.blocks_per_request,
        block_size=block,
        num_blocks=num_blocks,
        bytes_per_block=layout.bytes_per_block(per_token, block),
    )


def _first_fit(req: _Request, sizes: list[int]) -> _Attempt | None:
    """The first of ``sizes`` (tensor parallel) that divides the heads and fits, if any."""
    for t in sizes:
        if req.model.num_attention_heads % t:
            continue
        attempt = _attempt(req, t)
        if attempt.fits:
            return attempt
    return None


def _result(req: _Request, attempt: _Attempt, *, count: int) -> Fit:
    t = attempt.tensor_parallel
    # get_max_concurrency_for_kv_cache_config: the pool's blocks over one request's blocks.
    concurrency = attempt.num_blocks / attempt.blocks_per_request
    notes: list[str] = []
    if req.quantization != "none" and req.weight_bytes is not None:
        notes.append(
            f"{req.quantization} weights: {human_bytes(attempt.total_weights)}, measured in the "
            "quantized checkpoint"
        )
    elif req.quantization != "none":
        notes.append(
            f"{req.quantization} weights estimated at {human_bytes(attempt.total_weights)} "
            "(linear layers quantized, embeddings and lm_head 16-bit)"
        )
    if t > 1:
        notes.append(
            f"weights and KV heads split over {t} devices (vLLM shards embeddings and lm_head too)"
        )
    if req.model.num_kv_heads < t:
        notes.append(
            f"{req.model.num_kv_heads} KV heads on {t} devices: vLLM replicates them, "
            "one head per device"
        )
    if count > t:
        notes.append(f"{count // t} replicas of tensor parallel {t}")
    if req.accelerator.vendor != "cpu" and req.kv_cache_bytes is None:
        notes.append("activation peak, CUDA graphs and non-torch memory are estimates")
    return Fit(
        accelerator=req.accelerator,
        count=count,
        tensor_parallel=t,
        breakdown=attempt.breakdown,
        kv_tokens=attempt.kv_tokens,
        kv_blocks=attempt.num_blocks,
        max_concurrency=concurrency,
        notes=notes,
    )


def _weights_label(req: _Request) -> str:
    return req.dtype if req.quantization == "none" else req.quantization


def _weights_error(req: _Request, attempt: _Attempt, *, count: int) -> PlanError:
    acc, b = req.accelerator, attempt.breakdown
    total_budget = b.budget * count
    message = (
        f"{req.model_name} needs {human_bytes(attempt.total_weights)} of {_weights_label(req)} "
        f"weights; {count} x {acc.name} give {human_bytes(total_budget)} at "
        f"{req.utilization:.2f} utilization"
    )
    if attempt.total_weights <= total_budget:
        message += (
            f", less about {human_bytes(b.used - b.weights)} per device for activations, "
            "CUDA graphs and the runtime"
        )
    options: list[str] = []
    more = _first_fit(req, [t for t in TENSOR_PARALLEL_SIZES if t > attempt.tensor_parallel])
    if more is not None:
        t = more.tensor_parallel
        options.append(f"{t} x {acc.name} (tensor parallel {t})")
    if req.quantization == "none":
        for method in LINEAR_BYTES_PER_PARAM:
            if not acc.supports_quantization(method):
                continue
            quantized = _first_fit(req.with_quantization(method), [attempt.tensor_parallel])
            if quantized is not None:
                options.append(
                    f"quantize: {method} ({human_bytes(quantized.total_weights)}) fits "
                    f"{count} x {acc.name}"
                )
                break
    hint = ", or ".join(options) if options else "use an accelerator with more memory"
    return PlanError(message, hint=hint)


def _kv_error(
    req: _Request, attempt: _Attempt, *, count: int, hint_more: _Attempt | None
) -> PlanError:
    acc, b = req.accelerator, attempt.breakdown
    needed = attempt.blocks_per_request * attempt.bytes_per_block
    where = f"{count} x {acc.name} (tensor parallel {attempt.tensor_parallel})"
    if not attempt.kv_given_fits:
        return PlanError(
            f"a KV cache of {human_bytes(b.kv_cache)} per device does not fit: {where} leave "
            f"{human_bytes(attempt.room)} after weights, activations and the runtime",
            hint=f"set kv_cache_bytes to {attempt.room} or less, or leave it unset",
        )
    message = (
        f"{req.model_name} at maxModelLen {req.max_model_len:,} needs {human_bytes(needed)} of KV "
        f"cache per device; {where} leave {human_bytes(b.kv_cache)} "
        f"({attempt.kv_tokens:,} tokens)"
    )
    options: list[str] = []
    if attempt.kv_tokens >= attempt.block_size:
        options.append(f"maxModelLen {_round_down_len(attempt.kv_tokens):,} fits")
    if hint_more is not None:
        t = hint_more.tensor_parallel
        options.append(f"{t} x {acc.name} (tensor parallel {t})")
    if acc.vendor == "cpu":
        options.append("raise kv_cache_bytes")
    hint = ", or ".join(options) if options else "use an accelerator with more memory"
    return PlanError(message, hint=hint)


def _either(values: list[int]) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _round_down_len(tokens: int) -> int:
    """A friendly maxModelLen at most ``tokens``: a power of two, or a multiple of 1024 above 8k."""
    if tokens >= 8192:
        return tokens // 1024 * 1024
    return 1 << (tokens.bit_length() - 1)


def _blocks_per_request(
    max_model_len: int, sliding_window: int | None, block_size: int, in_flight_tokens: int
) -> int:
    if sliding_window is not None:
        # A windowed layer's request holds one block more than its tokens need, also when the
        # window covers the whole context: Mistral-7B-v0.1 (window 4096) at maxModelLen 2048 on
        # the CPU build logs 240.94x for 4,096 blocks of 128, that is 17 blocks, not 16, each.
        tokens = min(sliding_window - 1 + in_flight_tokens, max_model_len)
        return -(-tokens // block_size) + 1
    return -(-max_model_len // block_size)


def _linear_parameters(model: ModelShape) -> int:
    h, d = model.hidden_size, model.head_dim
    attention = 2 * h * model.num_attention_heads * d + 2 * h * model.num_kv_heads * d
    experts = model.num_experts or 1
    mlp = 3 * h * _mlp_width(model) * experts
    return model.num_layers * (attention + mlp)


def _mlp_width(model: ModelShape) -> int:
    """The MLP's intermediate size; ``4 x hidden`` when the config does not say."""
    return model.intermediate_size or 4 * model.hidden_size
