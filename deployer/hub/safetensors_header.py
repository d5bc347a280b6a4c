"""Read and validate a ``.safetensors`` header without loading the tensors.

The format: an 8-byte little-endian unsigned length ``N``, then ``N`` bytes of UTF-8 JSON (an
object mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``, plus an
optional ``"__metadata__"`` of strings), then the data section. Offsets count from the start of
the data section; the tensors must tile it exactly, with no gap, overlap or trailing byte.

This is parsed here rather than with the ``safetensors`` package because the package lives in
the engine's environment, not deployer's, and because a check that names the exact problem is
worth the sixty lines. Only the header is read, so checking a 10 GB shard costs one small read.
A pickle renamed ``model.safetensors`` fails here (its first 8 bytes are no sane length), which
is why every ``.safetensors`` file is checked even though the format itself runs no code.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deployer.errors import UnsafeModelError

#: The largest header accepted, as in the reference implementation (100 MB).
MAX_HEADER_BYTES = 100_000_000

#: Bits per element of each dtype the reference implementation knows (safetensors 0.8).
#: ``F4`` and the ``F6`` types pack several elements per byte.
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}

_METADATA_KEY = "__metadata__"
_HINT = (
    "download the file again; if it is still refused, the repository ships a file that is not "
    "safetensors (a renamed pickle can run code when loaded), so do not use it"
)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it; ``begin``/``end`` are offsets in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """Number of elements (1 for a scalar, 0 when any dimension is 0)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: every tensor's dtype, shape and extent, and the file's metadata."""

    path: Path
    name: str
    """What errors call the file: its repository path when given, else ``str(path)``."""
    header_length: int
    """``N``, the JSON header's length in bytes (the data section starts at ``8 + N``)."""
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        """Elements stored, summed over tensors.

        Packed quantized formats count what is stored: GPTQ's int4 weights packed eight to an
        ``I32`` count once per ``I32``. Scales and zero points count too.
        """
        return sum(info.numel for info in self.tensors.values())

    @property
    def bytes_by_dtype(self) -> dict[str, int]:
        """Data bytes per dtype, e.g. ``{"BF16": 269060096}``."""
        totals: dict[str, int] = {}
        for info in self.tensors.values():
            totals[info.dtype] = totals.get(info.dtype, 0) + info.nbytes
        return totals

    @property
    def data_bytes(self) -> int:
        """Size of the data section: the file's size less ``8 + header_length``."""
        return sum(info.nbytes for info in self.tensors.values())


def read_header(path: Path, *, name: str | None = None) -> SafetensorsHeader:
    """Read and validate the header of the safetensors file at ``path``.

    Reads the first ``8 + N`` bytes only (never the data section) and checks, as the reference
    implementation does: ``N`` is below 100 MB and fits in the file; the header is a UTF-8 JSON
    object without duplicate keys; ``__metadata__``, when present, maps strings to strings; every
    tensor has a known dtype, a shape of non-negative integers and ``data_offsets`` of two
    non-negative integers; the tensors, sorted by offset, tile the data section exactly (no gap,
    no overlap, and the last one ends at the end of the file); and each tensor's byte length is
    its element count times its dtype's size.

    ``name`` is what messages call the file (the repository path of a blob in a content-addressed
    store); it defaults to ``str(path)``. Raises :class:`UnsafeModelError` "``<name>`` is not a
    valid safetensors file: <why>" for any violation, and when the file cannot be read.
    Pure apart from that one read.
    """
    label = name or str(path)
    try:
        with path.open("rb") as handle:
            file_size = handle.seek(0, 2)
            handle.seek(0)
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _invalid(label, f"it is {file_size} bytes, shorter than the 8-byte length")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise _invalid(
                    label,
                    f"the header length {length} is over the {MAX_HEADER_BYTES}-byte limit"
                    + _looks_like(prefix),
                )
            if 8 + length > file_size:
                raise _invalid(
                    label,
                    f"the header length {length} runs past the end of the file ({file_size} bytes)"
                    + _looks_like(prefix),
                )
            raw = handle.read(length)
            if len(raw) != length:
                raise _invalid(label, "the file shrank while it was read")
    except OSError as exc:
        raise UnsafeModelError(
            f"{label} cannot be read: {exc.strerror or exc}", hint="check the file's permissions"
        ) from exc
    return parse_header(raw, path=path, file_size=file_size, name=label)


