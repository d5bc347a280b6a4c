"""Kubernetes artifacts without a cluster: ``render`` (``diff`` against a cluster is the
kubernetes driver's, through :mod:`deployer.api.gitops`)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import computed_field

from deployer.api import facts as gather
from deployer.api.types import Result
from deployer.errors import UnsupportedError
from deployer.kube import render as kube_render
from deployer.kube.helm import find_helm
from deployer.kube.values import chart_values, describe_pin
from deployer.manifest.loader import LoadedManifest, load_manifest
from deployer.manifest.models import KubernetesTargetSpec
from deployer.planner import Plan
from deployer.settings import Settings
from deployer.targets import registry


class RenderReport(Result):
    """What ``render`` produced: the files and how they compare with the output folder."""

    out_dir: Path
    pin: str
    objects: int
    kube_versions: Sequence[str]
    created: list[str]
    updated: list[str]
    unchanged: list[str]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def render(
    path: Path,
    out_dir: Path,
    settings: Settings,
    *,
    formats: str = "all",
    git_url: str | None = None,
    git_path: str | None = None,
    git_branch: str = "main",
    check: bool = False,
) -> RenderReport:
    """Write the Kubernetes artifacts of the manifest at ``path`` into ``out_dir``.

    Offline and deterministic: the plan comes from the manifest, its lock and deployer's
    catalog; the same inputs give the same bytes. With ``check`` nothing is written and the
    report says what would change (``deployer render --check`` exits 2 then). Raises PlanError
    for a manifest a cluster cannot serve, NotFoundError without a usable helm.
    """
    loaded = load_manifest(path)
    wanted = kube_render.Format(formats).expand()
    git = _git_source(git_url, git_path, git_branch, out_dir) if git_url else None
    request, _ = render_input(loaded, settings, wanted, git)
    needs_helm = wanted & {kube_render.Format.manifests, kube_render.Format.argocd}
    result = kube_render.render(request, find_helm(settings) if needs_helm else None)
    kube_render.write(result, out_dir, check_only=check)
    return RenderReport(
        out_dir=out_dir,
        pin=describe_pin(request.values),
        objects=result.objects,
        kube_versions=result.versions,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )


def render_input(
    loaded: LoadedManifest,
    settings: Settings,
    formats: set[kube_render.Format],
    git: kube_render.GitSource | None = None,
) -> tuple[kube_render.RenderInput, Plan]:
    """The chart's values for a kubernetes manifest, planned offline from its lock."""
    deployment = loaded.deployment
    spec = deployment.spec.target
    if not isinstance(spec, KubernetesTargetSpec):
        raise UnsupportedError(
            f"{loaded.path}: spec.target.kind is {spec.kind}; only kubernetes targets are "
            "rendered to Kubernetes artifacts",
            hint="set spec.target: {kind: kubernetes, namespace: NAME}",
        )
    # Planned from the manifest, its lock and deployer's catalog only, never from this machine's
    # model store (an empty one stands in): two machines must render the same bytes.
    with tempfile.TemporaryDirectory(prefix="deployer-render-") as empty:
        no_store = dataclasses.replace(settings, cache=Path(empty))
        target = registry.driver(spec, no_store, loaded.base_dir)
        the_plan = gather.make(loaded, target, no_store, key=None, offline=True)
    request = kube_render.RenderInput(
        name=deployment.name,
        namespace=spec.namespace,
        manifest_file=loaded.path.name,
        values=chart_values(deployment, the_plan, gather.locked(loaded)),
        formats=formats,
        git=git,
    )
    return request, the_plan


def _git_source(url: str, path: str | None, branch: str, out_dir: Path) -> kube_render.GitSource:
    where = path if path is not None else kube_render.git_path(out_dir)
    if where is None:
        raise UnsupportedError(
            f"{out_dir} is not inside a Git checkout, so its path in {url} is unknown",
            hint="pass --git-path PATH (the output folder's path inside that repository)",
        )
    return kube_render.GitSource(url=url, path=where.strip("/"), branch=branch)
