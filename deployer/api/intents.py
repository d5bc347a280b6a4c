"""Intent beside fact, for one deployment: the revision as applied (manifest digest, the lock's
commit and file hashes, the plan's KV capacity) beside what its engines report right now (the
model they serve and from where, their own KV pool figures), and the smoke history with each
answer.

Reads only. The engines are asked over their own HTTP endpoints (``/v1/models`` and the metrics
page) with a short timeout; an engine that does not answer is a reason beside its endpoint, and
the rest is still reported.
"""

from __future__ import annotations

import re
from datetime import datetime

from deployer import credentials, secrets
from deployer.api.daytwo import DeploymentView
from deployer.api.deploy import plan_loaded
from deployer.api.rollbacks import materialize
from deployer.api.runs import reading
from deployer.api.types import Result
from deployer.errors import DeployerError
from deployer.hub.lock import LockedModel, lock_path, read_lock
from deployer.settings import Settings
from deployer.sizing.capacity import CapacityPlan
from deployer.state import RevisionRecord

#: Seconds an engine has to answer each question.
ASK_TIMEOUT = 3.0
#: A hub snapshot folder in a served model's path names the commit it holds.
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(?:/|$)")


class SmokeEntry(Result):
    """One smoke check's result, as recorded by the run that made it."""

    run_id: int
    at: datetime
    check: str
    endpoint: str | None
    passed: bool
    latency_ms: float | None
    answer: str
    failure: str | None


class ServedFacts(Result):
    """What one engine reports: the model it serves (and from which path and commit) and its
    KV pool; ``problem`` says what could not be read."""

    endpoint: str
    model: str | None = None
    #: The path (or hub id) the engine loaded the model from: vLLM's ``root`` in /v1/models.
    root: str | None = None
    #: The hub commit in that path (a snapshot folder), when it has one.
    commit: str | None = None
    kv_blocks: int | None = None
    block_size: int | None = None
    kv_cache_size_tokens: int | None = None
    max_concurrency: float | None = None
    kv_cache_memory_bytes: int | None = None
    problem: str | None = None


class Planned(Result):
    """An applied revision of a deployment and what its plan says about capacity."""

    deployment: str
    revision: int | None
    manifest_digest: str | None
    #: The lock's pinned model (repo, revision, commit, files with sizes and sha256).
    locked: LockedModel | None
    #: The plan of that revision's manifest (None with ``plan_problem`` saying why).
    capacity: CapacityPlan | None
    plan_problem: str | None


class Intent(Planned):
    """The latest applied revision of a deployment with its plan, beside its engines' facts."""

    served: list[ServedFacts]


def smoke_history(settings: Settings, name: str, limit: int = 50) -> list[SmokeEntry]:
    """The latest smoke check results of ``name`` (applies and smoke runs), newest first."""
    with reading(settings, name) as store:
        events = store.smoke_results(name, limit)
    return [
        SmokeEntry(
            run_id=e.run_id,
            at=e.ts,
            check=str(e.data.get("check") or e.message.split(" -> ", 1)[0].split(": ", 1)[-1]),
            endpoint=_text(e.data.get("endpoint")),
            passed=bool(e.data["passed"]) if "passed" in e.data else e.message.startswith("pass"),
            latency_ms=_float(e.data.get("latency_ms")),
            answer=str(e.data.get("answer") or e.message.split(" -> ", 1)[-1]),
            failure=_text(e.data.get("failure")),
        )
        for e in events
    ]


def planned(settings: Settings, name: str, revision: RevisionRecord | None) -> Planned:
    """``revision`` of ``name`` (None: none kept) with its lock and its plan's capacity. A
    revision never changes, so a caller may keep this per revision."""
    capacity, problem, locked = None, None, None
    if revision is None:
        problem = "no applied revision is kept (applied before deployer kept revisions)"
    else:
        try:
            loaded = materialize(settings, revision)
            lock = read_lock(lock_path(loaded.path))
            locked = lock.deployments.get(name) if lock else None
            capacity = plan_loaded(loaded, settings).capacity
            if capacity is None:
                problem = "the plan could not size this model (its facts are unknown)"
        except DeployerError as exc:
            problem = exc.message
    return Planned(
        deployment=name,
        revision=revision.number if revision else None,
        manifest_digest=revision.manifest_digest if revision else None,
        locked=locked,
        capacity=capacity,
        plan_problem=problem,
    )


def intent(settings: Settings, view: DeploymentView, plan: Planned) -> Intent:
    """``plan`` (see :func:`planned`) beside what ``view``'s running engines report now."""
    key = credentials.stored_api_key(settings.deployment_dir(view.name))
    served_now = [served(endpoint, key) for endpoint in view.live_endpoints()]
    return Intent(**dict(plan), served=served_now)


def served(endpoint: str, key: str | None) -> ServedFacts:
    """Ask the engine at ``endpoint`` (its ``/v1`` URL) what it serves and how large its KV
    pool is."""
    import httpx

    from deployer.metrics.engine_load import ScrapeError, scrape

    facts: dict[str, object] = {}
    problems = []
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{endpoint}/models", headers=headers, timeout=ASK_TIMEOUT)
        response.raise_for_status()
        [first, *_] = response.json()["data"]
        root = str(first.get("root") or first["id"])
        found = _SNAPSHOT.search(root)
        facts |= {"model": str(first["id"]), "root": root, "commit": found and found.group(1)}
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problems.append(f"/models: {secrets.mask(str(exc)) or type(exc).__name__}")
    try:
        pool = scrape(endpoint, timeout=ASK_TIMEOUT).kv_pool
        if pool is not None:
            facts |= {
                "kv_blocks": pool.blocks,
                "block_size": pool.block_size,
                "kv_cache_size_tokens": pool.size_tokens,
                "max_concurrency": pool.max_concurrency,
                "kv_cache_memory_bytes": pool.memory_bytes,
            }
    except ScrapeError as exc:
        problems.append(f"metrics: {exc}")
    return ServedFacts.model_validate(
        {"endpoint": endpoint, **facts, "problem": "; ".join(problems) or None}
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


__all__ = [
    "Intent",
    "Planned",
    "ServedFacts",
    "SmokeEntry",
    "intent",
    "planned",
    "served",
    "smoke_history",
]
