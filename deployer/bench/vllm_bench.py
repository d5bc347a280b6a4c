"""``vllm bench serve`` as ``deployer bench --cross-check`` runs it: the same load, another tool.

For each load point GuideLLM measured, :func:`argv` (pure) asks ``vllm bench serve`` (from the
engine's own virtualenv, through :mod:`.vllm_bench_worker`) for the same thing: the same
concurrency (``--max-concurrency``) or rate (``--request-rate``, Poisson arrivals), as many
requests as GuideLLM completed in the point (at least one round of the concurrency), the same
prompt and output token counts (``random`` prompts with ``--ignore-eos``; a distribution becomes
``--random-range-ratio`` stdev/mean, vLLM's uniform spread, so the shapes differ there) or the
same dataset file, the same chat completions route, model name and tokenizer, and the SLO's
per-request thresholds as ``--goodput``. The API key goes in ``OPENAI_API_KEY``, never argv.

:func:`parse_result` reads the ``--save-detailed`` JSON per request (TTFT, vLLM's TPOT =
(latency - TTFT) / (output tokens - 1), which is ITL here, and E2E) into the same
:class:`~deployer.bench.measure.PointSamples` GuideLLM's report becomes.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

from deployer import runner
from deployer.bench import vllm_bench_worker
from deployer.bench.guidellm_load import LoadTarget
from deployer.bench.measure import PointSamples, RequestSample, load_point
from deployer.bench.results import LoadPoint
from deployer.engines.install import EngineEnv
from deployer.errors import BenchError
from deployer.events import EventBus
from deployer.manifest.performance import BenchmarkSpec, SloSpec, TokenCount, Tokens

#: vLLM's name for each of deployer's metrics in ``--goodput``.
GOODPUT_NAMES = {"ttft_ms": "ttft", "itl_ms": "tpot", "e2e_ms": "e2el"}
_STEP = "cross-check"


def tool(env: EngineEnv) -> str:
    return f"vllm bench serve {env.package.version}"


def argv(
    point: LoadPoint,
    benchmark: BenchmarkSpec,
    slo: SloSpec | None,
    target: LoadTarget,
    *,
    result: Path,
    base_dir: Path,
) -> list[str]:
    """``vllm bench serve``'s flags for the same load as ``point`` (pure)."""
    workload = benchmark.workload
    concurrency = int(point.value) if point.kind != "rate" else None
    prompts = max(point.requests, concurrency or 1)
    flags = [
        "--backend", "openai-chat",
        "--base-url", target.url,
        "--endpoint", "/v1/chat/completions",
        "--model", target.model,
        "--tokenizer", str(target.tokenizer),
        "--num-prompts", str(prompts),
        "--seed", str(workload.seed),
        "--num-warmups", str(concurrency or 1) if benchmark.warmup_seconds else "0",
        "--ignore-eos",
        "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99",
        "--save-result", "--save-detailed",
        "--result-dir", str(result.parent),
        "--result-filename", result.name,
    ]  # fmt: skip
    if concurrency is not None:
        flags += ["--max-concurrency", str(concurrency)]
    else:
        flags += ["--request-rate", f"{point.value:g}"]
    if workload.dataset is not None and workload.dataset.file is not None:
        path = Path(workload.dataset.file).expanduser()
        path = path if path.is_absolute() else base_dir / path
        flags += ["--dataset-name", "custom", "--dataset-path", str(path)]
        flags += ["--custom-output-len", str(_mean(workload.output_tokens))]
    else:
        flags += ["--dataset-name", "random"]
        flags += ["--random-input-len", str(_mean(workload.prompt_tokens))]
        flags += ["--random-output-len", str(_mean(workload.output_tokens))]
        flags += ["--random-range-ratio", f"{_spread(workload.prompt_tokens):g}"]
    if slo is not None and slo.objectives():
        flags += [
            "--goodput",
            *(
                f"{GOODPUT_NAMES[metric]}:{target_.per_request_ms():g}"
                for metric, target_ in slo.objectives().items()
            ),
        ]
    return flags


def _mean(tokens: Tokens) -> int:
    return tokens.mean if isinstance(tokens, TokenCount) else tokens


def _spread(tokens: Tokens) -> float:
    if not isinstance(tokens, TokenCount) or not tokens.stdev:
        return 0.0
    return min(tokens.stdev / tokens.mean, 0.99)


def parse_result(raw: dict[str, Any], point: LoadPoint) -> PointSamples:
    """``vllm bench serve``'s detailed result as requests (all measured: it has no warm-up
    window; its warm-ups are not in the result). Raises BenchError for a result it cannot
    read."""
    try:
        errors = raw["errors"]
        rows = zip(
            raw["input_lens"], raw["output_lens"], raw["ttfts"], raw["latencies"], errors,
            strict=True,
        )  # fmt: skip
        samples = []
        for prompt, output, ttft, latency, error in rows:
            if error:
                samples.append(RequestSample("errored", int(prompt or 0), int(output or 0)))
                continue
            itl = (latency - ttft) / (output - 1) * 1000 if output and output > 1 else None
            samples.append(
                RequestSample(
                    "completed",
                    int(prompt),
                    int(output),
                    ttft_ms=ttft * 1000,
                    itl_ms=itl,
                    e2e_ms=latency * 1000,
                )
            )
        duration = float(raw["duration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"cannot read vllm bench serve's result: {exc}") from exc
    return PointSamples(
        kind=point.kind, value=point.value, duration_seconds=duration, samples=tuple(samples)
    )


def run(
    env: EngineEnv,
    points: tuple[LoadPoint, ...],
    benchmark: BenchmarkSpec,
    slo: SloSpec | None,
    target: LoadTarget,
    *,
    work_dir: Path,
    base_dir: Path,
    api_key: str | None,
    events: EventBus,
) -> tuple[LoadPoint, ...]:
    """Run ``vllm bench serve`` once per point, in order, and return its points (judged against
    ``slo``). Raises BenchError with its output's tail when one fails; KeyboardInterrupt stops
    it (and anything it started) and propagates."""
    work_dir.mkdir(parents=True, exist_ok=True)
    measured: list[LoadPoint] = []
    script = str(Path(vllm_bench_worker.__file__))
    for index, point in enumerate(points, 1):
        result = work_dir / f"point-{index:03d}.json"
        command = [
            str(env.python),
            script,
            *argv(point, benchmark, slo, target, result=result, base_dir=base_dir),
        ]
        events.log(f"running {runner.display(command)}", step=_STEP)
        tail: deque[str] = deque(maxlen=20)

        def on_line(line: str, tail: deque[str] = tail) -> None:
            tail.append(line)
            events.log(line, step=_STEP)

        extra = {"OPENAI_API_KEY": api_key} if api_key else {}
        code = runner.stream(
            command,
            log=work_dir / f"point-{index:03d}.log",
            on_line=on_line,
            env={**extra, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            own_group=True,
        )
        if code != 0 or not result.is_file():
            raise BenchError(
                f"vllm bench serve failed on {point.label} (exit code {code})",
                details="\n".join(tail) or None,
            )
        try:
            raw = json.loads(result.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read vllm bench serve's result {result}: {exc}") from exc
        same = load_point(parse_result(raw, point), slo)
        measured.append(same)
        events.progress(
            f"cross-check {same.label}: {same.requests_per_second:.2f} req/s, "
            f"{same.output_tokens_per_second:.1f} output tok/s",
            step=_STEP,
            completed=index,
            total=len(points),
        )
    return tuple(measured)
