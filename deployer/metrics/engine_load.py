"""What an engine is doing now: requests running and waiting, KV cache use, tokens so far.

:func:`read` parses a Prometheus text page (``prometheus_client``'s parser) and takes each
:data:`~deployer.engines.base.LoadMetric` under the engine's own names (``Engine.metric_names``,
newest first, so a renamed metric still reads); :func:`scrape` fetches the page from a served
endpoint. Neither names an engine: the registry's engines say what their metrics are called,
and the page tells which engine serves it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from deployer.engines import registry
from deployer.engines.base import LoadMetric

#: A page larger than this is not an engine's metrics: it is refused unread.
MAX_PAGE_BYTES = 4 * 1024 * 1024


class ScrapeError(Exception):
    """The metrics could not be read: unreachable, an HTTP error, or not an engine's page."""


@dataclass(frozen=True)
class Histogram:
    """A histogram summed over its label sets: observations, their sum (seconds), and the
    cumulative count at or under each bucket's upper bound."""

    count: float
    total: float
    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile_since(self, earlier: Histogram | None, q: float) -> float | None:
        """The ``q`` quantile (0 to 1) of what was observed since ``earlier`` (since the start
        without it), interpolated within its bucket as Prometheus' ``histogram_quantile`` does;
        None when nothing was observed or the counts went back (the engine restarted)."""
        before = dict(earlier.buckets) if earlier else {}
        counts = [(bound, total - before.get(bound, 0.0)) for bound, total in self.buckets]
        if not counts or any(n < 0 for _, n in counts):
            return None
        observed = counts[-1][1]
        if observed <= 0:
            return None
        rank = q * observed
        lower, below = 0.0, 0.0
        for bound, cumulative in counts:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # beyond the last finite bucket: its bound is all we know
                inside = cumulative - below
                share = (rank - below) / inside if inside else 1.0
                return lower + (bound - lower) * share
            lower, below = bound, cumulative
        return lower


@dataclass(frozen=True)
class KvPool:
    """The engine's own figures for its KV cache (vLLM's ``cache_config_info`` labels): what
    the plan's capacity is compared with. Each None when the engine does not report it."""

    blocks: int | None
    """Blocks per device (``num_gpu_blocks``, on a CPU too)."""
    block_size: int | None
    size_tokens: int | None
    """What vLLM logs as "KV cache size" (concurrency x context)."""
    max_concurrency: float | None
    memory_bytes: int | None


@dataclass(frozen=True)
class EngineLoad:
    """One reading of an engine's metrics. Gauges and counters are summed over the engine's
    label sets (data-parallel engines, served models); KV cache use is the highest one's."""

    engine: str
    """The engine whose metric names the page uses."""
    at: float
    """When it was read (``time.time()``)."""
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None
    """0 to 1."""
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    time_to_first_token: Histogram | None = None
    inter_token_latency: Histogram | None = None
    kv_pool: KvPool | None = None
    """The KV pool as the engine sized it at start."""
    renamed: tuple[str, ...] = field(default=())
    """Older names read because the newer were absent (an older engine release)."""

    def tokens_per_second(self, earlier: EngineLoad) -> float | None:
        """Generated tokens per second since ``earlier``; None without both counters, or when
        the counter went back (the engine restarted)."""
        if self.generation_tokens is None or earlier.generation_tokens is None:
            return None
        seconds = self.at - earlier.at
        delta = self.generation_tokens - earlier.generation_tokens
        if seconds <= 0 or delta < 0:
            return None
        return delta / seconds


#: What a time-series sample holds, each a number or None (not measured).
SAMPLE_FIELDS = (
    "running",
    "waiting",
    "kv_usage",
    "tokens_per_second",
    "ttft_p50",
    "ttft_p95",
    "itl_p50",
    "itl_p95",
)


def sample(load: EngineLoad, earlier: EngineLoad | None) -> dict[str, float | None]:
    """One point of the time series: the gauges now, and the rate and latency quantiles of what
    happened since ``earlier`` (the reading before; the rate is None without one)."""

    def since(histogram: Histogram | None, before: Histogram | None, q: float) -> float | None:
        return histogram.quantile_since(before, q) if histogram else None

    ttft, itl = load.time_to_first_token, load.inter_token_latency
    ttft0 = earlier.time_to_first_token if earlier else None
    itl0 = earlier.inter_token_latency if earlier else None
    return {
        "running": load.requests_running,
        "waiting": load.requests_waiting,
        "kv_usage": load.kv_cache_usage,
        "tokens_per_second": load.tokens_per_second(earlier) if earlier else None,
        "ttft_p50": since(ttft, ttft0, 0.5),
        "ttft_p95": since(ttft, ttft0, 0.95),
        "itl_p50": since(itl, itl0, 0.5),
        "itl_p95": since(itl, itl0, 0.95),
    }


