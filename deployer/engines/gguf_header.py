"""Read a GGUF file's header, never its tensor data, and the model facts it states.

(Not named ``gguf.py``: :mod:`deployer.engines.gguf_import` runs as a script from this folder,
where a ``gguf.py`` would shadow the ``gguf`` package it imports.)

GGUF (llama.cpp's model format), little-endian, versions 2 and 3 (the same layout; version 1
had 32-bit counts and llama.cpp no longer loads it)::

    magic "GGUF" | version u32 | tensor_count u64 | metadata_kv_count u64
    metadata_kv_count x (key: string | value_type u32 | value)
    tensor_count x (name: string | n_dims u32 | n_dims x u64 | ggml_type u32 | offset u64)
    padding to ``general.alignment`` (u32, default 32) | tensor data

A string is a u64 byte length and that many bytes (no terminator); an array value is an item
type u32, a u64 count and the items. Tensor offsets count from the start of the data section;
llama.cpp requires each to be the previous tensor's offset plus its size padded to the
alignment (``ggml/src/gguf.cpp``, ``gguf_init_from_reader``), and so does this reader.

Hostile-safe: every count and length is checked against the bytes left in the file before
anything is allocated, and against the limits below (a header, including the tokenizer's
vocabulary, is at most :data:`MAX_HEADER_BYTES`), so a 40-byte file claiming 2**63 tensors or
a 1 TB string costs one small read. Nested arrays, unknown value types, duplicate keys or tensor
names, more than four dimensions, removed or unknown ggml types, rows that are not whole blocks,
misplaced offsets and data running past the end of the file are refused like llama.cpp refuses
them. Every refusal is a :class:`~deployer.errors.ManifestError` located at the file, naming the
byte offset and what was wrong.

The ggml block sizes (elements per block, bytes per block) are those of ``ggml/src/ggml.c``
``type_traits`` in the llama.cpp that llama-cpp-python 0.3.36 vendors, and agree with
``GGML_QUANT_SIZES`` of the ``gguf`` package 0.19.0 for every type it lists but one (it lacks
``Q2_0``, and gives ``Q8_1`` 40 bytes where ggml's block is 36); the integration test checks
every one against the installed engine's own ``libggml``.

:func:`model_facts` turns the metadata into what sizes memory: architecture, context length,
block count, embedding length, heads, key/value head counts and lengths (with llama.cpp's
defaults, ``llama-model.cpp`` ``load_hparams``), tensor bytes by ggml type and the parameter
count.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from deployer.errors import ManifestError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: ``GGML_MAX_DIMS``.
MAX_DIMS = 4

#: Limits beyond anything a real model needs (the largest vocabularies hold about 260,000
#: tokens; MoE models with one tensor per expert have tens of thousands of tensors).
MAX_TENSORS = 1_000_000
MAX_METADATA_KEYS = 100_000
MAX_KEY_BYTES = 65_535
MAX_STRING_BYTES = 64 * 1024 * 1024
MAX_ARRAY_ITEMS = 16 * 1024 * 1024
#: Metadata plus tensor infos: the bytes before the data section.
MAX_HEADER_BYTES = 1024 * 1024 * 1024

_HINT = (
    "check that the file is a complete GGUF model (download it again if it was cut short); "
    "deployer reads its header to size memory and llama.cpp would refuse it too"
)


class ValueType(IntEnum):
    """GGUF metadata value types (``enum gguf_type``)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


#: struct codes of the fixed-size value types.
_SCALAR_CODES: Mapping[ValueType, str] = {
    ValueType.UINT8: "B",
    ValueType.INT8: "b",
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
    ValueType.BOOL: "B",
    ValueType.UINT64: "Q",
    ValueType.INT64: "q",
    ValueType.FLOAT64: "d",
}

_INTEGER_TYPES = frozenset(
    {
        ValueType.UINT8,
        ValueType.INT8,
        ValueType.UINT16,
        ValueType.INT16,
        ValueType.UINT32,
        ValueType.INT32,
        ValueType.UINT64,
        ValueType.INT64,
    }
)


@dataclass(frozen=True)
class GGMLType:
    """A ggml tensor type: ``block_size`` elements are stored in ``type_size`` bytes."""

    id: int
    name: str
    block_size: int
    type_size: int

    def nbytes(self, numel: int) -> int:
        return numel // self.block_size * self.type_size


