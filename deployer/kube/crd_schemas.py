"""Strict JSON Schemas for the custom resources deployer renders.

``kubernetes-validate`` knows only built-in kinds. These schemas cover the fields deployer (and
the chart) write, with their upstream types and required fields, and forbid every other field,
so a misspelt key fails here as ``kubectl apply --validate=strict`` would fail against the CRD.
Written from the CRDs of KEDA 2 (keda.sh/v1alpha1), prometheus-operator
(monitoring.coreos.com/v1), Argo CD (argoproj.io/v1alpha1) and Flux 2
(helm.toolkit.fluxcd.io/v2, source.toolkit.fluxcd.io/v1). They are a subset of those CRDs: a
field deployer starts writing must be added here first.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Schema = dict[str, object]

_STRING: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION: Schema = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_DNS_LABEL: Schema = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}


def _object(properties: Mapping[str, Schema], *required: str) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    metadata = _object(
        {
            "name": _DNS_LABEL,
            "namespace": _DNS_LABEL,
            "labels": _STRING_MAP,
            "annotations": _STRING_MAP,
            "finalizers": {"type": "array", "items": _STRING},
        },
        "name",
    )
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    )


_SCALE_TARGET = _object({"apiVersion": _STRING, "kind": _STRING, "name": _STRING}, "name")

SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    _object(
        {
            "scaleTargetRef": _SCALE_TARGET,
            "minReplicaCount": _INT,
            "maxReplicaCount": _INT,
            "pollingInterval": _INT,
            "cooldownPeriod": _INT,
            "triggers": {
                "type": "array",
                "items": _object(
                    {"type": _STRING, "name": _STRING, "metadata": _STRING_MAP},
                    "type",
                    "metadata",
                ),
            },
        },
        "scaleTargetRef",
        "triggers",
    ),
)

_LABEL_SELECTOR = _object({"matchLabels": _STRING_MAP})

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _object(
        {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": _object(
                {"any": _BOOL, "matchNames": {"type": "array", "items": _STRING}}
            ),
            "endpoints": {
                "type": "array",
                "items": _object({"port": _STRING, "path": _STRING, "interval": _DURATION}),
            },
        },
        "selector",
    ),
)

ARGO_APPLICATION = _resource(
    "argoproj.io/v1alpha1",
    "Application",
    _object(
        {
            "project": _STRING,
            "source": _object(
                {
                    "repoURL": _STRING,
                    "path": _STRING,
                    "targetRevision": _STRING,
                    "directory": _object({"recurse": _BOOL}),
                },
                "repoURL",
            ),
            "destination": _object({"server": _STRING, "namespace": _STRING}),
            "syncPolicy": _object(
                {
                    "automated": _object({"prune": _BOOL, "selfHeal": _BOOL}),
                    "syncOptions": {"type": "array", "items": _STRING},
                }
            ),
        },
        "project",
        "source",
        "destination",
    ),
)

_REMEDIATION = _object({"retries": _INT, "remediateLastFailure": _BOOL})

HELM_RELEASE = _resource(
    "helm.toolkit.fluxcd.io/v2",
    "HelmRelease",
    _object(
        {
            "interval": _DURATION,
            "timeout": _DURATION,
            "releaseName": _STRING,
            "targetNamespace": _STRING,
            "chart": _object(
                {
                    "spec": _object(
                        {
                            "chart": _STRING,
                            "reconcileStrategy": {"enum": ["ChartVersion", "Revision"]},
                            "sourceRef": _object(
                                {
                                    "kind": {"enum": ["HelmRepository", "GitRepository", "Bucket"]},
                                    "name": _STRING,
                                    "namespace": _STRING,
                                },
                                "kind",
                                "name",
                            ),
                            "valuesFiles": {"type": "array", "items": _STRING},
                        },
                        "chart",
                        "sourceRef",
                    )
                },
                "spec",
            ),
            "install": _object({"createNamespace": _BOOL, "remediation": _REMEDIATION}),
            "upgrade": _object({"cleanupOnFail": _BOOL, "remediation": _REMEDIATION}),
        },
        "interval",
        "chart",
    ),
)

GIT_REPOSITORY = _resource(
    "source.toolkit.fluxcd.io/v1",
    "GitRepository",
    _object(
        {
            "url": {"type": "string", "pattern": r"^(http|https|ssh)://.*$"},
            "interval": _DURATION,
            "ref": _object({"branch": _STRING, "tag": _STRING, "commit": _STRING}),
        },
        "url",
        "interval",
    ),
)

#: (apiVersion, kind) -> schema, for :mod:`deployer.kube.validate`.
CUSTOM_SCHEMAS: Mapping[tuple[str, str], Schema] = MappingProxyType(
    {
        ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
        ("argoproj.io/v1alpha1", "Application"): ARGO_APPLICATION,
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): HELM_RELEASE,
        ("source.toolkit.fluxcd.io/v1", "GitRepository"): GIT_REPOSITORY,
    }
)