def read(text: str, at: float | None = None) -> EngineLoad:
    """The load in a Prometheus text page; :class:`ScrapeError` when it is not one or when no
    registered engine's metrics are in it."""
    try:
        families = {family.name: family for family in text_string_to_metric_families(text)}
    except (ValueError, TypeError, IndexError) as exc:
        raise ScrapeError(f"not a Prometheus metrics page: {exc}") from None
    for name in registry.names():
        names = registry.get(name).metric_names
        if names and any(n in families for candidates in names.values() for n in candidates):
            return _load(name, names, families, time.time() if at is None else at)
    raise ScrapeError("no engine metrics deployer knows on this page")


def scrape(base_url: str, timeout: float = 2.0) -> EngineLoad:
    """Read the load of the engine serving at ``base_url`` (its OpenAI ``/v1`` URL or its root),
    at each registered engine's metrics path until one answers."""
    import httpx  # only the paths that scrape pay for it

    root = base_url.rstrip("/").removesuffix("/v1")
    paths = sorted({e.metrics_path for e in map(registry.get, registry.names()) if e.metrics_path})
    problem = "no registered engine serves metrics"
    for path in paths:
        try:
            with httpx.stream("GET", root + path, timeout=timeout) as response:
                if response.status_code != 200:
                    problem = f"{root + path} answered HTTP {response.status_code}"
                    continue
                body = _bounded(response.iter_bytes(), root + path)
        except httpx.HTTPError as exc:
            problem = f"{root + path}: {exc or type(exc).__name__}"
            continue
        return read(body.decode("utf-8", errors="replace"))
    raise ScrapeError(problem)


def _bounded(chunks: Iterable[bytes], url: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            raise ScrapeError(f"{url} sent more than {MAX_PAGE_BYTES // 1024 // 1024} MiB")
    return bytes(body)


def _load(
    engine: str,
    names: Mapping[LoadMetric, tuple[str, ...]],
    families: Mapping[str, Metric],
    at: float,
) -> EngineLoad:
    found: dict[str, float | Histogram | KvPool | None] = {}
    renamed: list[str] = []
    for metric, candidates in names.items():
        present = next((n for n in candidates if n in families), None)
        if present is None:
            continue
        if present != candidates[0]:
            renamed.append(present)
        family = families[present]
        samples = [s for s in family.samples if math.isfinite(s.value)]
        if metric == "kv_cache_config":
            found.update(_pool(samples))
        elif family.type == "histogram":
            found[metric] = _histogram(present, samples)
        elif metric == "kv_cache_usage":
            found[metric] = max((s.value for s in samples), default=None)
        else:
            found[metric] = sum(s.value for s in samples if not s.name.endswith("_created"))
    return EngineLoad(engine=engine, at=at, renamed=tuple(renamed), **found)  # type: ignore[arg-type]


def _pool(samples: list[Sample]) -> dict[str, KvPool]:
    """The KV pool's figures from an info metric's labels (the first label set with blocks)."""
    for sample in samples:
        labels = sample.labels
        if _number(labels.get("num_gpu_blocks")) is None:
            continue
        concurrency = _number(labels.get("kv_cache_max_concurrency"))
        return {
            "kv_pool": KvPool(
                blocks=_whole(labels.get("num_gpu_blocks")),
                block_size=_whole(labels.get("block_size")),
                size_tokens=_whole(labels.get("kv_cache_size_tokens")),
                max_concurrency=concurrency,
                memory_bytes=_whole(labels.get("kv_cache_memory_bytes")),
            )
        }
    return {}


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _whole(text: str | None) -> int | None:
    value = _number(text)
    return int(value) if value is not None and value.is_integer() else None


def _histogram(name: str, samples: list[Sample]) -> Histogram:
    count = total = 0.0
    buckets: dict[float, float] = {}
    for sample in samples:
        if sample.name == f"{name}_count":
            count += sample.value
        elif sample.name == f"{name}_sum":
            total += sample.value
        elif sample.name == f"{name}_bucket":
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Histogram(count=count, total=total, buckets=tuple(sorted(buckets.items())))
