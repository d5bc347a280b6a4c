"""Explain a pydantic ValidationError of one YAML document as ManifestErrors a user can act on.

:func:`schema_problems` maps each error's ``loc`` back onto the round-trip tree, so each problem
is located ``FILE:LINE:COLUMN`` (1-based) at the value, or at the key that holds a mapping or
list, and its reason starts with the field's dotted path as written in YAML (``spec.serving``,
``smoke[0]``), snake_case keys included. Errors of a union's branches that land on the same
place become one problem. The hint comes from the models themselves: the field's description or
the model's docstring, the close match and the valid keys for an unknown key, the valid tags for
a discriminated union. Pure: no I/O, and nothing is raised.
"""

from __future__ import annotations

import copy
import difflib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_snake
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from deployer.errors import ManifestError
from deployer.manifest.attribute_docs import field_doc
from deployer.manifest.models import ModelDeployment
from deployer.manifest.yaml_reader import Document, Mark, child_marks, item_mark, yaml_type

SCHEMA_HINT = "see schema/model-deployment.schema.json for what this field accepts"


def schema_problems(path: Path, document: Document, exc: ValidationError) -> list[ManifestError]:
    """One problem per YAML place, in file order. Errors of a union's branches land on the same
    place and become one message ("Input should be greater than or equal to 1 or 'auto'")."""
    grouped: dict[tuple[Mark, str], list[tuple[str, str]]] = {}
    for error in exc.errors(include_url=False):
        mark, field_path, reason, hint = explain_error(document, error)
        grouped.setdefault((mark, field_path), []).append((reason, hint))
    problems = []
    for (mark, field_path), explained in sorted(grouped.items(), key=lambda item: item[0][0]):
        reason = join_reasons([r for r, _ in explained])
        message = f"{field_path}: {reason}" if field_path else reason
        problems.append(
            ManifestError(
                message,
                location=mark.render(path),
                hint=explained[0][1],
                field=field_path or None,
            )
        )
    return problems


# --- one error ---------------------------------------------------------------------------------


def explain_error(document: Document, error: ErrorDetails) -> tuple[Mark, str, str, str]:
    """Where an error points, the dotted path, the reason and the hint."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        spot = _locate(document, loc[:-1])
        schema = _schema_at(loc)
        hint = describe_field(schema.field) or f"add '{loc[-1]}' here"
        return spot.mark, _dotted([*spot.parts, str(loc[-1])]), "required field is missing", hint
    if kind == "extra_forbidden":
        spot = _locate(document, loc)
        schema = _schema_at(loc)
        key = str(loc[-1])
        return spot.key_mark or spot.mark, _dotted(spot.parts), "unknown key", _suggest(key, schema)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _explain_tag(document, loc, error)
    spot = _locate(document, loc)
    schema = _schema_at(loc)
    # A list item is better explained by its model (a smoke check) than by the list's field.
    item_doc = model_doc(schema.target) if loc and isinstance(loc[-1], int) else None
    hint = item_doc or describe_field(schema.field) or model_doc(schema.target) or SCHEMA_HINT
    return spot.mark, _dotted(spot.parts), _reason(error), hint


def _explain_tag(
    document: Document, loc: tuple[int | str, ...], error: ErrorDetails
) -> tuple[Mark, str, str, str]:
    """A discriminated union (the model's ``source``, the target's ``kind``) whose tag is
    missing or unknown: name the valid tags."""
    discriminator = str(error.get("ctx", {}).get("discriminator", "kind")).strip("'\"")
    tags = ", ".join(_union_tags(_schema_at(loc).target, discriminator))
    spot = _locate(document, (*loc, discriminator))
    field_path = _dotted([*_locate(document, loc).parts, discriminator])
    if error["type"] == "union_tag_not_found":
        return spot.mark, field_path, "required field is missing", f"one of: {tags}"
    tag = error.get("ctx", {}).get("tag")
    return (
        spot.mark,
        field_path,
        f"unknown value {tag!r}; expected one of: {tags}",
        f"set '{discriminator}' to one of: {tags}",
    )


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {yaml_type(error['input'])}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def join_reasons(reasons: list[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    lead = "Input should be "
    if len(unique) > 1 and all(r.startswith(lead) for r in unique):
        return lead + " or ".join(r.removeprefix(lead) for r in unique)
    return "; ".join(unique)


def _dotted(parts: list[str]) -> str:
    return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(parts))


def _suggest(key: str, schema: _Schema) -> str:
    if schema.owner is None:
        return SCHEMA_HINT
    valid = _valid_keys(schema.owner)
    by_lower = {k.lower(): k for k in valid}
    # difflib is quadratic in the key's length: a key no one would mistype gets no suggestion.
    close = (
        difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
        if len(key) <= 64
        else []
    )
    listing = f"valid keys: {', '.join(valid)}"
    return f"did you mean '{by_lower[close[0]]}'? {listing}" if close else listing


# --- where a location lands in the YAML tree ---------------------------------------------------


@dataclass(frozen=True)
class _Spot:
    """Where a pydantic ``loc`` lands in the YAML tree."""

    parts: list[str]
    """The path as written in YAML: keys, and '[i]' for list items."""
    mark: Mark
    """Where to point: a scalar's value, or the key (or list item) that holds a collection."""
    key_mark: Mark | None
    """The last key's position, when the path ends at a key."""


