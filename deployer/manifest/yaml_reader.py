"""Find manifest files and read their YAML documents, keeping where every key and value is written.

Only reads: nothing here knows the manifest schema. Problems in the input (a path that does not
exist, a folder with no manifest, an unreadable or non-UTF-8 file, a YAML syntax error, a
duplicate key) are returned as :class:`~deployer.errors.ManifestError` values in file order,
each located ``FILE:LINE:COLUMN`` (1-based) with a hint, so that the caller can collect every
problem before raising.

YAML is read as YAML 1.2 (ruamel's default), so ``on``, ``yes`` and ``no`` stay strings. Each
document is ruamel's round-trip tree, which keeps the 0-based position of every key, value and
list item (:func:`child_marks`, :func:`item_mark`); :func:`plain` turns it into plain Python.

No input can make reading slow or deep (see :class:`_GuardedParser`): files come through
:mod:`deployer.inputs` (regular files, bounded size); a document may hold at most
:data:`MAX_NODES` nodes counting every alias as the subtree it stands for, so anchors and
aliases cannot multiply ("billion laughs"), and nest at most :data:`MAX_DEPTH` levels; an alias
of a node that contains it is refused; a ``%YAML`` directive other than 1.2 and ``%TAG``
directives are refused; of YAML's own tags only ``!!str``, ``!!int``, ``!!float``, ``!!bool``,
``!!null``, ``!!map`` and ``!!seq`` are accepted, and on a value they fit; an integer of more than
:data:`MAX_INT_DIGITS` digits is refused. Each is one located error, found while parsing, before
any tree is built, so the cost of reading is linear in the file's size.

:func:`read_plain_documents` is the fast path for callers that want plain values: libyaml's C
parser with YAML 1.2 core-schema resolution (ruamel's own resolver table), giving the same values
as :func:`plain` of the round-trip tree. It is taken only when it is certain to: a document with
an anchor, alias, tag, directive, merge key, duplicate or non-string key, timestamp, or anything
the guard would refuse is left to the round-trip parser, and so is every file in which libyaml
finds an error. It keeps no positions: a caller that finds a problem in its values reads the
file again with :func:`read_documents` to locate it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.docinfo import DocInfo, version
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.parser import RoundTripParser
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarbool import ScalarBoolean

from deployer import inputs
from deployer.errors import ManifestError

try:  # PyYAML built with libyaml: the fast path (without it, every file takes the guarded one)
    import yaml as _pyyaml  # type: ignore[import-untyped]
    from yaml._yaml import CParser as _CParser  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core and kubernetes
    _CParser = None

MANIFEST_SUFFIXES = (".yaml", ".yml")
#: Files in a folder that are not manifests: lockfiles written next to them.
SKIPPED_SUFFIXES = (".lock.yaml", ".lock.yml")

SYNTAX_HINT = "check indentation and quoting near this line"

#: Most nodes one manifest may hold, each alias counted as the subtree it repeats (other kinds
#: of file have their own, :attr:`deployer.inputs.FileKind.max_nodes`).
MAX_NODES = inputs.MANIFEST.max_nodes
#: Deepest nesting of mappings and lists in one document.
MAX_DEPTH = 64
#: Longest integer, in digits: 2**63 has 19.
MAX_INT_DIGITS = 19

_YAML_TAG = "tag:yaml.org,2002:"
#: YAML's own tags a manifest may use, and the plain values each fits (YAML 1.2 core schema).
_SCALAR_TAGS = {
    "str": re.compile(r".*", re.DOTALL),
    "int": re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    "float": re.compile(
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    ),
    "bool": re.compile(r"true|True|TRUE|false|False|FALSE"),
    "null": re.compile(r"~|null|Null|NULL|"),
}
_COLLECTION_TAGS = ("map", "seq")
_PLAIN_INT = re.compile(r"[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9][0-9_]*)")
#: A %YAML directive: read from the text first, as ruamel fails on versions it does not know.
_YAML_DIRECTIVE = re.compile(r"^%YAML[ \t]+(\S*)", re.MULTILINE)
#: Lone surrogates ("\ud800" in a double-quoted string): not text any file or process takes.
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def read_documents(
    path: Path, kind: inputs.FileKind = inputs.MANIFEST
) -> Iterator[Document | ManifestError]:
    """The file's non-empty documents, and its problems, in file order; nothing at all for a
    file that holds no document.

    A syntax error ends the file (the documents before it are kept); a construction error such
    as a duplicate key ends only its own document.
    """
    try:
        text = inputs.read_text(path, kind)
    except FileNotFoundError:
        yield ManifestError(
            "no such file",
            location=str(path),
            hint="check the path; relative paths start in the current folder",
        )
        return
    except ManifestError as exc:
        yield exc
        return
    yield from _documents(path, text, kind)


def read_plain(path: Path, kind: inputs.FileKind) -> Any:
    """The one document of a YAML file as plain Python (None for an empty file), read with the
    same limits as manifests. Raises FileNotFoundError when nothing is there and the first
    :class:`ManifestError` found otherwise (several documents are one)."""
    text = inputs.read_text(path, kind)
    fast = fast_documents(text, kind)
    if fast is not None and len(fast) <= 1:
        return fast[0].value if fast else None
    documents = list(_documents(path, text, kind))
    for found in documents:
        if isinstance(found, ManifestError):
            raise found
    if len(documents) > 1:
        raise ManifestError(
            f"{len(documents)} YAML documents in one {kind.noun}",
            location=str(path),
            hint=f"{kind.a} is one YAML document",
        )
    return plain(documents[0].tree) if documents else None  # type: ignore[union-attr]


@dataclass(frozen=True)
class PlainDocument:
    """One non-empty YAML document of a file, read by the fast path: plain values only."""

    value: Any
    """What :func:`plain` gives for the document's round-trip tree."""
    mark: Mark
    """Where the document's content starts (as :attr:`Document.mark`)."""
    index: int
    """0-based number among the file's non-empty documents (as :attr:`Document.index`)."""


