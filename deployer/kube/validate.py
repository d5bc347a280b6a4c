"""Strict validation of rendered Kubernetes objects, without a cluster.

Built-in kinds are checked by ``kubernetes-validate`` against the official OpenAPI schemas of
each Kubernetes version asked for, in strict mode (an unknown field is an error, as with
``kubectl apply --validate=strict``). Custom resources have no official schema in that package;
the kinds deployer renders (KEDA ScaledObject, prometheus-operator ServiceMonitor, Argo CD
Application, Flux HelmRelease and GitRepository) are checked against deployer's own strict
schemas in :mod:`deployer.kube.crd_schemas`, which cover exactly the fields deployer writes and
were written from those projects' CRDs. Any other kind is an error, never a silent pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deployer.errors import PlanError
from deployer.kube.crd_schemas import CUSTOM_SCHEMAS

#: The Kubernetes versions deployer validates against: the oldest and newest minor releases it
#: supports (both are in kubernetes-validate's schema set).
KUBE_VERSIONS = ("1.30", "1.34")


@dataclass(frozen=True)
class Problem:
    kind: str
    name: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} (Kubernetes {self.version}): {self.message}"


def problems(
    objects: Iterable[dict[str, object]], versions: Sequence[str] = KUBE_VERSIONS
) -> list[Problem]:
    """Every schema violation of ``objects`` for each of ``versions``; empty when all valid."""
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import (
        SchemaNotFoundError,
        ValidationError,
        VersionNotSupportedError,
    )

    found: list[Problem] = []
    for obj in objects:
        kind, name = str(obj.get("kind")), _name(obj)
        api_version = str(obj.get("apiVersion"))
        custom = CUSTOM_SCHEMAS.get((api_version, kind))
        for version in versions:
            if custom is not None:
                validator = jsonschema.Draft7Validator(custom)
                for error in validator.iter_errors(obj):
                    where = ".".join(str(p) for p in error.absolute_path) or "(root)"
                    found.append(Problem(kind, name, version, f"{where}: {error.message}"))
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except SchemaNotFoundError:
                found.append(Problem(kind, name, version, f"no schema for {api_version} {kind}"))
            except VersionNotSupportedError:
                found.append(Problem(kind, name, version, "kubernetes-validate has no schemas"))
            except ValidationError as exc:
                where = ".".join(str(p) for p in exc.path) or "(root)"
                found.append(Problem(kind, name, version, f"{where}: {exc.message}"))
    return found


def check(objects: Iterable[dict[str, object]], versions: Sequence[str] = KUBE_VERSIONS) -> None:
    """Raise PlanError naming the first invalid object and field; None when all are valid."""
    listed = problems(objects, versions)
    if listed:
        raise PlanError(
            f"rendered object {listed[0]} ({len(listed)} problem(s) in all)",
            hint="this is a bug in deployer's chart or renderer; please report it",
            details="\n".join(str(p) for p in listed[:20]),
        )


def _name(obj: dict[str, object]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name")) if isinstance(metadata, dict) else "?"
