"""What a deployment must measure up to, and how it is measured and rolled out.

``spec.slo`` (service-level objectives: latency targets at percentiles and a minimum goodput),
``spec.benchmark`` (the workload and load profile ``deployer bench`` runs) and ``spec.rollout``
(how a changed manifest replaces a serving engine). Part of the manifest: strict like the rest of
:mod:`deployer.manifest.models`, which imports these models.

One word for one thing: **ITL**, inter-token latency, is the time between two streamed output
tokens after the first, averaged over a request. It is what vLLM's ``benchmark_serving`` calls
TPOT ("time per output token", excluding the first) and what GuideLLM calls ITL
(``inter_token_latency_ms``; GuideLLM's own ``time_per_output_token_ms`` includes the first token
and is not used). **TTFT** is the time to the first streamed token, **E2E** the whole request.

**Goodput** is requests per second whose own TTFT, ITL and E2E each meet the objective (vLLM's
``--goodput``, GuideLLM's goodput): a request's threshold for a metric is that metric's target at
its highest percentile given (``p99`` when given, else ``p90``, else ``p50``).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import ByteSize, Field, StringConstraints, model_validator

from deployer.manifest.base import PinnedText, Spec

#: Milliseconds: positive, at most a day.
Millis = Annotated[float, Field(gt=0, le=86_400_000)]

#: VLLM_CPU_OMP_THREADS_BIND: 'auto', 'nobind', or CPU lists such as '0-1' or '0-3|4-7'.
CPU_BIND = (
    r"^(auto|nobind|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*(\|[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*)*)$"
)

#: The percentiles a target may name, lowest first.
PERCENTILES = ("p50", "p90", "p99")


class LatencyTarget(Spec):
    """The highest acceptable latency at each percentile, in milliseconds (at least one)."""

    p50: Millis | None = None
    """Half of the requests at most this many milliseconds."""
    p90: Millis | None = None
    """90% of the requests at most this many milliseconds."""
    p99: Millis | None = None
    """99% of the requests at most this many milliseconds."""

    @model_validator(mode="after")
    def _some_and_ordered(self) -> LatencyTarget:
        given = [(name, getattr(self, name)) for name in PERCENTILES if getattr(self, name)]
        if not given:
            raise ValueError("give at least one of 'p50', 'p90', 'p99' (milliseconds)")
        for (low, low_ms), (high, high_ms) in itertools.pairwise(given):
            if high_ms < low_ms:
                raise ValueError(
                    f"{high} ({high_ms:g} ms) is below {low} ({low_ms:g} ms): a higher "
                    "percentile cannot have a lower target"
                )
        return self

    def targets(self) -> dict[str, float]:
        """Percentile -> milliseconds, for the percentiles given."""
        return {name: value for name in PERCENTILES if (value := getattr(self, name)) is not None}

    def per_request_ms(self) -> float:
        """A request's own threshold for goodput: the target at the highest percentile given."""
        return list(self.targets().values())[-1]


#: Objectives for common classes of deployment. A preset is a starting point: a manifest's own
#: targets replace the preset's for that metric.
SLO_PRESETS: dict[str, dict[str, LatencyTarget]] = {
    # An interactive chat assistant on an 8B-class model.
    "chat-8b": {"ttft_ms": LatencyTarget(p99=500), "itl_ms": LatencyTarget(p99=30)},
    # The same on a 70B-class model (sharded over several accelerators).
    "chat-70b": {"ttft_ms": LatencyTarget(p99=1000), "itl_ms": LatencyTarget(p99=60)},
    # Code completion in an editor: the first token fast, short answers.
    "completion": {"ttft_ms": LatencyTarget(p99=200), "e2e_ms": LatencyTarget(p99=2000)},
    # Offline or batch work: only the whole request's time matters.
    "batch": {"e2e_ms": LatencyTarget(p99=60_000)},
}

SloPreset = Literal["chat-8b", "chat-70b", "completion", "batch"]

METRICS = ("ttft_ms", "itl_ms", "e2e_ms")


