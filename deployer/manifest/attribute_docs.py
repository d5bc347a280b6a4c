"""The docstrings under the manifest models' fields, read from their source when asked.

A field's docstring (the string right under ``name: type = ...``) is its description: the hint
of an error about it and its ``description`` in the JSON Schema. pydantic's own
``use_attribute_docstrings`` reads them while each class is built, finding the class's source
again for every model: a tenth of a second on every start of the command, spent even when no
manifest has an error. Here each module's source is parsed once, the first time a description
is asked for (an error to explain, the schema to write).
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys

from pydantic import BaseModel


def field_doc(model: type[BaseModel], name: str) -> str | None:
    """The docstring of the field ``name`` of ``model``, from the class in its MRO that declares
    it (cleaned as :func:`inspect.cleandoc` does); None when it has none."""
    for cls in model.__mro__:
        if name in getattr(cls, "__annotations__", {}):
            return _module_docs(cls.__module__).get(cls.__qualname__, {}).get(name)
    return None


def described(model: type[BaseModel], name: str) -> str | None:
    """The field's description: an explicit ``Field(description=...)``, else its docstring."""
    field = model.model_fields.get(name)
    if field is not None and field.description:
        return field.description
    return field_doc(model, name)


@functools.cache
def _module_docs(module_name: str) -> dict[str, dict[str, str]]:
    """Field docstrings by class (top-level classes) of the module ``module_name``."""
    module = sys.modules.get(module_name)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return {}
    docs: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, str] = {}
        for statement, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                fields[statement.target.id] = inspect.cleandoc(after.value.value)
        docs[node.name] = fields
    return docs
