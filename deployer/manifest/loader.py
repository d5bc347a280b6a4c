"""Load ModelDeployment manifests from YAML files, with errors that name file, line and field.

Loading only reads files. It collects every problem in every file it was given (YAML syntax,
duplicate keys, wrong apiVersion or kind, every schema violation, duplicate deployment names) and
raises one :class:`~deployer.errors.ManifestError`: its message is the first problem and its
``problems`` list holds them all, each with a ``FILE:LINE:COLUMN`` location (1-based), a reason
that starts with the field's dotted YAML path, and a hint.

YAML is read as YAML 1.2 (ruamel's default), so ``on``, ``yes`` and ``no`` stay strings. The
round-trip loader keeps the line and column of every key and value; pydantic's error locations
are mapped back onto that tree.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_snake
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from deployer.errors import ManifestError
from deployer.manifest.models import API_VERSION, KIND, ModelDeployment

MANIFEST_SUFFIXES = (".yaml", ".yml")
#: Files in a folder that are not manifests: lockfiles written next to them.
SKIPPED_SUFFIXES = (".lock.yaml", ".lock.yml")

HEADER_HINT = f"a manifest starts with 'apiVersion: {API_VERSION}' and 'kind: {KIND}'"
SYNTAX_HINT = "check indentation and quoting near this line"
SCHEMA_HINT = "see schema/model-deployment.schema.json for what this field accepts"

#: ${VAR} or $VAR in a path.
_ENV_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class LoadedManifest:
    """A validated deployment and where it was written."""

    deployment: ModelDeployment
    path: Path
    line: int
    """1-based line where the document's content starts."""
    index: int
    """0-based number of the deployment among the non-empty documents of its file."""

    @property
    def base_dir(self) -> Path:
        """The manifest file's folder (absolute): relative paths in the manifest start here."""
        return Path(os.path.abspath(self.path)).parent

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}:1"

    def resolve_path(self, value: str) -> Path:
        """Expand ``${VAR}``, ``$VAR`` and ``~`` in a path from the manifest; a relative result
        is relative to :attr:`base_dir`.

        Raises ManifestError naming the variable when one is not set.
        """

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name not in os.environ:
                raise ManifestError(
                    f"path {value!r}: environment variable {name} is not set",
                    location=self.location,
                    hint=f"set {name} in the environment deployer runs in, or write the path "
                    "without it",
                )
            return os.environ[name]

        expanded = Path(os.path.expanduser(_ENV_REFERENCE.sub(substitute, value)))
        return expanded if expanded.is_absolute() else self.base_dir / expanded


def load_manifests(paths: Sequence[Path]) -> list[LoadedManifest]:
    """Load and validate every deployment in ``paths``, in order.

    A path is a file or a folder; a folder contributes every ``*.yaml`` and ``*.yml`` file below
    it, sorted, except lockfiles (``*.lock.yaml``) and names starting with '.'. A file may hold
    several documents separated by ``---``; empty documents are skipped. A file reached twice is
    loaded once. Deployment names must be unique across everything loaded.

    Raises one ManifestError listing every problem found (see the module docstring).
    """
    if not paths:
        raise ManifestError(
            "no manifest given", hint="pass a manifest file or a folder of manifests"
        )
    problems: list[ManifestError] = []
    loaded: list[tuple[LoadedManifest, str]] = []
    for file in _manifest_files(paths, problems):
        for document in _read_documents(file):
            if isinstance(document, ManifestError):
                problems.append(document)
                continue
            deployment = _validate(file, document, problems)
            if deployment is not None:
                manifest = LoadedManifest(deployment, file, document.mark.line + 1, document.index)
                loaded.append((manifest, _name_location(file, document)))
    problems.extend(_duplicate_names(loaded))
    if problems:
        raise _combined(problems)
    return [manifest for manifest, _ in loaded]


def load_manifest(path: Path) -> LoadedManifest:
    """Load a file that holds exactly one deployment.

    Raises ManifestError for any problem in it, or when it holds no or several deployments.
    """
    manifests = load_manifests([path])
    if len(manifests) != 1:
        names = ", ".join(m.deployment.name for m in manifests)
        raise ManifestError(
            f"expected exactly one deployment, found {len(manifests)} ({names})",
            location=str(path),
            hint="pass a file that holds one ModelDeployment, or split this one",
        )
    return manifests[0]


# --- files and documents -----------------------------------------------------------------------


class _Mark(NamedTuple):
    """A 0-based position in a file, as ruamel reports it."""

    line: int
    column: int

    def render(self, path: Path) -> str:
        return f"{path}:{self.line + 1}:{self.column + 1}"