class SloSpec(Spec):
    """Service-level objectives: what a load point of a benchmark must meet. A point meets the
    SLO when every target given holds and its goodput is at least 'minGoodput'."""

    preset: SloPreset | None = None
    """Targets for a common class: 'chat-8b' (TTFT p99 500 ms, ITL p99 30 ms), 'chat-70b'
    (TTFT p99 1000 ms, ITL p99 60 ms), 'completion' (TTFT p99 200 ms, E2E p99 2 s) or 'batch'
    (E2E p99 60 s). Targets given here replace the preset's for that metric."""
    ttft_ms: LatencyTarget | None = None
    """Time to first token, in milliseconds."""
    itl_ms: LatencyTarget | None = None
    """Inter-token latency (vLLM's TPOT, GuideLLM's ITL), in milliseconds."""
    e2e_ms: LatencyTarget | None = Field(default=None, alias="e2eMs")
    """End-to-end request latency, in milliseconds."""
    min_goodput: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    """Fewest requests per second that must meet every objective."""

    @model_validator(mode="after")
    def _some_objective(self) -> SloSpec:
        if not self.objectives() and self.min_goodput is None:
            raise ValueError(
                "an SLO needs a 'preset' or at least one of 'ttftMs', 'itlMs', 'e2eMs'"
            )
        if self.min_goodput is not None and not self.objectives():
            raise ValueError("'minGoodput' counts requests meeting latency targets: give some")
        return self

    def objectives(self) -> dict[str, LatencyTarget]:
        """Metric (``ttft_ms``, ``itl_ms``, ``e2e_ms``) -> its targets, the preset's merged
        with the manifest's own."""
        merged = dict(SLO_PRESETS[self.preset]) if self.preset else {}
        for metric in METRICS:
            if (own := getattr(self, metric)) is not None:
                merged[metric] = own
        return {metric: merged[metric] for metric in METRICS if metric in merged}


class TokenCount(Spec):
    """A token count that varies from request to request: a normal distribution, clipped."""

    mean: Annotated[int, Field(ge=1, le=2**20)]
    """The average count."""
    stdev: Annotated[int, Field(ge=0, le=2**20)] = 0
    """Standard deviation (0: every request the same)."""
    min: Annotated[int, Field(ge=1, le=2**20)] | None = None
    """Fewest tokens."""
    max: Annotated[int, Field(ge=1, le=2**20)] | None = None
    """Most tokens."""

    @model_validator(mode="after")
    def _bounds(self) -> TokenCount:
        low, high = self.min or 1, self.max or 2**20
        if not low <= self.mean <= high:
            raise ValueError(f"mean {self.mean} lies outside min {low} .. max {high}")
        return self


#: A token count: a number, or a distribution.
Tokens = Annotated[int, Field(ge=1, le=2**20)] | TokenCount


class DatasetSpec(PinnedText):
    """Prompts from a file, pinned by its sha256: JSON lines, each {"prompt": "..."} and
    optionally {"output_tokens": N}."""

    builtin: None = None
    """Datasets are files; there is no built-in one."""


class WorkloadSpec(Spec):
    """What each request asks: synthetic prompts of given token counts (the default), or the
    prompts of a pinned dataset."""

    prompt_tokens: Tokens = 256
    """Prompt length in tokens (synthetic prompts), a number or {mean, stdev, min, max}."""
    output_tokens: Tokens = 128
    """Tokens generated per request, a number or {mean, stdev, min, max}."""
    dataset: DatasetSpec | None = None
    """Prompts from a file instead of synthetic ones: {file, sha256}."""
    seed: Annotated[int, Field(ge=0, le=2**31)] = 42
    """Seed for the synthetic prompts and the sampling of dataset rows."""


class LoadSpec(Spec):
    """How hard to push: fixed concurrencies, fixed request rates, or a search for the highest
    concurrency that meets the SLO."""

    kind: Literal["concurrent", "rate", "search"] = "concurrent"
    """'concurrent' (that many requests in flight), 'rate' (requests per second, Poisson
    arrivals) or 'search' (the highest concurrency that meets spec.slo)."""
    concurrencies: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=lambda: [1, 2, 4], max_length=64
    )
    """The concurrencies to run, one load point each ('concurrent')."""
    rates: list[Annotated[float, Field(gt=0, le=100_000)]] = Field(
        default_factory=list, max_length=64
    )
    """The request rates to run, one load point each ('rate')."""
    max_concurrency: Annotated[int, Field(ge=1, le=100_000)] = 256
    """Highest concurrency a search tries ('search')."""

    @model_validator(mode="after")
    def _points(self) -> LoadSpec:
        if self.kind == "rate" and not self.rates:
            raise ValueError("a 'rate' load needs 'rates' (requests per second)")
        if self.kind != "rate" and self.rates:
            raise ValueError(f"'rates' go with kind 'rate', not {self.kind!r}")
        return self


