"""The supply-chain policy: hostile paths, file selection, custom code, pickle scanning, and the
whole policy over real folders (crafted ones, torch-saved weights, the demo model)."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from deployer.errors import PermanentError, UnsafeModelError
from deployer.hub.safety import (
    Selection,
    check_remote_code,
    check_repo_path,
    needs_remote_code,
    remote_code_modules,
    scan_pickle,
    select_files,
    verify_local_folder,
)
from deployer.settings import Settings

DEMO_MODEL = Settings.from_env().cache / "demo" / "SmolLM2-135M-Instruct"

_BYTES = {"U8": 1, "BF16": 2, "F32": 4}


class Payload:
    """Unpickling this runs a shell command."""

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, ("echo pwned",))


class Custom:
    """A harmless class, but one a weights file has no reason to import."""


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * _BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def write_model(folder: Path, config: dict[str, object] | None = None) -> Path:
    """A small servable folder: config, tokenizer and one safetensors file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "llama"}))
    (folder / "tokenizer.json").write_text("{}")
    write_safetensors(folder / "model.safetensors", {"w": ("BF16", [4, 4])})
    return folder


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "config.json",
        "original/consolidated.00.pth",
        ".gitattributes",
        "a.b/c..d/e...f",
        "modèle/poids.safetensors",
    ],
)
def test_ordinary_paths_pass(path: str) -> None:
    check_repo_path(path)


HOSTILE = [
    ("../x", "'..' component"),
    ("a/../../b", "'..' component"),
    ("a/..", "'..' component"),
    ("./config.json", "'.' component"),
    ("/etc/passwd", "absolute"),
    ("a\\b", "backslash"),
    ("..\\..\\evil.dll", "backslash"),
    ("~/.bashrc", "starts with '~'"),
    ("C:/Windows/x", "drive letter"),
    ("c:evil", "drive letter"),
    ("a//b", "empty component"),
    ("a/", "empty component"),
    ("", "empty"),
    ("config.json\x00.txt", "control character"),
    ("model\n.safetensors", "control character"),
    ("a\x7fb", "control character"),
    ("gnp.\u202esafetensors", "bidirectional-text control"),
]


@pytest.mark.parametrize(("path", "why"), HOSTILE, ids=[repr(p) for p, _ in HOSTILE])
def test_hostile_paths_are_refused(path: str, why: str) -> None:
    with pytest.raises(UnsafeModelError) as caught:
        check_repo_path(path)
    assert repr(path) in caught.value.message
    assert why in caught.value.message
    assert isinstance(caught.value, PermanentError)
    assert caught.value.hint


# --- select_files ------------------------------------------------------------------------------

LLAMA = [
    ".gitattributes",
    "LICENSE.txt",
    "README.md",
    "USE_POLICY.md",
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "original/consolidated.00.pth",
    "original/params.json",
    "original/tokenizer.model",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
]

PICKLE_ONLY = [
    "config.json",
    "pytorch_model.bin",
    "tokenizer.json",
    "training_args.bin",
    "flax_model.msgpack",
    "tf_model.h5",
]

