"""Model repositories for the hub tests: a tiny valid model and crafted bad ones.

They are served by deployer's own mirror (a real HTTP server speaking the hub's protocol), and
fetched by deployer through the real huggingface_hub client.
"""

from __future__ import annotations

import json
import os
import pickle
import struct

from deployer.hub.mirror import MirrorRepo
from tests.support.mirror_faults import tamper

README = b"---\nlicense: apache-2.0\n---\n# tiny\nA tiny test model.\n"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4}
TOKENIZER = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}


def safetensors(tensors: dict[str, int], *, fill: bytes = b"\x01") -> bytes:
    """A valid safetensors file of float32 vectors (name -> element count)."""
    header, offset = {}, 0
    for name, count in tensors.items():
        header[name] = {
            "dtype": "F32",
            "shape": [count],
            "data_offsets": [offset, offset + 4 * count],
        }
        offset += 4 * count
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + fill * offset


def base_files(**extra: bytes) -> dict[str, bytes]:
    files = {
        "README.md": README,
        "config.json": json.dumps(CONFIG).encode(),
        "tokenizer.json": json.dumps(TOKENIZER).encode(),
        "tokenizer_config.json": b'{"model_max_length": 128}',
        "model.safetensors": safetensors({"w": 4, "b": 4}),
        "original/consolidated.pth": b"not needed by the engine",
    }
    files.update(extra)
    return files


def tiny(repo_id: str = "acme/tiny", *, token: str | None = None) -> MirrorRepo:
    repo = MirrorRepo(repo_id, token=token)
    repo.commit(base_files())
    return repo


def big(repo_id: str = "acme/big", megabytes: int = 24) -> MirrorRepo:
    """A repo with one large weights file, for interrupted downloads."""
    repo = MirrorRepo(repo_id)
    count = megabytes * 1024 * 1024 // 4
    repo.commit(base_files(**{"model.safetensors": safetensors({"w": count}, fill=os.urandom(1))}))
    return repo


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /tmp/deployer-pwned",))


def pickle_bomb() -> bytes:
    return pickle.dumps({"weight": _Payload()})


def bad_repos() -> list[MirrorRepo]:
    tampered = tiny("acme/tampered")
    tamper(tampered, "model.safetensors", safetensors({"w": 4, "b": 4}, fill=b"\x02"))

    only_pickle = MirrorRepo("acme/pickle-bomb")
    files = base_files(**{"pytorch_model.bin": pickle_bomb()})
    del files["model.safetensors"]
    only_pickle.commit(files)

    renamed = MirrorRepo("acme/renamed-pickle")
    renamed.commit(base_files(**{"model.safetensors": pickle_bomb()}))

    remote_code = MirrorRepo("acme/remote-code")
    config = {**CONFIG, "auto_map": {"AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"}}
    remote_code.commit(
        base_files(
            **{
                "config.json": json.dumps(config).encode(),
                "modeling_tiny.py": b"class TinyForCausalLM: ...\n",
            }
        )
    )

    hostile = MirrorRepo("acme/hostile")
    hostile.commit(base_files(**{"../../evil.json": b"{}"}))

    return [tampered, only_pickle, renamed, remote_code, hostile]
