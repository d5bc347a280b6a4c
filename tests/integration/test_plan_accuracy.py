"""The planner against the real engine: planned KV blocks, tokens and concurrency vs vLLM's own.

For the demo and a tiny random-weight model of every family (tests/support/tinymodels.py:
Llama, Qwen2, Mistral without a window, with one under and one over the context, Falcon's 7B
and 40B shapes, BLOOM, Gemma, Gemma 2's interleaved layers, a Mixtral-style mixture of experts,
and Qwen3, Phi-3, Gemma 3's 5:1 layers, StarCoder2 and GPT-NeoX)
the plan is made first, then `deployer apply` serves the model on the real vLLM CPU build with
the plan's own argv (on the port the plan printed) and runs a smoke check. The engine's own
figures are compared with the plan: the KV pool's blocks (``num_gpu_blocks`` of
``vllm:cache_config_info`` on its /metrics) and, from its log line "CPU KV cache size: N tokens,
Maximum concurrency for L tokens per request: Cx", the "KV cache size" and the concurrency,
all exactly; and the pool's tokens within 2% where the two token figures mean the same (full
attention at a context that is a multiple of the block size). The engines start one after
another; `benchmarks/plan_accuracy.py` prints the same comparison as a table.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.cli import deployer
from tests.support.tinymodels import DEMO, cache_config_info, logged_kv, manifest, tiny

pytestmark = pytest.mark.engine


def case(kind: str, max_len: int = 2048, kv: str = "64MiB") -> object:
    return pytest.param(f"acc-{kind}", lambda: tiny(kind), max_len, kv, id=f"tiny-{kind}")


@pytest.mark.parametrize(
    ("name", "folder", "max_len", "kv"),
    [
        pytest.param("acc-smollm2", lambda: DEMO, 2048, "512MiB", id="smollm2-llama-gqa"),
        pytest.param("acc-smollm2-2000", lambda: DEMO, 2000, "512MiB", id="smollm2-off-block"),
        case("llama"),
        case("qwen2", max_len=1024),
        case("mistral"),
        case("mistral-window-512"),
        case("mistral-window"),
        case("falcon-7b"),
        case("falcon-40b"),
        case("bloom"),
        case("gemma"),
        case("gemma2"),
        case("mixtral"),
        case("qwen3"),
        case("phi3"),
        case("gemma3"),
        case("starcoder2"),
        case("gpt-neox"),
    ],
)
def test_planned_kv_tokens_match_the_engine(
    tmp_path: Path, name: str, folder: Callable[[], Path], max_len: int, kv: str
) -> None:
    path = manifest(folder(), name, max_len, kv, tmp_path / f"{name}.yaml")
    home = tmp_path / "home"
    planned = deployer("plan", str(path), "-o", "json", home=home)
    assert planned.code == 0, planned.output
    capacity = json.loads(planned.stdout)["capacity"]
    endpoint = json.loads(planned.stdout)["endpoint"]
    try:
        applied = deployer("apply", str(path), home=home)
        assert applied.code == 0, applied.output
        assert "pass: answers" in applied.output, applied.output
        log = (home / "deployments" / name / "engine.log").read_text()
        metrics = urllib.request.urlopen(endpoint.removesuffix("/v1") + "/metrics").read()
    finally:
        deployer("destroy", name, home=home)
    pool = cache_config_info(metrics.decode())
    assert int(pool["num_gpu_blocks"]) == capacity["kv_blocks"], (capacity, pool)
    assert int(pool["block_size"]) == capacity["block_size"]
    logged = logged_kv(log)
    assert logged, "vLLM did not log its KV cache size"
    assert logged.context == max_len
    assert capacity["kv_cache_size_tokens"] == logged.tokens, (capacity, logged)
    assert f"{capacity['max_concurrency']:.2f}" == logged.concurrency, (capacity, logged)
    # vLLM's figure is concurrency x context: the pool's tokens only where a request takes exactly
    # its context in whole blocks (full attention at a multiple of the block size); a window adds
    # a block per request, and interleaved layers draw blocks for each group.
    windowed = "window" in name or name in ("acc-gemma2", "acc-gemma3", "acc-starcoder2")
    if max_len % capacity["block_size"] == 0 and not windowed:
        assert abs(capacity["kv_tokens"] - logged.tokens) <= 0.02 * logged.tokens, capacity