SELECT: list[tuple[str, list[str], bool, bool, list[str]]] = [
    (
        "llama with original/",
        LLAMA,
        False,
        False,
        [
            "LICENSE.txt",
            "README.md",
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
    ),
    (
        "safetensors win over pickles even when allowed",
        ["config.json", "model.safetensors", "pytorch_model.bin", "model.onnx", "m.gguf"],
        True,
        False,
        ["config.json", "model.safetensors"],
    ),
    (
        "pickles when allowed",
        PICKLE_ONLY,
        True,
        False,
        ["config.json", "pytorch_model.bin", "tokenizer.json"],
    ),
    (
        "sharded pickles and their index",
        [
            "config.json",
            "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json",
            "optimizer.pt",
        ],
        True,
        False,
        [
            "config.json",
            "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json",
        ],
    ),
    (
        "code only when trusted",
        ["config.json", "model.safetensors", "modeling_x.py", "sub/helper.py"],
        False,
        False,
        ["config.json", "model.safetensors"],
    ),
    (
        "code when trusted",
        ["config.json", "model.safetensors", "modeling_x.py", "sub/helper.py"],
        False,
        True,
        ["config.json", "model.safetensors", "modeling_x.py"],
    ),
    (
        "tokenizer variants and processors",
        [
            "model.safetensors",
            "tokenizer.model",
            "vocab.txt",
            "merges.txt",
            "vocab.json",
            "added_tokens.json",
            "qwen.tiktoken",
            "chat_template.jinja",
            "chat_template.json",
            "preprocessor_config.json",
            "processor_config.json",
            "license",
            "LICENSE.md",
            "notes.txt",
            "image.png",
        ],
        False,
        False,
        [
            "LICENSE.md",
            "added_tokens.json",
            "chat_template.jinja",
            "chat_template.json",
            "license",
            "merges.txt",
            "model.safetensors",
            "preprocessor_config.json",
            "processor_config.json",
            "qwen.tiktoken",
            "tokenizer.model",
            "vocab.json",
            "vocab.txt",
        ],
    ),
    (
        "mistral's consolidated copy is skipped beside the shards",
        [
            "consolidated.safetensors",
            "model-00001-of-00001.safetensors",
            "model.safetensors.index.json",
            "params.json",
        ],
        False,
        False,
        ["model-00001-of-00001.safetensors", "model.safetensors.index.json"],
    ),
    (
        "a lone consolidated file is the weights",
        ["config.json", "consolidated.safetensors"],
        False,
        False,
        ["config.json", "consolidated.safetensors"],
    ),
]


@pytest.mark.parametrize(
    ("case", "paths", "allow_pickle", "trust", "expected"),
    SELECT,
    ids=[case[0] for case in SELECT],
)
def test_select_files(
    case: str, paths: list[str], allow_pickle: bool, trust: bool, expected: list[str]
) -> None:
    selection = select_files(paths, allow_pickle=allow_pickle, trust_remote_code=trust)

    assert selection.files == expected
    assert selection.skipped == sorted(set(paths) - set(expected))


def test_selection_names_the_pickles_to_scan() -> None:
    selection = select_files(PICKLE_ONLY, allow_pickle=True, trust_remote_code=False)
    assert selection.pickles == ["pytorch_model.bin"]
    assert Selection(files=["model.safetensors"], skipped=[]).pickles == []


REFUSED: list[tuple[str, list[str], str, str]] = [
    (
        "pickle only, not allowed",
        PICKLE_ONLY,
        "the model has only pickle weights (pytorch_model.bin)",
        "spec.model.allowPickle: true",
    ),
    ("no weights", ["config.json", "tokenizer.json"], "no weights vLLM can load", "safetensors"),
    (
        "weights only in a subfolder",
        ["config.json", "original/model.safetensors"],
        "safetensors only in subfolders: original/model.safetensors",
        "safetensors",
    ),
    (
        "other formats only",
        ["config.json", "model.gguf", "model.onnx", "training_args.bin"],
        "(only model.gguf, model.onnx)",
        "safetensors",
    ),
    ("a hostile path", ["config.json", "model.safetensors", "../x"], "'../x'", "listing"),
]


@pytest.mark.parametrize(
    ("case", "paths", "why", "hint"), REFUSED, ids=[case[0] for case in REFUSED]
)
def test_select_files_refuses(case: str, paths: list[str], why: str, hint: str) -> None:
    with pytest.raises(UnsafeModelError) as caught:
        select_files(paths, allow_pickle=False, trust_remote_code=False)
    assert why in caught.value.message
    assert hint in (caught.value.hint or "")


# --- remote code -------------------------------------------------------------------------------

AUTO_MAP = {
    "auto_map": {
        "AutoConfig": "configuration_x.XConfig",
        "AutoModelForCausalLM": "modeling_x.XForCausalLM",
        "AutoTokenizer": ["tokenization_x.XTokenizer", None],
    }
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [({}, False), ({"auto_map": {}}, False), ({"architectures": ["X"]}, False), (AUTO_MAP, True)],
)
def test_needs_remote_code(config: dict[str, object], expected: bool) -> None:
    assert needs_remote_code(config) is expected


def test_custom_code_needs_trust() -> None:
    check_remote_code({}, trust_remote_code=False, config_path="config.json")
    check_remote_code(AUTO_MAP, trust_remote_code=True, config_path="config.json")

    with pytest.raises(UnsafeModelError) as caught:
        check_remote_code(AUTO_MAP, trust_remote_code=False, config_path="x/config.json")

    assert caught.value.message.startswith("x/config.json asks for custom code (")
    assert "modeling_x.XForCausalLM" in caught.value.message
    assert caught.value.hint is not None
    assert "spec.model.trustRemoteCode: true" in caught.value.hint


def test_code_from_another_repository_is_refused_even_when_trusted() -> None:
    config = {"auto_map": {"AutoModel": "evil/repo--modeling_x.XModel"}}
    with pytest.raises(UnsafeModelError, match=r"another repository \(evil/repo--modeling_x"):
        check_remote_code(config, trust_remote_code=True, config_path="config.json")


@pytest.mark.parametrize("auto_map", [["a.B"], {"AutoModel": 3}, {"AutoModel": ""}])
def test_malformed_auto_map_is_refused(auto_map: object) -> None:
    with pytest.raises(UnsafeModelError, match="auto_map"):
        check_remote_code({"auto_map": auto_map}, trust_remote_code=True, config_path="c.json")


def test_remote_code_modules() -> None:
    config = {"auto_map": {**AUTO_MAP["auto_map"], "AutoModel": "org/repo--other.Model"}}
    assert remote_code_modules(config, config_path="config.json") == [
        "configuration_x.py",
        "modeling_x.py",
        "tokenization_x.py",
    ]
    assert remote_code_modules({}, config_path="config.json") == []


# --- pickles -----------------------------------------------------------------------------------


def test_pickle_with_a_system_call_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps({"w": Payload()}))

    with pytest.raises(UnsafeModelError) as caught:
        scan_pickle(path)

    assert str(path) in caught.value.message
    assert "posix.system" in caught.value.message
    assert "run code" in caught.value.message


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_every_pickle_protocol_is_scanned(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(Payload(), protocol=protocol))
    with pytest.raises(UnsafeModelError, match="system"):
        scan_pickle(path)