def parse_header(
    raw: bytes, *, path: Path, file_size: int, name: str | None = None
) -> SafetensorsHeader:
    """Validate ``raw``, the JSON header of a file of ``file_size`` bytes; no I/O.

    ``path`` and ``name`` only name the file, in errors and in the result. Raises
    :class:`UnsafeModelError` as :func:`read_header` does.
    """
    label = name or str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(label, "the header is not UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise _invalid(label, f"the header has the key {exc.key!r} twice") from None
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise _invalid(label, "the header is not valid JSON") from None
    if not isinstance(document, dict):
        raise _invalid(label, "the header is not a JSON object")

    metadata = _metadata(document.pop(_METADATA_KEY, {}), label)
    tensors = {key: _tensor(key, entry, label) for key, entry in document.items()}
    _check_layout(tensors, data_size=file_size - 8 - len(raw), label=label)
    return SafetensorsHeader(
        path=path, name=label, header_length=len(raw), tensors=tensors, metadata=metadata
    )


def parameter_count_from_headers(headers: Iterable[SafetensorsHeader]) -> int:
    """Elements stored across the shards of one model (see ``parameter_count``).

    Shards hold disjoint tensors, so this is a plain sum; a name found in two shards is counted
    twice (``verify_local_folder`` refuses such a folder).
    """
    return sum(header.parameter_count for header in headers)


# --- validation --------------------------------------------------------------------------------


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two parsers that keep different copies of a duplicated key see different tensors.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _metadata(value: object, label: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(label, f"{_METADATA_KEY} must map strings to strings")
    return dict(value)


def _tensor(name: str, entry: object, label: str) -> TensorInfo:
    if not isinstance(entry, dict):
        raise _invalid(label, f"tensor {name!r} is not an object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _invalid(label, f"tensor {name!r} has an unknown dtype {dtype!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise _invalid(
            label, f"tensor {name!r} has a shape that is not a list of counts: {shape!r}"
        )
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise _invalid(
            label, f"tensor {name!r} has data_offsets that are not [begin, end]: {offsets!r}"
        )
    begin, end = offsets
    if end < begin:
        raise _invalid(label, f"tensor {name!r} ends (at {end}) before it begins (at {begin})")
    info = TensorInfo(dtype=dtype, shape=tuple(shape), begin=begin, end=end)
    bits = info.numel * DTYPE_BITS[dtype]
    if bits % 8:
        raise _invalid(
            label, f"tensor {name!r}: {info.numel} elements of {dtype} do not fill whole bytes"
        )
    if bits // 8 != info.nbytes:
        raise _invalid(
            label,
            f"tensor {name!r} spans {info.nbytes} bytes but {dtype} {list(shape)} needs "
            f"{bits // 8}",
        )
    return info


def _check_layout(tensors: Mapping[str, TensorInfo], *, data_size: int, label: str) -> None:
    cursor = 0
    previous = None
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin < cursor:
            raise _invalid(label, f"tensor {name!r} overlaps tensor {previous!r}")
        if info.begin > cursor:
            raise _invalid(label, f"there are {info.begin - cursor} unused bytes before {name!r}")
        cursor, previous = info.end, name
    if cursor > data_size:
        raise _invalid(
            label,
            f"the tensors need {cursor} data bytes but the file holds {data_size}: it is truncated",
        )
    if cursor < data_size:
        raise _invalid(label, f"{data_size - cursor} bytes follow the last tensor; nothing should")


def _is_count(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass as 1.
    return type(value) is int and value >= 0


def _looks_like(prefix: bytes) -> str:
    if prefix.startswith(b"PK\x03\x04"):
        return " (it starts like a zip archive, as torch.save writes)"
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " (it starts like a pickle)"
    return ""


def _invalid(label: str, why: str) -> UnsafeModelError:
    return UnsafeModelError(f"{label} is not a valid safetensors file: {why}", hint=_HINT)