def _locate(document: Document, loc: Sequence[int | str]) -> _Spot:
    """Follow ``loc`` down the tree. Elements that are not keys of the current mapping (or
    indices of the current list) are union tags such as 'local' or 'constrained-int', and are
    skipped; '[key]' points at the key itself."""
    node: Any = document.tree
    parts: list[str] = []
    mark, key_mark = document.mark, None
    for element in loc:
        if element == "[key]" and key_mark is not None:
            mark = key_mark
        elif isinstance(node, CommentedMap) and (key := _key_in(node, element)) is not None:
            key_mark, value_mark = child_marks(node, key)
            node = node[key]
            mark = key_mark if isinstance(node, CommentedMap | CommentedSeq) else value_mark
            parts.append(str(key))
        elif isinstance(node, CommentedSeq) and isinstance(element, int) and element < len(node):
            mark, key_mark = item_mark(node, element), None
            node = node[element]
            parts.append(f"[{element}]")
    return _Spot(parts, mark, key_mark)


def _key_in(mapping: CommentedMap, element: int | str) -> int | str | None:
    if element in mapping:
        return element
    # populate_by_name: a snake_case key in YAML is reported under its camelCase alias.
    if isinstance(element, str) and to_snake(element) in mapping:
        return to_snake(element)
    return None


# --- what the models say about a location ------------------------------------------------------


@dataclass(frozen=True)
class _Schema:
    owner: type[BaseModel] | None
    """The model that holds the last key of the location."""
    field: FieldInfo | None
    """That key's field; None when the key is not one of the model's fields."""
    target: Any
    """The type the location ends at."""


def _schema_at(loc: Sequence[int | str]) -> _Schema:
    """Walk the model classes along ``loc``: model fields by alias or name, union members by
    their tag, list items, dict values. Stops where the types hold no more models."""
    target: Any = ModelDeployment
    owner: type[BaseModel] | None = None
    field: FieldInfo | None = None
    for element in loc:
        target = unwrap(target)
        members = _union_models(target)
        if is_model(target):
            owner, field = target, model_field(target, element)
            if field is None:
                return _Schema(owner, None, None)
            target = field.annotation
        elif members:
            chosen = next((m for m in members if _has_tag(m, element)), None)
            if chosen is None:
                break
            target = chosen
        elif get_origin(target) is list and isinstance(element, int):
            target = get_args(target)[0]
        elif get_origin(target) is dict:
            target = get_args(target)[0 if element == "[key]" else 1]
        else:
            break
    return _Schema(owner, field, unwrap(target))


def unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional: ``Annotated[X, ...] | None`` -> X."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif _is_union(tp):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_models(tp: Any) -> list[type[BaseModel]]:
    if not _is_union(tp):
        return []
    members = [unwrap(a) for a in get_args(tp) if a is not type(None)]
    return members if all(is_model(m) for m in members) else []


def _has_tag(model: type[BaseModel], element: int | str) -> bool:
    if element == model.__name__:
        return True
    return any(
        get_origin(f.annotation) is Literal and element in get_args(f.annotation)
        for f in model.model_fields.values()
    )


def _union_tags(tp: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for model in _union_models(tp):
        field = model_field(model, discriminator)
        if field is not None and get_origin(field.annotation) is Literal:
            tags.extend(str(arg) for arg in get_args(field.annotation))
    return tags


def model_field(model: type[BaseModel], key: int | str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            if field.description:
                return field
            described = copy.copy(field)
            described.description = field_doc(model, name)
            return described
    return None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def describe_field(field: FieldInfo | None) -> str | None:
    if field is None or not field.description:
        return None
    return " ".join(field.description.split())


def model_doc(tp: Any) -> str | None:
    if not is_model(tp) or not tp.__doc__:
        return None
    return " ".join(str(tp.__doc__).split())
