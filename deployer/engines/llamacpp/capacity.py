"""llama.cpp's capacity plan: a GGUF model's memory from the file's own header.

Pure: the header's facts (:class:`~deployer.engines.gguf_header.GGUFModelFacts`) and the host
go in; a :class:`~deployer.sizing.capacity.CapacityPlan` comes out.
"""

from __future__ import annotations

from deployer.engines import llamacpp
from deployer.engines.gguf_header import GGUFModelFacts
from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment
from deployer.sizing.accelerators import Accelerator
from deployer.sizing.capacity import CapacityPlan, MemoryRow


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
