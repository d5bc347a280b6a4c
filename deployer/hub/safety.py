"""The model supply-chain policy: which hub files to fetch, and whether a folder is safe to serve.

Applied by the fetch step before any file becomes visible to an engine, and to local folders:

- every path in a hub listing must stay inside the model folder (:func:`check_repo_path`);
- only what vLLM needs is fetched (:func:`select_files`): configs, tokenizer, safetensors
  weights, the model card and licence; never other weight formats or subfolders;
- pickle weights (``pytorch_model.bin``, ``*.pt``) can run code when loaded, so they are used
  only when the manifest allows them (``spec.model.allowPickle``), only when the repository has
  no safetensors, and only after :func:`scan_pickle` finds nothing but tensor-rebuilding imports;
- every ``.safetensors`` file's header must parse (a renamed pickle does not);
- custom code (``auto_map``) needs ``spec.model.trustRemoteCode``, and must come from the
  repository itself (:func:`check_remote_code`).

Everything here is a pure function of a file list or of local files; errors are
:class:`UnsafeModelError` naming the file and the reason, with a hint.
"""

from __future__ import annotations

import fnmatch
import json
import pickletools
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from deployer.errors import UnsafeModelError
from deployer.hub.safetensors_header import SafetensorsHeader, read_header

ALLOW_PICKLE_HINT = "set spec.model.allowPickle: true to allow pickle weights (they are scanned)"
TRUST_CODE_HINT = "review the repository's *.py files, then set spec.model.trustRemoteCode: true"
_CONVERT_HINT = "use a repository that ships safetensors weights, or convert the weights"
_BAD_PATH_HINT = "the repository's file listing is malformed or hostile; do not use this revision"

#: Top-level files the engine reads besides the weights.
WANTED_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
        "preprocessor_config.json",
        "processor_config.json",
        "video_preprocessor_config.json",
        "model.safetensors.index.json",
        "README.md",
    }
)
_WANTED_PATTERNS = ("*.tiktoken", "*.safetensors")
#: Licence files, matched without regard to case (LICENSE, LICENSE.txt, license.md, LICENCE).
_LICENCE_PATTERNS = ("license*", "licence*")
_PICKLE_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt")
_PICKLE_INDEX = "pytorch_model.bin.index.json"
_SAFETENSORS_INDEX = "model.safetensors.index.json"
#: Training state saved beside checkpoints; pickles the engine never needs.
_TRAINING_STATE = ("optimizer*", "scheduler*", "scaler*", "rng_state*", "training_args*")
#: Suffixes of files that are, or may be, pickles (what :attr:`Selection.pickles` reports).
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
#: Configs whose ``auto_map`` makes transformers import code from the model folder.
CODE_CONFIGS = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)

_DRIVE = re.compile(r"^[A-Za-z]:")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Selection:
    """The files to fetch from a repository, and the rest (both sorted)."""

    files: list[str]
    skipped: list[str]

    @property
    def pickles(self) -> list[str]:
        """Selected files that are pickles and must pass :func:`scan_pickle` once fetched."""
        return [path for path in self.files if PurePosixPath(path).suffix in PICKLE_SUFFIXES]


def check_repo_path(path: str) -> None:
    """Refuse a path from a hub listing that could escape the model folder or is ambiguous.

    Refused: the empty path, absolute paths, a leading ``~``, Windows drive letters,
    backslashes, NUL and other control characters, bidirectional-text controls (they make a
    name display as another), and empty, ``.`` or ``..`` components (``a//b``, ``a/``,
    ``a/./b``). Raises :class:`UnsafeModelError` naming the path; returns None otherwise.
    """
    why = _path_problem(path)
    if why:
        raise UnsafeModelError(f"refusing the hub file {path!r}: {why}", hint=_BAD_PATH_HINT)


