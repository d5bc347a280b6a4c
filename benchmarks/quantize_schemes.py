"""Quantization schemes on the demo model: size on disk, perplexity, time to quantize, throughput.

For the unquantized demo and each scheme (int8 W8A8, w4a16), in the same run on this machine:
``deployer apply`` (which quantizes, gates and serves with the real vLLM CPU build), then the
served engine's decode throughput, one stream and several concurrent streams, each request
generating exactly ``--tokens`` tokens. Sizes, perplexities (on deployer's evaluation text) and
quantizing times come from the artifact's record. Ratios are against the unquantized model.

The model store is a fresh temporary one unless ``--cache`` names one (engines and the quantizer
are taken from the machine's cache), so quantizing is timed from scratch.

``--quick`` is for CI (no figure is asserted): the int8 scheme only, calibrated on 4 samples of
64 tokens (a copy of its manifest, about 40 s to quantize instead of 3 minutes), 16 tokens a
request and 2 streams; the whole path still runs: quantize, gate, serve, throughput, served
perplexity, the artifact's record. Its ratios are against itself.

    .venv/bin/python benchmarks/quantize_schemes.py [--tokens 128] [--streams 4] [--cache DIR]
    .venv/bin/python benchmarks/quantize_schemes.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import ROOT
from ruamel.yaml import YAML

from deployer.settings import Settings

DEMO = ROOT / "model_manifests" / "demo"
SCHEMES = {
    "bf16 (none)": ("smollm2-135m.yaml", "smollm2-demo"),
    "int8 W8A8": ("smollm2-135m-int8.yaml", "smollm2-int8"),
    "w4a16 g64": ("smollm2-135m-w4a16.yaml", "smollm2-w4a16"),
}
PROMPT = "Write a long story about a lighthouse keeper and the sea."
EVAL_TEXT = ROOT / "deployer" / "quantize" / "data" / "eval-en-v1.txt"


@dataclass
class Row:
    scheme: str
    bytes: int
    source_ppl: float | None
    ppl: float | None
    quantize_s: float | None
    apply_s: float
    single_tps: float
    multi_tps: float
    served_ppl: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="int8 on little calibration, for CI")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.streams = 16, 2
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or _fresh_cache(Path(tmp) / "cache")
        home = Path(tmp) / "home"
        if args.quick:
            schemes = {"int8 (quick)": (_quick_int8(Path(tmp)), "smollm2-int8")}
        else:
            schemes = {label: (DEMO / file, name) for label, (file, name) in SCHEMES.items()}
        rows = [_measure(label, *files, home, cache, args) for label, files in schemes.items()]
    _print(rows, args)


def _quick_int8(folder: Path) -> Path:
    """A copy of the int8 manifest calibrated on 4 samples of 64 tokens (its calibration file's
    path made absolute, the copy being elsewhere)."""
    yaml = YAML()
    source = DEMO / SCHEMES["int8 W8A8"][0]
    manifest = yaml.load(source.read_text())
    calibration = manifest["spec"]["quantize"]["calibration"]
    calibration["file"] = str(source.parent / calibration["file"])
    calibration["samples"] = 4
    calibration["sequenceLength"] = 64
    path = folder / "smollm2-135m-int8-quick.yaml"
    with path.open("w") as out:
        yaml.dump(manifest, out)
    return path


def _fresh_cache(path: Path) -> Path:
    shared = Settings.from_env().cache
    path.mkdir(parents=True)
    for name in ("engines", "tools"):
        (path / name).symlink_to(shared / name)
    return path


def _run(*args: str, home: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEPLOYER_HOME": str(home), "DEPLOYER_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "deployer", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"deployer {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _measure(
    label: str, manifest: Path, name: str, home: Path, cache: Path, args: argparse.Namespace
) -> Row:
    print(f"{label}: deployer apply {manifest.name} ...", flush=True)
    started = time.perf_counter()
    _run("apply", str(manifest), home=home, cache=cache)
    apply_s = time.perf_counter() - started
    try:
        [entry] = json.loads(_run("status", name, "-o", "json", home=home, cache=cache).stdout)
        key = _run("key", name, home=home, cache=cache).stdout.strip()
        endpoint = str(entry["endpoint"])
        _generate(endpoint, key, name, 16)  # warm-up
        single = _throughput(endpoint, key, name, args.tokens, 1)
        multi = _throughput(endpoint, key, name, args.tokens, args.streams)
        served = _served_perplexity(endpoint, key, name)
    finally:
        _run("destroy", name, home=home, cache=cache)
    if "none" in label:
        plan = json.loads(_run("plan", str(manifest), "-o", "json", home=home, cache=cache).stdout)
        folder = Path(plan["engine"]["args"][plan["engine"]["args"].index("--model") + 1])
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        return Row(label, size, None, None, None, apply_s, single, multi, served)
    record = json.loads(
        _run("quantize", str(manifest), "-o", "json", home=home, cache=cache).stdout
    )
    return Row(
        label,
        int(record["artifact_bytes"]),
        float(record["source_perplexity"]),
        float(record["quantized_perplexity"]),
        float(record["total_seconds"]),
        apply_s,
        single,
        multi,
        served,
    )


def _generate(endpoint: str, key: str, model: str, tokens: int) -> int:
    response = httpx.post(
        f"{endpoint}/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": model,
            "prompt": PROMPT,
            "max_tokens": tokens,
            "temperature": 0,
            "ignore_eos": True,
        },
        timeout=600,
    )
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


def _served_perplexity(endpoint: str, key: str, model: str, window: int = 512) -> float:
    """Perplexity of the served model on the evaluation text, from vLLM's prompt_logprobs over
    the same windows of 512 tokens the quantizer uses (a cross-check of the quantizer's figure)."""
    headers = {"Authorization": f"Bearer {key}"}
    base = endpoint.removesuffix("/v1")
    text = EVAL_TEXT.read_text()
    tokens = httpx.post(
        f"{base}/tokenize", headers=headers, json={"model": model, "prompt": text}, timeout=60
    ).json()["tokens"]
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, window):
        chunk = tokens[start : start + window]
        if len(chunk) < 2:
            break
        response = httpx.post(
            f"{endpoint}/completions",
            headers=headers,
            json={"model": model, "prompt": chunk, "max_tokens": 1, "prompt_logprobs": 0},
            timeout=600,
        )
        response.raise_for_status()
        entries = response.json()["choices"][0]["prompt_logprobs"]
        for token, entry in zip(chunk[1:], entries[1:], strict=True):
            nll -= float(entry[str(token)]["logprob"])
            count += 1
    return math.exp(nll / count)


