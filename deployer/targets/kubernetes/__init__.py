"""The kubernetes target: a Helm release of deployer's chart, reached through a kubeconfig
context. Rendering (values, manifests, validation) is :mod:`deployer.kube`; this package is the
live-cluster side only."""

from deployer.targets.kubernetes.cluster import Cluster, ClusterUnreachableError
from deployer.targets.kubernetes.diff import ObjectChange, changed_fields, compare
from deployer.targets.kubernetes.target import KubernetesTarget, Release

__all__ = [
    "Cluster",
    "ClusterUnreachableError",
    "KubernetesTarget",
    "ObjectChange",
    "Release",
    "changed_fields",
    "compare",
]