def read_plain_documents(
    path: Path, kind: inputs.FileKind = inputs.MANIFEST
) -> list[PlainDocument] | None:
    """The file's non-empty documents as plain Python, read by libyaml, when that is certain to
    give what :func:`read_documents` would, values, marks and indexes, with no problem at all;
    None otherwise (a file that cannot be read, an error of any kind, anything the fast path
    does not take on): then :func:`read_documents` gives the documents and the problems."""
    try:
        text = inputs.read_text(path, kind)
    except (OSError, ManifestError):
        return None
    return fast_documents(text, kind)


def _documents(path: Path, text: str, kind: inputs.FileKind) -> Iterator[Document | ManifestError]:
    for directive in _YAML_DIRECTIVE.finditer(text):
        if directive.group(1) != "1.2":
            line = text.count("\n", 0, directive.start())
            yield ManifestError(
                f"%YAML {directive.group(1)} directive: deployer reads YAML 1.2",
                location=Mark(line, 0).render(path),
                hint="remove the %YAML line (YAML 1.2 is the default)",
            )
            return
    index = 0
    yaml = YAML(typ="rt")
    yaml.Parser = functools.partial(_GuardedParser, kind=kind)
    # What YAML.load_all does first: the scanner records a %YAML directive here.
    yaml.doc_infos.append(DocInfo(requested_version=version(yaml.version)))
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
            except (YAMLError, ValueError, TypeError, OverflowError, IndexError) as exc:
                # A value no guard foresaw (the constructor's own checks; ruamel indexes past
                # the end of a plain '+_' or '0x_'): the document is lost, the ones after it are
                # still read.
                index += 1
                yield _construction_problem(path, node, exc)
                _reset(constructor)
                continue
            if tree is not None:
                yield Document(tree, Mark.of(node.start_mark), index)
                index += 1
    except _Refused as exc:
        yield ManifestError(exc.problem, location=exc.mark.render(path), hint=exc.hint)
    except MarkedYAMLError as exc:
        yield _syntax_problem(path, exc)
    except ReaderError as exc:
        yield _reader_problem(path, text, exc)
    except YAMLError as exc:
        yield ManifestError(f"invalid YAML: {exc}", location=str(path), hint=SYNTAX_HINT)
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