def select_files(
    paths: Sequence[str],
    *,
    allow_pickle: bool,
    trust_remote_code: bool,
    extra: Sequence[str] = (),
) -> Selection:
    """Choose what the engine (vLLM) needs from a repository's file listing.

    Selected, at the top level only: configs and tokenizer files (:data:`WANTED_FILES`,
    ``*.tiktoken``), ``*.safetensors`` weights and their index, the model card ``README.md``,
    licence files, and ``*.py`` when ``trust_remote_code``. Never other weight formats
    (``.bin .pt .pth .ckpt .pkl .h5 .msgpack .onnx .gguf``) while safetensors exist, and never
    anything in a subfolder (``original/``, ``onnx/``, ``gguf/``): the engine reads the top level.
    With ``model.safetensors.index.json`` present, ``consolidated*.safetensors`` (Mistral's
    second copy of the same weights) is skipped.

    When there are no top-level safetensors but there are pickle weights
    (``pytorch_model*.bin``, ``*.pt``, not optimizer or training state): with ``allow_pickle``
    they and ``pytorch_model.bin.index.json`` are selected (scan them after fetching, see
    :attr:`Selection.pickles`); without it :class:`UnsafeModelError` is raised. No weights at
    all raises it too. Every path first passes :func:`check_repo_path`.

    ``extra`` are paths the manifest requires besides (the signature file of
    ``spec.model.signature``): each is selected, wherever it is, and one missing from ``paths``
    raises :class:`UnsafeModelError` naming it. Pure.
    """
    for path in paths:
        check_repo_path(path)
    missing = [path for path in extra if path not in paths]
    if missing:
        raise UnsafeModelError(
            f"signature file {missing[0]} is not in the repository",
            hint="ask the publisher for a signed revision, or fix "
            "spec.model.signature.signatureFile",
        )
    top = [path for path in paths if "/" not in path]
    safetensors = [path for path in top if path.endswith(".safetensors")]

    chosen = {path for path in top if _wanted(path, trust_remote_code=trust_remote_code)}
    if _SAFETENSORS_INDEX in top:
        # Mistral's repositories ship the same weights twice: HF shards named in the index,
        # and consolidated.safetensors for Mistral's own format. vLLM loads the shards.
        chosen -= {path for path in safetensors if fnmatch.fnmatchcase(path, "consolidated*")}
    if not safetensors:
        pickles = sorted(path for path in top if _is_pickle_weight(path))
        if not pickles:
            raise UnsafeModelError(
                f"the model has no weights vLLM can load at its top level{_elsewhere(paths)}",
                hint=_CONVERT_HINT,
            )
        if not allow_pickle:
            raise UnsafeModelError(
                f"the model has only pickle weights ({_some(pickles)}); "
                "pickle files can run code when loaded",
                hint=f"{ALLOW_PICKLE_HINT}, or {_CONVERT_HINT}",
            )
        chosen.update(pickles)
        chosen.update(path for path in top if path == _PICKLE_INDEX)
    chosen.update(extra)
    return Selection(
        files=sorted(chosen), skipped=sorted(path for path in paths if path not in chosen)
    )


def needs_remote_code(config: Mapping[str, object]) -> bool:
    """Whether a config (``config.json``, ``tokenizer_config.json``, ...) makes transformers
    import Python from the model folder: it has a non-empty ``auto_map``. Pure."""
    return bool(config.get("auto_map"))


def check_remote_code(
    config: Mapping[str, object], *, trust_remote_code: bool, config_path: str
) -> None:
    """Refuse custom code the manifest does not trust, and code from another repository.

    Nothing to do when the config has no ``auto_map``. Without ``trust_remote_code`` raises
    :class:`UnsafeModelError` naming ``config_path`` and the classes asked for. With it, still
    refuses ``auto_map`` entries of the form ``other/repo--module.Class``: transformers would
    download that code from another, unpinned repository when the engine starts. Pure.
    """
    if not needs_remote_code(config):
        return
    references = _auto_map_references(config.get("auto_map"), config_path)
    if not trust_remote_code:
        raise UnsafeModelError(
            f"{config_path} asks for custom code ({_some(sorted(references))}): Python from "
            "the model repository would run in the engine",
            hint=TRUST_CODE_HINT,
        )
    foreign = sorted(ref for ref in references if "--" in ref)
    if foreign:
        raise UnsafeModelError(
            f"{config_path} loads code from another repository ({_some(foreign)}), which "
            "deployer neither pins nor fetches",
            hint="use a repository that ships its own code (or copy the code into a mirror)",
        )


def remote_code_modules(config: Mapping[str, object], *, config_path: str) -> list[str]:
    """The ``*.py`` files in the model folder that a config's ``auto_map`` imports, sorted.

    ``{"AutoModel": "modeling_x.XModel"}`` gives ``["modeling_x.py"]``; references into
    another repository (``org/repo--module.Class``) are left out. Pure.
    """
    if not needs_remote_code(config):
        return []
    modules = set()
    for ref in _auto_map_references(config.get("auto_map"), config_path):
        if "--" in ref:
            continue
        module = ref.rpartition(".")[0]
        if module:
            modules.add(module.replace(".", "/") + ".py")
    return sorted(modules)


