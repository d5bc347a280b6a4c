"""A GGUF writer from the format's description (about forty lines), for tests: the header as the
format describes it, the data section left sparse (a header claiming gigabytes costs no disk)."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

from deployer.engines.gguf_header import GGML_TYPES_BY_NAME, ValueType

T = ValueType
Value = tuple[ValueType, object] | tuple[ValueType, ValueType, Sequence[object]]

_CODES = {
    T.UINT8: "B",
    T.INT8: "b",
    T.UINT16: "H",
    T.INT16: "h",
    T.UINT32: "I",
    T.INT32: "i",
    T.FLOAT32: "f",
    T.BOOL: "?",
    T.UINT64: "Q",
    T.INT64: "q",
    T.FLOAT64: "d",
}


def encode_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _scalar(kind: ValueType, value: object) -> bytes:
    if kind is T.STRING:
        return encode_string(value)  # type: ignore[arg-type]
    return struct.pack("<" + _CODES[kind], value)


def encode_value(value: Value) -> bytes:
    if value[0] is T.ARRAY:
        _, item, items = value  # type: ignore[misc]
        body = b"".join(_scalar(item, v) for v in items)
        return struct.pack("<IIQ", T.ARRAY, item, len(items)) + body
    kind, scalar = value  # type: ignore[misc]
    return struct.pack("<I", kind) + _scalar(kind, scalar)


def write_gguf(
    path: Path,
    metadata: dict[str, Value],
    tensors: Sequence[tuple[str, Sequence[int], str]] = (),
    *,
    alignment: int = 32,
    version: int = 3,
) -> Path:
    """A GGUF file: the header as the format describes it, then a sparse data section."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, value in metadata.items():
        out += encode_string(key) + encode_value(value)
    offset = end = 0
    for name, dims, type_name in tensors:
        ggml = GGML_TYPES_BY_NAME[type_name]
        out += encode_string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml.id, offset)
        numel = 1
        for d in dims:
            numel *= d
        end = offset + numel // ggml.block_size * ggml.type_size
        offset = -(-end // alignment) * alignment
    path.write_bytes(out)
    if tensors:
        data_start = -(-len(out) // alignment) * alignment
        with path.open("r+b") as handle:
            handle.truncate(data_start + end)
    return path


def tiny_gguf_bytes() -> bytes:
    """A small llama-shaped GGUF file (2 layers, width 64), every tensor written out."""
    metadata: dict[str, Value] = {
        "general.architecture": (T.STRING, "llama"),
        "llama.block_count": (T.UINT32, 2),
        "llama.context_length": (T.UINT32, 512),
        "llama.embedding_length": (T.UINT32, 64),
        "llama.feed_forward_length": (T.UINT32, 128),
        "llama.attention.head_count": (T.UINT32, 4),
        "llama.attention.head_count_kv": (T.UINT32, 2),
        "llama.vocab_size": (T.UINT32, 256),
    }
    tensors = [("token_embd.weight", [64, 256], "F32"), ("output_norm.weight", [64], "F32")]
    with tempfile.TemporaryDirectory() as tmp:
        return write_gguf(Path(tmp) / "tiny.gguf", metadata, tensors).read_bytes()