@dataclass(frozen=True)
class _Document:
    tree: Any
    """The round-trip tree (CommentedMap, CommentedSeq or a scalar) of one YAML document."""
    mark: _Mark
    index: int


def _manifest_files(paths: Sequence[Path], problems: list[ManifestError]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if _is_manifest_file(f, path))
            if not found:
                problems.append(
                    ManifestError(
                        "no manifest files (*.yaml, *.yml) in this folder",
                        location=str(path),
                        hint="pass a folder that holds manifests, or a manifest file",
                    )
                )
        elif path.exists():
            found = [path]
        else:
            problems.append(
                ManifestError(
                    "no such file or folder",
                    location=str(path),
                    hint="check the path; relative paths start in the current folder",
                )
            )
            found = []
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files


def _is_manifest_file(file: Path, folder: Path) -> bool:
    hidden = any(part.startswith(".") for part in file.relative_to(folder).parts)
    return (
        file.suffix in MANIFEST_SUFFIXES
        and not file.name.endswith(SKIPPED_SUFFIXES)
        and not hidden
        and file.is_file()
    )


def _read_documents(path: Path) -> Iterator[_Document | ManifestError]:
    """The file's non-empty documents, and its problems, in file order.

    A syntax error ends the file (the documents before it are kept); a construction error such
    as a duplicate key ends only its own document.
    """
    text = _read_text(path)
    if isinstance(text, ManifestError):
        yield text
        return
    found = 0
    yaml = YAML(typ="rt")
    # The constructor and composer are driven by hand (as YAML.load_all does) to keep each
    # document's node: it gives the start of any document, scalars included, and a document
    # whose construction fails can be reported without losing the ones after it.
    constructor, parser = yaml.get_constructor_parser(text)
    try:
        while constructor.composer.check_node():
            node = constructor.composer.get_node()
            try:
                tree = constructor.construct_document(node)
            except MarkedYAMLError as exc:
                found += 1
                yield _construction_problem(path, node, exc)
                _reset(constructor)
                continue
            if tree is not None:
                yield _Document(tree, _Mark(node.start_mark.line, node.start_mark.column), found)
                found += 1
    except MarkedYAMLError as exc:
        found += 1
        yield _syntax_problem(path, exc)
    except ReaderError as exc:
        found += 1
        yield _reader_problem(path, text, exc)
    finally:
        parser.dispose()
    if not found:
        yield ManifestError(
            "empty file: no manifest in it", location=f"{path}:1:1", hint=HEADER_HINT
        )


def _read_text(path: Path) -> str | ManifestError:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        return ManifestError(
            "not UTF-8 text", location=f"{path}:{line}:1", hint="save the manifest as UTF-8"
        )
    except PermissionError:
        return ManifestError(
            "cannot read: permission denied",
            location=str(path),
            hint="give the user deployer runs as read access to the file",
        )
    except OSError as exc:
        return ManifestError(
            f"cannot read: {exc.strerror or exc}",
            location=str(path),
            hint="check that the path is a readable file",
        )


def _reset(constructor: Any) -> None:
    """Forget a half-built document so that the next one starts clean."""
    constructor.constructed_objects = {}
    constructor.recursive_objects = {}
    constructor.state_generators = []
    constructor.deep_construct = False


def _construction_problem(path: Path, document: Node, exc: MarkedYAMLError) -> ManifestError:
    if isinstance(exc, DuplicateKeyError):
        return _duplicate_key(path, document, exc)
    return _syntax_problem(path, exc)


def _reader_problem(path: Path, text: str, exc: ReaderError) -> ManifestError:
    """A character YAML does not allow (a control character, say)."""
    line = text.count("\n", 0, exc.position)
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
    return ManifestError(
        f"invalid YAML: {exc.reason} character {exc.character!r}",
        location=_Mark(line, column).render(path),
        hint="remove the character, or write it as an escape in a double-quoted string",
    )


def _syntax_problem(path: Path, exc: MarkedYAMLError) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    location = _Mark(mark.line, mark.column).render(path) if mark else str(path)
    problem = exc.problem or exc.context or "cannot parse"
    return ManifestError(f"invalid YAML: {problem}", location=location, hint=SYNTAX_HINT)


def _duplicate_key(path: Path, document: Node, exc: DuplicateKeyError) -> ManifestError:
    mark = _Mark(exc.problem_mark.line, exc.problem_mark.column)
    first = _first_occurrence(document, exc)
    if first is None:
        message = f"duplicate key: {exc.problem}"
    else:
        key, first_mark = first
        message = f"duplicate key {key!r} (first defined on line {first_mark.line + 1})"
    return ManifestError(
        message,
        location=mark.render(path),
        hint="a key may appear once per mapping; remove or merge one of them",
    )