def test_a_blob_is_named_by_its_repository_path(tmp_path: Path) -> None:
    blob = tmp_path / "9c1185a5c5e9fc54612808977ee8f548b2258d31"
    blob.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(UnsafeModelError, match=r"^pytorch_model\.bin is a pickle that imports"):
        scan_pickle(blob, name="pytorch_model.bin")


def test_benign_pickle_passes(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps({"layers": [[1.0, 2.0], [3.0]], "names": ["a", "b"]}))
    scan_pickle(path)


def test_imports_weights_do_not_need_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": Custom()}))
    with pytest.raises(UnsafeModelError, match=r"imports test_safety\.Custom, which weights do"):
        scan_pickle(path)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "does not parse as a pickle"),
        (b"not a pickle at all", "does not parse as a pickle"),
        (pickle.dumps([1, 2, 3])[:-3], "does not parse as a pickle"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_unparsable_files_are_refused(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(UnsafeModelError, match=why):
        scan_pickle(path)


def test_zip_without_a_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UnsafeModelError, match="zip archive with no pickle"):
        scan_pickle(path)


def test_malicious_pickle_inside_a_torch_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Payload(), protocol=2))
        archive.writestr("archive/version", "3\n")
    with pytest.raises(UnsafeModelError, match=r"posix\.system"):
        scan_pickle(path)


@pytest.fixture(scope="module")
def torch_python() -> Path:
    """An engine environment's Python with torch (the vLLM environment has it)."""
    for python in sorted(Settings.from_env().engines_dir.glob("*/bin/python")):
        probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
        if probe.returncode == 0:
            return python
    pytest.fail("no engine environment with torch: run ./setup.sh (deployer engine install)")


