"""GitOps artifacts for a deployment: values, plain manifests, an Argo CD Application, Flux objects.

Everything here is deterministic: the same manifest, lock, chart and Helm release give the same
bytes on any machine (sorted keys, no timestamps, no absolute paths of this machine, the
manifest named by its file name only). Every object is strictly validated before a file is
written (:mod:`deployer.kube.validate`); an invalid render writes nothing.

Layout of the output folder (paths a Git repository holds):

- ``values.yaml``: the chart's values (format ``values``)
- ``manifests/NAME.yaml``: the chart rendered by ``helm template`` (format ``manifests``)
- ``argocd/NAME.yaml``: an Argo CD Application syncing ``manifests/`` (format ``argocd``)
- ``flux/NAME.yaml``: a Flux GitRepository and a HelmRelease of ``chart/`` with ``values.yaml``
  (format ``flux``), with ``chart/model-server/``, a copy of the chart
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from io import StringIO
from pathlib import Path, PurePosixPath

from deployer import atomic, runner
from deployer.errors import NotFoundError, PlanError
from deployer.kube.helm import Helm
from deployer.kube.validate import KUBE_VERSIONS, check
from deployer.kube.values import ChartValues, describe_pin

CHART_NAME = "model-server"
ARGOCD_NAMESPACE = "argocd"
FLUX_NAMESPACE = "flux-system"
IN_CLUSTER = "https://kubernetes.default.svc"


class Format(StrEnum):
    values = "values"
    manifests = "manifests"
    argocd = "argocd"
    flux = "flux"
    all = "all"

    def expand(self) -> set[Format]:
        if self is Format.all:
            return {Format.values, Format.manifests, Format.argocd, Format.flux}
        return {self}


@dataclass(frozen=True)
class GitSource:
    """Where the rendered folder is committed, for Argo CD and Flux to read it back."""

    url: str
    #: The folder's path inside the repository, '/'-separated, without a leading './'.
    path: str
    #: The branch Argo CD and Flux follow.
    branch: str = "main"


@dataclass(frozen=True)
class RenderInput:
    name: str
    namespace: str
    manifest_file: str
    values: ChartValues
    formats: set[Format]
    git: GitSource | None = None


@dataclass
class RenderResult:
    """Files (relative path -> bytes) and how each compares with what is on disk."""

    files: dict[str, bytes]
    objects: int
    versions: Sequence[str]
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def chart_dir() -> Path:
    """The chart shipped with deployer (``charts/model-server`` beside the package)."""
    path = Path(__file__).resolve().parents[2] / "charts" / CHART_NAME
    if not (path / "Chart.yaml").is_file():
        raise NotFoundError(
            f"the {CHART_NAME} chart is not at {path}",
            hint="run deployer from its source checkout (pip install -e .), where charts/ is",
        )
    return path


def render(request: RenderInput, helm: Helm | None, chart: Path | None = None) -> RenderResult:
    """Every file of the requested formats, validated; nothing is written here.

    Raises PlanError when argocd or flux is asked for without a Git source, CommandError when
    ``helm template`` fails (a values schema violation names the field), and PlanError when a
    rendered object is invalid for a Kubernetes version in KUBE_VERSIONS.
    """
    chart = chart or chart_dir()
    formats = request.formats
    if formats & {Format.argocd, Format.flux} and request.git is None:
        raise PlanError(
            "the argocd and flux formats need the Git repository the output is committed to",
            hint="pass --git-url URL (and --git-path if the output folder is not in a Git "
            "checkout), or --format values / manifests",
        )
    header = _header(request)
    values_text = header + dump_yaml(request.values.as_yaml_data())
    files: dict[str, bytes] = {}
    objects: list[dict[str, object]] = []
    if Format.values in formats or Format.flux in formats:
        files["values.yaml"] = values_text.encode()
    if formats & {Format.manifests, Format.argocd}:
        if helm is None:
            raise NotFoundError(
                "rendering manifests needs helm", hint="deployer tools install helm"
            )
        rendered = template(helm, chart, request.name, request.namespace, values_text)
        objects += load_objects(rendered)
        files[f"manifests/{request.name}.yaml"] = (header + rendered).encode()
    if Format.argocd in formats and request.git is not None:
        app = argocd_application(request, request.git)
        objects.append(app)
        files[f"argocd/{request.name}.yaml"] = (header + dump_yaml(app)).encode()
    if Format.flux in formats and request.git is not None:
        flux = flux_objects(request, request.git)
        objects += flux
        files[f"flux/{request.name}.yaml"] = (header + dump_yaml_all(flux)).encode()
        for relative, data in chart_files(chart):
            files[f"chart/{CHART_NAME}/{relative}"] = data
    check(objects, KUBE_VERSIONS)
    return RenderResult(
        files=dict(sorted(files.items())), objects=len(objects), versions=KUBE_VERSIONS
    )


def write(result: RenderResult, out_dir: Path, *, check_only: bool = False) -> RenderResult:
    """Compare ``result`` with ``out_dir`` and, unless ``check_only``, write what differs.

    Idempotent: unchanged files are not touched (their mtime stays). Files deployer did not
    render are left alone.
    """
    for relative, data in result.files.items():
        target = out_dir / relative
        current = target.read_bytes() if target.is_file() else None
        if current == data:
            result.unchanged.append(relative)
            continue
        (result.created if current is None else result.updated).append(relative)
        if not check_only:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(target, data.decode())
    return result


def template(helm: Helm, chart: Path, release: str, namespace: str, values_text: str) -> str:
    """``helm template`` of ``chart`` with these values: the plain manifests as Helm prints them."""
    with tempfile.TemporaryDirectory(prefix="deployer-render-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(values_text)
        done = runner.run(
            [
                helm.path,
                "template",
                release,
                chart,
                "--namespace",
                namespace,
                "--values",
                values_file,
                # The `helm test` pod is for `helm test`, not for Argo CD to keep running.
                "--skip-tests",
            ],
            check=False,
            timeout=120,
        )
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()
        raise PlanError(
            f"helm template {CHART_NAME} failed: {reason[0] if reason else done.returncode}",
            hint="the values break the chart's values.schema.json; the message names the field",
            details="\n".join(reason[1:20]) or None,
        )
    return done.stdout


def lint(helm: Helm, chart: Path, values: Path) -> str:
    """``helm lint --strict`` of ``chart`` with ``values``; raises CommandError on a finding."""
    return runner.run(
        [helm.path, "lint", "--strict", chart, "--values", values], timeout=120
    ).stdout


def argocd_application(request: RenderInput, git: GitSource) -> dict[str, object]:
    """An Application that syncs the plain manifests from Git into the target namespace."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": request.name,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "deployer"},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": git.url,
                "targetRevision": git.branch,
                "path": _join(git.path, "manifests"),
            },
            "destination": {"server": IN_CLUSTER, "namespace": request.namespace},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


