"""Find manifest files and read their YAML documents, keeping where every key and value is written.

Only reads: nothing here knows the manifest schema. Problems in the input (a path that does not
exist, a folder with no manifest, an unreadable or non-UTF-8 file, a YAML syntax error, a
duplicate key) are returned as :class:`~deployer.errors.ManifestError` values in file order,
each located ``FILE:LINE:COLUMN`` (1-based) with a hint, so that the caller can collect every
problem before raising.

YAML is read as YAML 1.2 (ruamel's default), so ``on``, ``yes`` and ``no`` stay strings. Each
document is ruamel's round-trip tree, which keeps the 0-based position of every key, value and
list item (:func:`child_marks`, :func:`item_mark`); :func:`plain` turns it into plain Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from deployer.errors import ManifestError

MANIFEST_SUFFIXES = (".yaml", ".yml")
#: Files in a folder that are not manifests: lockfiles written next to them.
SKIPPED_SUFFIXES = (".lock.yaml", ".lock.yml")

SYNTAX_HINT = "check indentation and quoting near this line"


class Mark(NamedTuple):
    """A 0-based position in a file, as ruamel reports it."""

    line: int
    column: int

    @classmethod
    def of(cls, mark: Any) -> Mark:
        """The position of a ruamel mark (a node's ``start_mark``, an error's ``problem_mark``)."""
        return cls(mark.line, mark.column)

    def render(self, path: Path) -> str:
        return f"{path}:{self.line + 1}:{self.column + 1}"


@dataclass(frozen=True)
class Document:
    """One non-empty YAML document of a file."""

    tree: Any
    """The round-trip tree (CommentedMap, CommentedSeq or a scalar) of one YAML document."""
    mark: Mark
    """Where the document's content starts."""
    index: int
    """0-based number among the file's non-empty documents (one that failed to build counts)."""


def manifest_files(paths: Sequence[Path], problems: list[ManifestError]) -> list[Path]:
    """The files to load, in order: a file as given, a folder as every ``*.yaml`` and ``*.yml``
    file below it, sorted, except lockfiles (``*.lock.yaml``) and names starting with '.'.

    A file reached twice is listed once. A path that does not exist, and a folder with no
    manifest, add a problem to ``problems`` and contribute nothing.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        for file in _files_at(path, problems):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    return files


def read_documents(path: Path) -> Iterator[Document | ManifestError]:
    """The file's non-empty documents, and its problems, in file order; nothing at all for a
    file that holds no document.

    A syntax error ends the file (the documents before it are kept); a construction error such
    as a duplicate key ends only its own document.
    """
    text = _read_text(path)
    if isinstance(text, ManifestError):
        yield text
        return
    index = 0
    yaml = YAML(typ="rt")
    # The constructor and composer are driven by hand (as YAML.load_all does) to keep each
    # document's node: it gives the start of any document, scalars included, and a document
    # whose construction fails can be reported without losing the ones after it.
    try:
        constructor, parser = yaml.get_constructor_parser(text)
    except ReaderError as exc:  # the reader checks every character up front
        yield _reader_problem(path, text, exc)
        return
    try:
        while constructor.composer.check_node():
            node = constructor.composer.get_node()
            try:
                tree = constructor.construct_document(node)
            except MarkedYAMLError as exc:
                index += 1
                yield _construction_problem(path, node, exc)
                _reset(constructor)
                continue
            if tree is not None:
                yield Document(tree, Mark.of(node.start_mark), index)
                index += 1
    except MarkedYAMLError as exc:
        yield _syntax_problem(path, exc)
    except ReaderError as exc:
        yield _reader_problem(path, text, exc)
    finally:
        parser.dispose()


def child_marks(mapping: CommentedMap, key: Any) -> tuple[Mark, Mark]:
    """The key's and the value's positions; a key merged in with '<<' has none of its own and
    gets the mapping's."""
    try:
        return Mark(*mapping.lc.key(key)), Mark(*mapping.lc.value(key))
    except (KeyError, TypeError):
        start = Mark(mapping.lc.line, mapping.lc.col)
        return start, start


def item_mark(sequence: CommentedSeq, index: int) -> Mark:
    """The list item's position, or the list's when the item has none."""
    try:
        return Mark(*sequence.lc.item(index))
    except (KeyError, TypeError):
        return Mark(sequence.lc.line, sequence.lc.col)


def custom_tags(tree: Any) -> Iterator[tuple[str, Mark]]:
    """Every value below ``tree`` written with a tag outside YAML's own (``!env X``), as the
    tag and the value's position."""
    for value, mark in _values(tree):
        if isinstance(value, CommentedMap | CommentedSeq | TaggedScalar):
            tag = value.tag.value
            if tag is not None and not tag.startswith("tag:yaml.org,2002:"):
                yield str(tag), mark


