"""GuideLLM as ``deployer bench`` runs it: the scenario from the manifest, the run, its report.

:func:`scenario` (pure) turns ``spec.benchmark`` and ``spec.slo`` into GuideLLM 0.8's own
scenario layout (what ``guidellm run --scenario FILE`` reads):

- the workload: synthetic prompts of the given token counts (a number, or mean, stdev, min and
  max), or the rows of the pinned dataset file (its sha256 checked first), with the seed;
- the load: one sub-benchmark per concurrency ('concurrent') or per rate with Poisson arrivals
  ('rate'); 'search' is GuideLLM's goodput search (concurrency doubled from 1 until a level
  fails, then bisected, at most ``maxConcurrency``), each objective's threshold the metric's
  per-request one (:meth:`LatencyTarget.per_request_ms`, ITL as GuideLLM's ``tpot_ms``, which it
  compares with its inter-token latency) and the target attainment the highest percentile named
  (0.99 for p99);
- each point at most ``durationSeconds`` (warm-up included) and ``maxRequests``, the first
  ``warmupSeconds`` not measured; every request kept (no sampling);
- the endpoint's chat completions route, the served model name, the deployment's own model
  folder as tokenizer. The API key is never in the scenario or an argv: the worker takes it from
  its environment.

:func:`run` runs it with :mod:`.guidellm_worker` in GuideLLM's virtualenv (through
:func:`deployer.runner.stream`, in a process group of its own) and reads each point as it
finishes with :func:`parse_benchmark`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deployer import runner
from deployer.bench import guidellm_worker
from deployer.bench.measure import PointSamples, RequestSample, load_point, target_attainment
from deployer.bench.results import LoadPoint
from deployer.digests import sha256_file
from deployer.errors import BenchError, ManifestError
from deployer.events import EventBus
from deployer.manifest.performance import BenchmarkSpec, SloSpec, TokenCount, Tokens
from deployer.tools.guidellm import GUIDELLM_VERSION
from deployer.tools.venv import ToolEnv

TOOL = f"guidellm {GUIDELLM_VERSION}"
#: GuideLLM's name for each of deployer's metrics in its SLO.
SLO_NAMES = {"ttft_ms": "ttft_ms", "itl_ms": "tpot_ms", "e2e_ms": "e2el_ms"}
_STEP = "bench"


@dataclass(frozen=True)
class LoadTarget:
    """What the load goes to: the engine's base URL (no ``/v1``), the model name clients send,
    and the model folder whose tokenizer sizes the prompts."""

    url: str
    model: str
    tokenizer: Path


def scenario(
    benchmark: BenchmarkSpec,
    slo: SloSpec | None,
    target: LoadTarget,
    *,
    report: Path,
    base_dir: Path,
) -> dict[str, Any]:
    """GuideLLM's scenario for ``benchmark`` against ``target``, its JSON report at ``report``
    (pure but for the dataset's sha256 check: ManifestError when the file differs)."""
    load = benchmark.load
    profile: dict[str, Any]
    overrides: list[dict[str, Any] | None] = [None]
    if load.kind == "concurrent":
        profile = {"kind": "concurrent", "streams": [load.concurrencies[0]]}
        overrides = [{"profile.streams": value} for value in load.concurrencies]
    elif load.kind == "rate":
        profile = {"kind": "poisson", "rate": [load.rates[0]]}
        overrides = [{"profile.rate": value} for value in load.rates]
    else:
        if slo is None:
            raise ManifestError(
                "benchmark.load kind 'search' looks for the SLO's limit: give 'slo'"
            )
        profile = {
            "kind": "goodput",
            "target_attainment": min(target_attainment(slo), 0.999),
            "initial_streams": 1,
            "max_streams": load.max_concurrency,
        }
    if benchmark.warmup_seconds:
        profile["warmup"] = {"mode": "duration", "value": benchmark.warmup_seconds}
    constraints: list[dict[str, Any]] = [
        {"kind": "max_duration", "seconds": benchmark.duration_seconds}
    ]
    if benchmark.max_requests is not None:
        constraints.append({"kind": "max_requests", "count": benchmark.max_requests})
    metrics: dict[str, Any] = {"kind": "generative", "sample_size": None}
    if slo is not None and slo.objectives():
        metrics["slo"] = {
            SLO_NAMES[metric]: target.per_request_ms()
            for metric, target in slo.objectives().items()
        }
    spec: dict[str, Any] = {
        "backend": {
            "kind": "openai_http",
            "target": target.url,
            "model": target.model,
            "request_format": "/v1/chat/completions",
        },
        "profile": profile,
        "constraints": constraints,
        "tokenizer": {"kind": "huggingface_auto", "model": str(target.tokenizer)},
        "data": [_data(benchmark, base_dir)],
        "seed": {"kind": "static", "value": benchmark.workload.seed},
        "outputs": [{"kind": "json", "path": str(report)}],
        "metrics": metrics,
    }
    if benchmark.workload.dataset is not None:
        spec["data_column_mapper"] = {
            "kind": "generative_column_mapper",
            "column_mappings": {
                "text_column": "prompt",
                "output_tokens_count_column": "output_tokens",
            },
        }
    return {"spec": spec, "benchmarks": overrides}


def _data(benchmark: BenchmarkSpec, base_dir: Path) -> dict[str, Any]:
    workload = benchmark.workload
    if workload.dataset is not None and workload.dataset.file is not None:
        path = Path(workload.dataset.file).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            found = sha256_file(path)
        except OSError as exc:
            raise ManifestError(
                f"benchmark dataset {path}: {exc.strerror}",
                hint="spec.benchmark.workload.dataset.file is relative to the manifest",
            ) from exc
        if found != workload.dataset.sha256:
            raise ManifestError(
                f"benchmark dataset {path} has sha256 {found}, not the pinned "
                f"{workload.dataset.sha256}",
                hint="pin the file's new sha256 if the change is intended (sha256sum FILE)",
            )
        return {"kind": "json_file", "path": str(path)}
    return {
        "kind": "synthetic_text",
        **_tokens("prompt_tokens", workload.prompt_tokens),
        **_tokens("output_tokens", workload.output_tokens),
    }


def _tokens(name: str, tokens: Tokens) -> dict[str, int]:
    if not isinstance(tokens, TokenCount):
        return {name: tokens}
    spread: dict[str, int] = {name: tokens.mean}
    if tokens.stdev:
        spread[f"{name}_stdev"] = tokens.stdev
    if tokens.min is not None:
        spread[f"{name}_min"] = tokens.min
    if tokens.max is not None:
        spread[f"{name}_max"] = tokens.max
    return spread


# --- the report -------------------------------------------------------------------------------


def parse_benchmark(
    benchmark: dict[str, Any], load_kind: Literal["concurrent", "rate", "search"]
) -> PointSamples:
    """One GuideLLM benchmark (a load point or a search's probe) as its requests: every one it
    sent, those that ended inside the measured window marked as measured (what a rate per
    second of the window counts; GuideLLM's own latency figures also take requests that only
    overlap the window). Raises BenchError for a report it cannot read."""
    try:
        strategy = benchmark["config"]["strategy"]
        timing = benchmark["scheduler_metrics"]
        start, end = float(timing["measure_start_time"]), float(timing["measure_end_time"])
        requests = benchmark["requests"]
        samples: list[RequestSample] = []
        for status, key in (
            ("completed", "successful"),
            ("errored", "errored"),
            ("incomplete", "incomplete"),
        ):
            for stats in requests.get(key) or ():
                samples.append(_sample(stats, status, start, end))
        if strategy["type_"] == "concurrent":
            value = float(strategy["streams"])
        else:
            value = float(strategy["rate"])
        duration = float(benchmark["duration"])
        state = benchmark.get("scheduler_state") or {}
        # GuideLLM may close a point while a request still runs (it completes on the engine
        # but is not in the report): it was started all the same. Cancelled requests that
        # never started (queued when the clock ran out) never reached the engine.
        counted = ("successful_requests", "errored_requests", "processing_requests")
        started = (
            sum(int(state[key]) for key in counted) + len(requests.get("incomplete") or ())
            if all(key in state for key in counted)
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"cannot read GuideLLM's report: {type(exc).__name__} {exc}") from exc
    return PointSamples(
        kind=load_kind,
        value=value,
        duration_seconds=duration,
        samples=tuple(samples),
        started=started,
    )


def _sample(stats: dict[str, Any], status: str, start: float, end: float) -> RequestSample:
    ended = stats.get("request_end_time")
    measured = ended is not None and start < ended <= end
    latency = stats.get("request_latency")
    return RequestSample(
        status=status,  # type: ignore[arg-type]
        input_tokens=int(stats.get("prompt_tokens") or 0),
        output_tokens=int(stats.get("output_tokens") or 0),
        ttft_ms=stats.get("time_to_first_token_ms"),
        itl_ms=stats.get("inter_token_latency_ms"),
        e2e_ms=latency * 1000.0 if latency is not None else None,
        measured=measured,
    )


def read_point(
    path: Path, load_kind: Literal["concurrent", "rate", "search"], slo: SloSpec | None
) -> LoadPoint:
    """The load point in one of the worker's ``point-NNN.json`` files, judged against ``slo``."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read GuideLLM's point {path}: {exc}") from exc
    return load_point(parse_benchmark(raw, load_kind), slo)


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What a GuideLLM run left: the points it finished, and why it stopped early (None when
    every point ran)."""

    points: tuple[LoadPoint, ...]
    stopped: str | None
    log: Path


def run(
    env: ToolEnv,
    document: dict[str, Any],
    *,
    work_dir: Path,
    api_key: str | None,
    load_kind: Literal["concurrent", "rate", "search"],
    slo: SloSpec | None,
    events: EventBus,
    on_point: Callable[[LoadPoint], None] | None = None,
    check: Callable[[], str | None] | None = None,
) -> RunOutcome:
    """Run the scenario ``document`` and return its points. Blocks until GuideLLM ends.

    Each finished point is judged and passed to ``on_point`` at once (so a caller can keep it),
    and emitted as a progress event. ``check`` is asked after each point and whenever GuideLLM
    reports failed requests: a reason string (the engine died) stops the run. GuideLLM failing is
    a stop with its last lines as the reason; the points before it are kept. KeyboardInterrupt
    (Ctrl-C) stops GuideLLM and every process it started, then propagates; whatever finished was
    given to ``on_point`` by then.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    scenario_path = work_dir / "scenario.json"
    scenario_path.write_text(json.dumps(document, indent=1))
    points_dir = work_dir / "points"
    points: list[LoadPoint] = []
    tail: deque[str] = deque(maxlen=8)
    stopped: list[str] = []
    budget = len(document.get("benchmarks") or [None])

    def on_line(line: str) -> None:
        if line.startswith(guidellm_worker.POINT_PREFIX):
            point = read_point(Path(line.split(" ", 2)[2]), load_kind, slo)
            points.append(point)
            events.progress(
                f"{point.label}: {point.requests_per_second:.2f} req/s, "
                f"{point.output_tokens_per_second:.1f} output tok/s",
                completed=len(points),
                total=None if load_kind == "search" else budget,
                step=_STEP,
            )
            if on_point is not None:
                on_point(point)
            _stop_if(check)
            return
        tail.append(line)
        events.log(line, step=_STEP)
        if "errored=" in line and " errored=0 " not in line:
            _stop_if(check)

    def _stop_if(probe: Callable[[], str | None] | None) -> None:
        reason = probe() if probe is not None else None
        if reason is not None:
            stopped.append(reason)
            raise _Stop(reason)

    env_vars = {
        "GUIDELLM__LOGGING__CONSOLE_LOG_LEVEL": "INFO",
        # Offline: the tokenizer is the local folder; no telemetry, no hub lookups.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if api_key:
        env_vars[guidellm_worker.KEY_VARIABLE] = api_key
    argv = [
        str(env.python),
        str(Path(guidellm_worker.__file__)),
        str(scenario_path),
        str(points_dir),
    ]
    log = work_dir / "guidellm.log"
    events.log(f"running {runner.display(argv)}", step=_STEP)
    try:
        code = runner.stream(argv, log=log, on_line=on_line, env=env_vars, own_group=True)
    except _Stop:
        return RunOutcome(tuple(points), stopped[0], log)
    if code == 0:
        return RunOutcome(tuple(points), None, log)
    errors = [line for line in tail if line.startswith("ERROR ")]
    why = errors[-1][len("ERROR ") :] if errors else (tail[-1] if tail else f"exit code {code}")
    reason = check() if check is not None else None
    return RunOutcome(tuple(points), reason or f"GuideLLM failed: {why}", log)


class _Stop(Exception):
    """Raised from the output callback to stop GuideLLM (the engine died)."""
