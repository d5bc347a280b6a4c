"""How the demo's calibration samples were made: the model's own answers to varied prompts.

Generic text can make 4-bit GPTQ worse than no calibration at all; a model's own answers to
varied chat prompts calibrate it well (see REAL_COMPONENTS.md). Run once with the quantizer
environment's Python (it has torch and transformers)::

    QUANTIZER=~/.cache/deployer/tools/llmcompressor-0.14.0/bin/python
    $QUANTIZER generate.py MODEL_FOLDER prompts.txt OUT.jsonl

Greedy decoding in float32, batches of 16 prompts (left-padded), at most 160 new tokens: the
same model and library versions give the same file. Each line of OUT.jsonl is
{"messages": [user, assistant]}. The first line (the smoke checks' question, "What is the
capital of France?") was then removed, so no calibration sample holds the smoke check's answer:
deployer's built-in set ``chat-v1`` is the other 95 lines, ``smollm2-answers.jsonl`` the first 64
of those.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BATCH = 16


def main() -> None:
    import torch  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore[import-not-found]

    folder, prompts_file, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompts = [p for p in prompts_file.read_text().splitlines() if p.strip()]
    lines = []
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start : start + BATCH]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            for p in batch
        ]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=160, do_sample=False)
        width = inputs["input_ids"].shape[1]
        for prompt, row in zip(batch, output, strict=True):
            answer = tokenizer.decode(row[width:], skip_special_tokens=True).strip()
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
            print(prompt, "->", answer[:60].replace("\n", " "), flush=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