def plain(value: Any) -> Any:
    """The round-trip value as plain Python (dict, list, str, int, float, bool, None)."""
    if isinstance(value, CommentedMap):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [plain(v) for v in value]
    if isinstance(value, TaggedScalar):
        return str(value.value)
    if isinstance(value, ScalarBoolean):
        return bool(value)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def yaml_type(value: Any) -> str:
    """What a user would call the value's type: 'a list', 'a string', ..."""
    if isinstance(value, CommentedSeq | list):
        return "a list"
    if isinstance(value, bool | ScalarBoolean):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


# --- files -------------------------------------------------------------------------------------


def _files_at(path: Path, problems: list[ManifestError]) -> list[Path]:
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
        return found
    if path.exists():
        return [path]
    problems.append(
        ManifestError(
            "no such file or folder",
            location=str(path),
            hint="check the path; relative paths start in the current folder",
        )
    )
    return []


def _is_manifest_file(file: Path, folder: Path) -> bool:
    hidden = any(part.startswith(".") for part in file.relative_to(folder).parts)
    return (
        file.suffix in MANIFEST_SUFFIXES
        and not file.name.endswith(SKIPPED_SUFFIXES)
        and not hidden
        and file.is_file()
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


# --- YAML problems -----------------------------------------------------------------------------


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
        f"invalid YAML: character U+{exc.character:04X} is not allowed"
        if isinstance(exc.character, int)
        else f"invalid YAML: character {exc.character!r} is not allowed",
        location=Mark(line, column).render(path),
        hint="remove the character, or write it as an escape in a double-quoted string",
    )


def _syntax_problem(path: Path, exc: MarkedYAMLError) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    location = Mark.of(mark).render(path) if mark else str(path)
    problem = exc.problem or exc.context or "cannot parse"
    return ManifestError(f"invalid YAML: {problem}", location=location, hint=SYNTAX_HINT)


def _duplicate_key(path: Path, document: Node, exc: DuplicateKeyError) -> ManifestError:
    first = _first_occurrence(document, exc)
    if first is None:
        message = f"duplicate key: {exc.problem}"
    else:
        key, first_mark = first
        message = f"duplicate key {key!r} (first defined on line {first_mark.line + 1})"
    return ManifestError(
        message,
        location=Mark.of(exc.problem_mark).render(path),
        hint="a key may appear once per mapping; remove or merge one of them",
    )


def _first_occurrence(document: Node, exc: DuplicateKeyError) -> tuple[str, Mark] | None:
    """The duplicated key and where it first appears, found in the document's nodes."""
    mapping_at = Mark.of(exc.context_mark)
    duplicate_at = Mark.of(exc.problem_mark)
    for node in _nodes(document):
        if isinstance(node, MappingNode) and Mark.of(node.start_mark) == mapping_at:
            keys = [key for key, _ in node.value]
            duplicate = next((k for k in keys if Mark.of(k.start_mark) == duplicate_at), None)
            if duplicate is None:
                return None
            original = next(k for k in keys if k.value == duplicate.value)
            return str(duplicate.value), Mark.of(original.start_mark)
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


def _values(tree: Any) -> Iterator[tuple[Any, Mark]]:
    if isinstance(tree, CommentedMap):
        for key, value in tree.items():
            yield value, child_marks(tree, key)[1]
            yield from _values(value)
    elif isinstance(tree, CommentedSeq):
        for index, value in enumerate(tree):
            yield value, item_mark(tree, index)
            yield from _values(value)


def header_problems(
    path: Path, document: Document, *, api_version: str, kind: str, hint: str
) -> list[ManifestError]:
    """Problems with a document's ``apiVersion`` and ``kind``: each missing or different value,
    located at the document or at the value. A document with a wrong header is probably not
    meant for this reader; callers stop there rather than add noise about its other keys."""
    tree = document.tree
    found = []
    for key, expected in (("apiVersion", api_version), ("kind", kind)):
        if key not in tree:
            found.append(
                ManifestError(
                    f"{key}: required field is missing (expected {key}: {expected})",
                    location=document.mark.render(path),
                    hint=hint,
                )
            )
        elif tree[key] != expected:
            found.append(
                ManifestError(
                    f"{key}: expected {expected!r}, got {plain(tree[key])!r}",
                    location=child_marks(tree, key)[1].render(path),
                    hint=hint,
                )
            )
    return found
