"""The demo model folder that ``./setup.sh`` prepares with the real engine environment.

Needs the vLLM engine installed in the default cache (``deployer engine install vllm``, which
``./setup.sh`` runs). The first test prepares the demo model if it is missing (about 30 s).
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployer.demo import (
    DEMO_SOURCE_PACKAGE,
    DEMO_SOURCE_VERSION,
    MARKER_NAME,
    demo_model_dir,
    prepare_demo_model,
    read_demo_record,
)
from deployer.engines.install import default_package, find_engine
from deployer.settings import Settings


@pytest.fixture(scope="module")
def settings() -> Settings:
    settings = Settings.from_env()
    # Fails (never skips) with "... is not installed; hint: run: deployer engine install vllm".
    find_engine(settings, default_package())
    return settings


@pytest.fixture(scope="module")
def folder(settings: Settings) -> Path:
    return prepare_demo_model(settings)


def test_the_folder_is_where_documented(settings: Settings, folder: Path) -> None:
    assert folder == settings.cache / "demo" / "SmolLM2-135M-Instruct"
    assert folder == demo_model_dir(settings)


def test_config_is_a_dense_llama(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] == 576
    assert config["num_hidden_layers"] == 30
    # A leftover GGUF quantization_config would make an engine treat the folder as GGUF.
    assert "quantization_config" not in config


def test_tokenizer_has_the_chatml_template(folder: Path) -> None:
    assert (folder / "tokenizer.json").is_file()
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    template = tokenizer_config["chat_template"]
    assert "<|im_start|>" in template
    assert "<|im_end|>" in template
    assert tokenizer_config["eos_token"] == "<|im_end|>"


def test_safetensors_headers_parse(folder: Path) -> None:
    shards = sorted(folder.glob("*.safetensors"))
    assert shards
    tensors: dict[str, TensorInfo] = {}
    for shard in shards:
        header, data_size = _safetensors_header(shard)
        for name, info in header.items():
            start, end = info.data_offsets
            assert 0 <= start <= end <= data_size
            assert end - start == _count(info.shape) * 2  # two bytes per bfloat16
            tensors[name] = info
    assert tensors["model.embed_tokens.weight"].shape == [49152, 576]
    assert {t.dtype for t in tensors.values()} == {"BF16"}
    parameters = sum(_count(t.shape) for t in tensors.values())
    assert 130e6 < parameters < 170e6


def test_marker_records_the_source_and_every_file(folder: Path) -> None:
    record = read_demo_record(folder)
    assert record is not None
    assert (record.source_package, record.source_version) == (
        DEMO_SOURCE_PACKAGE,
        DEMO_SOURCE_VERSION,
    )
    assert record.source_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    listed = {f.path: f for f in record.files}
    on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.name != MARKER_NAME}
    assert set(listed) == on_disk
    for item in record.files:
        assert (folder / item.path).stat().st_size == item.size
        assert len(item.sha256) == 64


def test_prepare_is_idempotent_and_quick(settings: Settings, folder: Path) -> None:
    before = (folder / MARKER_NAME).read_bytes()
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    again = prepare_demo_model(settings)
    elapsed = time.monotonic() - started
    assert again == folder
    assert elapsed < 1.0
    assert (folder / MARKER_NAME).read_bytes() == before
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: list[int]
    data_offsets: tuple[int, int]


def _safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], int]:
    """The tensors a safetensors header lists, and the size of the file's data section."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        assert 0 < length < 100_000_000
        header = json.loads(fh.read(length))
    assert isinstance(header, dict)
    header.pop("__metadata__", None)
    tensors = {
        name: TensorInfo(info["dtype"], list(info["shape"]), tuple(info["data_offsets"]))
        for name, info in header.items()
    }
    return tensors, path.stat().st_size - 8 - length


def _count(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