def scan_pickle(path: Path, *, name: str | None = None) -> None:
    """Refuse a pickle (or a torch zip of pickles) that imports anything but tensor rebuilding.

    Runs picklescan's ``scan_bytes`` (it reads the opcodes, never unpickles) and refuses when
    it reports a dangerous import (``posix.system``, ``builtins.eval``, ...), when it reports a
    parse error, and when any import is outside what ``torch.save`` writes for plain weights
    (``torch._utils._rebuild_tensor_v2``, ``torch.*Storage``, ``collections.OrderedDict``, ...):
    weights need nothing else, so anything else is treated as code. Also refuses a file whose
    first pickle does not parse, which picklescan would pass silently.

    ``name`` is what messages call the file and whose extension tells picklescan the layout
    (``.bin``/``.pt``: torch's formats); pass the repository path when ``path`` is a blob in a
    content-addressed store. Defaults to ``str(path)``. Raises :class:`UnsafeModelError` naming
    the file and the imports found; returns None when the file is safe to hand to ``torch.load``.
    """
    from picklescan.scanner import SafetyLevel, scan_bytes  # type: ignore[import-untyped]

    label = name or str(path)
    _check_parses(path, label)
    try:
        with path.open("rb") as handle:
            result = scan_bytes(handle, label, PurePosixPath(label).suffix)
    except Exception as exc:  # picklescan raises bare Exception/ValueError on odd files
        raise UnsafeModelError(
            f"{label} cannot be scanned as a pickle: {exc}", hint=_CONVERT_HINT
        ) from exc

    dangerous = sorted(
        f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous
    )
    if dangerous:
        raise UnsafeModelError(
            f"{label} is a pickle that imports {', '.join(dangerous)}: loading it would run code",
            hint="do not use this file; report the repository to the hub",
        )
    unknown = sorted(
        f"{g.module}.{g.name}"
        for g in result.globals
        if not _is_weight_global(str(g.module), str(g.name))
    )
    if unknown:
        raise UnsafeModelError(
            f"{label} is a pickle that imports {', '.join(unknown)}, which weights do not need",
            hint=_CONVERT_HINT,
        )
    if result.scan_err:
        raise UnsafeModelError(
            f"{label} is a pickle that picklescan could only partly parse", hint=_CONVERT_HINT
        )


def verify_local_folder(folder: Path, *, allow_pickle: bool, trust_remote_code: bool) -> None:
    """Apply the whole policy to a model folder on disk; read-only, so safe to repeat.

    The folder's files, as paths relative to it, go through :func:`select_files` (path checks,
    weights present, pickle-only folders refused unless ``allow_pickle``). Then: every
    ``*.safetensors`` header in the folder parses, and no tensor is in two of the selected
    shards; each selected pickle passes :func:`scan_pickle` (pickles the engine would not load,
    in subfolders or beside safetensors, are left alone); and every config's ``auto_map`` passes
    :func:`check_remote_code` and names code that is in the folder.

    Raises :class:`UnsafeModelError` for the first problem found, including when ``folder`` is
    not a folder; returns None when all pass.
    """
    if not folder.is_dir():
        raise UnsafeModelError(f"{folder} is not a folder", hint="fix the model path")
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    selection = select_files(
        sorted(files), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )

    headers = {
        path: read_header(file) for path, file in files.items() if path.endswith(".safetensors")
    }
    _check_disjoint([headers[path] for path in selection.files if path in headers])
    for path in selection.pickles:
        scan_pickle(files[path])

    for name in CODE_CONFIGS:
        config_file = folder / name
        if not config_file.is_file():
            continue
        config = _read_json_object(config_file)
        check_remote_code(config, trust_remote_code=trust_remote_code, config_path=str(config_file))
        missing = [
            m
            for m in remote_code_modules(config, config_path=str(config_file))
            if not (folder / m).is_file()
        ]
        if missing:
            raise UnsafeModelError(
                f"{config_file} names custom code that is not in the folder: {_some(missing)}",
                hint="fetch the repository's *.py files with the weights",
            )


# --- paths -------------------------------------------------------------------------------------


def _path_problem(path: str) -> str | None:
    if not path:
        return "it is empty"
    for char in path:
        if unicodedata.category(char) == "Cc":
            return f"it contains the control character {char!r}"
        if char in _BIDI:
            return f"it contains the bidirectional-text control {char!r}"
    if "\\" in path:
        return "it contains a backslash"
    if path.startswith("/"):
        return "it is absolute"
    if path.startswith("~"):
        return "it starts with '~'"
    if _DRIVE.match(path):
        return "it starts with a drive letter"
    for part in path.split("/"):
        if part == "":
            return "it has an empty component"
        if part in (".", ".."):
            return f"it has a {part!r} component"
    return None


