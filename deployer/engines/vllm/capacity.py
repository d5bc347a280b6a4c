"""vLLM's capacity plan: will the model fit, on how many accelerators, how fast, at what cost.

Pure: the model's facts (:mod:`deployer.sizing.model_facts`), the accelerator
(:mod:`deployer.sizing.accelerators`) and the manifest go in; a
:class:`~deployer.sizing.capacity.CapacityPlan` (or a :class:`~deployer.errors.PlanError` with
the numbers and what would fit) comes out. The memory arithmetic follows vLLM's own budgeting
(:mod:`deployer.engines.vllm.memory`, with sources).
"""

from __future__ import annotations

from deployer.engines.vllm.memory import assumed_decode_throughput, block_size_for, fit
from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment, ServingSpec
from deployer.sizing.accelerators import Accelerator, cost
from deployer.sizing.capacity import CapacityPlan, MemoryRow
from deployer.sizing.model_facts import ModelFacts

#: vLLM's context length when neither the manifest nor the config names one.
DEFAULT_MAX_MODEL_LEN = 2048


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
    if model.sliding_window is not None and model.sliding_layers is not None:
        notes.append(
            f"{model.sliding_layers} of {model.num_layers} layers use a {model.sliding_window:,}"
            "-token window, the rest full attention: one KV pool shared by both kinds of layer "
            "groups, as vLLM's hybrid KV cache manager lays them out"
        )
    if model.num_experts is not None:
        notes.append(
            f"mixture of experts: {model.num_experts} experts"
            + (f", {model.experts_per_token} per token" if model.experts_per_token else "")
            + "; every expert's weights are loaded, the KV cache is the attention layers' as for "
            "a dense model"
        )
    notes.extend(model.unmodelled)
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
        # vLLM's "KV cache size" log figure: get_kv_cache_capacity, int(concurrency x context).
        kv_cache_size_tokens=int(result.max_concurrency * max_len),
        kv_blocks=result.kv_blocks,
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