# --- the fast path -----------------------------------------------------------------------------

#: Text the fast path leaves to the guarded parser without parsing it, where ruamel reads or
#: refuses what libyaml takes otherwise: a directive (a line starting with '%'); a document end
#: marker ('...': twice in a row ruamel refuses it); a comment right after a block scalar's
#: indicator ('|#'); a tab (libyaml takes one inside a plain scalar); a CR that is not part of
#: a CRLF, a byte-order mark inside the text, and the line breaks NEL, LS and PS.
_NOT_FAST_TEXT = re.compile(
    "^(?:%|\\.\\.\\.)|[|>][-+1-9]{0,2}#|\r(?!\n)|[\t\ufeff\x85\u2028\u2029]", re.MULTILINE
)
_TAG_STR = _YAML_TAG + "str"
_TAG_NULL = _YAML_TAG + "null"
_TAG_BOOL = _YAML_TAG + "bool"
_TAG_INT = _YAML_TAG + "int"
_TAG_FLOAT = _YAML_TAG + "float"
#: ruamel's YAML 1.2 implicit resolvers, by first character: (tag, regular expression), tried in
#: order, the first match wins; a plain scalar no expression matches is a string. Taken from
#: ruamel itself so that both paths resolve alike.
_RESOLVERS: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {
    first: [(str(tag), re.compile(regexp.pattern, regexp.flags)) for tag, regexp in found]
    for first, found in VersionedResolver(version=(1, 2)).versioned_resolver.items()
}
#: Those tried after the first character's, for every value (ruamel has none).
_ANY_FIRST = _RESOLVERS.pop(None, [])
_RESOLVERS = {first: [*found, *_ANY_FIRST] for first, found in _RESOLVERS.items()}
_INF = float("inf")
_NAN = -_INF / _INF  # as ruamel makes it
_BASES = {"0b": 2, "0o": 8, "0x": 16}


class _NotFast(Exception):
    """The fast path cannot vouch for this text: the guarded parser reads it."""


def fast_documents(text: str, kind: inputs.FileKind) -> list[PlainDocument] | None:
    """The text's non-empty documents as plain Python, or None when the fast path cannot vouch
    for them (see :func:`read_plain_documents`).

    Safety: libyaml's parser is a state machine (it does not recurse; only its composer does,
    which is not used), and values are built here from its events, one at a time, so everything
    the guard limits is checked before it can cost anything: the first anchor, alias, tag,
    directive, collection deeper than :data:`MAX_DEPTH` or value past ``kind.max_nodes`` ends
    the fast path, and the guarded parser then refuses the text or reads it.
    """
    if _CParser is None or _NOT_FAST_TEXT.search(text):
        return None
    parser = _CParser(text)
    try:
        return _fast_stream(parser, kind.max_nodes)
    except (_NotFast, _pyyaml.YAMLError, ValueError, TypeError, OverflowError, IndexError):
        return None
    finally:
        parser.dispose()


def _fast_stream(parser: Any, max_nodes: int) -> list[PlainDocument]:
    get = parser.get_event
    get()  # the stream's start
    documents: list[PlainDocument] = []
    while True:
        event = get()
        if isinstance(event, _pyyaml.StreamEndEvent):
            return documents
        if event.version is not None or event.tags:  # a document's start
            raise _NotFast
        first = get()
        if isinstance(first, _pyyaml.ScalarEvent) and first.style in ("|", ">"):
            # A document that is one block scalar: ruamel's goes on past a '---' line.
            raise _NotFast
        value = _fast_document(get, first, max_nodes)
        get()  # the document's end
        if value is not None:
            mark = Mark(first.start_mark.line, first.start_mark.column)
            documents.append(PlainDocument(value, mark, len(documents)))