class BenchmarkSpec(Spec):
    """The load ``deployer bench`` puts on the deployment, and how long each point runs."""

    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    """What each request asks."""
    load: LoadSpec = Field(default_factory=LoadSpec)
    """How hard to push."""
    duration_seconds: Annotated[int, Field(ge=1, le=86_400)] = 30
    """How long each load point runs, warm-up included."""
    warmup_seconds: Annotated[int, Field(ge=0, le=3600)] = 5
    """The first seconds of each point, not counted."""
    max_requests: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Stop a load point after this many requests (whichever comes first)."""

    @model_validator(mode="after")
    def _warmup_shorter(self) -> BenchmarkSpec:
        if self.warmup_seconds >= self.duration_seconds:
            raise ValueError(
                f"warmupSeconds ({self.warmup_seconds}) must be shorter than durationSeconds "
                f"({self.duration_seconds})"
            )
        return self


class RolloutSpec(Spec):
    """How a changed manifest replaces the engine that serves (local and ssh targets): the new
    engine starts beside the old one behind the published endpoint, must pass the gate, and only
    then takes the traffic."""

    strategy: Literal["surge", "recreate"] = "surge"
    """'surge' (the new engine beside the old, no downtime; needs memory for both) or
    'recreate' (stop, then start: the endpoint is down meanwhile)."""
    gate: Literal["smoke", "slo"] = "smoke"
    """What the new engine must pass before it takes traffic: 'smoke' (the smoke checks) or
    'slo' (the smoke checks, then a short benchmark against spec.slo)."""
    gate_seconds: Annotated[int, Field(ge=2, le=3600)] = 20
    """How long the SLO gate's benchmark runs."""


#: The settings ``deployer tune`` knows how to vary, in the order trials vary them.
TUNABLE = ("max_num_seqs", "max_num_batched_tokens", "kv_cache_memory", "cpu_threads_bind")


class TuneSpec(Spec):
    """The engine settings ``deployer tune`` may try (each list one axis; every combination is a
    trial, the engine's defaults first), and its budget. Each trial is served beside nothing
    else, benchmarked with spec.benchmark against spec.slo, and destroyed."""

    max_num_seqs: list[Annotated[int, Field(ge=1, le=2**20)]] = Field(
        default_factory=list, max_length=16
    )
    """Values of serving.maxNumSeqs to try (vLLM's --max-num-seqs)."""
    max_num_batched_tokens: list[Annotated[int, Field(ge=16, le=2**24)]] = Field(
        default_factory=list, max_length=16
    )
    """Values of vLLM's --max-num-batched-tokens to try (tokens per scheduler step)."""
    kv_cache_memory: list[Annotated[ByteSize, Field(ge=1, le=2**50)]] = Field(
        default_factory=list, max_length=16
    )
    """Values of serving.kvCacheMemory to try, e.g. [256MiB, 1GiB]."""
    cpu_threads_bind: list[Annotated[str, StringConstraints(pattern=CPU_BIND, max_length=256)]] = (
        Field(default_factory=list, max_length=16)
    )
    """CPU hosts: values of VLLM_CPU_OMP_THREADS_BIND to try ('auto', 'nobind', or cores such
    as '0-1')."""
    max_trials: Annotated[int, Field(ge=1, le=1000)] = 8
    """Most trials, the defaults' included."""
    max_minutes: Annotated[int, Field(ge=1, le=10_080)] = 30
    """Stop starting trials after this many minutes."""

    def axes(self) -> dict[str, list[object]]:
        """Setting -> the values to try, for the settings given."""
        return {
            name: list(values)
            for name in (
                "max_num_seqs",
                "max_num_batched_tokens",
                "kv_cache_memory",
                "cpu_threads_bind",
            )
            if (values := getattr(self, name))
        }