def _throughput(endpoint: str, key: str, model: str, tokens: int, streams: int) -> float:
    """Generated tokens per second over ``streams`` concurrent requests of ``tokens`` each."""
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        done = sum(pool.map(lambda _: _generate(endpoint, key, model, tokens), range(streams)))
    return done / (time.perf_counter() - started)


def _print(rows: list[Row], args: argparse.Namespace) -> None:
    base = rows[0]
    source_ppl = next((r.source_ppl for r in rows if r.source_ppl is not None), None)
    print(
        f"\n{'scheme':<12} {'size':>9} {'ratio':>6} {'perplexity':>17} {'quantize':>9} "
        f"{'apply':>7} {'1 stream':>12} {'ratio':>6} {f'{args.streams} streams':>12} {'ratio':>6} "
        f"{'served ppl':>17}"
    )
    for row in rows:
        ppl = row.ppl if row.ppl is not None else source_ppl
        delta = (
            "" if row.ppl is None or source_ppl is None else f" ({row.ppl / source_ppl - 1:+.1%})"
        )
        quantize = "-" if row.quantize_s is None else f"{row.quantize_s:.0f} s"
        print(
            f"{row.scheme:<12} {row.bytes / 1e6:>7.0f}MB {row.bytes / base.bytes:>6.2f} "
            f"{(f'{ppl:.2f}' if ppl else '-') + delta:>17} {quantize:>9} {row.apply_s:>5.0f} s "
            f"{row.single_tps:>8.1f} t/s {row.single_tps / base.single_tps:>6.2f} "
            f"{row.multi_tps:>8.1f} t/s {row.multi_tps / base.multi_tps:>6.2f} "
            f"{row.served_ppl:>8.2f} ({row.served_ppl / base.served_ppl - 1:+.1%})"
        )
    print(
        f"\n{args.tokens} generated tokens per request (ignore_eos), temperature 0; perplexity on "
        "deployer's built-in evaluation text (en-v1), measured by the quantizer with transformers, "
        "and 'served ppl' by vLLM's prompt_logprobs on the served model; quantize = the "
        "quantizer's whole run (load, perplexity twice, calibrate, save)."
    )


if __name__ == "__main__":
    main()