def test_weights_saved_by_torch_pass(tmp_path: Path, torch_python: Path) -> None:
    script = (
        "import sys, torch, collections\n"
        "out = sys.argv[1]\n"
        "sd = collections.OrderedDict(w=torch.zeros(2, 3, dtype=torch.bfloat16),\n"
        "                             b=torch.ones(3), i=torch.arange(4))\n"
        "torch.save(sd, out + '/pytorch_model.bin')\n"
        "torch.save(sd, out + '/legacy.bin', _use_new_zipfile_serialization=False)\n"
        "torch.save({'p': torch.nn.Parameter(torch.zeros(2))}, out + '/param.pt')\n"
    )
    subprocess.run([str(torch_python), "-c", script, str(tmp_path)], check=True)

    for name in ("pytorch_model.bin", "legacy.bin", "param.pt"):
        scan_pickle(tmp_path / name)
    # A blob in a content store has no extension; the repository name says it is torch's.
    blob = tmp_path / "blob"
    blob.write_bytes((tmp_path / "legacy.bin").read_bytes())
    scan_pickle(blob, name="pytorch_model.bin")


# --- verify_local_folder -----------------------------------------------------------------------


def test_a_clean_folder_passes(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    # Pickles the engine never loads (a subfolder, or beside safetensors) are left alone.
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.00.pth").write_bytes(pickle.dumps(Payload()))
    verify_local_folder(folder, allow_pickle=False, trust_remote_code=False)


def test_a_renamed_pickle_is_refused(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(UnsafeModelError, match=r"model\.safetensors is not a valid safetensors"):
        verify_local_folder(folder, allow_pickle=True, trust_remote_code=False)


def test_every_safetensors_file_is_parsed(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    (folder / "extra").mkdir()
    (folder / "extra" / "adapter.safetensors").write_bytes(b"junk" * 4)
    with pytest.raises(UnsafeModelError, match=r"adapter\.safetensors is not a valid"):
        verify_local_folder(folder, allow_pickle=False, trust_remote_code=False)


def test_a_tensor_in_two_shards_is_refused(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    write_safetensors(folder / "model-00002.safetensors", {"w": ("BF16", [4, 4])})
    with pytest.raises(UnsafeModelError, match="tensor 'w' is in both"):
        verify_local_folder(folder, allow_pickle=False, trust_remote_code=False)


def _pickle_folder(folder: Path, weights: object) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(weights))
    return folder


def test_pickle_weights_need_permission_and_a_clean_scan(tmp_path: Path) -> None:
    benign = _pickle_folder(tmp_path / "benign", {"w": [[0.0, 1.0]]})
    with pytest.raises(UnsafeModelError, match=r"only pickle weights \(pytorch_model\.bin\)"):
        verify_local_folder(benign, allow_pickle=False, trust_remote_code=False)
    verify_local_folder(benign, allow_pickle=True, trust_remote_code=False)

    hostile = _pickle_folder(tmp_path / "hostile", {"w": Payload()})
    with pytest.raises(UnsafeModelError, match=r"pytorch_model\.bin is a pickle .*posix\.system"):
        verify_local_folder(hostile, allow_pickle=True, trust_remote_code=False)


def test_custom_code_in_a_folder(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", {"auto_map": {"AutoModel": "modeling_x.XModel"}})
    with pytest.raises(UnsafeModelError, match="asks for custom code"):
        verify_local_folder(folder, allow_pickle=False, trust_remote_code=False)
    with pytest.raises(UnsafeModelError, match=r"not in the folder: modeling_x\.py"):
        verify_local_folder(folder, allow_pickle=False, trust_remote_code=True)
    (folder / "modeling_x.py").write_text("class XModel: ...\n")
    verify_local_folder(folder, allow_pickle=False, trust_remote_code=True)


def test_custom_tokenizer_code_counts_too(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tok.T", None]}})
    )
    with pytest.raises(UnsafeModelError, match=r"tokenizer_config\.json asks for custom code"):
        verify_local_folder(folder, allow_pickle=False, trust_remote_code=False)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeModelError, match="is not a folder"):
        verify_local_folder(tmp_path / "absent", allow_pickle=False, trust_remote_code=False)


def test_the_demo_model_passes() -> None:
    if not (DEMO_MODEL / "model.safetensors").is_file():
        pytest.fail("the demo model is not prepared: run ./setup.sh (deployer demo prepare)")
    verify_local_folder(DEMO_MODEL, allow_pickle=False, trust_remote_code=False)
