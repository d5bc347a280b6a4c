"""Manifests: typed models, the YAML loader with file:line errors, and the JSON Schema."""

from deployer.manifest.models import ModelDeployment

__all__ = ["ModelDeployment"]
