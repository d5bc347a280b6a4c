"""Field docstrings read on demand (deployer.manifest.attribute_docs) are exactly what pydantic's
``use_attribute_docstrings`` read while building each class, for every manifest and inventory
model; and an error's hint still comes from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic._internal._docs_extraction import extract_docstrings_from_cls

from deployer.errors import ManifestError
from deployer.manifest import models
from deployer.manifest.attribute_docs import described, field_doc
from deployer.manifest.loader import load_manifest
from deployer.targets.ssh import inventory

MODELS = sorted(
    {
        cls
        for module in (models, inventory)
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and cls.__module__ == module.__name__
    },
    key=lambda cls: cls.__qualname__,
)


@pytest.mark.parametrize("model", MODELS, ids=lambda cls: cls.__qualname__)
def test_the_docstrings_are_pydantics(model: type[BaseModel]) -> None:
    """pydantic's own reader (its private helper, as the reference) over each class of the MRO
    that declares a field gives the same text as ours."""
    expected: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            expected.update(extract_docstrings_from_cls(cls, use_inspect=True))
    found = {name: field_doc(model, name) for name in model.model_fields}
    assert {k: v for k, v in found.items() if v is not None} == {
        k: v for k, v in expected.items() if k in model.model_fields
    }


def test_an_explicit_description_wins_and_a_bare_field_has_none() -> None:
    assert described(models.ServingSpec, "max_model_len")
    assert field_doc(models.ServingSpec, "no_such_field") is None


def test_an_errors_hint_is_the_fields_docstring(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: deployer/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec:\n  model: {source: local, path: m}\n  serving:\n    maxModelLen: -1\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    [problem] = caught.value.problems
    doc = field_doc(models.ServingSpec, "max_model_len")
    assert doc is not None
    assert problem.hint == " ".join(doc.split())
