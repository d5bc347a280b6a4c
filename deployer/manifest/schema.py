"""The JSON Schema of a manifest, generated from the models.

Editors use it for completion and checks (``# yaml-language-server: $schema=...`` at the top of
a manifest). The committed copy, ``schema/model-deployment.schema.json``, is regenerated with
``python -m deployer.manifest.schema`` and a test fails when it drifts from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from deployer.manifest import models
from deployer.manifest.attribute_docs import described
from deployer.manifest.models import API_VERSION, KIND, ModelDeployment

SCHEMA_ID = "urn:deployer:schema:model-deployment:v1alpha1"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_PATH = Path("schema/model-deployment.schema.json")


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), with camelCase keys as written in YAML."""
    schema = ModelDeployment.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = f"{KIND} manifest ({API_VERSION})"
    _describe_fields(schema)
    _serving_by_engine(schema)
    return schema


def _describe_fields(schema: dict[str, Any]) -> None:
    """Each property's ``description``: its field's docstring (see
    :mod:`deployer.manifest.attribute_docs`), on the root and on every model in ``$defs``."""
    classes = {
        cls.__name__: cls
        for cls in vars(models).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel)
    }
    for name, definition in [(ModelDeployment.__name__, schema), *schema["$defs"].items()]:
        model = classes.get(name)
        if model is None:
            continue
        properties = definition.get("properties", {})
        for field_name, field in model.model_fields.items():
            prop = properties.get(field.alias or field_name)
            text = described(model, field_name)
            if prop is not None and text and "description" not in prop:
                prop["description"] = text


def _serving_by_engine(schema: dict[str, Any]) -> None:
    """``spec.serving`` as the loader reads it: llama.cpp's fields when ``engine: llamacpp``,
    else vLLM's (the default), so an editor reports the misspelt key itself, not "not valid
    under any of the given schemas"."""
    serving = schema["$defs"]["DeploymentSpec"]["properties"]["serving"]
    refs = [option["$ref"] for option in serving.pop("oneOf")]
    vllm, llamacpp = (
        next(r for r in refs if r.endswith(name))
        for name in ("/ServingSpec", "/LlamaCppServingSpec")
    )
    serving["if"] = {"properties": {"engine": {"const": "llamacpp"}}, "required": ["engine"]}
    serving["then"] = {"$ref": llamacpp}
    serving["else"] = {"$ref": vllm}


def schema_text() -> str:
    """:func:`json_schema` as committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(path: Path) -> None:
    """Write the schema to ``path``, creating its folder. Idempotent: the same models give
    the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")


if __name__ == "__main__":
    write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