def _fast_document(get: Any, event: Any, max_nodes: int) -> Any:
    """One document's value, from its first event to its last; each value's event is taken
    from ``get`` only once the one before has been counted and checked."""
    scalar, alias = _pyyaml.ScalarEvent, _pyyaml.AliasEvent
    mapping_start, sequence_start = _pyyaml.MappingStartEvent, _pyyaml.SequenceStartEvent
    no_key = _NotFast  # a marker no key can be
    #: Open collections, innermost last: [the dict or list, the key waiting for its value].
    open_: list[list[Any]] = []
    nodes = 0
    while True:
        kind = type(event)
        if kind is scalar:
            if event.anchor is not None or event.tag is not None:
                raise _NotFast
            nodes += 1
            value = _fast_scalar(event)
        elif kind is mapping_start or kind is sequence_start:
            if event.anchor is not None or event.tag is not None or len(open_) >= MAX_DEPTH:
                raise _NotFast
            nodes += 1
            if nodes > max_nodes:
                raise _NotFast
            open_.append([{} if kind is mapping_start else [], no_key])
            event = get()
            continue
        elif kind is alias:
            raise _NotFast
        else:  # the end of a collection
            value = open_.pop()[0]
        if nodes > max_nodes:
            raise _NotFast
        if not open_:
            return value
        top = open_[-1]
        container = top[0]
        if type(container) is list:
            container.append(value)
        elif top[1] is no_key:
            # A key: a string, once per mapping (ruamel's keys of other types are not plain
            # Python's, and a duplicate is an error to locate).
            if type(value) is not str or value in container:
                raise _NotFast
            top[1] = value
        else:
            container[top[1]] = value
            top[1] = no_key
        event = get()


def _fast_scalar(event: Any) -> Any:
    """A scalar's value as ruamel's round-trip constructor gives it, made plain."""
    value = str(event.value)
    if not event.implicit[0]:  # quoted, literal or folded: a string
        style = event.style
        if style == '"' and _SURROGATE.search(value):
            raise _NotFast
        if value[:1] == "\n" and style in ("|", ">"):
            # Leading empty lines: ruamel refuses those more indented than the first line.
            raise _NotFast
        return value
    if _too_long_integer(value):
        raise _NotFast
    tag = _resolve(value)
    if tag == _TAG_STR:
        return value
    if tag == _TAG_NULL:
        return None
    if tag == _TAG_BOOL:
        return value[0] in "tT"
    if tag == _TAG_INT:
        return _fast_int(value)
    if tag == _TAG_FLOAT:
        return _fast_float(value)
    raise _NotFast  # a timestamp, a merge key ('<<'), '=': ruamel's own types or meanings


def _resolve(value: str) -> str:
    """The tag ruamel gives a plain scalar in YAML 1.2 (as its resolver does it)."""
    for tag, regexp in _RESOLVERS.get(value[:1], _ANY_FIRST):
        if regexp.match(value):
            return tag
    return _TAG_STR


def _fast_int(value: str) -> int:
    """ruamel's YAML 1.2 integer: '_' ignored, 0b, 0o and 0x prefixes, leading zeros decimal."""
    digits = value.replace("_", "")
    sign = -1 if digits[:1] == "-" else 1
    if digits[:1] in ("-", "+"):
        digits = digits[1:]
    base = _BASES.get(digits[:2])
    if base is not None:
        if len(digits) == 2:  # ruamel fails on '0x_': its error is the guarded path's to locate
            raise _NotFast
        return sign * int(digits[2:], base)
    if not digits:
        raise _NotFast
    return sign * int(digits)


