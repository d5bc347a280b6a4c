"""The planner against the real engine: planned KV-cache tokens and concurrency vs what vLLM logs.

For each model (the demo, and locally built random-weight models: a Qwen2, a Mistral whose 4096
window covers the context, a Gemma 2 whose layers alternate between the window and full
attention) the plan is made first, then real vLLM is started with the plan's own argv, and its
log line "CPU KV cache size: N tokens, Maximum concurrency for L tokens per request: Cx" is
compared with the plan: vLLM's own "KV cache size" figure and the concurrency exactly, and the
pool within 2% where the two token figures mean the same (full attention at a context that is a
multiple of the block size).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.integration.cli import deployer
from tests.integration.tinymodels import DEMO, tiny_gemma2, tiny_mistral_window, tiny_qwen2

pytestmark = pytest.mark.engine
LOG_LINE = re.compile(
    r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
    r"([\d.]+)x"
)


def manifest(tmp_path: Path, name: str, folder: Path, max_len: int, kv: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: deployer/v1alpha1
            kind: ModelDeployment
            metadata:
              name: {name}
            spec:
              model: {{source: local, path: {folder}}}
              serving:
                dtype: bfloat16
                maxModelLen: {max_len}
                kvCacheMemory: {kv}
                args: {{enforce-eager: true}}
              resources: {{accelerator: cpu}}
            """
        )
    )
    return path


@pytest.mark.parametrize(
    ("name", "folder", "max_len", "kv"),
    [
        pytest.param("acc-smollm2", lambda: DEMO, 2048, "512MiB", id="smollm2-llama-gqa"),
        pytest.param("acc-smollm2-2000", lambda: DEMO, 2000, "512MiB", id="smollm2-off-block"),
        pytest.param("acc-qwen2", tiny_qwen2, 1024, "64MiB", id="tiny-qwen2-gqa"),
        pytest.param(
            "acc-mistral", tiny_mistral_window, 2048, "64MiB", id="tiny-mistral-window-over-context"
        ),
        pytest.param("acc-gemma2", tiny_gemma2, 2048, "64MiB", id="tiny-gemma2-interleaved"),
    ],
)
def test_planned_kv_tokens_match_the_engine(
    tmp_path: Path, name: str, folder: object, max_len: int, kv: str
) -> None:
    path = manifest(tmp_path, name, folder(), max_len, kv)  # type: ignore[operator]
    home = tmp_path / "home"
    planned = deployer("plan", str(path), "-o", "json", home=home)
    assert planned.code == 0, planned.output
    capacity = json.loads(planned.stdout)["capacity"]
    try:
        applied = deployer("apply", str(path), home=home)
        assert applied.code == 0, applied.output
        log = (home / "deployments" / name / "engine.log").read_text()
    finally:
        deployer("destroy", name, home=home)
    match = LOG_LINE.search(log)
    assert match, "vLLM did not log its KV cache size"
    tokens = int(match.group(1).replace(",", ""))
    assert int(match.group(2).replace(",", "")) == max_len
    concurrency = float(match.group(3))
    assert capacity["kv_cache_size_tokens"] == tokens, (capacity, tokens)
    assert f"{capacity['max_concurrency']:.2f}" == match.group(3)
    # vLLM's figure is concurrency x context: the pool's tokens only where a request takes exactly
    # its context in whole blocks (full attention at a multiple of the block size); a window adds
    # a block per request, and interleaved layers draw blocks for each group.
    windowed = name in ("acc-mistral", "acc-gemma2")
    if max_len % capacity["block_size"] == 0 and not windowed:
        assert abs(capacity["kv_tokens"] - tokens) <= 0.02 * tokens, (capacity, tokens)
    assert abs(capacity["max_concurrency"] - concurrency) <= 0.02 * concurrency