def flux_objects(request: RenderInput, git: GitSource) -> list[dict[str, object]]:
    """A GitRepository of the repository and a HelmRelease of the chart copy with the values.

    Flux replaces the chart's values.yaml by ``valuesFiles``, so both files are listed: the
    chart's defaults first, deployer's values over them.
    """
    chart_path = _join(git.path, f"chart/{CHART_NAME}")
    labels = {"app.kubernetes.io/managed-by": "deployer"}
    timeout = max(1800, 2 * request.values.engine.startup_seconds)
    source: dict[str, object] = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": request.name, "namespace": FLUX_NAMESPACE, "labels": labels},
        "spec": {"url": git.url, "interval": "5m", "ref": {"branch": git.branch}},
    }
    release: dict[str, object] = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": request.name, "namespace": FLUX_NAMESPACE, "labels": labels},
        "spec": {
            "interval": "10m",
            "timeout": f"{timeout}s",
            "releaseName": request.name,
            "targetNamespace": request.namespace,
            "chart": {
                "spec": {
                    "chart": f"./{chart_path}",
                    "reconcileStrategy": "Revision",
                    "sourceRef": {"kind": "GitRepository", "name": request.name},
                    "valuesFiles": [
                        f"./{chart_path}/values.yaml",
                        f"./{_join(git.path, 'values.yaml')}",
                    ],
                }
            },
            "install": {"createNamespace": True, "remediation": {"retries": 3}},
            "upgrade": {
                "cleanupOnFail": True,
                "remediation": {"retries": 3, "remediateLastFailure": True},
            },
        },
    }
    return [source, release]


def chart_files(chart: Path) -> Iterable[tuple[str, bytes]]:
    """The chart's files, sorted, '/'-separated; its lint value sets (ci/) and caches left out."""
    for path in sorted(chart.rglob("*")):
        relative = path.relative_to(chart).as_posix()
        if not path.is_file() or relative.startswith("ci/") or "__pycache__" in relative:
            continue
        yield relative, path.read_bytes()


def load_objects(text: str) -> list[dict[str, object]]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    from ruamel.yaml import YAML

    return [doc for doc in YAML(typ="safe").load_all(text) if isinstance(doc, dict)]


def dump_yaml(data: object) -> str:
    """Deterministic YAML: sorted keys, block style, no line wrapping."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.width = 4096
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def dump_yaml_all(documents: Sequence[object]) -> str:
    return "".join(f"---\n{dump_yaml(doc)}" for doc in documents)


def git_path(out_dir: Path) -> str | None:
    """``out_dir``'s path inside its Git checkout ('/'-separated), or None outside one.

    The same in every clone, so renders stay byte-identical across machines.
    """
    existing = out_dir.resolve()
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent  # the folder may not exist yet (render creates it)
    done = runner.run(["git", "-C", existing, "rev-parse", "--show-toplevel"], check=False)
    if done.returncode != 0:
        return None
    top = Path(done.stdout.strip()).resolve()
    relative = os.path.relpath(out_dir.resolve(), top)
    return "" if relative == "." else PurePosixPath(*Path(relative).parts).as_posix()


def _header(request: RenderInput) -> str:
    return (
        f"# Rendered by deployer from {request.manifest_file}; re-render instead of editing.\n"
        f"# {describe_pin(request.values)}\n"
        f"# Needs the Secret {request.values.api_key.existing_secret} (key "
        f"{request.values.api_key.key}) in namespace {request.namespace}"
        + (
            f", and {request.values.hub_token.existing_secret} (key "
            f"{request.values.hub_token.key}) for the hub token.\n"
            if request.values.hub_token.existing_secret
            else ".\n"
        )
    )


def _join(base: str, child: str) -> str:
    return f"{base.strip('/')}/{child}" if base.strip("/") else child
