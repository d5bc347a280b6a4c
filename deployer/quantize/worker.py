"""Quantize a model folder with llmcompressor and measure perplexity before and after.

A standalone script, run with the quantizer environment's Python (torch, transformers,
llmcompressor; deployer's own virtualenv has none of them, and vLLM's pins another
compressed-tensors)::

    python worker.py REQUEST_JSON

The request (written by :mod:`deployer.quantize.run`) names the source folder, the output folder,
the recipe (already checked by :mod:`deployer.quantize.recipe`), the calibration file, the
evaluation text and the seed. The script:

1. measures the source model's perplexity on the evaluation text (windows of
   ``eval_sequence_length`` tokens, mean negative log-likelihood over every predicted token);
2. runs ``llmcompressor.oneshot`` with the recipe on the calibration samples (each a chat turn
   rendered with the model's chat template, or plain text);
3. measures the quantized model's perplexity the same way (the quantized weights, with activation
   quantization simulated as vLLM applies it);
4. saves a compressed-tensors checkpoint (``save_compressed=True``) and the tokenizer into the
   output folder.

Progress goes to stdout, one line per step, prefixed with the elapsed seconds; the last line is
``RESULT {json}``. Exit code 0 on success, 2 for bad arguments, 1 when quantizing fails. Imports
nothing from deployer and imports its heavy libraries inside :func:`main`, so importing this module
is free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("request", type=Path)
    args = parser.parse_args(argv)
    request: dict[str, Any] = json.loads(args.request.read_text())

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    say("importing torch, transformers and llmcompressor")
    import torch  # type: ignore[import-not-found]
    from transformers import (  # type: ignore[import-not-found]
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    torch.manual_seed(int(request["seed"]))
    threads = request.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    source = request["source"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    say(f"loading {source} in float32")
    # float32 for the arithmetic: CPUs without bf16 units run bfloat16 matmuls many times
    # slower. The checkpoint is saved in the model's own dtype again (see below).
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.eval()
    saved_dtype = _config_dtype(torch, source)

    eval_ids = tokenizer(Path(request["eval_file"]).read_text())["input_ids"]
    window = int(request["eval_sequence_length"])
    say(f"perplexity of the source model on {len(eval_ids)} evaluation tokens")
    t0 = time.monotonic()
    base_ppl = _perplexity(torch, model, eval_ids, window)
    say(f"source perplexity {base_ppl:.3f} ({time.monotonic() - t0:.1f}s)")

    samples = _calibration(tokenizer, Path(request["calibration_file"]), request)
    say(f"calibrating on {len(samples)} samples of at most {request['sequence_length']} tokens")
    t0 = time.monotonic()
    _oneshot(model, tokenizer, samples, request)
    quantize_seconds = time.monotonic() - t0
    say(f"quantized in {quantize_seconds:.1f}s")

    say("perplexity of the quantized model")
    quant_ppl = _perplexity(torch, model, eval_ids, window)
    say(f"quantized perplexity {quant_ppl:.3f}")

    out = Path(request["out"])
    say(f"saving the compressed-tensors checkpoint ({saved_dtype}) to {out}")
    model.to(saved_dtype)
    model.save_pretrained(str(out), save_compressed=True)
    tokenizer.save_pretrained(str(out))
    result = {
        "source_perplexity": base_ppl,
        "quantized_perplexity": quant_ppl,
        "eval_tokens": len(eval_ids),
        "calibration_samples": len(samples),
        "quantize_seconds": round(quantize_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "versions": _versions(),
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def _config_dtype(torch: Any, source: str) -> Any:
    """The dtype the source checkpoint is stored in (``torch_dtype`` or ``dtype`` in its config;
    bfloat16 when it names none)."""
    import json

    config = json.loads((Path(source) / "config.json").read_text())
    name = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return getattr(torch, str(name), torch.bfloat16)


def _perplexity(torch: Any, model: Any, ids: list[int], window: int) -> float:
    """exp(mean NLL) over consecutive windows of ``window`` tokens (each predicts window-1)."""
    import math

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window]
            if len(chunk) < 2:
                break
            input_ids = torch.tensor([chunk])
            logits = model(input_ids=input_ids).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[0, :-1], input_ids[0, 1:], reduction="sum"
            )
            total_nll += float(loss)
            total_tokens += len(chunk) - 1
    return math.exp(total_nll / total_tokens)


def _calibration(tokenizer: Any, path: Path, request: dict[str, Any]) -> list[str]:
    """The first ``samples`` texts of a JSON-lines file: ``{"messages": [...]}`` rendered with the
    chat template, or ``{"text": ...}`` as it is."""
    import json

    texts: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if "messages" in item and getattr(tokenizer, "chat_template", None):
            texts.append(tokenizer.apply_chat_template(item["messages"], tokenize=False))
        elif "messages" in item:
            texts.append("\n\n".join(m["content"] for m in item["messages"]))
        else:
            texts.append(item["text"])
        if len(texts) >= int(request["samples"]):
            break
    return texts


def _oneshot(model: Any, tokenizer: Any, samples: list[str], request: dict[str, Any]) -> None:
    from datasets import Dataset  # type: ignore[import-not-found]
    from llmcompressor import oneshot  # type: ignore[import-not-found]

    length = int(request["sequence_length"])
    encoded = tokenizer(samples, truncation=True, max_length=length, add_special_tokens=False)
    dataset = Dataset.from_dict(
        {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    )
    oneshot(
        model=model,
        dataset=dataset,
        recipe=_modifiers(request["recipe"]),
        num_calibration_samples=len(samples),
        max_seq_length=length,
        shuffle_calibration_samples=False,
    )


def _modifiers(recipe: dict[str, Any]) -> list[Any]:
    """llmcompressor modifiers for deployer's recipe (see deployer/quantize/recipe.py)."""
    from llmcompressor.modifiers.gptq import GPTQModifier  # type: ignore[import-not-found]
    from llmcompressor.modifiers.quantization import (  # type: ignore[import-not-found]
        QuantizationModifier,
    )

    ignore = list(recipe["ignore"])
    modifiers: list[Any] = []
    if recipe.get("smoothing_strength") is not None:
        from llmcompressor.modifiers.smoothquant import (  # type: ignore[import-not-found]
            SmoothQuantModifier,
        )

        modifiers.append(SmoothQuantModifier(smoothing_strength=recipe["smoothing_strength"]))
    groups = {"group_0": {"targets": ["Linear"], **recipe["config_group"]}}
    if recipe["algorithm"] == "gptq":
        modifiers.append(
            GPTQModifier(
                config_groups=groups,
                ignore=ignore,
                dampening_frac=recipe.get("dampening_frac", 0.01),
            )
        )
    else:
        modifiers.append(QuantizationModifier(config_groups=groups, ignore=ignore))
    return modifiers


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("llmcompressor", "compressed-tensors", "torch", "transformers")
    return {name: version(name) for name in names}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
