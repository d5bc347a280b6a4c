"""Kubernetes artifacts without a cluster: the chart's values, ``helm template``, GitOps objects,
strict validation, and the pinned ``helm`` binary. The live-cluster side is
:mod:`deployer.targets.kubernetes`."""