def _fast_float(value: str) -> float:
    """ruamel's YAML 1.2 float: '_' ignored, .inf and .nan in any case ruamel's table takes."""
    digits = value.replace("_", "").lower()
    sign = -1 if digits[:1] == "-" else 1
    if digits[:1] in ("-", "+"):
        digits = digits[1:]
    if digits == ".inf":
        return sign * _INF
    if digits == ".nan":
        return _NAN
    return sign * float(digits)


# --- files -------------------------------------------------------------------------------------


def _files_at(path: Path, problems: list[ManifestError]) -> list[Path]:
    try:
        return _files_below(path, problems)
    except OSError as exc:  # a name too long, a loop of symlinks, a folder that cannot be listed
        problems.append(
            ManifestError(
                f"cannot read: {exc.strerror or exc}",
                location=str(path),
                hint="check the path; relative paths start in the current folder",
            )
        )
        return []


def _files_below(path: Path, problems: list[ManifestError]) -> list[Path]:
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


# --- YAML problems -----------------------------------------------------------------------------


def _reset(constructor: Any) -> None:
    """Forget a half-built document so that the next one starts clean."""
    constructor.constructed_objects = {}
    constructor.recursive_objects = {}
    constructor.state_generators = []
    constructor.deep_construct = False


def _construction_problem(path: Path, document: Node, exc: Exception) -> ManifestError:
    if isinstance(exc, DuplicateKeyError):
        return _duplicate_key(path, document, exc)
    if isinstance(exc, MarkedYAMLError):
        return _syntax_problem(path, exc)
    return ManifestError(
        f"invalid YAML: cannot read a value: {exc}",
        location=Mark.of(document.start_mark).render(path),
        hint=SYNTAX_HINT,
    )


class _Refused(Exception):
    """Raised by the guard while parsing; becomes one ManifestError at ``mark``."""

    def __init__(self, problem: str, mark: Any, hint: str):
        super().__init__(problem)
        self.problem = problem
        self.mark = Mark.of(mark)
        self.hint = hint


class _GuardedParser(RoundTripParser):
    """ruamel's round-trip parser, checking every event as the composer takes it: nesting depth,
    the size of the document with aliases expanded, aliases inside their own anchor, directives,
    tags and integer length. One pass, constant work per event; it raises :class:`_Refused`
    before the composer (which recurses) gets deep or the constructor gets big."""

    def __init__(self, loader: Any, *, kind: inputs.FileKind) -> None:
        super().__init__(loader)
        self._kind = kind
        self._new_document()

    def _new_document(self) -> None:
        #: Per open collection: its anchor and how many nodes it holds so far (itself included).
        self._open: list[tuple[str | None, int]] = []
        #: Finished anchors and the nodes each stands for.
        self._anchors: dict[str, int] = {}
        self._nodes = 0
        self._aliased = False

    def get_event(self) -> Any:
        event = super().get_event()
        if isinstance(event, DocumentStartEvent):
            self._new_document()
            _check_directives(event)
        elif isinstance(event, ScalarEvent):
            _check_scalar(event)
            if event.anchor is not None:
                self._anchors[event.anchor] = 1
            self._add(event, 1)
        elif isinstance(event, AliasEvent):
            self._aliased = True
            self._add(event, self._alias_size(event))
        elif isinstance(event, CollectionStartEvent):
            _check_collection_tag(event)
            if len(self._open) >= MAX_DEPTH:
                raise _Refused(
                    f"nested more than {MAX_DEPTH} levels deep",
                    event.start_mark,
                    f"{self._kind.a} nests a few levels; flatten this value",
                )
            self._add(event, 1, grow=False)  # its parent grows when it ends, by all it holds
            self._open.append((event.anchor, 1))
        elif isinstance(event, CollectionEndEvent) and self._open:
            anchor, size = self._open.pop()
            if anchor is not None:
                self._anchors[anchor] = size
            self._grow(size)
        return event

    def _alias_size(self, event: AliasEvent) -> int:
        if any(anchor == event.anchor for anchor, _ in self._open):
            raise _Refused(
                f"alias *{event.anchor} is inside the node it refers to (a recursive structure)",
                event.start_mark,
                "an alias may repeat a finished node only; write the value out",
            )
        # An unknown alias is the composer's error, with its own message.
        return self._anchors.get(event.anchor, 1)

    def _add(self, event: Any, size: int, *, grow: bool = True) -> None:
        """A node of ``size`` nodes (an alias: its anchor's) is added to the document's count
        and, with ``grow``, to the open collection's."""
        self._nodes += size
        if grow:
            self._grow(size)
        most = self._kind.max_nodes
        if self._nodes <= most:
            return
        if self._aliased:
            raise _Refused(
                f"more than {most:,} values with aliases expanded",
                event.start_mark,
                "anchors and aliases may repeat a value a few times, not multiply it; "
                "write the values out",
            )
        raise _Refused(
            f"more than {most:,} values in one document",
            event.start_mark,
            f"{self._kind.a} holds at most {most:,} values; split it into several",
        )

    def _grow(self, size: int) -> None:
        if self._open:
            anchor, inner = self._open[-1]
            self._open[-1] = (anchor, inner + size)


