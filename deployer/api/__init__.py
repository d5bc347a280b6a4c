"""The facade every client calls (the CLI now, the HTTP API next): thin functions over the
core, grouped by job.

- :mod:`~deployer.api.manifests`: validate, schema, lock, fetch, quantize;
- :mod:`~deployer.api.deploy`: plan and apply (the plan executor);
- :mod:`~deployer.api.daytwo`: status, history, smoke, destroy, logs, key;
- :mod:`~deployer.api.intents`: a revision and its plan beside what its engines report, and the
  smoke history;
- :mod:`~deployer.api.gitops`: plan, diff and apply of files and folders, with prune;
- :mod:`~deployer.api.kubernetes`: render of Kubernetes artifacts;
- :mod:`~deployer.api.bench`: benchmarks against the SLO (``api.bench.bench``), stored per
  revision;
- :mod:`~deployer.api.facts`: what the planner is given (the planner itself is pure);
- :mod:`~deployer.api.runs`: the state store and the recording of runs.

Each function takes plain inputs and :class:`~deployer.settings.Settings`, reports long work as
events on the given bus, returns typed results, and raises
:class:`~deployer.errors.DeployerError` for anything a user can act on. Nothing here prints,
and nothing here asks which target or engine it has: the registries do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployer.api import bench, benchfiles, gitops, hosts, mirror, tools, tune, types
    from deployer.api.daytwo import (
        WHOLE_LOG,
        DeploymentView,
        DestroyResult,
        SmokeResult,
        StatusPage,
        api_key,
        destroy,
        engine_load,
        history,
        logs,
        smoke,
        status,
        status_page,
    )
    from deployer.api.deploy import ApplyResult, apply, apply_loaded, plan, plan_loaded
    from deployer.api.intents import (
        Intent,
        Planned,
        ServedFacts,
        SmokeEntry,
        intent,
        planned,
        smoke_history,
    )
    from deployer.api.kubernetes import RenderReport, render
    from deployer.api.manifests import (
        LockReport,
        QuantizeOutcome,
        ValidationReport,
        fetch,
        lock,
        quantize,
        schema,
        validate,
    )
    from deployer.api.posted import posted_manifest
    from deployer.api.rollbacks import RevisionDiff, revision_diff, revisions, rollback

#: Each name and the module it comes from: imported on first use, so a command pays only for
#: what it calls (``deployer --version`` for none of it).
_WHERE = {
    **dict.fromkeys(
        [
            "WHOLE_LOG",
            "DeploymentView",
            "DestroyResult",
            "SmokeResult",
            "api_key",
            "destroy",
            "engine_load",
            "history",
            "logs",
            "smoke",
            "status",
            "status_page",
            "StatusPage",
        ],
        "daytwo",
    ),
    **dict.fromkeys(["ApplyResult", "apply", "apply_loaded", "plan", "plan_loaded"], "deploy"),
    "posted_manifest": "posted",
    **dict.fromkeys(
        ["Intent", "Planned", "ServedFacts", "SmokeEntry", "intent", "planned", "smoke_history"],
        "intents",
    ),
    **dict.fromkeys(["RevisionDiff", "revision_diff", "revisions", "rollback"], "rollbacks"),
    **dict.fromkeys(["RenderReport", "render"], "kubernetes"),
    **dict.fromkeys(
        [
            "LockReport",
            "QuantizeOutcome",
            "ValidationReport",
            "fetch",
            "lock",
            "quantize",
            "schema",
            "validate",
        ],
        "manifests",
    ),
}
_SUBMODULES = {"bench", "benchfiles", "gitops", "hosts", "mirror", "tools", "tune", "types"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"deployer.api.{name}")
    if name in _WHERE:
        return getattr(importlib.import_module(f"deployer.api.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'deployer.api' has no attribute {name!r}")


__all__ = [
    "WHOLE_LOG",
    "ApplyResult",
    "DeploymentView",
    "DestroyResult",
    "Intent",
    "LockReport",
    "Planned",
    "QuantizeOutcome",
    "RenderReport",
    "RevisionDiff",
    "ServedFacts",
    "SmokeEntry",
    "SmokeResult",
    "StatusPage",
    "ValidationReport",
    "api_key",
    "apply",
    "apply_loaded",
    "bench",
    "benchfiles",
    "destroy",
    "engine_load",
    "fetch",
    "gitops",
    "history",
    "hosts",
    "intent",
    "lock",
    "logs",
    "mirror",
    "plan",
    "plan_loaded",
    "planned",
    "posted_manifest",
    "quantize",
    "render",
    "revision_diff",
    "revisions",
    "rollback",
    "schema",
    "smoke",
    "smoke_history",
    "status",
    "status_page",
    "tools",
    "tune",
    "types",
    "validate",
]
