"""``deployer bench``: load a deployed endpoint with GuideLLM against its SLO, optionally
cross-checked with ``vllm bench serve``, and keep what was measured with the revision measured.

:func:`bench` is a recorded run (operation ``bench``). The deployment must be healthy and run the
manifest as it is now (a changed, unapplied manifest would measure something else than its file
says). Every finished load point is kept: Ctrl-C, an engine that dies or a tool that fails
leaves a result marked partial (stored, never priced from) and a one-line error.
:func:`benchmarks` lists a deployment's results (those of its current revision by default),
:func:`benchmark` reads one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployer import credentials
from deployer.api.daytwo import record_target
from deployer.api.facts import manifest_digest, model_source
from deployer.api.pricing import price_of
from deployer.api.runs import get, open_store, reading, recorded
from deployer.api.types import Result
from deployer.bench import guidellm_load, vllm_bench
from deployer.bench.results import BenchResult, BenchStatus, LoadPoint
from deployer.engines import registry as engines
from deployer.engines.install import EngineEnv, default_package, find_engine
from deployer.errors import BenchError, NotFoundError, UnsupportedError
from deployer.events import EventBus
from deployer.hub.source import ModelSourceFacts
from deployer.manifest.loader import LoadedManifest, load_manifest
from deployer.manifest.performance import LoadSpec
from deployer.planner import StepAction
from deployer.settings import Settings, check_name
from deployer.smoke.gate import GateVerdict
from deployer.state import BenchRecord, DeploymentRecord, DeploymentStatus
from deployer.targets.base import Target
from deployer.tools.guidellm import find_guidellm
from deployer.tools.venv import ToolEnv


class Benchmark(Result):
    """One stored benchmark: its id in the state and what it measured."""

    id: int
    result: BenchResult

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.result.model_dump(mode="json")}


def bench(
    name: str,
    settings: Settings,
    events: EventBus,
    *,
    cross_check: bool = False,
    manifest: Path | None = None,
    loaded: LoadedManifest | None = None,
) -> Benchmark:
    """Benchmark ``name`` as its manifest's ``spec.benchmark`` says and store the result.

    Blocks for the load's duration. Raises BenchError (one line) when the deployment is not
    healthy, when its manifest changed since it was applied, or when the run stopped early (the
    engine died, GuideLLM failed): the points that finished are stored as a partial result
    first. KeyboardInterrupt stops the load (no process is left), stores the partial result and
    propagates. EngineNotInstalledError when GuideLLM (or, with ``cross_check``, the engine's
    environment) is not installed.
    """
    check_name(name)
    store = open_store(settings)
    try:
        record = get(store, name)
        loaded = loaded or _manifest(record, manifest)
        _same_revision(record, loaded)
        spec = loaded.deployment.spec
        target = record_target(record, settings)
        tool = find_guidellm(settings)
        source = model_source(loaded, settings, EventBus(), offline=True)
        tokenizer = _tokenizer(source)
        placement = target.placement(spec.resources.accelerator)
        package = default_package(spec.serving.engine, spec.serving.version, placement.device)
        if cross_check and engines.get(spec.serving.engine).serve_benchmark_module is None:
            raise UnsupportedError(
                f"--cross-check runs the engine's own serving benchmark: {spec.serving.engine} "
                "has none"
            )
        engine = find_engine(settings, package) if cross_check else None
        key = _api_key(loaded, settings)
        started = datetime.now(UTC)
        work_dir = settings.deployment_dir(name) / "bench" / started.strftime("%Y%m%dT%H%M%SZ")
        base = BenchResult(
            deployment=name,
            manifest_digest=record.manifest_digest or manifest_digest(loaded),
            model_revision=_revision(loaded, source),
            model=loaded.deployment.served_model_name,
            engine=f"{package.package} {package.version}",
            accelerator=placement.accelerator.name if placement.accelerator else "unknown",
            accelerator_count=spec.resources.count if isinstance(spec.resources.count, int) else 1,
            **price_of(loaded, placement.accelerator),
            tool=guidellm_load.TOOL,
            started_at=started,
            finished_at=started,
            workload=spec.benchmark.model_dump(mode="json", by_alias=True, exclude_none=True),
            slo=spec.slo.model_dump(mode="json", by_alias=True, exclude_none=True)
            if spec.slo
            else None,
        )
        saved: list[int] = []

        def keep(result: BenchResult) -> BenchResult:
            kept = result.model_copy(update={"finished_at": datetime.now(UTC)})
            row = store.add_bench_result(
                name,
                run_id=kept.run_id,
                manifest_digest=kept.manifest_digest,
                model_revision=kept.model_revision,
                status=kept.status.value,
                tool=kept.tool,
                started_at=kept.started_at,
                finished_at=kept.finished_at,
                result=kept.model_dump(mode="json"),
            )
            saved.append(row.id)
            return kept

        with recorded(store, name, "bench", events) as pipeline:
            base = base.model_copy(update={"run_id": pipeline.run_id})
            with target.smoke_endpoints(name) as endpoints:
                observed = target.observe(name)
                if not endpoints or not observed.running or not observed.healthy:
                    why = observed.detail or ("not running" if not observed.running else "")
                    reason = f"{name} is not healthy" + (f": {why}" if why else "")
                    keep(_partial(base, (), reason))
                    raise BenchError(reason, hint=f"deployer status {name}")
                load = guidellm_load.LoadTarget(
                    url=endpoints[0].removesuffix("/").removesuffix("/v1"),
                    model=loaded.deployment.served_model_name,
                    tokenizer=tokenizer,
                )
                result = pipeline.step(
                    "bench",
                    StepAction.CHECK,
                    _describe(loaded),
                    lambda: _measure(base, loaded, load, tool, work_dir, key, events, target, keep),
                )
                if engine is not None:
                    measured = result
                    try:
                        result = pipeline.step(
                            "cross-check",
                            StepAction.CHECK,
                            f"vllm bench serve {engine.package.version}, the same "
                            f"{len(result.points)} load point(s)",
                            lambda: _cross_check(
                                measured, loaded, load, engine, work_dir, key, events
                            ),
                        )
                    except BaseException:
                        # GuideLLM's measurement is whole: it is kept without the cross-check.
                        keep(measured)
                        raise
                result = keep(result)
        return Benchmark(id=saved[-1], result=result)
    finally:
        store.close()


def benchmarks(
    name: str, settings: Settings, *, every_revision: bool = False, limit: int = 20
) -> list[Benchmark]:
    """``name``'s stored benchmarks, newest first: those of the revision it was last applied
    with, or of every revision with ``every_revision``. Reads only."""
    with reading(settings, name) as store:
        record = get(store, name)
        digest = None if every_revision else record.manifest_digest
        rows = store.list_bench_results(name, manifest_digest=digest, limit=limit)
    return [_benchmark(row) for row in rows]


def benchmark(result_id: int, settings: Settings, name: str | None = None) -> Benchmark:
    """One stored benchmark by id (NotFoundError when there is none, or it is not ``name``'s)."""
    from deployer.api.runs import open_reader

    store = open_reader(settings)
    row = store.get_bench_result(result_id) if store is not None else None
    if store is not None:
        store.close()
    if row is None or (name is not None and row.deployment != name):
        raise NotFoundError(
            f"no benchmark {result_id}" + (f" of {name}" if name else ""),
            hint="deployer bench NAME --list shows them",
        )
    return _benchmark(row)


def slo_gate(
    loaded: LoadedManifest,
    endpoint: str,
    api_key: str | None,
    seconds: int,
    settings: Settings,
    events: EventBus,
) -> GateVerdict:
    """A rollout's SLO gate (``rollout.gate: slo``): one short GuideLLM load point against the
    new engine's own ``endpoint`` (``.../v1``), judged against spec.slo. The load is the
    heaviest of spec.benchmark (its highest concurrency or rate; a search's gate runs at
    concurrency 1), for ``seconds`` with a fifth of it as warm-up. Not stored as a benchmark:
    the new engine is not serving yet. Raises EngineNotInstalledError without GuideLLM."""
    spec = loaded.deployment.spec
    slo = spec.slo
    if slo is None:
        return GateVerdict(passed=False, reason="no spec.slo to gate on")
    load = spec.benchmark.load
    if load.kind == "rate":
        point = LoadSpec(kind="rate", rates=[max(load.rates)])
    else:
        point = LoadSpec(kind="concurrent", concurrencies=[max(load.concurrencies or [1])])
    if load.kind == "search":
        point = LoadSpec(kind="concurrent", concurrencies=[1])
    benchmark = spec.benchmark.model_copy(
        update={
            "load": point,
            "duration_seconds": seconds,
            "warmup_seconds": max(1, seconds // 5),
            "max_requests": None,
        }
    )
    tool = find_guidellm(settings)
    source = model_source(loaded, settings, EventBus(), offline=True)
    work_dir = settings.deployment_dir(loaded.deployment.name) / "slo-gate"
    work_dir.mkdir(parents=True, exist_ok=True)
    target = guidellm_load.LoadTarget(
        url=endpoint.removesuffix("/").removesuffix("/v1"),
        model=loaded.deployment.served_model_name,
        tokenizer=_tokenizer(source),
    )
    document = guidellm_load.scenario(
        benchmark, slo, target, report=work_dir / "guidellm-report.json", base_dir=loaded.base_dir
    )
    outcome = guidellm_load.run(
        tool,
        document,
        work_dir=work_dir,
        api_key=api_key,
        load_kind=point.kind,
        slo=slo,
        events=events,
    )
    if outcome.stopped is not None or not outcome.points:
        return GateVerdict(
            passed=False,
            reason=f"the gate's benchmark did not finish: {outcome.stopped or 'no load point'}",
        )
    measured = outcome.points[-1]
    if measured.requests == 0:
        cut = f" ({measured.incomplete} cut off at its end)" if measured.incomplete else ""
        return GateVerdict(
            passed=False,
            reason=f"{measured.label}: no request completed in the gate's {seconds}s{cut}, so "
            "the SLO could not be measured; give rollout.gateSeconds more time",
        )
    figures = {
        f"{metric}_{percentile}": value
        for metric in ("ttft_ms", "itl_ms", "e2e_ms")
        for percentile in ("p50", "p99")
        if (value := measured.metric(metric).at(percentile)) is not None
    }
    if measured.goodput is not None:
        figures["goodput_per_s"] = round(measured.goodput, 3)
    if measured.meets_slo:
        return GateVerdict(passed=True, reason=f"{measured.label} meets the SLO", measured=figures)
    missed = "; ".join(measured.missed) or "the SLO is not met"
    return GateVerdict(passed=False, reason=f"{measured.label}: {missed}", measured=figures)


# --- the parts ---------------------------------------------------------------------------------


def _measure(
    base: BenchResult,
    loaded: LoadedManifest,
    load: guidellm_load.LoadTarget,
    tool: ToolEnv,
    work_dir: Path,
    key: str | None,
    events: EventBus,
    target: Target,
    keep: Callable[[BenchResult], BenchResult],
) -> BenchResult:
    """GuideLLM's run; a stop or Ctrl-C stores the points so far as a partial result."""
    spec = loaded.deployment.spec
    document = guidellm_load.scenario(
        spec.benchmark,
        spec.slo,
        load,
        report=work_dir / "guidellm-report.json",
        base_dir=loaded.base_dir,
    )
    finished: list[LoadPoint] = []
    name = loaded.deployment.name

    def engine_down() -> str | None:
        observed = target.observe(name)
        if observed.running and observed.healthy:
            return None
        return f"the engine of {name} stopped answering" + (
            f" ({observed.detail})" if observed.detail else ""
        )

    try:
        outcome = guidellm_load.run(
            tool,
            document,
            work_dir=work_dir,
            api_key=key,
            load_kind=spec.benchmark.load.kind,
            slo=spec.slo,
            events=events,
            on_point=finished.append,
            check=engine_down,
        )
    except KeyboardInterrupt:
        keep(_partial(base, tuple(finished), "interrupted (Ctrl-C)"))
        raise
    except BaseException as exc:
        keep(_partial(base, tuple(finished), str(exc) or type(exc).__name__))
        raise
    if outcome.stopped is not None:
        kept = keep(_partial(base, outcome.points, outcome.stopped))
        raise BenchError(
            f"{outcome.stopped}; {len(kept.points)} finished load point(s) kept as a partial "
            "result",
            hint=f"GuideLLM's log: {outcome.log}",
        )
    return base.model_copy(update={"points": outcome.points})


def _cross_check(
    result: BenchResult,
    loaded: LoadedManifest,
    load: guidellm_load.LoadTarget,
    engine: EngineEnv,
    work_dir: Path,
    key: str | None,
    events: EventBus,
) -> BenchResult:
    spec = loaded.deployment.spec
    points = vllm_bench.run(
        engine,
        result.points,
        spec.benchmark,
        spec.slo,
        load,
        work_dir=work_dir / "vllm-bench",
        base_dir=loaded.base_dir,
        api_key=key,
        events=events,
    )
    return result.model_copy(update={"cross_check": points})


def _partial(base: BenchResult, points: tuple[LoadPoint, ...], reason: str) -> BenchResult:
    return base.model_copy(
        update={"status": BenchStatus.PARTIAL, "reason": reason, "points": points}
    )


def _manifest(record: DeploymentRecord, manifest: Path | None) -> LoadedManifest:
    path = manifest or (Path(record.manifest_path) if record.manifest_path else None)
    if path is None:
        raise NotFoundError(f"no manifest recorded for {record.name}", hint="pass --manifest PATH")
    loaded = load_manifest(path)
    if loaded.deployment.name != record.name:
        raise NotFoundError(
            f"{path} describes {loaded.deployment.name}, not {record.name}",
            hint="pass the manifest of this deployment with --manifest",
        )
    return loaded


def _same_revision(record: DeploymentRecord, loaded: LoadedManifest) -> None:
    if record.status == DeploymentStatus.DESTROYED:
        raise BenchError(f"{record.name} is destroyed", hint=f"deployer apply {loaded.path}")
    if record.manifest_digest and record.manifest_digest != manifest_digest(loaded):
        raise BenchError(
            f"{loaded.path} changed since {record.name} was applied: the engine runs the "
            "revision before",
            hint=f"deployer apply {loaded.path}, then bench what it applied",
        )


def _tokenizer(source: ModelSourceFacts) -> Path:
    if source.path.is_file():
        raise UnsupportedError(
            f"deployer bench sizes prompts with the model folder's tokenizer: {source.path} is "
            "a single file",
            hint="benchmark a deployment of a model folder (safetensors)",
        )
    return source.path


def _revision(loaded: LoadedManifest, source: ModelSourceFacts) -> str:
    """The hub commit (``REPO@COMMIT``), or the folder with its fingerprint."""
    model = loaded.deployment.spec.model
    if model.source == "huggingface" and source.commit:
        return f"{model.repo}@{source.commit}"
    return f"{source.path}@{source.fingerprint[:16]}"


def _api_key(loaded: LoadedManifest, settings: Settings) -> str | None:
    name = loaded.deployment.name
    spec = loaded.deployment.spec
    if spec.serving.api_key:
        return credentials.api_key(
            spec.serving.api_key, key_dir=settings.deployment_dir(name), base_dir=loaded.base_dir
        ).value
    return credentials.stored_api_key(settings.deployment_dir(name))


def _describe(loaded: LoadedManifest) -> str:
    benchmark = loaded.deployment.spec.benchmark
    load = benchmark.load
    if load.kind == "concurrent":
        what = "concurrency " + ", ".join(str(c) for c in load.concurrencies)
    elif load.kind == "rate":
        what = "rate " + ", ".join(f"{r:g}/s" for r in load.rates)
    else:
        what = f"the highest concurrency up to {load.max_concurrency} meeting the SLO"
    return f"{guidellm_load.TOOL}: {what}, {benchmark.duration_seconds}s each"


def _benchmark(row: BenchRecord) -> Benchmark:
    return Benchmark(id=row.id, result=BenchResult.model_validate(row.result))


__all__ = [
    "BenchResult",
    "Benchmark",
    "LoadPoint",
    "bench",
    "benchmark",
    "benchmarks",
]