def _check_directives(event: DocumentStartEvent) -> None:
    if event.version is not None and tuple(event.version) != (1, 2):
        major, minor = event.version
        raise _Refused(
            f"%YAML {major}.{minor} directive: deployer reads YAML 1.2",
            event.start_mark,
            "remove the %YAML line (YAML 1.2 is the default)",
        )
    if event.tags:
        raise _Refused(
            "%TAG directives are not supported",
            event.start_mark,
            "remove the %TAG line; manifests are plain YAML without tags",
        )


def _check_scalar(event: ScalarEvent) -> None:
    if _SURROGATE.search(event.value):
        raise _Refused(
            "a lone surrogate (\\ud800 to \\udfff) is not a character",
            event.start_mark,
            "write the character itself, or its \\U escape, in UTF-8",
        )
    tag = event.tag
    if tag is not None and tag != "!":
        _check_own_tag(tag, event)
        name = tag[len(_YAML_TAG) :]
        if tag.startswith(_YAML_TAG) and not _SCALAR_TAGS[name].fullmatch(event.value):
            raise _Refused(
                f"!!{name} {event.value!r}: not a valid {name} value",
                event.start_mark,
                f"write a valid {name} after !!{name}, or drop the tag",
            )
    plain_scalar = event.style is None and tag is None
    if (plain_scalar or tag == _YAML_TAG + "int") and _too_long_integer(event.value):
        raise _Refused(
            f"integer {event.value[:12]}... has {len(event.value)} digits, more than deployer "
            f"takes ({MAX_INT_DIGITS})",
            event.start_mark,
            "quote it if it is meant as text",
        )


def _too_long_integer(value: str) -> bool:
    """Whether a plain scalar is an integer of more than :data:`MAX_INT_DIGITS` digits."""
    integer = _PLAIN_INT.fullmatch(value)
    return bool(
        integer
        and len(integer.group(1).removeprefix("0x").removeprefix("0o").replace("_", ""))
        > MAX_INT_DIGITS
    )


def _check_collection_tag(event: CollectionStartEvent) -> None:
    tag = event.tag
    if tag is not None:
        _check_own_tag(tag, event)


def _check_own_tag(tag: str, event: Any) -> None:
    """YAML's own tags beyond the plain ones (!!binary, !!timestamp, !!set, !!python/...) are
    refused here; other tags (``!env``) are the loader's to refuse, with every location."""
    if not tag.startswith(_YAML_TAG):
        return
    name = tag[len(_YAML_TAG) :]
    allowed = _COLLECTION_TAGS if isinstance(event, CollectionStartEvent) else _SCALAR_TAGS
    if name not in allowed:
        raise _Refused(
            f"unsupported YAML tag '!!{name}'",
            event.start_mark,
            "manifests are plain YAML; secrets are written as {env: NAME} or {file: PATH}",
        )


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
