"""Will it fit, where, how fast, at what cost: the capacity part of a plan, as data.

Each engine fills a :class:`CapacityPlan` from its own memory model (the ``capacity`` module of
its package under ``deployer/engines/``: vLLM's budgeting, llama.cpp's GGUF header); the planner
and every client read only this.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
    #: Tokens the KV pool holds: its whole blocks times the block size.
    kv_tokens: int
    max_concurrency: float
    memory_per_device: list[MemoryRow]
    assumed_tokens_per_second: float | None
    cost_per_hour_usd: float | None
    cost_per_million_tokens_usd: float | None
    notes: list[str]
    #: The engine's own "KV cache size" figure, where it logs one that differs in meaning from
    #: the pool's tokens: vLLM logs max concurrency x context (``get_kv_cache_capacity``), which
    #: is less than the pool when the context is not a multiple of the block size.
    kv_cache_size_tokens: int | None = None
    #: The KV pool's blocks on each device, where the engine has blocks: vLLM's
    #: ``num_gpu_blocks`` (``vllm:cache_config_info`` on its /metrics, on a CPU too).
    kv_blocks: int | None = None

    @property
    def verdict(self) -> str:
        logged = self.kv_cache_size_tokens
        pool = f"{self.kv_tokens:,} KV-cache tokens"
        if logged is not None and logged != self.kv_tokens:
            pool += f' in the pool (vLLM logs it as "KV cache size: {logged:,} tokens")'
        return (
            f"fits on {self.count} x {self.accelerator} (tensor parallel {self.tensor_parallel})"
            f": {pool}, {self.max_concurrency:.2f} concurrent requests of "
            f"{self.max_model_len:,} tokens"
        )
