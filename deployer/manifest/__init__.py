"""Manifests: typed models, the YAML loader with file:line errors, and the JSON Schema."""

from deployer.manifest.loader import LoadedManifest, load_manifest, load_manifests
from deployer.manifest.models import ModelDeployment
from deployer.manifest.schema import json_schema, write_schema

__all__ = [
    "LoadedManifest",
    "ModelDeployment",
    "json_schema",
    "load_manifest",
    "load_manifests",
    "write_schema",
]
