"""The safetensors header reader: real files written by hand (and by the safetensors package when
an engine environment has it), valid and broken in every way the reader must notice."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.errors import UnsafeModelError
from deployer.hub.safetensors_header import (
    DTYPE_BITS,
    parameter_count_from_headers,
    read_header,
)
from deployer.settings import Settings

DEMO_WEIGHTS = Settings.from_env().cache / "demo" / "SmolLM2-135M-Instruct" / "model.safetensors"

Tensors = dict[str, tuple[str, list[int]]]


def header_bytes(tensors: Tensors, metadata: dict[str, str] | None = None) -> tuple[bytes, int]:
    """The JSON header for tensors laid out back to back, and the data size they need."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return raw + b" " * (-len(raw) % 8), offset


def write_file(path: Path, raw_header: bytes, data: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(raw_header)) + raw_header + data)
    return path


def write_safetensors(path: Path, tensors: Tensors, metadata: dict[str, str] | None = None) -> Path:
    raw, size = header_bytes(tensors, metadata)
    return write_file(path, raw, bytes(size))


def with_header(header: object) -> Callable[[Path], Path]:
    """A writer for a file whose header is ``header`` and whose data fills what it claims."""

    def write(path: Path) -> Path:
        raw = json.dumps(header).encode()
        ends = [
            entry["data_offsets"][1]
            for entry in (header.values() if isinstance(header, dict) else [])
            if isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
        ]
        return write_file(path, raw, bytes(max(ends, default=0)))

    return write


def entry(dtype: str, shape: list[object], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


class Payload:
    """Unpickling this runs a shell command."""

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo pwned",))


# --- valid files -------------------------------------------------------------------------------


def test_reads_tensors_metadata_and_counts(tmp_path: Path) -> None:
    path = write_safetensors(
        tmp_path / "model.safetensors",
        {
            "embed.weight": ("BF16", [10, 4]),
            "norm.weight": ("F32", [4]),
            "step": ("I64", []),
            "packed": ("F4", [2, 4]),
        },
        metadata={"format": "pt"},
    )

    header = read_header(path)

    assert header.metadata == {"format": "pt"}
    assert set(header.tensors) == {"embed.weight", "norm.weight", "step", "packed"}
    embed = header.tensors["embed.weight"]
    assert (embed.dtype, embed.shape, embed.nbytes) == ("BF16", (10, 4), 80)
    assert header.tensors["step"].numel == 1
    assert header.tensors["packed"].nbytes == 4
    assert header.parameter_count == 40 + 4 + 1 + 8
    assert header.bytes_by_dtype == {"BF16": 80, "F32": 16, "I64": 8, "F4": 4}
    assert header.data_bytes == path.stat().st_size - 8 - header.header_length


def test_offsets_in_any_order_and_empty_file(tmp_path: Path) -> None:
    reordered = with_header({"b": entry("U8", [2], 2, 4), "a": entry("U8", [2], 0, 2)})
    assert read_header(reordered(tmp_path / "r.safetensors")).parameter_count == 4
    empty = write_file(tmp_path / "e.safetensors", b"{}      ", b"")
    assert read_header(empty).tensors == {}


def test_zero_sized_tensor_is_valid(tmp_path: Path) -> None:
    path = with_header({"a": entry("F32", [0, 3], 0, 0), "b": entry("U8", [1], 0, 1)})(
        tmp_path / "z.safetensors"
    )
    assert read_header(path).parameter_count == 1


def test_reads_only_the_header(tmp_path: Path) -> None:
    # A 4 GiB sparse file: reading it whole would take seconds and 4 GiB of memory.
    raw, _ = header_bytes({"big": ("U8", [4, 1024, 1024, 1024])})
    path = tmp_path / "big.safetensors"
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + 4 * 1024**3)

    assert read_header(path).parameter_count == 4 * 1024**3


def test_parameter_count_from_headers_sums_shards(tmp_path: Path) -> None:
    one = write_safetensors(tmp_path / "1.safetensors", {"a": ("F16", [3, 3])})
    two = write_safetensors(tmp_path / "2.safetensors", {"b": ("F16", [5])})
    assert parameter_count_from_headers([read_header(one), read_header(two)]) == 14


def test_name_replaces_the_path_in_messages(tmp_path: Path) -> None:
    blob = tmp_path / "3f9a0c"
    blob.write_bytes(b"\x00" * 4)
    with pytest.raises(UnsafeModelError, match=r"^model-00001\.safetensors is not a valid"):
        read_header(blob, name="model-00001.safetensors")


# --- broken files ------------------------------------------------------------------------------


def _truncated(path: Path) -> Path:
    write_safetensors(path, {"a": ("F32", [16])})
    path.write_bytes(path.read_bytes()[:-10])
    return path


def _trailing(path: Path) -> Path:
    write_safetensors(path, {"a": ("F32", [4])})
    with path.open("ab") as handle:
        handle.write(b"extra")
    return path


def _raw(header: bytes, data: bytes = b"") -> Callable[[Path], Path]:
    return lambda path: write_file(path, header, data)


def _bytes(content: bytes) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        path.write_bytes(content)
        return path

    return write


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"a": [1, 2]}))
    return path


