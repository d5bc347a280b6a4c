"""Print the feature matrix of docs/ARCHITECTURE.md: one column per registered target kind.

    .venv/bin/python scripts/feature_matrix.py

Computed from the code's own data: every driver in ``deployer.targets.registry.BUILTIN`` is built
with ``registry.from_record`` from a dummy spec (as tests/unit/targets/test_contract.py does:
an ssh inventory whose one host is never contacted, a kubeconfig whose API server is never
called), then asked what it is (``Target``, ``Provisions``, ``Renders``, ``Diffs``), what steps
its plan adds (``plan_steps``, plain data) and what it refuses (``logs --host``). Nothing is
started and no network is used.

What the code cannot say about itself without contacting hosts (following an ssh host's log
runs ``tail -F`` over ssh), or at all (what it was tested against), is in :data:`DECLARED`,
an explicit mapping; the table marks those rows with ``*``. A kind missing from it is an error,
so a new target cannot appear in the table without someone saying those facts.

``tests/unit/test_docs.py`` checks that docs/ARCHITECTURE.md holds exactly this output between
``<!-- feature-matrix:begin -->`` and ``<!-- feature-matrix:end -->``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: this checkout's deployer, not another one
    sys.path.insert(0, str(ROOT))

from deployer.engines import registry as engines  # noqa: E402
from deployer.errors import DeployerError, UnsupportedError  # noqa: E402
from deployer.manifest.models import ModelDeployment  # noqa: E402
from deployer.planner import TargetSteps  # noqa: E402
from deployer.settings import Settings  # noqa: E402
from deployer.targets import registry  # noqa: E402
from deployer.targets.base import Diffs, Provisions, Renders, RollsBack, Surges, Target  # noqa: E402

BEGIN = "<!-- feature-matrix:begin -->"
END = "<!-- feature-matrix:end -->"

#: A deployment to ask ``plan_steps`` about (a local model folder that need not exist).
_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "deployer/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "matrix"},
    "spec": {
        "model": {"source": "local", "path": "model"},
        "resources": {"accelerator": "cpu", "count": 1},
        "target": {"kind": "local"},
    },
}

_INVENTORY = (
    "apiVersion: deployer/v1alpha1\nkind: Inventory\n"
    "hosts:\n  host1: {address: 127.0.0.1, port: 1, user: root}\n"
)

_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:9"}
contexts:
  - name: matrix
    context: {cluster: nowhere, user: nobody}
current-context: matrix
users:
  - name: nobody
    user: {token: not-a-secret}
"""


def dummy_specs(folder: Path) -> dict[str, dict[str, Any]]:
    """A target spec per built-in kind that builds its driver without reaching anything."""
    inventory = folder / "hosts.yaml"
    inventory.write_text(_INVENTORY)
    return {
        "local": {"kind": "local"},
        "ssh": {"kind": "ssh", "inventory": str(inventory)},
        "kubernetes": {"kind": "kubernetes", "context": "matrix", "namespace": "llm"},
    }


@contextmanager
def drivers() -> Iterator[dict[str, Target]]:
    """Every built-in driver, in ``BUILTIN``'s order, over a throw-away home and cache."""
    with tempfile.TemporaryDirectory(prefix="deployer-matrix-") as tmp:
        folder = Path(tmp)
        (folder / "kubeconfig").write_text(_KUBECONFIG)
        saved = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(folder / "kubeconfig")
        try:
            settings = Settings(home=folder / "home", cache=folder / "cache")
            specs = dummy_specs(folder)
            missing = [kind for kind in registry.BUILTIN if kind not in specs]
            if missing:
                raise SystemExit(f"feature_matrix.py: no dummy spec for {', '.join(missing)}")
            yield {kind: registry.from_record(specs[kind], settings) for kind in registry.BUILTIN}
        finally:
            if saved is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = saved


def _yes(flag: bool, yes: str = "yes", no: str = "no") -> str:
    return yes if flag else no


def _steps(target: Target) -> TargetSteps:
    deployment = ModelDeployment.model_validate(_DEPLOYMENT)
    return target.plan_steps(deployment, 8000, offline=True)


def _plan(target: Target) -> str:
    if target.observes_offline:
        return "yes (observes what runs, offline)"
    return "yes (offline: the target is not contacted)"


def _added(target: Target) -> str:
    steps = _steps(target)
    names = [step.name for step in (*steps.before, *steps.prepare)]
    return ", ".join(f"`{name}`" for name in names) or "none"


