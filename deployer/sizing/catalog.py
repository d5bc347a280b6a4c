"""Published ``config.json`` files of the open models users ask about first, shipped with deployer.

The planner prefers a model's own files (a local folder, or the config and safetensors headers a
lock keeps in the store). When it has neither (a manifest not locked yet, on a machine that cannot
reach the hub) it falls back to these, and says so in the plan: the parameter count then comes
from the architecture, not from the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_FOLDER = Path(__file__).parent / "configs"

_KNOWN = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b-instruct.json",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b-instruct.json",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b-instruct.json",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b-instruct.json",
    "mistralai/Mistral-7B-Instruct-v0.1": "mistral-7b-instruct-v0.1.json",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b-instruct-v0.3.json",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b-instruct-v0.1.json",
    "tiiuae/falcon-7b-instruct": "falcon-7b-instruct.json",
    "tiiuae/falcon-40b-instruct": "falcon-40b-instruct.json",
    "bigscience/bloom-7b1": "bloom-7b1.json",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct.json",
    "Qwen/Qwen2.5-72B-Instruct": "qwen2.5-72b-instruct.json",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct.json",
    "openai-community/gpt2": "gpt2.json",
    "Qwen/Qwen3-8B": "qwen3-8b.json",
    "google/gemma-2-9b-it": "gemma-2-9b-it.json",
    "google/gemma-7b": "gemma-7b.json",
    "microsoft/Phi-3-mini-4k-instruct": "phi-3-mini-4k-instruct.json",
    "EleutherAI/pythia-1b": "pythia-1b.json",
    "bigcode/starcoder2-7b": "starcoder2-7b.json",
}


def builtin_config(repo: str) -> dict[str, Any] | None:
    """The shipped ``config.json`` of ``repo`` (matched case-insensitively), or None."""
    name = next((v for k, v in _KNOWN.items() if k.lower() == repo.lower()), None)
    if name is None:
        return None
    data: dict[str, Any] = json.loads((_FOLDER / name).read_text())
    return data


def known_repos() -> list[str]:
    return sorted(_KNOWN)
