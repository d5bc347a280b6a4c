"""Will it fit, where, how fast, at what cost: the capacity part of a plan.

Pure: the model's facts (:mod:`deployer.planner.model_facts`), the accelerator
(:mod:`deployer.planner.accelerators`) and the manifest go in; a :class:`CapacityPlan` (or a
:class:`~deployer.errors.PlanError` with the numbers and what would fit) comes out. The memory
arithmetic follows vLLM's own budgeting (:mod:`deployer.planner.memory`, with sources).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from deployer.engines import llamacpp
from deployer.engines.gguf_header import GGUFModelFacts
from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment, ServingSpec
from deployer.planner.accelerators import Accelerator, cost
from deployer.planner.memory import assumed_decode_throughput, block_size_for, fit
from deployer.planner.model_facts import ModelFacts

#: vLLM's context length when neither the manifest nor the config names one.
DEFAULT_MAX_MODEL_LEN = 2048


class _CapacityModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryRow(_CapacityModel):
    item: str
    bytes: int
    source: str


class CapacityPlan(_CapacityModel):
    #: Where the model's numbers come from (its files, the lock, deployer's catalog).
    model_facts: str
    parameters: int
    parameter_source: str
    attention: str
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    kv_bytes_per_token: int
    max_model_len: int
    accelerator: str
    accelerator_memory_bytes: int
    count: int
    tensor_parallel: int
    replicas: int
    block_size: int
    kv_cache_bytes_per_device: int
    kv_tokens: int
    max_concurrency: float
    memory_per_device: list[MemoryRow]
    assumed_tokens_per_second: float | None
    cost_per_hour_usd: float | None
    cost_per_million_tokens_usd: float | None
    notes: list[str]

    @property
    def verdict(self) -> str:
        return (
            f"fits on {self.count} x {self.accelerator} (tensor parallel {self.tensor_parallel})"
            f": {self.kv_tokens:,} KV-cache tokens, {self.max_concurrency:.2f} concurrent "
            f"requests of {self.max_model_len:,} tokens"
        )


def place(
    deployment: ModelDeployment,
    model: ModelFacts,
    accelerator: Accelerator,
    *,
    facts_source: str,
    kv_cache_bytes: int | None,
    quantized_weight_bytes: int | None = None,
) -> CapacityPlan:
    """Place ``deployment`` on ``accelerator``; PlanError (numbers and a fix) when it cannot.

    ``quantized_weight_bytes``: the size of the quantized checkpoint when it is in the store
    (otherwise the planner estimates the quantized size from the model's shape).
    """
    spec = deployment.spec
    serving = spec.serving
    if not isinstance(serving, ServingSpec):
        raise PlanError(f"{deployment.name}: vLLM's capacity plan for engine {serving.engine}")
    max_len = serving.max_model_len or model.max_position_embeddings or DEFAULT_MAX_MODEL_LEN
    dtype = _serving_dtype(serving.dtype, model, accelerator)
    count = None if spec.resources.count == "auto" else spec.resources.count
    tp = None if serving.tensor_parallel_size == "auto" else serving.tensor_parallel_size
    result = fit(
        model,
        accelerator,
        max_model_len=max_len,
        count=count,
        tensor_parallel=tp,
        quantization=spec.quantize.method,
        dtype=dtype,
        gpu_memory_utilization=serving.gpu_memory_utilization or 0.9,
        kv_cache_bytes=kv_cache_bytes,
        max_num_seqs=serving.max_num_seqs or 256,
        enforce_eager=serving.args.get("enforce-eager") is True,
        model_name=_model_name(deployment),
        weight_bytes=quantized_weight_bytes,
    )
    replicas = max(1, result.count // result.tensor_parallel)
    concurrency = min(result.max_concurrency, float(serving.max_num_seqs or 256))
    tokens_per_second: float | None = None
    per_hour = per_million = None
    notes = list(result.notes)
    if accelerator.vendor != "cpu":
        tokens_per_second = replicas * assumed_decode_throughput(
            model,
            accelerator,
            result.tensor_parallel,
            max(concurrency, 1.0),
            weight_bytes=quantized_weight_bytes,
        )
        try:
            priced = cost(accelerator, result.count, tokens_per_second, spec.resources.hourly_price)
            per_hour, per_million = priced.per_hour, priced.per_million_tokens
            notes.append(
                f"cost assumes {tokens_per_second:,.0f} output tokens/s (memory-bandwidth bound "
                f"decode at {concurrency:.0f} concurrent requests) and ${per_hour:.2f}/h: "
                "measure with a benchmark before you rely on it"
            )
        except PlanError as exc:
            notes.append(f"no cost: {exc.message}")
    kv_dtype_bytes = 2 if dtype in ("bfloat16", "float16") else 4
    return CapacityPlan(
        model_facts=facts_source,
        parameters=model.parameter_count,
        parameter_source=model.parameter_source,
        attention=model.attention,
        layers=model.num_layers,
        kv_heads=model.num_kv_heads,
        head_dim=model.head_dim,
        dtype=dtype,
        kv_bytes_per_token=model.kv_bytes_per_token(kv_dtype_bytes),
        max_model_len=max_len,
        accelerator=accelerator.name,
        accelerator_memory_bytes=accelerator.memory_bytes,
        count=result.count,
        tensor_parallel=result.tensor_parallel,
        replicas=replicas,
        block_size=block_size_for(accelerator),
        kv_cache_bytes_per_device=result.breakdown.kv_cache,
        kv_tokens=result.kv_tokens,
        max_concurrency=round(result.max_concurrency, 2),
        memory_per_device=[
            MemoryRow(item=item, bytes=size, source=source)
            for item, size, source in result.breakdown.rows()
        ],
        assumed_tokens_per_second=tokens_per_second,
        cost_per_hour_usd=per_hour,
        cost_per_million_tokens_usd=per_million,
        notes=notes,
    )


def place_gguf(
    deployment: ModelDeployment, model: GGUFModelFacts, accelerator: Accelerator, *, n_ctx: int
) -> CapacityPlan:
    """A GGUF model on llama.cpp's CPU server at ``n_ctx`` tokens, from the file's own header
    (tensor types and counts, attention shape); PlanError when it does not fit in memory.

    llama-cpp-python's server runs one sequence at a time (one llama context behind a lock), so
    the concurrency is 1 and the KV cache holds exactly one context (padded to 256 tokens).
    """
    memory = llamacpp.memory(model, n_ctx)
    rows = [
        MemoryRow(item="weights", bytes=memory.weight_bytes, source="GGUF tensor infos (mmap)"),
        MemoryRow(
            item="KV cache",
            bytes=memory.kv_cache_bytes,
            source=f"n_ctx {memory.n_ctx} x layers x KV heads x (K+V) x f16 (llama_kv_cache)",
        ),
        MemoryRow(
            item="compute buffer",
            bytes=memory.compute_bytes,
            source="estimate fitted to llama.cpp's logged compute buffer (within 1.2%)",
        ),
        MemoryRow(item="output buffer", bytes=memory.output_bytes, source="n_vocab x float32"),
        MemoryRow(item="server", bytes=memory.runtime_bytes, source="estimate: the Python server"),
    ]
    if memory.total_bytes > accelerator.memory_bytes:
        raise PlanError(
            f"{deployment.name} needs {memory.total_bytes:,} bytes on {accelerator.name} "
            f"({accelerator.memory_bytes:,} available)",
            hint="lower spec.serving.maxModelLen or use a smaller quantization of the model",
        )
    kv_heads = max(model.head_count_kv, default=0)
    return CapacityPlan(
        model_facts=f"GGUF header of {model.path}",
        parameters=model.parameter_count,
        parameter_source="GGUF tensor infos",
        attention="MHA" if kv_heads == model.head_count else f"GQA ({model.head_count} heads)",
        layers=model.block_count,
        kv_heads=kv_heads,
        head_dim=model.key_length,
        dtype=", ".join(sorted(model.tensor_bytes_by_type)),
        kv_bytes_per_token=model.kv_bytes_per_token(),
        max_model_len=n_ctx,
        accelerator=accelerator.name,
        accelerator_memory_bytes=accelerator.memory_bytes,
        count=1,
        tensor_parallel=1,
        replicas=1,
        block_size=llamacpp.CTX_PAD,
        kv_cache_bytes_per_device=memory.kv_cache_bytes,
        kv_tokens=memory.n_ctx,
        max_concurrency=1.0,
        memory_per_device=rows,
        assumed_tokens_per_second=None,
        cost_per_hour_usd=None,
        cost_per_million_tokens_usd=None,
        notes=["llama-cpp-python's server runs one request at a time"],
    )


def _serving_dtype(requested: str, model: ModelFacts, accelerator: Accelerator) -> str:
    """The dtype vLLM serves in: the manifest's, else the checkpoint's; vLLM's 'auto' serves a
    float32 checkpoint in 16 bits (bfloat16 where the accelerator has it)."""
    if requested != "auto":
        return requested
    if model.dtype != "float32":
        return model.dtype
    return "bfloat16" if "bfloat16" in accelerator.dtypes else "float16"


def _model_name(deployment: ModelDeployment) -> str:
    model = deployment.spec.model
    return model.repo.split("/")[-1] if model.source == "huggingface" else deployment.name