_QK_K = 256
_TYPES = (
    GGMLType(0, "F32", 1, 4),
    GGMLType(1, "F16", 1, 2),
    GGMLType(2, "Q4_0", 32, 2 + 16),
    GGMLType(3, "Q4_1", 32, 2 + 2 + 16),
    GGMLType(6, "Q5_0", 32, 2 + 4 + 16),
    GGMLType(7, "Q5_1", 32, 2 + 2 + 4 + 16),
    GGMLType(8, "Q8_0", 32, 2 + 32),
    # Two halves (d, s) and 32 quants: 36 (ggml-common.h asserts it). gguf 0.19.0 says 4 + 4 + 32;
    # ggml only uses Q8_1 for activations, so no file is known to hold it.
    GGMLType(9, "Q8_1", 32, 2 + 2 + 32),
    GGMLType(10, "Q2_K", _QK_K, 2 + 2 + _QK_K // 16 + _QK_K // 4),
    GGMLType(11, "Q3_K", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + 12),
    GGMLType(12, "Q4_K", _QK_K, 2 + 2 + _QK_K // 2 + 12),
    GGMLType(13, "Q5_K", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12),
    GGMLType(14, "Q6_K", _QK_K, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16),
    GGMLType(15, "Q8_K", _QK_K, 4 + _QK_K + _QK_K // 8),
    GGMLType(16, "IQ2_XXS", _QK_K, 2 + _QK_K // 4),
    GGMLType(17, "IQ2_XS", _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
    GGMLType(18, "IQ3_XXS", _QK_K, 2 + _QK_K // 4 + _QK_K // 8),
    GGMLType(19, "IQ1_S", _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
    GGMLType(20, "IQ4_NL", 32, 2 + 16),
    GGMLType(21, "IQ3_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
    GGMLType(22, "IQ2_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
    GGMLType(23, "IQ4_XS", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 64),
    GGMLType(24, "I8", 1, 1),
    GGMLType(25, "I16", 1, 2),
    GGMLType(26, "I32", 1, 4),
    GGMLType(27, "I64", 1, 8),
    GGMLType(28, "F64", 1, 8),
    GGMLType(29, "IQ1_M", _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
    GGMLType(30, "BF16", 1, 2),
    GGMLType(34, "TQ1_0", _QK_K, 2 + 4 * 13),
    GGMLType(35, "TQ2_0", _QK_K, 2 + 64),
    GGMLType(39, "MXFP4", 32, 1 + 16),
    GGMLType(40, "NVFP4", 64, 4 + 32),
    GGMLType(41, "Q1_0", 128, 2 + 16),
    GGMLType(42, "Q2_0", 64, 2 + 16),
)
#: Every ggml type a GGUF tensor may have, by id.
GGML_TYPES: Mapping[int, GGMLType] = {t.id: t for t in _TYPES}
GGML_TYPES_BY_NAME: Mapping[str, GGMLType] = {t.name: t for t in _TYPES}
#: Ids ggml once had and removed (``Q4_2``, ``Q4_3``, the repacked ``Q4_0_x_x`` and
#: ``IQ4_NL_x_x`` layouts): llama.cpp refuses files that still use them.
REMOVED_GGML_TYPES: Mapping[int, str] = {
    4: "Q4_2",
    5: "Q4_3",
    31: "Q4_0_4_4",
    32: "Q4_0_4_8",
    33: "Q4_0_8_8",
    36: "IQ4_NL_4_4",
    37: "IQ4_NL_4_8",
    38: "IQ4_NL_8_8",
}

MetadataScalar = int | float | bool | str


@dataclass(frozen=True)
class MetadataValue:
    """One metadata value with its GGUF type; ``item_type`` is set for arrays."""

    type: ValueType
    value: MetadataScalar | tuple[MetadataScalar, ...]
    item_type: ValueType | None = None


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it; ``dims`` in GGUF order (``ne[0]`` first, the row
    length), ``offset`` from the start of the data section."""

    name: str
    dims: tuple[int, ...]
    ggml_type: GGMLType
    offset: int

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.dims:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        return self.ggml_type.nbytes(self.numel)


@dataclass(frozen=True)
class GGUFHeader:
    """A validated GGUF header: metadata, tensor infos and where the data section lies."""

    path: Path
    version: int
    alignment: int
    metadata: Mapping[str, MetadataValue] = field(hash=False)
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    """Where the data section starts in the file."""
    data_bytes: int
    """Its size as the tensors lay it out (each padded to the alignment but the last)."""
    file_size: int

    def get(self, key: str) -> MetadataScalar | tuple[MetadataScalar, ...] | None:
        """The value of ``key``, or None when the file does not have it."""
        entry = self.metadata.get(key)
        return None if entry is None else entry.value

    @property
    def tensor_bytes(self) -> int:
        """Bytes of tensor data, without the alignment padding."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def tensor_bytes_by_type(self) -> dict[str, int]:
        """Tensor bytes per ggml type name, e.g. ``{"Q4_1": 80_000_000, "F32": 200_000}``."""
        totals: dict[str, int] = {}
        for tensor in self.tensors:
            name = tensor.ggml_type.name
            totals[name] = totals.get(name, 0) + tensor.nbytes
        return dict(sorted(totals.items()))

    @property
    def parameter_count(self) -> int:
        """Elements stored, summed over tensors (a tied output embedding is stored once)."""
        return sum(t.numel for t in self.tensors)


# --- reading -----------------------------------------------------------------------------------


def read_header(path: Path) -> GGUFHeader:
    """Read and validate the header of the GGUF file at ``path`` (symlinks followed).

    Reads the metadata and tensor infos only; the data section is never read, only its extent
    checked against the file's size. Raises :class:`FileNotFoundError` when nothing is there
    and :class:`ManifestError` for anything else: not a regular file, unreadable, not GGUF,
    an unsupported version, truncated, over a limit, or inconsistent.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError(
                "is not a regular file",
                location=str(path),
                hint="give the path of the .gguf file itself",
            )
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb", buffering=1 << 20)
    except BaseException:
        os.close(fd)
        raise
    with handle:
        try:
            return _Parser(handle, path, info.st_size).parse()
        except OSError as exc:
            raise _unreadable(path, exc) from None


class _Parser:
    def __init__(self, handle: BinaryIO, path: Path, file_size: int):
        self.handle = handle
        self.path = path
        self.file_size = file_size
        self.pos = 0

    # -- primitives --

    def fail(self, why: str, at: int | None = None) -> ManifestError:
        where = self.pos if at is None else at
        return ManifestError(
            f"not a valid GGUF file: {why} (at byte {where})", location=str(self.path), hint=_HINT
        )

    def take(self, size: int, what: str) -> bytes:
        if size > self.file_size - self.pos:
            raise self.fail(
                f"{what} needs {size} bytes but the file ends {self.file_size - self.pos} bytes "
                "later: it is truncated"
            )
        if self.pos + size > MAX_HEADER_BYTES:
            raise self.fail(f"the header is larger than {MAX_HEADER_BYTES} bytes, the most read")
        data = self.handle.read(size)
        if len(data) != size:
            raise self.fail(f"{what}: the file shrank while it was read")
        self.pos += size
        return data

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def u64(self, what: str) -> int:
        value: int = struct.unpack("<Q", self.take(8, what))[0]
        return value

    def string(self, what: str, limit: int) -> str:
        start = self.pos
        length = self.u64(f"the length of {what}")
        if length > limit:
            raise self.fail(f"{what} is {length} bytes long, over the {limit}-byte limit", start)
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8", start) from None

    def count(self, what: str, limit: int, item_bytes: int) -> int:
        """A u64 count of items each at least ``item_bytes`` long, checked against the limit
        and against what the rest of the file could hold."""
        start = self.pos
        value = self.u64(what)
        if value > limit:
            raise self.fail(f"{what} is {value}, over the limit of {limit}", start)
        if value * item_bytes > self.file_size - self.pos:
            raise self.fail(
                f"{what} is {value}, more than the remaining {self.file_size - self.pos} bytes "
                "can hold: the file is truncated or the count is wrong",
                start,
            )
        return value

    # -- structure --

    def parse(self) -> GGUFHeader:
        magic = self.take(4, "the magic")
        if magic != GGUF_MAGIC:
            raise self.fail(f"it starts with {magic!r}, not {GGUF_MAGIC!r}", 0)
        version = self.u32("the version")
        if version not in SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and version:
                why = f"version {version:#x} looks byte-swapped: a big-endian GGUF file"
            elif version == 1:
                why = "version 1 is no longer loaded by llama.cpp; convert the model again"
            else:
                why = f"version {version} is not one deployer reads (2 or 3)"
            raise self.fail(why, 4)
        # Each tensor info takes at least 8 + 4 + 4 + 8 bytes, each key/value 8 + 4 + 1.
        n_tensors = self.count("the tensor count", MAX_TENSORS, 24)
        n_kv = self.count("the metadata key count", MAX_METADATA_KEYS, 13)
        metadata: dict[str, MetadataValue] = {}
        for index in range(n_kv):
            start = self.pos
            key = self.string(f"metadata key {index}", MAX_KEY_BYTES)
            if key in metadata:
                raise self.fail(f"the metadata key {key!r} appears twice", start)
            metadata[key] = self.value(key)
        alignment = self.alignment(metadata)
        tensors = [self.tensor(index) for index in range(n_tensors)]
        names: set[str] = set()
        for tensor in tensors:
            if tensor.name in names:
                raise self.fail(f"the tensor name {tensor.name!r} appears twice")
            names.add(tensor.name)
        data_offset = _pad(self.pos, alignment) if tensors else self.pos
        data_bytes = self.layout(tensors, alignment, data_offset)
        return GGUFHeader(
            path=self.path,
            version=version,
            alignment=alignment,
            metadata=metadata,
            tensors=tuple(tensors),
            data_offset=data_offset,
            data_bytes=data_bytes,
            file_size=self.file_size,
        )

    def value(self, key: str) -> MetadataValue:
        start = self.pos
        raw_type = self.u32(f"the type of {key!r}")
        value_type = self.value_type(raw_type, key, start)
        if value_type is not ValueType.ARRAY:
            return MetadataValue(value_type, self.scalar(value_type, key))
        item_start = self.pos
        item_type = self.value_type(self.u32(f"the item type of {key!r}"), key, item_start)
        if item_type is ValueType.ARRAY:
            raise self.fail(f"{key!r} is an array of arrays, which llama.cpp refuses", item_start)
        size = 8 if item_type is ValueType.STRING else struct.calcsize(_SCALAR_CODES[item_type])
        length = self.count(f"the length of {key!r}", MAX_ARRAY_ITEMS, size)
        items: tuple[MetadataScalar, ...]
        if item_type is ValueType.STRING:
            items = tuple(self.string(f"{key}[{i}]", MAX_STRING_BYTES) for i in range(length))
        else:
            code = _SCALAR_CODES[item_type]
            data = self.take(length * size, f"the items of {key!r}")
            numbers = struct.unpack(f"<{length}{code}", data)
            if item_type is ValueType.BOOL:
                if any(n > 1 for n in numbers):
                    raise self.fail(f"{key!r} holds a bool that is neither 0 nor 1", item_start)
                items = tuple(bool(n) for n in numbers)
            else:
                items = numbers
        return MetadataValue(ValueType.ARRAY, items, item_type)

    def value_type(self, raw: int, key: str, at: int) -> ValueType:
        try:
            return ValueType(raw)
        except ValueError:
            raise self.fail(f"{key!r} has an unknown value type {raw}", at) from None

    def scalar(self, value_type: ValueType, key: str) -> MetadataScalar:
        if value_type is ValueType.STRING:
            return self.string(f"the value of {key!r}", MAX_STRING_BYTES)
        code = _SCALAR_CODES[value_type]
        start = self.pos
        number: int | float = struct.unpack(
            f"<{code}", self.take(struct.calcsize(code), f"the value of {key!r}")
        )[0]
        if value_type is ValueType.BOOL:
            if number > 1:
                raise self.fail(f"{key!r} is a bool of {number}, neither 0 nor 1", start)
            return bool(number)
        return number

    def alignment(self, metadata: Mapping[str, MetadataValue]) -> int:
        entry = metadata.get("general.alignment")
        if entry is None:
            return DEFAULT_ALIGNMENT
        if entry.type is not ValueType.UINT32:
            raise self.fail(f"general.alignment is a {entry.type.name}, not a UINT32")
        value = entry.value
        assert isinstance(value, int)
        if value == 0 or value & (value - 1):
            raise self.fail(f"general.alignment {value} is not a power of 2")
        return value

    def tensor(self, index: int) -> TensorInfo:
        start = self.pos
        name = self.string(f"the name of tensor {index}", MAX_KEY_BYTES)
        n_dims = self.u32(f"the dimension count of {name!r}")
        if n_dims > MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions; ggml allows {MAX_DIMS}")
        dims = tuple(self.u64(f"a dimension of {name!r}") for _ in range(n_dims))
        numel = 1
        for dim in dims:
            if dim >= 2**63:
                raise self.fail(f"tensor {name!r} has a dimension of {dim} (negative as int64)")
            numel *= dim
        if numel >= 2**63:
            raise self.fail(f"tensor {name!r} has {numel} elements, beyond int64")
        type_at = self.pos
        type_id = self.u32(f"the type of {name!r}")
        ggml_type = GGML_TYPES.get(type_id)
        if ggml_type is None:
            removed = REMOVED_GGML_TYPES.get(type_id)
            why = (
                f"tensor {name!r} has the ggml type {removed} ({type_id}), which ggml removed"
                if removed
                else f"tensor {name!r} has an unknown ggml type {type_id}"
            )
            raise self.fail(why, type_at)
        row = dims[0] if dims else 1
        if row % ggml_type.block_size:
            raise self.fail(
                f"tensor {name!r} ({ggml_type.name}) has rows of {row} elements, not a multiple "
                f"of its block size {ggml_type.block_size}",
                start,
            )
        offset = self.u64(f"the offset of {name!r}")
        return TensorInfo(name, dims, ggml_type, offset)

    def layout(self, tensors: list[TensorInfo], alignment: int, data_offset: int) -> int:
        """Check each tensor starts where llama.cpp expects it; the data section's size."""
        expected = 0
        end = 0
        for tensor in tensors:
            if tensor.offset != expected:
                raise self.fail(
                    f"tensor {tensor.name!r} starts at data offset {tensor.offset}, expected "
                    f"{expected} (each tensor follows the previous one, padded to {alignment})"
                )
            end = expected + tensor.nbytes
            expected = _pad(end, alignment)
        if data_offset + end > self.file_size:
            raise self.fail(
                f"the tensors need {end} data bytes from byte {data_offset} but the file has "
                f"{self.file_size} bytes: it is truncated",
                self.file_size,
            )
        return end


def _pad(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _unreadable(path: Path, exc: OSError) -> ManifestError:
    hint = (
        "give the user deployer runs as read access to the file"
        if isinstance(exc, PermissionError)
        else "check that the path is a readable GGUF file"
    )
    return ManifestError(f"cannot read: {exc.strerror or exc}", location=str(path), hint=hint)


# --- model facts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GGUFModelFacts:
    """What sizes a GGUF model's memory, from its metadata and tensor infos."""

    path: Path
    architecture: str
    """``general.architecture``: ``llama``, ``qwen2``, ``gemma3``, ..."""
    name: str | None
    context_length: int
    """``<arch>.context_length``: the training context (llama.cpp's ``n_ctx_train``)."""
    block_count: int
    embedding_length: int
    feed_forward_length: int | None
    head_count: int
    """Attention heads of the first layer (llama.cpp's ``n_head()``)."""
    head_count_kv: tuple[int, ...]
    """Key/value heads of each layer (one entry per block)."""
    key_length: int
    """Key head size: ``<arch>.attention.key_length``, else embedding length / head count."""
    value_length: int
    vocab_size: int | None
    sliding_window: int | None
    file_type: int | None
    """``general.file_type`` (``llama_ftype``: 3 is MOSTLY_Q4_1)."""
    tensor_bytes: int
    tensor_bytes_by_type: dict[str, int] = field(hash=False)
    parameter_count: int

    def kv_bytes_per_token(
        self, k_type: GGMLType | None = None, v_type: GGMLType | None = None
    ) -> int:
        """Bytes of KV cache one token takes across all layers (llama.cpp's default F16 K and V):
        per layer ``n_head_kv * key_length`` key and ``n_head_kv * value_length`` value
        elements."""
        k = k_type or GGML_TYPES_BY_NAME["F16"]
        v = v_type or GGML_TYPES_BY_NAME["F16"]
        return sum(
            k.nbytes(heads * self.key_length) + v.nbytes(heads * self.value_length)
            for heads in self.head_count_kv
        )


def model_facts(header: GGUFHeader) -> GGUFModelFacts:
    """The model facts of ``header``. Raises :class:`ManifestError` naming the missing or
    malformed key (llama.cpp needs every one that is required here)."""
    arch = _required_str(header, "general.architecture")
    blocks = _required_int(header, f"{arch}.block_count")
    embedding = _required_int(header, f"{arch}.embedding_length")
    heads_by_layer = _per_layer(header, f"{arch}.attention.head_count", blocks, required=True)
    heads = heads_by_layer[0] if heads_by_layer else 0
    kv_by_layer = _per_layer(header, f"{arch}.attention.head_count_kv", blocks, required=False)
    if not kv_by_layer:  # llama.cpp: n_head_kv defaults to n_head
        kv_by_layer = heads_by_layer
    default_head = embedding // heads if heads else 0
    key_length = _optional_int(header, f"{arch}.attention.key_length") or default_head
    value_length = _optional_int(header, f"{arch}.attention.value_length") or default_head
    tokens = header.get("tokenizer.ggml.tokens")
    vocab = _optional_int(header, f"{arch}.vocab_size")
    if vocab is None and isinstance(tokens, tuple):
        vocab = len(tokens)
    name = header.get("general.name")
    return GGUFModelFacts(
        path=header.path,
        architecture=arch,
        name=name if isinstance(name, str) else None,
        context_length=_required_int(header, f"{arch}.context_length"),
        block_count=blocks,
        embedding_length=embedding,
        feed_forward_length=_first_int(header, f"{arch}.feed_forward_length"),
        head_count=heads,
        head_count_kv=kv_by_layer,
        key_length=key_length,
        value_length=value_length,
        vocab_size=vocab,
        sliding_window=_optional_int(header, f"{arch}.attention.sliding_window"),
        file_type=_optional_int(header, "general.file_type"),
        tensor_bytes=header.tensor_bytes,
        tensor_bytes_by_type=header.tensor_bytes_by_type,
        parameter_count=header.parameter_count,
    )


def read_model_facts(path: Path) -> GGUFModelFacts:
    """:func:`read_header` then :func:`model_facts`."""
    return model_facts(read_header(path))


def _bad_key(header: GGUFHeader, key: str, why: str) -> ManifestError:
    return ManifestError(
        f"GGUF metadata {key} {why}",
        location=str(header.path),
        hint="llama.cpp needs it to load the model; convert the model again with llama.cpp's "
        "convert_hf_to_gguf.py",
    )


def _required_str(header: GGUFHeader, key: str) -> str:
    value = header.get(key)
    if value is None:
        raise _bad_key(header, key, "is missing")
    if not isinstance(value, str) or not value:
        raise _bad_key(header, key, "is not a non-empty string")
    return value


def _optional_int(header: GGUFHeader, key: str) -> int | None:
    entry = header.metadata.get(key)
    if entry is None:
        return None
    if entry.type not in _INTEGER_TYPES:
        raise _bad_key(header, key, f"is a {entry.type.name}, not an integer")
    assert isinstance(entry.value, int)
    if entry.value < 0:
        raise _bad_key(header, key, f"is negative ({entry.value})")
    return entry.value


def _required_int(header: GGUFHeader, key: str) -> int:
    value = _optional_int(header, key)
    if value is None:
        raise _bad_key(header, key, "is missing")
    return value


def _first_int(header: GGUFHeader, key: str) -> int | None:
    """An integer, or the first of an array of them (per-layer widths)."""
    entry = header.metadata.get(key)
    if entry is not None and entry.type is ValueType.ARRAY:
        values = _int_items(header, key, entry)
        return values[0] if values else None
    return _optional_int(header, key)


def _per_layer(header: GGUFHeader, key: str, blocks: int, *, required: bool) -> tuple[int, ...]:
    """A value llama.cpp reads per layer: one integer for all, or an array of ``blocks``."""
    entry = header.metadata.get(key)
    if entry is None:
        if required:
            raise _bad_key(header, key, "is missing")
        return ()
    if entry.type is ValueType.ARRAY:
        values = _int_items(header, key, entry)
        if len(values) != blocks:
            raise _bad_key(header, key, f"has {len(values)} entries for {blocks} blocks")
        return values
    value = _optional_int(header, key)
    assert value is not None
    return (value,) * blocks


def _int_items(header: GGUFHeader, key: str, entry: MetadataValue) -> tuple[int, ...]:
    if entry.item_type not in _INTEGER_TYPES:
        raise _bad_key(header, key, "is an array of non-integers")
    assert isinstance(entry.value, tuple)
    values = tuple(int(v) for v in entry.value)
    if any(v < 0 for v in values):
        raise _bad_key(header, key, "holds a negative number")
    return values