def _wanted(path: str, *, trust_remote_code: bool) -> bool:
    if path in WANTED_FILES:
        return True
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in _WANTED_PATTERNS):
        return True
    if any(fnmatch.fnmatchcase(path.lower(), pattern) for pattern in _LICENCE_PATTERNS):
        return True
    return trust_remote_code and path.endswith(".py")


def _is_pickle_weight(path: str) -> bool:
    if any(fnmatch.fnmatchcase(path, pattern) for pattern in _TRAINING_STATE):
        return False
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in _PICKLE_WEIGHT_PATTERNS)


def _elsewhere(paths: Sequence[str]) -> str:
    nested = sorted(p for p in paths if "/" in p and p.endswith(".safetensors"))
    if nested:
        return f" (safetensors only in subfolders: {_some(nested)})"
    other = sorted(
        p
        for p in paths
        if PurePosixPath(p).suffix in {".gguf", ".onnx", ".h5", ".msgpack", ".pth", ".ckpt"}
    )
    return f" (only {_some(other)})" if other else ""


def _some(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


# --- remote code -------------------------------------------------------------------------------


def _auto_map_references(auto_map: object, config_path: str) -> set[str]:
    # Values are "module.Class", "org/repo--module.Class", or for tokenizers a
    # [slow, fast] pair whose members may be null.
    if not isinstance(auto_map, dict):
        raise UnsafeModelError(
            f"{config_path} has an auto_map that is not an object",
            hint="fix the config, or use another revision",
        )
    references: set[str] = set()
    for value in auto_map.values():
        candidates = value if isinstance(value, list) else [value]
        for ref in candidates:
            if ref is None:
                continue
            if not isinstance(ref, str) or not ref:
                raise UnsafeModelError(
                    f"{config_path} has an auto_map entry that is not a class name: {ref!r}",
                    hint="fix the config, or use another revision",
                )
            references.add(ref)
    return references


def _read_json_object(path: Path) -> dict[str, object]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsafeModelError(
            f"{path} is not readable JSON: {exc}", hint="download the file again"
        ) from exc
    if not isinstance(document, dict):
        raise UnsafeModelError(f"{path} is not a JSON object", hint="download the file again")
    return document


# --- weights -----------------------------------------------------------------------------------


def _check_disjoint(headers: Sequence[SafetensorsHeader]) -> None:
    owner: dict[str, str] = {}
    for header in headers:
        for name in header.tensors:
            if name in owner:
                raise UnsafeModelError(
                    f"tensor {name!r} is in both {owner[name]} and {header.name}: which one "
                    "loads depends on the engine",
                    hint="remove the stale shard (a folder should hold one checkpoint)",
                )
            owner[name] = header.name


#: Imports ``torch.save`` writes for plain weights (what ``torch.load(weights_only=True)``
#: accepts for a state dict), beyond picklescan's own innocuous list.
_WEIGHT_GLOBALS = {
    "collections": {"OrderedDict"},
    "torch._utils": {
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_qtensor",
    },
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch": {
        "Size",
        "device",
        "Tensor",
        "UntypedStorage",
        "bfloat16",
        "float16",
        "float32",
        "float64",
        "int8",
        "uint8",
        "int16",
        "int32",
        "int64",
        "bool",
        "per_tensor_affine",
        "per_channel_affine",
    },
    "torch.nn.parameter": {"Parameter"},
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "_codecs": {"encode"},
}


def _is_weight_global(module: str, name: str) -> bool:
    if module == "torch" and name.endswith("Storage"):
        return True
    return name in _WEIGHT_GLOBALS.get(module, set())


def _check_parses(path: Path, label: str) -> None:
    """Refuse a file that is neither a pickle nor a zip of pickles (picklescan skips it)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith(".pkl")]
                if not members:
                    raise UnsafeModelError(
                        f"{label} is a zip archive with no pickle in it, not torch weights",
                        hint=_CONVERT_HINT,
                    )
                for member in members:
                    with archive.open(member) as stream:
                        _first_pickle(stream, f"{label}:{member}")
            return
        with path.open("rb") as stream:
            _first_pickle(stream, label)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnsafeModelError(f"{label} cannot be read: {exc}", hint=_CONVERT_HINT) from exc


def _first_pickle(stream: IO[bytes], name: str) -> None:
    # The first pickle in the stream must parse to its STOP opcode. A legacy torch file holds
    # several pickles and then raw storage bytes, so only the first is required here.
    try:
        for _ in pickletools.genops(stream):
            pass
    except Exception as exc:  # genops raises ValueError, EOFError, struct errors...
        raise UnsafeModelError(
            f"{name} does not parse as a pickle ({exc}), so it cannot be scanned",
            hint=_CONVERT_HINT,
        ) from exc