def _model(target: Target) -> str:
    return _yes(
        _steps(target).fetches_model, "deployer (fetched or checked here)", "the target itself"
    )


def _engine(target: Target) -> str:
    steps = _steps(target)
    if steps.engine is not None:
        return steps.engine.reason
    if steps.checks_engine:
        return "installed on this machine (checked)"
    return "the target's own (not checked here)"


def _diff(target: Target) -> str:
    base = "the plan against what runs"
    return base + (" + object by object (`Diffs`)" if isinstance(target, Diffs) else "")


def _logs_host(target: Target) -> str:
    """``logs --host`` of a host that is not there: refused where there are no hosts, "not
    found" where there are (reads the inventory only)."""
    try:
        list(target.logs("matrix", 0, False, host="no-such-host"))
    except UnsupportedError:
        return "no"
    except DeployerError:  # "no such host": the option applies
        return "yes"
    return "yes"


def _smoke(target: Target) -> str:
    steps = _steps(target)
    if steps.replica_endpoints:
        return "every replica's address, from this machine"
    where = steps.smoke_where.strip().removeprefix("through ")
    return where or "the engine's endpoint on this machine"


def _engines(target: Target) -> str:
    """Every registered engine; a target that renders the chart serves those with a chart
    container (``Engine.chart``)."""
    found = [engines.get(name) for name in engines.names()]
    if not isinstance(target, Renders):
        return ", ".join(e.packaging.title for e in found)
    served = ", ".join(e.packaging.title for e in found if e.chart is not None)
    refused = ", ".join(e.packaging.title for e in found if e.chart is None)
    return served + (f" (the chart refuses {refused})" if refused else "")


def _apply(target: Target) -> str:
    return _steps(target).deploy_how or "yes"


#: Facts the code cannot tell by introspection, per kind: stated here, by hand.
DECLARED: Mapping[str, Mapping[str, str]] = {
    "logs --follow": {
        "local": "yes",
        "ssh": "yes (`tail -F` over ssh on every host)",
        "kubernetes": "no (refused: `kubectl logs -f`)",
    },
    "tested against": {
        "local": "this machine's CPU (vLLM CPU build, llama.cpp); no GPU",
        "ssh": "CPU-only hosts: network namespaces, a sudo user, minimal Debian containers; "
        "no GPU host",
        "kubernetes": "no cluster: render, chart and values for real; apply's skip and helm "
        "upgrade against `tests/support/kubeapi.py`, a stand-in API",
    },
}


def _rollout(target: Target) -> str:
    if isinstance(target, Surges):
        return "beside the serving one behind HAProxy, smoke-gated, then switched"
    if isinstance(target, RollsBack):
        return "`helm --atomic`, then smoke-gated: `helm rollback` on a failure"
    return "in place"


#: The rows in order: (feature, how to tell): computed from a driver, or a row of DECLARED.
ROWS: tuple[tuple[str, Callable[[Target], str] | None], ...] = (
    ("plan", _plan),
    ("apply", _apply),
    ("steps the target adds to a plan", _added),
    ("model brought by", _model),
    ("engine", _engine),
    ("destroy", lambda t: _yes(isinstance(t, Target))),
    ("diff", _diff),
    ("provision (`Provisions`)", lambda t: _yes(isinstance(t, Provisions))),
    ("render (`Renders`)", lambda t: _yes(isinstance(t, Renders))),
    ("rollout of a changed engine (`Surges`, `RollsBack`)", _rollout),
    ("logs", lambda t: _yes(isinstance(t, Target))),
    ("logs --host", _logs_host),
    ("logs --follow", None),
    ("smoke through", _smoke),
    ("engines served", _engines),
    ("tested against", None),
)


def table() -> str:
    """The feature matrix as markdown (no trailing newline)."""
    rows: list[list[str]] = []
    with drivers() as found:
        kinds = list(found)
        for name, how in ROWS:
            if how is not None:
                rows.append([name, *(how(found[kind]) for kind in kinds)])
                continue
            by_kind = DECLARED[name]
            missing = [kind for kind in kinds if kind not in by_kind]
            if missing:
                raise SystemExit(f"feature_matrix.py: DECLARED[{name!r}] says nothing of {missing}")
            rows.append([f"{name} *", *(by_kind[kind] for kind in kinds)])
    lines = [
        "| feature | " + " | ".join(kinds) + " |",
        "| --- |" + " --- |" * len(kinds),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "`*`: stated in `scripts/feature_matrix.py` (`DECLARED`), not introspected.",
    ]
    return "\n".join(lines)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()
