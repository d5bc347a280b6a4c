"""Convert a GGUF checkpoint into a Hugging Face folder of bfloat16 safetensors.

A standalone script, run with an engine environment's Python (which has torch, transformers and
gguf; deployer's own virtualenv has none of them)::

    python gguf_import.py GGUF_FILE OUT_DIR

transformers dequantizes the GGUF weights (``from_pretrained(folder, gguf_file=...)``); a fresh
model built from the same config takes that state dict and is saved as safetensors in bfloat16,
so the folder carries no trace of the GGUF loader. The tokenizer is rebuilt from the GGUF too, and
``tokenizer_config.json`` always gets the chat template: from transformers when it carried it
over, else from the GGUF metadata ``tokenizer.chat_template``.

Writes into OUT_DIR (created if missing); the caller passes a temporary folder and renames it
into place. Progress goes to stdout, one line per step. Exit code 0 on success, 2 for bad
arguments, 1 when the conversion fails. Imports nothing from deployer, and imports its heavy
libraries inside :func:`main`, so importing this module is free.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import copy
    import json
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    gguf_file: Path = args.gguf_file.resolve()
    out_dir: Path = args.out_dir
    if not gguf_file.is_file():
        parser.error(f"{gguf_file} is not a file")

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    say("importing torch and transformers")
    import torch  # type: ignore[import-not-found]
    from transformers import (  # type: ignore[import-not-found]
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    folder, name = str(gguf_file.parent), gguf_file.name
    say(f"loading and dequantizing {name}")
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.bfloat16, **_dequantize_kwargs(name)
    )
    config = copy.deepcopy(loaded.config)
    # A GGUF-loaded config may carry quantization_config (quant_method "gguf"): an engine
    # reading it would treat the dense safetensors as a GGUF checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    say(f"building a fresh {type(loaded).__name__} from its config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings may be absent from one side; anything else is a real mismatch.
    real_missing = [k for k in missing if not _is_tied(k, config)]
    if real_missing or unexpected:
        print(f"state dicts differ: missing {real_missing}, unexpected {unexpected}", flush=True)
        return 1
    fresh.tie_weights()
    del loaded

    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"saving bfloat16 safetensors into {out_dir}")
    fresh.save_pretrained(out_dir, safe_serialization=True)

    saved = json.loads((out_dir / "config.json").read_text())
    if "quantization_config" in saved:
        print("config.json still has a quantization_config", flush=True)
        return 1

    say("saving the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        template = _gguf_chat_template(gguf_file)
        if template:
            say("chat template taken from the GGUF metadata")
            tokenizer.chat_template = template
    tokenizer.save_pretrained(out_dir)

    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    # Newer transformers save the template as chat_template.jinja; keep it in the config too,
    # where older readers and people look for it.
    if not tokenizer_config.get("chat_template"):
        template = tokenizer.chat_template or _gguf_chat_template(gguf_file)
        if not template:
            print("no chat template in the tokenizer nor in the GGUF metadata", flush=True)
            return 1
        tokenizer_config["chat_template"] = template
        config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
        say("chat template written into tokenizer_config.json")
    say("done")
    return 0


def _dequantize_kwargs(gguf_name: str) -> dict[str, object]:
    """Ask for dense weights where transformers can keep GGUF weights packed (5.19 and later).

    Older releases always dequantize and have no ``GgufConfig``.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(gguf_file=gguf_name, dequantize=True)}


def _is_tied(key: str, config: object) -> bool:
    return key == "lm_head.weight" and bool(getattr(config, "tie_word_embeddings", False))


def _gguf_chat_template(gguf_file: Path) -> str | None:
    """The ``tokenizer.chat_template`` string of the GGUF metadata, if it has one."""
    from gguf import GGUFReader  # type: ignore[import-not-found]

    field = GGUFReader(str(gguf_file)).fields.get(CHAT_TEMPLATE_KEY)
    if field is None or not field.data:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


if __name__ == "__main__":
    sys.exit(main())