def _first_occurrence(document: Node, exc: DuplicateKeyError) -> tuple[str, _Mark] | None:
    """The duplicated key and where it first appears, found in the document's nodes."""
    mapping_at = (exc.context_mark.line, exc.context_mark.column)
    duplicate_at = (exc.problem_mark.line, exc.problem_mark.column)
    for node in _nodes(document):
        if isinstance(node, MappingNode) and _at(node) == mapping_at:
            keys = [key for key, _ in node.value]
            duplicate = next((k for k in keys if _at(k) == duplicate_at), None)
            if duplicate is None:
                return None
            original = next(k for k in keys if k.value == duplicate.value)
            return str(duplicate.value), _Mark(*_at(original))
    return None


def _nodes(root: Node) -> Iterator[Node]:
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def _at(node: Node) -> tuple[int, int]:
    return node.start_mark.line, node.start_mark.column


# --- one document ------------------------------------------------------------------------------


def _validate(
    path: Path, document: _Document, problems: list[ManifestError]
) -> ModelDeployment | None:
    """The document as a deployment, or None after adding its problems to ``problems``."""
    tree = document.tree
    if not isinstance(tree, CommentedMap):
        problems.append(
            ManifestError(
                f"expected a mapping (a {KIND} manifest), got {_yaml_type(tree)}",
                location=document.mark.render(path),
                hint=HEADER_HINT,
            )
        )
        return None
    found = _header_problems(path, document) or _tag_problems(path, tree)
    if found:
        problems.extend(found)
        return None
    try:
        return ModelDeployment.model_validate(_plain(tree))
    except ValidationError as exc:
        problems.extend(_schema_problems(path, document, exc))
        return None


def _header_problems(path: Path, document: _Document) -> list[ManifestError]:
    """A document with the wrong apiVersion or kind is not validated further: it is probably
    not meant for deployer, and its other keys would only add noise."""
    tree = document.tree
    found = []
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key not in tree:
            found.append(
                ManifestError(
                    f"{key}: required field is missing (expected {key}: {expected})",
                    location=document.mark.render(path),
                    hint=HEADER_HINT,
                )
            )
        elif tree[key] != expected:
            found.append(
                ManifestError(
                    f"{key}: expected {expected!r}, got {_plain(tree[key])!r}",
                    location=_Mark(*tree.lc.value(key)).render(path),
                    hint=HEADER_HINT,
                )
            )
    return found


def _tag_problems(path: Path, tree: Any) -> list[ManifestError]:
    """Custom YAML tags (``!env X``) mean nothing to deployer; say so rather than drop them."""
    found = []
    for value, mark in _values(tree):
        tag = _custom_tag(value)
        if tag is not None:
            found.append(
                ManifestError(
                    f"unsupported YAML tag {tag!r}",
                    location=mark.render(path),
                    hint="manifests are plain YAML; secrets are written as {env: NAME} or "
                    "{file: PATH}",
                )
            )
    return found


def _values(tree: Any) -> Iterator[tuple[Any, _Mark]]:
    if isinstance(tree, CommentedMap):
        for key, value in tree.items():
            yield value, _child_marks(tree, key)[1]
            yield from _values(value)
    elif isinstance(tree, CommentedSeq):
        for index, value in enumerate(tree):
            yield value, _item_mark(tree, index)
            yield from _values(value)


def _custom_tag(value: Any) -> str | None:
    if not isinstance(value, CommentedMap | CommentedSeq | TaggedScalar):
        return None
    tag = value.tag.value
    if tag is None or tag.startswith("tag:yaml.org,2002:"):
        return None
    return str(tag)


def _plain(value: Any) -> Any:
    """The round-trip value as plain Python (dict, list, str, int, float, bool, None)."""
    if isinstance(value, CommentedMap):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [_plain(v) for v in value]
    if isinstance(value, TaggedScalar):
        return str(value.value)
    if isinstance(value, ScalarBoolean):
        return bool(value)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _yaml_type(value: Any) -> str:
    if isinstance(value, CommentedSeq | list):
        return "a list"
    if isinstance(value, bool | ScalarBoolean):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _name_location(path: Path, document: _Document) -> str:
    metadata = document.tree["metadata"]
    return _child_marks(metadata, "name")[1].render(path)


def _duplicate_names(loaded: list[tuple[LoadedManifest, str]]) -> list[ManifestError]:
    first_seen: dict[str, str] = {}
    found = []
    for manifest, location in loaded:
        name = manifest.deployment.name
        if name in first_seen:
            found.append(
                ManifestError(
                    f"metadata.name: deployment name {name!r} is already used at "
                    f"{first_seen[name]}",
                    location=location,
                    hint="names must be unique among the manifests loaded together; "
                    "rename one of them",
                )
            )
        else:
            first_seen[name] = location
    return found


