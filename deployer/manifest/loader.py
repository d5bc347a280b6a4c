"""Load ModelDeployment manifests from YAML files, with errors that name file, line and field.

Loading only reads files. It collects every problem in every file it was given (YAML syntax,
duplicate keys, wrong apiVersion or kind, every schema violation, duplicate deployment names) and
raises one :class:`~deployer.errors.ManifestError`: its message is the first problem and its
``problems`` list holds them all, each with a ``FILE:LINE:COLUMN`` location (1-based), a reason
that starts with the field's dotted YAML path, and a hint.

This module validates; :mod:`~deployer.manifest.yaml_reader` finds and reads the files (YAML 1.2,
keeping every position) and :mod:`~deployer.manifest.explain` maps pydantic's errors back onto
the YAML.

A file is first read by the reader's fast path (libyaml, plain values, no positions) and
validated; only a file that the fast path does not take, or in which anything is wrong, is read
again with the round-trip parser, whose positions locate every problem exactly as if the fast
path did not exist. A duplicate deployment name, found across files, is located the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap

from deployer.errors import ManifestError
from deployer.manifest.explain import schema_problems
from deployer.manifest.models import API_VERSION, KIND, ModelDeployment
from deployer.manifest.yaml_reader import (
    Document,
    child_marks,
    custom_tags,
    header_problems,
    manifest_files,
    plain,
    read_documents,
    read_plain_documents,
    yaml_type,
)

HEADER_HINT = f"a manifest starts with 'apiVersion: {API_VERSION}' and 'kind: {KIND}'"

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
    origin: Path | None = None
    """Where relative paths start when not beside the file: a revision re-applied from the
    state keeps the folder it was first applied from."""

    @property
    def base_dir(self) -> Path:
        """The manifest file's folder (absolute), or its :attr:`origin`: relative paths in the
        manifest start here."""
        return self.origin or Path(os.path.abspath(self.path)).parent

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
    #: Each deployment, and where its name is written (None: not known yet, see _locate_name).
    loaded: list[tuple[LoadedManifest, str | None]] = []
    for file in manifest_files(paths, problems):
        fast = _read_fast(file)
        if fast is not None:
            loaded.extend((manifest, None) for manifest in fast)
            continue
        for document in _read(file):
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


# --- one file ----------------------------------------------------------------------------------


def _read_fast(path: Path) -> list[LoadedManifest] | None:
    """The file's deployments when the fast path reads it and every document is a valid
    deployment; None when anything is to be said about the file (it is then read again, with
    positions), including that it is empty."""
    documents = read_plain_documents(path)
    if not documents:
        return None
    found = []
    for document in documents:
        value = document.value
        if not (
            isinstance(value, dict)
            and value.get("apiVersion") == API_VERSION
            and value.get("kind") == KIND
        ):
            return None
        try:
            deployment = ModelDeployment.model_validate(value)
        except ValidationError:
            return None
        found.append(LoadedManifest(deployment, path, document.mark.line + 1, document.index))
    return found


def _read(path: Path) -> list[Document | ManifestError]:
    """The file's documents and problems; a file with neither is a problem of its own."""
    found = list(read_documents(path))
    if found:
        return found
    return [
        ManifestError("empty file: no manifest in it", location=f"{path}:1:1", hint=HEADER_HINT)
    ]


# --- one document ------------------------------------------------------------------------------


def _validate(
    path: Path, document: Document, problems: list[ManifestError]
) -> ModelDeployment | None:
    """The document as a deployment, or None after adding its problems to ``problems``."""
    tree = document.tree
    if not isinstance(tree, CommentedMap):
        problems.append(
            ManifestError(
                f"expected a mapping (a {KIND} manifest), got {yaml_type(tree)}",
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
        return ModelDeployment.model_validate(plain(tree))
    except ValidationError as exc:
        problems.extend(schema_problems(path, document, exc))
        return None


def _header_problems(path: Path, document: Document) -> list[ManifestError]:
    """A document with the wrong apiVersion or kind is not validated further: it is probably
    not meant for deployer, and its other keys would only add noise."""
    return header_problems(path, document, api_version=API_VERSION, kind=KIND, hint=HEADER_HINT)


def _tag_problems(path: Path, tree: CommentedMap) -> list[ManifestError]:
    """Custom YAML tags (``!env X``) mean nothing to deployer; say so rather than drop them."""
    return [
        ManifestError(
            f"unsupported YAML tag {tag!r}",
            location=mark.render(path),
            hint="manifests are plain YAML; secrets are written as {env: NAME} or {file: PATH}",
        )
        for tag, mark in custom_tags(tree)
    ]


# --- across documents --------------------------------------------------------------------------


def _name_location(path: Path, document: Document) -> str:
    metadata = document.tree["metadata"]
    return child_marks(metadata, "name")[1].render(path)


def _locate_name(manifest: LoadedManifest) -> str:
    """Where the name of a deployment the fast path read is written: its file read again."""
    for document in read_documents(manifest.path):
        if isinstance(document, Document) and document.index == manifest.index:
            return _name_location(manifest.path, document)
    return manifest.location  # the file changed since: its document at least


def _duplicate_names(loaded: list[tuple[LoadedManifest, str | None]]) -> list[ManifestError]:
    """A problem for each deployment whose name an earlier one has; a name the fast path read
    is located (its file read again) only then."""
    first_seen: dict[str, tuple[LoadedManifest, str | None]] = {}
    found = []
    for manifest, location in loaded:
        name = manifest.deployment.name
        if name in first_seen:
            first, first_location = first_seen[name]
            if first_location is None:
                first_location = _locate_name(first)
                first_seen[name] = (first, first_location)
            found.append(
                ManifestError(
                    f"metadata.name: deployment name {name!r} is already used at {first_location}",
                    location=location or _locate_name(manifest),
                    hint="names must be unique among the manifests loaded together; "
                    "rename one of them",
                )
            )
        else:
            first_seen[name] = (manifest, location)
    return found


def _combined(problems: list[ManifestError]) -> ManifestError:
    if len(problems) == 1:
        return problems[0]
    first = problems[0]
    return ManifestError(first.reason, location=first.location, hint=first.hint, problems=problems)
