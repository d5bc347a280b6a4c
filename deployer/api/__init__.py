"""The facade every client calls (the CLI now, the HTTP API next): thin functions over the
core, grouped by job.

- :mod:`~deployer.api.manifests`: validate, schema, lock, fetch, quantize;
- :mod:`~deployer.api.deploy`: plan and apply (the plan executor);
- :mod:`~deployer.api.daytwo`: status, history, smoke, destroy, logs, key;
- :mod:`~deployer.api.gitops`: plan, diff and apply of files and folders, with prune;
- :mod:`~deployer.api.kubernetes`: render of Kubernetes artifacts;
- :mod:`~deployer.api.facts`: what the planner is given (the planner itself is pure);
- :mod:`~deployer.api.runs`: the state store and the recording of runs.

Each function takes plain inputs and :class:`~deployer.settings.Settings`, reports long work as
events on the given bus, returns typed results, and raises
:class:`~deployer.errors.DeployerError` for anything a user can act on. Nothing here prints,
and nothing here asks which target or engine it has: the registries do.
"""

from deployer.api import gitops
from deployer.api.daytwo import DeploymentView, api_key, destroy, history, logs, smoke, status
from deployer.api.deploy import ApplyResult, apply, plan
from deployer.api.kubernetes import RenderReport, render
from deployer.api.manifests import (
    LockReport,
    QuantizeOutcome,
    fetch,
    lock,
    quantize,
    schema,
    validate,
)

__all__ = [
    "ApplyResult",
    "DeploymentView",
    "LockReport",
    "QuantizeOutcome",
    "RenderReport",
    "api_key",
    "apply",
    "destroy",
    "fetch",
    "gitops",
    "history",
    "lock",
    "logs",
    "plan",
    "quantize",
    "render",
    "schema",
    "smoke",
    "status",
    "validate",
]