def _combined(problems: list[ManifestError]) -> ManifestError:
    if len(problems) == 1:
        return problems[0]
    first = problems[0]
    return ManifestError(first.reason, location=first.location, hint=first.hint, problems=problems)


# --- pydantic errors, mapped onto the YAML tree ------------------------------------------------


def _schema_problems(path: Path, document: _Document, exc: ValidationError) -> list[ManifestError]:
    """One problem per YAML place. Errors of a union's branches land on the same place and
    become one message ("Input should be greater than or equal to 1 or 'auto'")."""
    grouped: dict[tuple[_Mark, str], list[tuple[str, str]]] = {}
    for error in exc.errors(include_url=False):
        mark, field_path, reason, hint = _explain(document, error)
        grouped.setdefault((mark, field_path), []).append((reason, hint))
    problems = []
    for (mark, field_path), explained in sorted(grouped.items(), key=lambda item: item[0][0]):
        reason = _join_reasons([r for r, _ in explained])
        message = f"{field_path}: {reason}" if field_path else reason
        problems.append(ManifestError(message, location=mark.render(path), hint=explained[0][1]))
    return problems


def _explain(document: _Document, error: ErrorDetails) -> tuple[_Mark, str, str, str]:
    """Where an error points, the dotted path, the reason and the hint."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        spot = _locate(document, loc[:-1])
        schema = _schema_at(loc)
        hint = _describe(schema.field) or f"add '{loc[-1]}' here"
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
    item_doc = _model_doc(schema.target) if loc and isinstance(loc[-1], int) else None
    hint = item_doc or _describe(schema.field) or _model_doc(schema.target) or SCHEMA_HINT
    return spot.mark, _dotted(spot.parts), _reason(error), hint


def _explain_tag(
    document: _Document, loc: tuple[int | str, ...], error: ErrorDetails
) -> tuple[_Mark, str, str, str]:
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
        return f"expected a mapping, got {_yaml_type(error['input'])}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _join_reasons(reasons: list[str]) -> str:
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
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    listing = f"valid keys: {', '.join(valid)}"
    return f"did you mean '{by_lower[close[0]]}'? {listing}" if close else listing


@dataclass(frozen=True)
class _Spot:
    """Where a pydantic ``loc`` lands in the YAML tree."""

    parts: list[str]
    """The path as written in YAML: keys, and '[i]' for list items."""
    mark: _Mark
    """Where to point: a scalar's value, or the key (or list item) that holds a collection."""
    key_mark: _Mark | None
    """The last key's position, when the path ends at a key."""


def _locate(document: _Document, loc: Sequence[int | str]) -> _Spot:
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
            key_mark, value_mark = _child_marks(node, key)
            node = node[key]
            mark = key_mark if isinstance(node, CommentedMap | CommentedSeq) else value_mark
            parts.append(str(key))
        elif isinstance(node, CommentedSeq) and isinstance(element, int) and element < len(node):
            mark, key_mark = _item_mark(node, element), None
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


def _child_marks(mapping: CommentedMap, key: Any) -> tuple[_Mark, _Mark]:
    """The key's and the value's positions; a key merged in with '<<' has none of its own."""
    try:
        return _Mark(*mapping.lc.key(key)), _Mark(*mapping.lc.value(key))
    except (KeyError, TypeError):
        start = _Mark(mapping.lc.line, mapping.lc.col)
        return start, start


def _item_mark(sequence: CommentedSeq, index: int) -> _Mark:
    try:
        return _Mark(*sequence.lc.item(index))
    except (KeyError, TypeError):
        return _Mark(sequence.lc.line, sequence.lc.col)


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
        target = _unwrap(target)
        members = _union_models(target)
        if _is_model(target):
            owner, field = target, _field(target, element)
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
    return _Schema(owner, field, _unwrap(target))


def _unwrap(tp: Any) -> Any:
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


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_models(tp: Any) -> list[type[BaseModel]]:
    if not _is_union(tp):
        return []
    members = [_unwrap(a) for a in get_args(tp) if a is not type(None)]
    return members if all(_is_model(m) for m in members) else []


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
        field = _field(model, discriminator)
        if field is not None and get_origin(field.annotation) is Literal:
            tags.extend(str(arg) for arg in get_args(field.annotation))
    return tags


def _field(model: type[BaseModel], key: int | str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _describe(field: FieldInfo | None) -> str | None:
    if field is None or not field.description:
        return None
    return " ".join(field.description.split())


def _model_doc(tp: Any) -> str | None:
    if not _is_model(tp) or not tp.__doc__:
        return None
    return " ".join(str(tp.__doc__).split())