BROKEN: list[tuple[str, Callable[[Path], Path], str]] = [
    ("shorter than the length", _bytes(b"\x10\x00\x00"), "shorter than the 8-byte length"),
    ("empty", _bytes(b""), "it is 0 bytes"),
    (
        "length past the end",
        _bytes(struct.pack("<Q", 1000) + b"{}"),
        "header length 1000 runs past the end of the file",
    ),
    (
        "length over the limit",
        _bytes(struct.pack("<Q", 200_000_000) + b"{}"),
        "over the 100000000-byte limit",
    ),
    ("not UTF-8", _raw(b'{"\xff": 1}'), "not UTF-8"),
    ("not JSON", _raw(b"{nope"), "not valid JSON"),
    ("deeply nested", _raw(b"[" * 100_000 + b"]" * 100_000), "not valid JSON"),
    ("an array", _raw(b"[]"), "not a JSON object"),
    ("duplicate keys", _raw(b'{"a": {}, "a": {}}'), "the key 'a' twice"),
    (
        "metadata not strings",
        with_header({"__metadata__": {"n": 1}}),
        "__metadata__ must map strings to strings",
    ),
    ("tensor not an object", with_header({"a": [1]}), "tensor 'a' is not an object"),
    ("unknown dtype", with_header({"a": entry("Q7", [1], 0, 1)}), "unknown dtype 'Q7'"),
    ("negative dim", with_header({"a": entry("U8", [-1], 0, 1)}), "not a list of counts"),
    ("boolean dim", with_header({"a": entry("U8", [True], 0, 1)}), "not a list of counts"),
    ("float dim", with_header({"a": entry("U8", [1.0], 0, 1)}), "not a list of counts"),
    (
        "three offsets",
        with_header({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}),
        "not [begin, end]",
    ),
    ("end before begin", with_header({"a": entry("U8", [0], 4, 2)}), "ends (at 2) before"),
    (
        "wrong byte size",
        with_header({"a": entry("F32", [2, 2], 0, 12)}),
        "spans 12 bytes but F32 [2, 2] needs 16",
    ),
    (
        "sub-byte remainder",
        with_header({"a": entry("F4", [3], 0, 2)}),
        "3 elements of F4 do not fill whole bytes",
    ),
    (
        "overlapping offsets",
        with_header({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}),
        "tensor 'b' overlaps tensor 'a'",
    ),
    (
        "gap between tensors",
        with_header({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 4, 6)}),
        "2 unused bytes before 'b'",
    ),
    ("truncated data", _truncated, "need 64 data bytes but the file holds 54: it is truncated"),
    ("trailing bytes", _trailing, "5 bytes follow the last tensor"),
    (
        "a pickle renamed",
        _bytes(pickle.dumps(Payload(), protocol=4)),
        "(it starts like a pickle)",
    ),
    ("a torch zip renamed", _zip, "(it starts like a zip archive"),
]


@pytest.mark.parametrize(("case", "write", "why"), BROKEN, ids=[case for case, _, _ in BROKEN])
def test_refuses_broken_files(
    tmp_path: Path, case: str, write: Callable[[Path], Path], why: str
) -> None:
    path = write(tmp_path / "model.safetensors")

    with pytest.raises(UnsafeModelError) as caught:
        read_header(path)

    assert caught.value.message.startswith(f"{path} is not a valid safetensors file: ")
    assert why in caught.value.message
    assert caught.value.hint


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeModelError, match="cannot be read"):
        read_header(tmp_path / "missing.safetensors")


# --- against the reference implementation ------------------------------------------------------


@pytest.fixture(scope="module")
def engine_python() -> Path:
    """An engine environment's Python that has safetensors and numpy (vLLM brings both)."""
    for python in sorted(Settings.from_env().engines_dir.glob("*/bin/python")):
        probe = subprocess.run(
            [str(python), "-c", "import safetensors, numpy"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return python
    pytest.fail("no engine environment with safetensors: run ./setup.sh (deployer engine install)")


def test_reads_a_file_written_by_the_safetensors_package(
    tmp_path: Path, engine_python: Path
) -> None:
    path = tmp_path / "written.safetensors"
    script = (
        "import sys, numpy as np\n"
        "from safetensors.numpy import save_file\n"
        "save_file({'w': np.zeros((3, 5), np.float16), 'b': np.ones(7, np.int64),\n"
        "           'flag': np.zeros((2, 2), np.bool_)}, sys.argv[1],\n"
        "          metadata={'format': 'np'})\n"
    )
    subprocess.run([str(engine_python), "-c", script, str(path)], check=True)

    header = read_header(path)

    assert {name: (t.dtype, t.shape) for name, t in header.tensors.items()} == {
        "w": ("F16", (3, 5)),
        "b": ("I64", (7,)),
        "flag": ("BOOL", (2, 2)),
    }
    assert header.metadata == {"format": "np"}
    assert header.parameter_count == 15 + 7 + 4


def test_demo_model_parameter_count(engine_python: Path) -> None:
    if not DEMO_WEIGHTS.is_file():
        pytest.fail("the demo model is not prepared: run ./setup.sh (deployer demo prepare)")
    script = (
        "import math, sys\n"
        "from safetensors import safe_open\n"
        "with safe_open(sys.argv[1], 'np') as f:\n"
        "    print(sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()))\n"
    )
    reference = subprocess.run(
        [str(engine_python), "-c", script, str(DEMO_WEIGHTS)],
        check=True,
        capture_output=True,
        text=True,
    )

    header = read_header(DEMO_WEIGHTS)

    assert header.parameter_count == int(reference.stdout) == 134_515_008
    assert header.bytes_by_dtype == {"BF16": 2 * header.parameter_count}
    assert header.metadata == {"format": "pt"}
