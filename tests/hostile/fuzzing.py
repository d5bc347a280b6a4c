"""A seeded fuzzer for deployer's input files.

Cases are mutations of the real examples: the manifests of ``model_manifests/`` (and ``demo/``),
the inventory of ``inventories/`` (also converted to Ansible's YAML and INI formats), the demo's
Kubernetes lockfile and a model folder's ``config.json``. Every case is fully determined by
``(seed, target, index)``: :func:`make_case` rebuilds one without generating the others, which is
what a reproducer needs.

A case is a small folder of files (:attr:`Case.files`) and the commands to run in it
(:attr:`Case.commands`, paths relative to the folder): ``validate`` and ``plan`` of a mutated
manifest; ``plan`` of an SSH manifest whose inventory is mutated (plan reads the inventory and
contacts no host), of a Kubernetes manifest whose lockfile is mutated, or of a local manifest
whose model folder's ``config.json`` is mutated. Local manifests point at a tiny model folder in
the case (SmolLM2's config, a tokenizer file, a 2x2 safetensors), so that plan gets past the
model and into the planner.

Mutations, one to three a case: structural ones on the parsed example (delete, swap, rename
keys; change types; huge, negative, 10**400, 4301-digit, .inf and .nan numbers; long strings
and path components; unicode, control characters, NUL, lone surrogates; markup and shell
metacharacters; deep nesting; anchors, aliases, merges, alias cycles and billion-laughs bombs;
duplicate and non-string keys; tags from !!int abc to !!python/object), then some on the bytes
(truncation, byte flips, inserted bytes, deleted, duplicated and swapped lines, %YAML and %TAG
directives, several or empty documents, BOMs, UTF-16, CRLF, CR, NEL line ends, tabs).

:func:`fuzz` runs a budget of cases, two at a time, through :mod:`tests.hostile.runners` and
keeps a reproducer folder per failing case.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.hostile.runners import (
    ROOT,
    ForkServer,
    Outcome,
    RunnerPool,
    SubprocessRunner,
    base_env,
    check,
    reproducer,
    signature,
    symptom,
)
from tests.support.ggufwriter import tiny_gguf_bytes

MANIFESTS = ROOT / "model_manifests"
INVENTORY = ROOT / "inventories" / "gpu-hosts.yaml"
CALIBRATION = MANIFESTS / "demo" / "calibration" / "smollm2-answers.jsonl"
KUBE_LOCK = MANIFESTS / "demo" / "smollm2-135m-kubernetes.lock.yaml"
MODEL_CONFIG = ROOT / "deployer" / "sizing" / "configs" / "SmolLM2-135M-Instruct.json"

DEFAULT_SEED = 20_251_203


# --- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One generated input: files to write in an empty folder and commands to run there."""

    seed: int
    index: int
    target: str
    """What is mutated: 'manifest', 'inventory', 'lockfile' or 'model-config'."""
    template: str
    """The example it started from."""
    mutations: tuple[str, ...]
    """What was done to it, in order (each 'class: detail')."""
    files: dict[str, bytes]
    commands: tuple[tuple[str, ...], ...]
    mutated_file: str
    """The file of ``files`` the mutations were applied to."""

    @property
    def classes(self) -> tuple[str, ...]:
        """The mutation classes applied ('byte-flip', 'alias-bomb', ...)."""
        return tuple(m.split(":", 1)[0] for m in self.mutations)

    @property
    def label(self) -> str:
        return f"seed {self.seed} {self.target} case {self.index} (from {self.template})"

    @property
    def slug(self) -> str:
        return f"seed-{self.seed}-{self.target}-{self.index}"

    def write(self, folder: Path) -> Path:
        """Write the case's files into ``folder`` (created); returns it."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (folder / "CASE.txt").write_text(self.describe())
        return folder

    def describe(self) -> str:
        lines = [
            self.label,
            f"mutated file: {self.mutated_file}",
            *(f"  - {m}" for m in self.mutations),
            "commands (run in this folder):",
            *(f"  {reproducer(c)}" for c in self.commands),
            f"regenerate: python benchmarks/fuzz_manifests.py --seed {self.seed} "
            f"--target {self.target} --case {self.index} --write DIR",
        ]
        return "\n".join(lines) + "\n"


#: What a case mutates, and the share of a mixed run each gets.
TARGETS = {"manifest": 70, "inventory": 16, "lockfile": 6, "model-config": 8}


def make_case(seed: int, target: str, index: int) -> Case:
    """Case ``index`` of ``seed``'s sequence for ``target``; independent of every other case."""
    rng = random.Random(f"deployer-fuzz:{seed}:{target}:{index}")
    make = {
        "manifest": _manifest_case,
        "inventory": _inventory_case,
        "lockfile": _lockfile_case,
        "model-config": _model_config_case,
    }[target]
    return make(rng, seed, index)


def split(total: int) -> dict[str, int]:
    """``total`` cases shared among the targets by :data:`TARGETS` (each at least one)."""
    weight = sum(TARGETS.values())
    return {t: max(1, round(total * w / weight)) for t, w in TARGETS.items()}


# --- templates ---------------------------------------------------------------------------------

_TEMPLATE_CACHE: dict[str, Any] = {}
_TEMPLATE_LOCK = threading.Lock()


def _load(path: Path) -> Any:
    key = str(path)
    with _TEMPLATE_LOCK:  # a ruamel loader is not thread-safe
        if key not in _TEMPLATE_CACHE:
            _TEMPLATE_CACHE[key] = YAML(typ="safe", pure=True).load(path.read_text())
        return _deep_copy(_TEMPLATE_CACHE[key])


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def manifest_templates() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml")) + sorted(
        p for p in (MANIFESTS / "demo").glob("*.yaml") if not p.name.endswith(".lock.yaml")
    )


