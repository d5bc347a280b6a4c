"""The committed JSON Schema matches the models and accepts what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from deployer.manifest.schema import json_schema, write_schema

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "schema" / "model-deployment.schema.json"
EXAMPLES = sorted(
    p for p in (ROOT / "model_manifests").rglob("*.yaml") if not p.name.endswith(".lock.yaml")
)


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema())


def as_json(path: Path) -> Any:
    # Through JSON, as an editor sees the document: plain dicts, lists and scalars.
    return json.loads(json.dumps(YAML(typ="safe").load(path)))


def test_committed_schema_is_up_to_date(tmp_path: Path) -> None:
    write_schema(tmp_path / "schema.json")

    assert COMMITTED.read_text() == (tmp_path / "schema.json").read_text(), (
        "schema/model-deployment.schema.json is stale: run python -m deployer.manifest.schema"
    )


def test_schema_is_draft_2020_12_with_camel_case_keys() -> None:
    schema = json_schema()

    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert schema["title"] == "ModelDeployment manifest (deployer/v1alpha1)"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert "maxModelLen" in schema["$defs"]["ServingSpec"]["properties"]


def test_write_schema_is_sorted_indented_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "out" / "schema.json"

    write_schema(path)

    text = path.read_text()
    assert text == json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_every_example(path: Path) -> None:
    assert [e.message for e in validator().iter_errors(as_json(path))] == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param(
            lambda m: m["spec"]["serving"].update(maxModelLenght=1),
            "'maxModelLenght' was unexpected",
            id="unknown-key",
        ),
        pytest.param(
            lambda m: m["spec"].update(target={"kind": "docker"}),
            "is not valid under any of the given schemas",
            id="unknown-target-kind",
        ),
        pytest.param(
            lambda m: m["metadata"].update(name="Demo"),
            "does not match",
            id="bad-name",
        ),
    ],
)
def test_schema_rejects_what_the_loader_rejects(change: Any, fragment: str) -> None:
    manifest = as_json(ROOT / "model_manifests" / "demo" / "smollm2-135m.yaml")
    change(manifest)

    messages = [e.message for e in validator().iter_errors(manifest)]

    assert any(fragment in m for m in messages), messages