def tiny_model_files(prefix: str = "model/", config: bytes | None = None) -> dict[str, bytes]:
    """A model folder deployer accepts: SmolLM2's config, a tokenizer file and a safetensors file
    holding one 2x2 tensor (so plan reads real headers without 270 MB of weights)."""
    header = {"lm_head.weight": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return {
        f"{prefix}config.json": config if config is not None else MODEL_CONFIG.read_bytes(),
        f"{prefix}tokenizer.json": b"{}",
        f"{prefix}model.safetensors": struct.pack("<Q", len(raw)) + raw + b"\0" * 8,
    }


def _localized(tree: Any) -> dict[str, bytes]:
    """Point a template at files inside the case's folder: a local model at ``model/`` and a
    calibration file at ``calibration/``; returns the files that makes necessary."""
    files: dict[str, bytes] = {}
    spec = tree.get("spec", {})
    model = spec.get("model", {})
    if model.get("source") == "local" and spec.get("serving", {}).get("engine") == "llamacpp":
        model["path"] = "model.gguf"
        files["model.gguf"] = tiny_gguf_bytes()
    elif model.get("source") == "local":
        model["path"] = "model"
        files.update(tiny_model_files())
    calibration = spec.get("quantize", {}).get("calibration", {})
    if "file" in calibration:
        calibration["file"] = "calibration/smollm2-answers.jsonl"
        files["calibration/smollm2-answers.jsonl"] = CALIBRATION.read_bytes()
    if spec.get("target", {}).get("kind") == "ssh":
        spec["target"]["inventory"] = "inventory.yaml"
        files["inventory.yaml"] = INVENTORY.read_bytes()
    return files


def _ansible_yaml_inventory() -> Any:
    return {
        "all": {
            "hosts": {"bastion": {"ansible_host": "203.0.113.10", "ansible_user": "ubuntu"}},
            "children": {
                "gpu": {
                    "hosts": {
                        "gpu1": {"ansible_host": "198.51.100.11", "accelerator": "A10G"},
                        "gpu2": {"ansible_host": "198.51.100.12", "accelerator": "A10G"},
                    },
                    "vars": {
                        "ansible_user": "ubuntu",
                        "ansible_ssh_private_key_file": "~/.ssh/id_ed25519",
                        "gpus": "1",
                    },
                }
            },
        }
    }


ANSIBLE_INI_INVENTORY = """\
# An Ansible INI inventory of the example's hosts.
bastion ansible_host=203.0.113.10 ansible_user=ubuntu

[gpu]
gpu1 ansible_host=198.51.100.11 accelerator=A10G
gpu2 ansible_host=198.51.100.12 accelerator=A10G

[gpu:vars]
ansible_user=ubuntu
ansible_ssh_private_key_file=~/.ssh/id_ed25519
gpus=1

[all:children]
gpu
"""


# --- the four targets --------------------------------------------------------------------------


def _manifest_case(rng: random.Random, seed: int, index: int) -> Case:
    template = rng.choice(manifest_templates())
    tree = _load(template)
    files = _localized(tree)
    text, mutations = _mutate_yaml(rng, tree)
    files["manifest.yaml"] = text
    return Case(
        seed,
        index,
        "manifest",
        template.relative_to(ROOT).as_posix(),
        tuple(mutations),
        files,
        (("validate", "manifest.yaml"), ("plan", "manifest.yaml")),
        "manifest.yaml",
    )


def baseline_case(template: Path) -> Case:
    """The example itself, unmutated, as a manifest case (what every mutation starts from)."""
    tree = _load(template)
    files = _localized(tree)
    files["manifest.yaml"] = emit_yaml(tree).encode()
    return Case(
        0,
        0,
        "manifest",
        template.relative_to(ROOT).as_posix(),
        (),
        files,
        (("validate", "manifest.yaml"), ("plan", "manifest.yaml")),
        "manifest.yaml",
    )


def baseline_cases() -> list[Case]:
    """Every target's starting points, unmutated: the manifests, the inventory in its three
    formats, the lockfile and the model config. Each must keep working (exit 0), or the fuzz
    cases built on it test nothing beyond the breakage."""
    found = [baseline_case(t) for t in manifest_templates()]
    inventories = {
        "inventory.yaml": INVENTORY.read_bytes(),
        "inventory.yml": emit_yaml(_ansible_yaml_inventory()).encode(),
        "inventory.ini": ANSIBLE_INI_INVENTORY.encode(),
    }
    for name, data in inventories.items():
        files = {"manifest.yaml": _ssh_manifest(name), name: data}
        found.append(Case(0, 0, "inventory", name, (), files, (("plan", "manifest.yaml"),), name))
    kube = (MANIFESTS / "demo" / "smollm2-135m-kubernetes.yaml").read_bytes()
    files = {"manifest.yaml": kube, "manifest.lock.yaml": KUBE_LOCK.read_bytes()}
    found.append(
        Case(
            0, 0, "lockfile", "lock", (), files, (("plan", "manifest.yaml"),), "manifest.lock.yaml"
        )
    )
    return found


def _ssh_manifest(inventory: str) -> bytes:
    tree = _load(MANIFESTS / "mistral-7b-instruct.yaml")
    tree["spec"]["target"]["inventory"] = inventory
    return emit_yaml(tree).encode()


def _inventory_case(rng: random.Random, seed: int, index: int) -> Case:
    form = rng.choice(["deployer", "deployer", "ansible-yaml", "ansible-ini"])
    if form == "ansible-ini":
        name = "inventory.ini"
        data, mutations = _mutate_text(rng, ANSIBLE_INI_INVENTORY.encode(), ini=True)
        template = "inventories/gpu-hosts.yaml (as Ansible INI)"
    else:
        name = "inventory.yaml"
        tree = _load(INVENTORY) if form == "deployer" else _ansible_yaml_inventory()
        data, mutations = _mutate_yaml(rng, tree)
        template = "inventories/gpu-hosts.yaml" + (
            " (as Ansible YAML)" if form != "deployer" else ""
        )
    return Case(
        seed,
        index,
        "inventory",
        template,
        tuple(mutations),
        {"manifest.yaml": _ssh_manifest(name), name: data},
        (("plan", "manifest.yaml"),),
        name,
    )


def _lockfile_case(rng: random.Random, seed: int, index: int) -> Case:
    tree = _load(KUBE_LOCK)
    data, mutations = _mutate_yaml(rng, tree)
    manifest = (MANIFESTS / "demo" / "smollm2-135m-kubernetes.yaml").read_bytes()
    return Case(
        seed,
        index,
        "lockfile",
        KUBE_LOCK.relative_to(ROOT).as_posix(),
        tuple(mutations),
        {"manifest.yaml": manifest, "manifest.lock.yaml": data},
        (("plan", "manifest.yaml"),),
        "manifest.lock.yaml",
    )


def _model_config_case(rng: random.Random, seed: int, index: int) -> Case:
    tree = _load(MANIFESTS / "demo" / "smollm2-135m.yaml")
    files = _localized(tree)
    config = json.loads(MODEL_CONFIG.read_text())
    data, mutations = _mutate_json(rng, config)
    files["model/config.json"] = data
    files["manifest.yaml"] = emit_yaml(tree).encode()
    return Case(
        seed,
        index,
        "model-config",
        "model_manifests/demo/smollm2-135m.yaml + SmolLM2 config.json",
        tuple(mutations),
        files,
        (("plan", "manifest.yaml"),),
        "model/config.json",
    )


# --- emitting YAML and JSON with exotic nodes --------------------------------------------------


class Raw(str):
    """Text emitted as it is, where a value goes (a tag, an alias, a flow collection, a number
    Python would refuse to print)."""


@dataclass
class Anchored:
    """A value emitted with an anchor ``&name``."""

    name: str
    value: Any


@dataclass
class Pairs:
    """A mapping that may repeat keys (a list of key, value pairs)."""

    items: list[tuple[Any, Any]] = field(default_factory=list)


def emit_yaml(value: Any) -> str:
    """Block-style YAML for ``value`` (dicts, lists, scalars, :class:`Raw`, :class:`Anchored`,
    :class:`Pairs`)."""
    lines: list[str] = []
    if _is_block(value):
        _emit_block(value, 0, lines)
    else:
        lines.append(_emit_inline(value))
    return "\n".join(lines) + "\n"


def _is_block(value: Any) -> bool:
    if isinstance(value, Anchored):
        return _is_block(value.value)
    if isinstance(value, Pairs):
        return bool(value.items)
    return isinstance(value, dict | list) and not isinstance(value, Raw) and bool(value)


def _emit_block(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    items: list[tuple[Any, Any]] | None = None
    if isinstance(value, Pairs):
        items = value.items
    elif isinstance(value, dict):
        items = list(value.items())
    if items is not None:
        for key, child in items:
            head = f"{pad}{_emit_key(key)}:"
            _emit_child(head, child, indent, lines)
        return
    for child in value:
        _emit_child(f"{pad}-", child, indent, lines)


def _emit_child(head: str, child: Any, indent: int, lines: list[str]) -> None:
    anchor = ""
    if isinstance(child, Anchored):
        anchor, child = f" &{child.name}", child.value
    if _is_block(child):
        lines.append(head + anchor)
        _emit_block(child, indent + 2, lines)
    else:
        lines.append(f"{head}{anchor} {_emit_inline(child)}")


def _emit_key(key: Any) -> str:
    if isinstance(key, Raw):
        return str(key)
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
        return key
    return _emit_inline(key)


def _emit_inline(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Anchored):
        return f"&{value.name} {_emit_inline(value.value)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _PLAIN_WORDS and ": " not in value:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Pairs):
        return (
            "{" + ", ".join(f"{_emit_inline(k)}: {_emit_inline(v)}" for k, v in value.items) + "}"
        )
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{_emit_inline(k)}: {_emit_inline(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_emit_inline(v) for v in value) + "]"
    return json.dumps(str(value))


#: Strings written without quotes, as people write them (and as the examples do).
_PLAIN = re.compile(r"[A-Za-z~/][A-Za-z0-9 _./~-]*[A-Za-z0-9_./-]|[A-Za-z]")
_PLAIN_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python prints by default
        return hex(value)


def emit_json(value: Any, indent: int = 0) -> str:
    """JSON for ``value``, :class:`Raw` emitted as it is (NaN, huge numbers, broken text)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))}: {emit_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(emit_json(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    return json.dumps(value, ensure_ascii=False)


# --- choosing where to mutate ------------------------------------------------------------------

Slot = tuple[Any, Any]
"""A container and a key (dict) or an index (list): where a value lives."""


def _slots(tree: Any) -> list[Slot]:
    found: list[Slot] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                found.append((node, key))
                stack.append(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found.append((node, i))
                stack.append(value)
    return found


def _mappings(tree: Any) -> list[dict[Any, Any]]:
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _path_of(tree: Any, slot: Slot) -> str:
    """The dotted path of a slot, for the case's description."""
    container, key = slot

    def walk(node: Any, trail: list[str]) -> list[str] | None:
        if node is container:
            return [*trail, str(key)]
        children = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for k, v in children:
            if isinstance(v, dict | list):
                found = walk(v, [*trail, str(k)])
                if found is not None:
                    return found
        return None

    return ".".join(walk(tree, []) or [str(key)])


#: Fields worth aiming at: mutating them reaches the planner, the model source, the target.
_HOT_PATHS = (
    ("spec", "serving", "maxModelLen"),
    ("spec", "serving", "port"),
    ("spec", "serving", "startupTimeoutSeconds"),
    ("spec", "serving", "host"),
    ("spec", "serving", "kvCacheMemory"),
    ("spec", "serving", "gpuMemoryUtilization"),
    ("spec", "serving", "args"),
    ("spec", "serving", "maxNumSeqs"),
    ("spec", "serving", "tensorParallelSize"),
    ("spec", "serving", "servedModelName"),
    ("spec", "serving", "version"),
    ("spec", "resources", "count"),
    ("spec", "resources", "accelerator"),
    ("spec", "resources", "hourlyPrice"),
    ("spec", "model", "path"),
    ("spec", "model", "repo"),
    ("spec", "model", "revision"),
    ("spec", "model", "endpoint"),
    ("spec", "model", "token"),
    ("spec", "target", "inventory"),
    ("spec", "target", "replicas"),
    ("spec", "target", "namespace"),
    ("spec", "target", "group"),
    ("spec", "quantize", "method"),
    ("metadata", "name"),
    ("metadata", "labels"),
)


def _pick_slot(rng: random.Random, tree: Any) -> Slot | None:
    if isinstance(tree, dict) and rng.random() < 0.45:
        path = rng.choice(_HOT_PATHS)
        node = tree
        for part in path[:-1]:
            if not isinstance(node, dict) or not isinstance(node.get(part), dict):
                node = None
                break
            node = node[part]
        if isinstance(node, dict):
            return node, path[-1]  # created if absent
    slots = _slots(tree)
    return rng.choice(slots) if slots else None


# --- values ------------------------------------------------------------------------------------

_NUMBERS = [
    Raw("1" + "0" * 400),  # 10**400
    Raw("-1" + "0" * 400),
    Raw(str(2**70)),
    Raw(str(2**63)),
    Raw(str(2**64 - 1)),
    Raw(str(-(2**63) - 1)),
    Raw("9" * 4301),  # past Python's int-from-string digit limit
    Raw("1" * 20000),
    Raw("0x" + "f" * 200),
    Raw("0o777"),
    Raw("0b101"),
    Raw("1_000"),
    Raw("1e309"),
    Raw("-1e309"),
    Raw("1e-400"),
    Raw(".inf"),
    Raw("-.inf"),
    Raw(".nan"),
    Raw(".NaN"),
    Raw("-0"),
    Raw("-0.0"),
    Raw("0"),
    Raw("-1"),
    Raw("65536"),
    Raw("1.5"),
    Raw("12e3"),
    Raw("0.0000001"),
]

_STRINGS = [
    "",
    " ",
    "not a host!",
    "0.0.0.0",
    "::",
    "[::1]",
    "localhost",
    "../../../../etc/passwd",
    "/dev/zero",
    "/dev/stdin",
    "/proc/self/fd/0",
    "/etc/shadow",
    "~root/.ssh/id_rsa",
    "${HOME}",
    "$NO_SUCH_VARIABLE_FOR_DEPLOYER",
    "$(touch /tmp/deployer-fuzz-pwned)",
    "`id`",
    "; rm -rf /",
    "%s%s%n",
    "{0.__class__}",
    "[bold red]markup[/]",
    "[/]",
    "[link=file:///etc/passwd]x[/link]",
    "\x1b[31mred\x1b]0;title\x07",
    "\u202eevil\u202c",
    "zero\u200bwidth",
    "名前",
    "\U0001f999 llama",
    "e\u0301" * 50,
    "line\nbreak",
    "nul\x00byte",
    "\ufeffbom",
    "\u2028sep",
    "CON",
    "a" * 256,
    "a" * 4096,
    "x" * 70000,
    "/tmp/" + "d" * 300 + "/model",
    "d" * 300,
    "a/" * 2000,
    "http://127.0.0.1:9/" + "p" * 300,
    "http://[::1",
    "http://user:pass@127.0.0.1:9",
    "file:///etc/passwd",
    "HuggingFaceTB/" + "r" * 300,
    "org/../../etc",
    "-" * 10,
    "--help",
    "auto",
    "cpu",
    "H100-80GB",
    "100%",
    "1GiB",
    "1e400GiB",
    "99999999999999999999999999999999PiB",
    "-1GiB",
    "NaN",
    "true",
    "null",
]

_ESCAPED_STRINGS = [  # double-quoted YAML escapes that make unusual Python strings
    Raw('"\\ud800"'),  # a lone surrogate: cannot be encoded as UTF-8
    Raw('"\\udfff\\ud800"'),
    Raw('"\\x00"'),
    Raw('"\\x1b[2J\\x1b[H"'),
    Raw('"\\U0010FFFF"'),
    Raw('"\\uFFFE"'),
    Raw('"\\N\\_\\L\\P"'),
    Raw('"\\e"'),
]

_TAGGED = [
    Raw("!!int abc"),
    Raw("!!int 10" + "0" * 400),
    Raw("!!float abc"),
    Raw("!!float 1e400"),
    Raw("!!bool maybe"),
    Raw("!!null x"),
    Raw("!!str 123"),
    Raw("!!binary aGVsbG8="),
    Raw("!!binary ***"),
    Raw("!!timestamp 2001-12-14t21:59:43.10-05:00"),
    Raw("!!timestamp not-a-date"),
    Raw("!!set {a, b}"),
    Raw("!!omap [a: 1, b: 2]"),
    Raw("!!pairs [a: 1, a: 2]"),
    Raw("!!map [1, 2]"),
    Raw("!!seq {a: 1}"),
    Raw("!!python/object:os.system {}"),
    Raw("!!python/object/apply:os.system ['touch /tmp/deployer-fuzz-pwned']"),
    Raw("!!python/name:os.system"),
    Raw("!!python/tuple [1, 2]"),
    Raw("!foo bar"),
    Raw("!env HF_TOKEN"),
    Raw("!<tag:example.com,2000:x> y"),
    Raw("!<!> z"),
    Raw("!!merge x"),
    Raw("!!value x"),
    Raw("! plain"),
]


def _scalar_swap(rng: random.Random) -> tuple[Any, str]:
    kind = rng.choice(["number", "string", "escaped", "tagged", "bool", "null", "empty"])
    if kind == "number":
        value: Any = rng.choice(_NUMBERS)
    elif kind == "string":
        value = rng.choice(_STRINGS)
    elif kind == "escaped":
        value = rng.choice(_ESCAPED_STRINGS)
    elif kind == "tagged":
        value = rng.choice(_TAGGED)
    elif kind == "bool":
        value = rng.choice([True, False, Raw("yes"), Raw("on"), Raw("off"), Raw("y")])
    elif kind == "null":
        value = rng.choice([None, Raw("~"), Raw("")])
    else:
        value = rng.choice([[], {}, Raw("[]"), Raw("{}"), Raw("''")])
    return value, kind


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= 40 else f"{text[:24]}...({len(text)} chars)"


def _deep(rng: random.Random) -> tuple[Raw, str]:
    depth = rng.choice([60, 101, 200, 500, 1000, 3000, 5000, 20000, 100000])
    style = rng.choice(["flow-seq", "flow-map", "block-seq", "mixed"])
    if style == "flow-seq":
        text = "[" * depth + "1" + "]" * depth
    elif style == "flow-map":
        text = "{a: " * depth + "1" + "}" * depth
    elif style == "block-seq":
        text = "\n" + " " * 50 + "- " * depth + "x"
    else:
        text = "[{a: " * (depth // 2) + "1" + "}]" * (depth // 2)
    return Raw(text), f"{style} {depth} deep"


def _alias_bomb(rng: random.Random) -> tuple[Raw, str]:
    levels = rng.choice([2, 3, 4, 6, 7, 9, 12])
    width = rng.choice([2, 3, 9, 10])
    parts = ['&l0 "lol"'] + [
        f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels + 1)
    ]
    style = rng.choice(["seq", "map"])
    if style == "map":
        parts = [f"k{i}: {p}" for i, p in enumerate(parts)]
        return Raw("{" + ", ".join(parts) + "}"), f"{levels} levels x {width} (map)"
    return Raw("[" + ", ".join(parts) + "]"), f"{levels} levels x {width}"


# --- tree mutations ----------------------------------------------------------------------------


def _set(slot: Slot, value: Any) -> None:
    container, key = slot
    container[key] = value


def _get(slot: Slot) -> Any:
    container, key = slot
    return container[key] if isinstance(container, list) or key in container else None


def _tree_mutation(rng: random.Random, tree: Any) -> tuple[Any, str]:
    """Apply one structural mutation to ``tree`` (in place where possible); returns the new tree
    and the mutation's description."""
    op = rng.choices(
        [
            "delete",
            "swap",
            "rename",
            "type",
            "scalar",
            "long",
            "deep",
            "alias",
            "alias-bomb",
            "alias-cycle",
            "merge",
            "duplicate-key",
            "key-type",
            "grow",
            "root",
            "extreme",
        ],
        weights=[8, 6, 6, 10, 22, 6, 6, 5, 4, 3, 3, 4, 4, 5, 2, 30],
    )[0]
    if op == "extreme" and isinstance(tree, dict):
        return tree, _extreme(rng, tree)
    slot = _pick_slot(rng, tree)
    if slot is None or op == "root":
        replacement, kind = rng.choice(
            [
                (Raw("[]"), "empty list"),
                (Raw("42"), "a number"),
                (Raw('"text"'), "a string"),
                (Raw("null"), "null"),
                ([tree, tree], "a list of the document twice"),
                (Raw("!!binary aGVsbG8="), "binary"),
            ]
        )
        return replacement, f"root: document replaced by {kind}"
    where = _path_of(tree, slot)
    container, key = slot
    if op == "delete":
        if isinstance(container, dict):
            container.pop(key, None)
        elif container:
            container.pop(key)
        return tree, f"delete: {where}"
    if op == "swap":
        other = rng.choice(_slots(tree) or [slot])
        a, b = _get(slot), _get(other)
        _set(slot, _deep_copy(b))
        _set(other, _deep_copy(a))
        return tree, f"swap: values of {where} and {_path_of(tree, other)}"
    if op == "rename" and isinstance(container, dict) and key in container:
        new = _renamed(rng, key)
        container[new] = container.pop(key)
        return tree, f"rename: {where} -> {_short(new)}"
    if op == "type":
        value = _get(slot)
        new_value, kind = rng.choice(
            [
                (42, "int"),
                (Raw("-7"), "negative int"),
                ("42", "str"),
                (str(value) if value is not None else "x", "str of itself"),
                ([value], "list of itself"),
                ({"value": value}, "map of itself"),
                ([], "empty list"),
                ({}, "empty map"),
                (None, "null"),
                (True, "bool"),
                (1.5, "float"),
                ([1, "two", [3], {"four": 4}], "mixed list"),
            ]
        )
        _set(slot, new_value)
        return tree, f"type: {where} -> {kind}"
    if op == "long":
        length = rng.choice([256, 1000, 65536, 200_000, 900_000])
        value = rng.choice(
            [
                "a" * length,
                "/tmp/" + "c" * length,
                "/".join(["p" * 255] * (length // 256 + 1)),
                "é" * length,
                "\\" * length,
            ]
        )
        _set(slot, value)
        return tree, f"long: {where} -> {length} chars"
    if op == "deep":
        value, kind = _deep(rng)
        _set(slot, value)
        return tree, f"deep: {where} -> {kind}"
    if op == "alias":
        target = rng.choice(_slots(tree))
        if target[0] is container and target[1] == key:
            target = slot
        value = _get(target)
        if isinstance(value, Anchored) or isinstance(_get(slot), Anchored):
            _set(slot, Raw("*nowhere"))
            return tree, f"alias: {where} -> undefined alias"
        _set(target, Anchored("a1", value))
        _set(slot, Raw("*a1"))
        return tree, f"alias: {where} -> *a1 (anchored at {_path_of(tree, target)})"
    if op == "alias-bomb":
        value, kind = _alias_bomb(rng)
        _set(slot, value)
        return tree, f"alias-bomb: {where} -> {kind}"
    if op == "alias-cycle":
        value, kind = rng.choice(
            [
                (Raw("&c [*c]"), "a list that contains itself"),
                (Raw("&c {self: *c}"), "a map that contains itself"),
                (Raw("&c [[*c, *c], {x: *c}]"), "nested self references"),
                (Raw("&c {<<: *c}"), "a map merging itself"),
            ]
        )
        _set(slot, value)
        return tree, f"alias-cycle: {where} -> {kind}"
    if op == "merge":
        mappings = _mappings(tree)
        target = rng.choice(mappings)
        source = rng.choice(mappings)
        if source is target or not source:
            target[Raw("<<")] = rng.choice([Raw("5"), Raw("[1, 2]"), Raw("*missing"), Raw("{}")])
            return tree, "merge: '<<' of a non-mapping"
        # The source mapping gets an anchor and the target merges it (when the target comes
        # first in the file, the alias is undefined: a case of its own).
        _replace_node(tree, source, Anchored("m1", source))
        target[Raw("<<")] = Raw("*m1")
        return tree, "merge: '<<: *m1' of another mapping"
    if op == "duplicate-key" and isinstance(container, dict) and key in container:
        items = list(container.items())
        index = [k for k, _ in items].index(key)
        value, _ = _scalar_swap(rng)
        items.insert(index + rng.choice([0, 1]), (key, value))
        _replace_node(tree, container, Pairs(items))
        return tree, f"duplicate-key: {where}"
    if op == "key-type" and isinstance(container, dict) and key in container:
        new_key, kind = rng.choice(
            [
                (Raw("1"), "int"),
                (Raw("~"), "null"),
                (Raw("true"), "bool"),
                (Raw("[a, b]"), "list (flow)"),
                (Raw("{a: 1}"), "map (flow)"),
                (Raw('"\\ud800"'), "lone surrogate"),
                (Raw("? complex"), "explicit key"),
                (Raw("1" + "0" * 400), "huge int"),
                (Raw(".nan"), "nan"),
                (Raw("!!binary aGVsbG8="), "binary"),
            ]
        )
        items = [((new_key if k == key else k), v) for k, v in container.items()]
        _replace_node(tree, container, Pairs(items))
        return tree, f"key-type: {where} key -> {kind}"
    if op == "grow":
        count = rng.choice([100, 1000, 10000])
        kind = rng.choice(["list", "map"])
        if kind == "list":
            _set(slot, [_deep_copy(_get(slot)) for _ in range(count)])
        else:
            _set(slot, {f"k{i}": f"v{i}" for i in range(count)})
        return tree, f"grow: {where} -> {kind} of {count}"
    value, kind = _scalar_swap(rng)
    _set(slot, value)
    return tree, f"scalar: {where} -> {kind} {_short(value)}"


_HUGE = Raw("1" + "0" * 400)
_INTS = [0, 1, 15, 16, 65535, 65536, 2**31, 2**63, 2**64, 2**70, _HUGE, Raw("-1")]
#: Values of the right type that no real deployment has, by field: the manifest stays valid
#: (or nearly), so plan gets to use them.
_EXTREMES: dict[tuple[str, ...], list[Any]] = {
    ("spec", "serving", "maxModelLen"): _INTS,
    ("spec", "serving", "port"): _INTS,
    ("spec", "serving", "startupTimeoutSeconds"): _INTS,
    ("spec", "serving", "maxNumSeqs"): _INTS,
    ("spec", "serving", "tensorParallelSize"): _INTS,
    ("spec", "resources", "count"): _INTS,
    ("spec", "target", "replicas"): _INTS,
    ("spec", "quantize", "calibration", "samples"): _INTS,
    ("spec", "smoke", 0, "maxTokens"): _INTS,
    ("spec", "smoke", 0, "maxLatencyMs"): _INTS,
    ("spec", "serving", "gpuMemoryUtilization"): [1.0, 1e-300, 5e-324, 0.9999999999, 1],
    ("spec", "resources", "hourlyPrice"): [0, 1e308, Raw("1e308"), 5e-324, _HUGE, Raw(".inf")],
    ("spec", "serving", "kvCacheMemory"): [
        "1B",
        "0B",
        "1PiB",
        "1EiB",
        "99999999999999999999TiB",
        _HUGE,
        2**70,
        "1.5 GiB",
        "1e3KB",
    ],
    ("spec", "quantize", "gate", "maxPerplexityIncrease"): ["0%", "1e400%", "-0%", _HUGE, 1e308],
    ("spec", "serving", "host"): [
        "not a host!",
        "0.0.0.0",
        "::",
        "::1",
        "256.1.1.1",
        "localhost",
        "h" * 300,
        "[/]",
        "example.invalid",
        "127.0.0.1 ",
        "",
    ],
    ("spec", "model", "path"): [
        "model/" + "a" * 300,
        "/dev/zero",
        "/dev/null",
        "/proc/self",
        "~nosuchuser/model",
        "$DEPLOYER_FUZZ_UNSET/model",
        "../" * 40 + "etc",
        "model/config.json",
        "/",
        ".",
        "model\x00",
        "a/" * 1000,
        "model/../model/../model",
    ],
    ("spec", "target", "inventory"): [
        "/dev/zero",
        "inventory/" + "i" * 300,
        "/",
        "manifest.yaml",
        "~nosuchuser/i.yaml",
        "/proc/self/environ",
        "../" * 40 + "etc/passwd",
    ],
    ("spec", "model", "token"): [
        {"file": "/dev/zero"},
        {"file": "/dev/stdin"},
        {"file": "/"},
        {"file": "t" * 300},
        {"env": "DEPLOYER_FUZZ_UNSET"},
        {"file": "/proc/self/environ"},
    ],
    ("spec", "serving", "apiKey"): [
        {"file": "/dev/zero"},
        {"file": "/"},
        {"env": "DEPLOYER_FUZZ_UNSET"},
        {"file": "k" * 300},
    ],
    ("spec", "serving", "args"): [
        {"max-model-len": _HUGE},
        {"a" * 300: True},
        {"port": 2**70},
        {"x": [_HUGE, "y" * 300]},
        {f"flag-{i}": i for i in range(2000)},
        {"model": "/etc/passwd"},
        {"host": "[/]"},
    ],
    ("spec", "serving", "env"): [{"A" * 300: "x"}, {"LD_PRELOAD": "/tmp/x.so"}, {"X": "\x00"}],
    ("spec", "serving", "servedModelName"): ["[/]", "m" * 5000, "../../x", " "],
    ("spec", "serving", "version"): ["0", "../../x", "9" * 400, "1.0; rm -rf /", "[/]"],
    ("spec", "resources", "accelerator"): ["H100-80GB", "cpu", "CPU", "auto", "[/]", "x" * 300],
    ("spec", "model", "revision"): ["../../x", "a" * 300, "0" * 40, "[/]", "main\n"],
    ("spec", "model", "endpoint"): [
        "http://127.0.0.1:9/" + "p" * 300,
        "http://[::1",
        "http://" + "h" * 300,
        "http://x:99999",
    ],
    ("metadata", "labels"): [{f"k{i}": "v" for i in range(5000)}, {"k": "v" * 100_000}],
    ("spec", "smoke"): [[], [{"chat": "hi"}] * 2000],
}


def _extreme(rng: random.Random, tree: dict[str, Any]) -> str:
    path, values = rng.choice(list(_EXTREMES.items()))
    node: Any = tree
    for part in path[:-1]:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            child = None
        if not isinstance(child, dict | list):
            return "extreme: (not in this example) " + ".".join(map(str, path))
        node = child
    if not isinstance(node, dict):  # an earlier mutation made it a list
        return "extreme: (not a mapping here) " + ".".join(map(str, path))
    value = rng.choice(values)
    node[path[-1]] = value
    return f"extreme: {'.'.join(map(str, path))} -> {_short(value)}"


def _renamed(rng: random.Random, key: Any) -> Any:
    text = str(key)
    return rng.choice(
        [
            text[:-1] or "x",
            text.upper(),
            text + "s",
            text.replace("a", "\u0430"),  # a Cyrillic look-alike
            "_" + text,
            f"{text} ",
            text + "\x7f",
            "k" * 300,
        ]
    )


def _replace_node(tree: Any, old: Any, new: Any) -> None:
    """Replace the container ``old`` (by identity) wherever it is in ``tree``."""
    for container, key in _slots(tree):
        if container[key] is old:
            container[key] = new
            return


def _mutate_yaml(rng: random.Random, tree: Any) -> tuple[bytes, list[str]]:
    """A YAML document from ``tree`` after 1 to 3 mutations: structural ones, then maybe some on
    the text."""
    mutations: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        if rng.random() < 0.6 and isinstance(tree, dict):
            tree, described = _tree_mutation(rng, tree)
            mutations.append(described)
    text = str(tree) + "\n" if isinstance(tree, Raw) else emit_yaml(tree)
    data = text.encode("utf-8", "surrogatepass")
    if not mutations or rng.random() < 0.35:
        data, text_mutations = _mutate_text(rng, data)
        mutations.extend(text_mutations)
    return data, mutations


def _mutate_json(rng: random.Random, config: dict[str, Any]) -> tuple[bytes, list[str]]:
    mutations = []
    for _ in range(rng.choice([1, 1, 2])):
        slot = rng.choice(_slots(config))
        where = _path_of(config, slot)
        op = rng.choice(["number", "type", "deep", "delete", "string", "text"])
        if op == "number":
            value = rng.choice(
                [
                    Raw("1" + "0" * 400),
                    Raw("-1"),
                    Raw("0"),
                    Raw("NaN"),
                    Raw("Infinity"),
                    Raw("-Infinity"),
                    Raw("1e400"),
                    Raw("9" * 5000),
                    Raw(str(2**70)),
                    Raw("1.5"),
                ]
            )
            _set(slot, value)
            mutations.append(f"json-number: {where} -> {_short(value)}")
        elif op == "type":
            value = rng.choice([[], {}, "12", None, True, [1, 2], {"a": 1}])
            _set(slot, value)
            mutations.append(f"json-type: {where} -> {type(value).__name__}")
        elif op == "deep":
            depth = rng.choice([101, 1000, 5000, 100000])
            _set(slot, Raw("[" * depth + "]" * depth))
            mutations.append(f"json-deep: {where} -> {depth} deep")
        elif op == "delete":
            container, key = slot
            container.pop(key)
            mutations.append(f"json-delete: {where}")
        elif op == "string":
            value = rng.choice(_STRINGS)
            _set(slot, value)
            mutations.append(f"json-string: {where} -> {_short(value)}")
    data = emit_json(config).encode("utf-8", "surrogatepass")
    if not mutations or rng.random() < 0.3:
        data, text_mutations = _mutate_text(rng, data)
        mutations.extend(text_mutations)
    return data, mutations


# --- text mutations ----------------------------------------------------------------------------

_DIRECTIVES = [
    b"%YAML 1.1\n---\n",
    b"%YAML 1.2\n---\n",
    b"%YAML 1.3\n---\n",
    b"%YAML 2.0\n---\n",
    b"%YAML 1.1\n%YAML 1.1\n---\n",
    b"%YAML 1.1\n",  # no document start after the directive
    b"%TAG ! tag:example.com,2000:\n---\n",
    b"%TAG !! tag:example.com,2000:\n---\n",
    b"%TAG !e! tag:yaml.org,2002:python/object:\n---\n",
    b"%FOO bar baz\n---\n",
    b"%\n---\n",
]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _text_mutation(rng: random.Random, data: bytes, *, ini: bool = False) -> tuple[bytes, str]:
    ops = [
        "truncate",
        "flip",
        "insert-bytes",
        "delete-line",
        "duplicate-line",
        "swap-lines",
        "indent",
        "bom",
        "crlf",
        "documents",
        "control",
        "garbage",
    ]
    weights = [8, 10, 5, 5, 6, 4, 4, 3, 3, 5, 4, 2]
    if not ini:
        ops += ["directive", "tag-line", "tabs"]
        weights += [5, 3, 2]
    else:
        ops += ["ini-cycle", "ini-section"]
        weights += [6, 4]
    op = rng.choices(ops, weights=weights)[0]
    if op == "truncate":
        cut = rng.randrange(len(data) + 1) if data else 0
        return data[:cut], f"truncate: at byte {cut} of {len(data)}"
    if op == "flip":
        mutable = bytearray(data)
        count = rng.choice([1, 1, 2, 4, 16])
        for _ in range(count):
            if not mutable:
                break
            i = rng.randrange(len(mutable))
            mutable[i] = rng.choice([mutable[i] ^ (1 << rng.randrange(8)), rng.randrange(256)])
        return bytes(mutable), f"byte-flip: {count} byte(s)"
    if op == "insert-bytes":
        i = rng.randrange(len(data) + 1)
        blob = rng.choice(
            [b"\x00", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x1b[2J", b"\r"]
        )
        return data[:i] + blob + data[i:], f"insert-bytes: {blob!r} at {i}"
    lines = _lines(data)
    if op == "delete-line" and len(lines) > 1:
        i = rng.randrange(len(lines))
        del lines[i]
        return b"\n".join(lines), f"delete-line: {i + 1}"
    if op == "duplicate-line":
        i = rng.randrange(len(lines))
        times = rng.choice([1, 1, 2, 1000])
        lines[i:i] = [lines[i]] * times
        return b"\n".join(lines), f"duplicate-line: {i + 1} x{times}"
    if op == "swap-lines" and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines), f"swap-lines: {i + 1} and {j + 1}"
    if op == "indent":
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            lines[i] = b" " * rng.choice([1, 3, 40]) + lines[i]
        else:
            lines[i] = lines[i].lstrip()
        return b"\n".join(lines), f"indent: line {i + 1}"
    if op == "tabs":
        return data.replace(b"  ", b"\t"), "tabs: indentation as tabs"
    if op == "bom":
        kind = rng.choice(["utf8", "double", "middle", "utf16", "utf32"])
        if kind == "utf8":
            return b"\xef\xbb\xbf" + data, "bom: UTF-8 BOM"
        if kind == "double":
            return b"\xef\xbb\xbf\xef\xbb\xbf" + data, "bom: two UTF-8 BOMs"
        if kind == "middle":
            i = rng.randrange(len(data) + 1)
            return data[:i] + b"\xef\xbb\xbf" + data[i:], f"bom: UTF-8 BOM at byte {i}"
        encoding = "utf-16" if kind == "utf16" else "utf-32"
        text = data.decode("utf-8", "replace")
        return text.encode(encoding), f"bom: whole file as {encoding} with its BOM"
    if op == "crlf":
        kind = rng.choice(["crlf", "cr", "mixed", "nel", "ls"])
        if kind == "crlf":
            return data.replace(b"\n", b"\r\n"), "crlf: CRLF line ends"
        if kind == "cr":
            return data.replace(b"\n", b"\r"), "crlf: CR line ends"
        if kind == "mixed":
            out = b"".join(line + rng.choice([b"\n", b"\r\n", b"\r"]) for line in lines)
            return out, "crlf: mixed line ends"
        if kind == "nel":
            return data.replace(b"\n", "\u0085".encode()), "crlf: NEL (U+0085) line ends"
        return data.replace(b"\n", "\u2028".encode()), "crlf: U+2028 line ends"
    if op == "documents":
        kind = rng.choice(["twice", "empty", "end", "scalar", "many-empty", "list", "half"])
        if kind == "twice":
            return data + b"\n---\n" + data, "documents: the document twice"
        if kind == "empty":
            return b"---\n" + data + b"\n---\n", "documents: empty documents around it"
        if kind == "end":
            return data + b"\n...\n", "documents: '...' end marker"
        if kind == "scalar":
            return data + b"\n--- 42\n", "documents: a scalar document after it"
        if kind == "many-empty":
            return b"---\n" * 5000 + data, "documents: 5000 empty documents before it"
        if kind == "list":
            return data + b"\n--- [1, 2]\n", "documents: a list document after it"
        half = data[: len(data) // 2]
        return data + b"\n---\n" + half, "documents: the document and half of it"
    if op == "control":
        i = rng.randrange(len(data) + 1)
        char = rng.choice(
            [
                "\x00",
                "\x01",
                "\x07",
                "\x08",
                "\x0b",
                "\x0c",
                "\x1b",
                "\x7f",
                "\x9b",
                "\ufffe",
                "\uffff",
                "\ud7ff",
                "\U0010ffff",
            ]
        )
        blob = char.encode("utf-8", "surrogatepass")
        return data[:i] + blob + data[i:], f"control: U+{ord(char):04X} at byte {i}"
    if op == "garbage":
        blob = rng.choice(
            [
                b": : :",
                b"- -",
                b"{",
                b"]",
                b"'",
                b'"',
                b"&",
                b"*",
                b"!",
                b"|",
                b">",
                b"? ",
                b"@",
                b"`",
                b"%",
                b"<<: *x",
                b"key: [unclosed",
                b"\x00" * 100,
            ]
        )
        i = rng.randrange(len(data) + 1)
        return data[:i] + blob + data[i:], f"garbage: {blob[:20]!r} at byte {i}"
    if op == "directive":
        directive = rng.choice(_DIRECTIVES)
        return directive + data, f"directive: {directive.splitlines()[0].decode()}"
    if op == "tag-line":
        i = rng.randrange(len(lines))
        tag = rng.choice([b"!!python/object:os.system", b"!foo", b"!!binary", b"!!set", b"!!omap"])
        head, sep, tail = lines[i].partition(b": ")
        if sep:
            lines[i] = head + sep + tag + b" " + tail
        else:
            lines[i] = tag + b" " + lines[i]
        return b"\n".join(lines), f"tag-line: {tag.decode()} on line {i + 1}"
    if op == "ini-cycle":
        kind = rng.choice(["pair", "self", "triangle"])
        cycle = {
            "pair": b"\n[gpu:children]\nedge\n[edge:children]\ngpu\n",
            "self": b"\n[gpu:children]\ngpu\n",
            "triangle": b"\n[a:children]\nb\n[b:children]\nc\n[c:children]\na\n[gpu:children]\na\n",
        }[kind]
        return data + cycle, f"ini-cycle: {kind}"
    if op == "ini-section":
        header = rng.choice(
            [
                b"[]",
                b"[gpu:vars",
                b"[gpu:other]",
                b"[" + b"g" * 300 + b"]",
                b"[all:vars]\nx",
                b"[gpu]\n'unclosed",
                b"[gpu]\nhost ansible_port=99999999999999999999",
                b"[gpu]\nhost ansible_host=" + b"h" * 300,
            ]
        )
        return data + b"\n" + header + b"\n", f"ini-section: {header[:30]!r}"
    return data, "unchanged: mutation did not apply"


def _mutate_text(rng: random.Random, data: bytes, *, ini: bool = False) -> tuple[bytes, list[str]]:
    mutations = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data, described = _text_mutation(rng, data, ini=ini)
        mutations.append(described)
    return data, mutations


@dataclass
class CaseResult:
    case: Case
    outcomes: list[Outcome]
    violations: list[tuple[Outcome, list[str]]]
    folder: Path | None = None
    confirmed_by: str = ""

    @property
    def accepted(self) -> bool:
        """Whether the first command (validate, or plan) exited 0."""
        return bool(self.outcomes) and self.outcomes[0].code == 0


class Confirmer:
    """Reruns screened failures in a fresh ``python -m deployer`` (:class:`SubprocessRunner`),
    at most ``per_symptom`` cases for each symptom (:func:`signature`): the rest of a group that
    fails the same way keeps the screening's verdict, saying so. Thread-safe."""

    def __init__(self, per_symptom: int = 2) -> None:
        self.runner = SubprocessRunner()
        self.per_symptom = per_symptom
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Cases the screening failed and the rerun passed (the fork server differs there).
        self.unconfirmed: list[Case] = []

    def wanted(self, result: CaseResult) -> bool:
        with self._lock:
            keys = {signature(outcome) for outcome, _ in result.violations}
            if all(self._seen.get(k, 0) >= self.per_symptom for k in keys):
                return False
            for k in keys:
                self._seen[k] = self._seen.get(k, 0) + 1
            return True


def run_case(
    case: Case,
    folder: Path,
    runner: ForkServer | SubprocessRunner,
    *,
    confirm: Confirmer | None = None,
) -> CaseResult:
    """Write ``case`` into ``folder`` (emptied first), run its commands, check each outcome.

    With ``confirm``, a case that broke the promise under the fork server is run again in fresh
    subprocesses and their verdict is the one reported (up to the confirmer's number of cases a
    symptom). A plan that breaks the promise on a manifest validate accepted is named as such.
    """
    result = _run_commands(case, folder, runner)
    result.confirmed_by = runner.name
    if not result.violations or confirm is None or isinstance(runner, SubprocessRunner):
        return result
    if not confirm.wanted(result):
        result.confirmed_by = (
            f"{runner.name} only (its symptom was confirmed by {confirm.runner.name} in "
            f"{confirm.per_symptom} other cases)"
        )
        return result
    confirmed = _run_commands(case, folder, confirm.runner)
    confirmed.confirmed_by = f"{confirm.runner.name} (screened by {runner.name})"
    if not confirmed.violations:
        with confirm._lock:
            confirm.unconfirmed.append(case)
    return confirmed


def _run_commands(case: Case, folder: Path, runner: ForkServer | SubprocessRunner) -> CaseResult:
    shutil.rmtree(folder, ignore_errors=True)
    case.write(folder)
    (folder / "CASE.txt").unlink()
    env = base_env(folder)
    outcomes, violations = [], []
    validated = False
    for command in case.commands:
        outcome = runner.run(command, folder, env)
        outcomes.append(outcome)
        problems = check(outcome)
        if problems and command[0] == "plan" and validated:
            problems.append("plan broke the promise on a manifest validate accepted")
        if problems:
            violations.append((outcome, problems))
        if outcome.timed_out:
            break  # plan reads the file as validate does: it would hang as long again
        if command[0] == "validate":
            validated = outcome.code == 0
    return CaseResult(case, outcomes, violations, folder)


def keep_reproducer(result: CaseResult, failures: Path) -> Path:
    """Copy a failing case into ``failures/seed-S-case-N/`` with CASE.txt (what it is and how
    to rerun it) and each command's output; returns that folder."""
    folder = failures / result.case.slug
    shutil.rmtree(folder, ignore_errors=True)
    result.case.write(folder)
    report = [result.case.describe(), f"verdict from: {result.confirmed_by}"]
    for outcome, problems in result.violations:
        report.append(f"\n$ deployer {' '.join(outcome.command)}  ->  exit {outcome.code}")
        report.extend(f"  broke: {p}" for p in problems)
        report.append("--- stderr (last 40 lines) ---")
        report.extend(outcome.stderr.splitlines()[-40:])
    (folder / "CASE.txt").write_text("\n".join(report) + "\n")
    return folder


# --- a whole run -------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """The results of a run of cases of one or more targets."""

    seed: int
    results: list[CaseResult]
    seconds: float
    failures: Path
    runner: str
    unconfirmed: list[Case] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.violations]

    def groups(self) -> dict[str, list[CaseResult]]:
        """Broken commands by the signature of their symptom, each with its case."""
        found: dict[str, list[tuple[CaseResult, Outcome, list[str]]]] = {}
        for result in self.failed:
            for outcome, problems in result.violations:
                found.setdefault(signature(outcome), []).append((result, outcome, problems))
        return dict(sorted(found.items(), key=lambda item: -len(item[1])))

    def failure_message(self) -> str:
        failed = self.failed
        lines = [
            f"{len(failed)} of {len(self.results)} cases broke the promise (seed {self.seed}, "
            f"runner {self.runner}, verdicts from a fresh `python -m deployer`); each failing "
            f"case's files, outputs and rerun commands are in {self.failures}/<case>/CASE.txt"
        ]
        for sig, members in self.groups().items():
            first, outcome, problems = members[0]
            lines.append(f"[{len(members)} case(s)] {sig}")
            lines.append(f"    broke: {'; '.join(problems)}")
            lines.append(f"    symptom: {symptom(outcome)}")
            lines.append(f"    first: {first.case.label}: {'; '.join(first.case.mutations)[:300]}")
            lines.append(f"    verdict from: {first.confirmed_by}")
            lines.append(f"    reproducer: {self.failures / first.case.slug}/")
            lines.append(f"    rerun there: {reproducer(outcome.command)}")
            others = ", ".join(str(m.case.index) for m, _, _ in members[1:12])
            if others:
                lines.append(f"    also cases: {others}{' ...' if len(members) > 12 else ''}")
        if self.unconfirmed:
            lines.append(
                f"({len(self.unconfirmed)} case(s) failed under the fork server only, not in a "
                "fresh subprocess: " + ", ".join(c.label for c in self.unconfirmed[:5]) + ")"
            )
        return "\n".join(lines)


def fuzz(
    seed: int,
    plan: dict[str, int],
    scratch: Path,
    failures: Path,
    *,
    workers: int = 2,
    runner: str = "fork",
    start: int = 0,
    progress: Callable[[CaseResult], None] | None = None,
) -> FuzzReport:
    """Run ``plan[target]`` cases of each target (indices from ``start``), ``workers`` at a
    time; failing cases are confirmed by fresh subprocesses (see :class:`Confirmer`) and kept in
    ``failures`` (:func:`keep_reproducer`)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = RunnerPool(scratch / "runners", runner)
    confirm = Confirmer()
    jobs = [(t, i) for t, n in plan.items() for i in range(start, start + n)]
    local = threading.local()
    counter = iter(range(1_000_000))
    counter_lock = threading.Lock()

    def one(job: tuple[str, int]) -> CaseResult:
        if not hasattr(local, "folder"):
            with counter_lock:
                local.folder = scratch / f"worker-{next(counter)}" / "case"
        case = make_case(seed, *job)
        result = run_case(case, local.folder, pool.get(), confirm=confirm)
        if result.violations:
            keep_reproducer(result, failures)
        if progress is not None:
            progress(result)
        return result

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers) as executor:
            results = list(executor.map(one, jobs))
    finally:
        pool.close()
    seconds = time.perf_counter() - started
    return FuzzReport(seed, results, seconds, failures, runner, confirm.unconfirmed)
