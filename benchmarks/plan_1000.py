"""Validate and plan 1,000 manifests (variations of the examples) offline; aim: under 5 s.

Variations change the name, context length, accelerator, count and quantization of the GPU
examples; they are written to a temporary folder, so the relative paths an example holds (an ssh
target's inventory, say) are made absolute first. Planning uses deployer's catalog of published
configs (no lock, no network: HF_ENDPOINT points at a closed port). Baselines in the same run:
only parsing the same YAML files, with ruamel's pure-Python safe loader and with PyYAML's libyaml
loader (deployer's fast path parses with libyaml). ``--quick`` does 20 manifests, for CI (no
figure is asserted).

    .venv/bin/python benchmarks/plan_1000.py [--count N] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, table
from ruamel.yaml import YAML

sys.path.insert(0, str(ROOT))  # the checkout's deployer, before any installed copy

from deployer import api
from deployer.errors import PlanError
from deployer.settings import Settings

ACCELERATORS = ["L4", "L40S", "A10G", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "MI300X"]
LENGTHS = [2048, 4096, 8192]
QUICK_COUNT = 20
#: Keys whose values are paths relative to the manifest's file (see deployer.manifest.models);
#: signatureFile is inside the model, not beside the manifest.
PATH_KEYS = {"inventory", "path", "file", "publicKey", "certificateChain"}


def absolute_paths(value: Any, folder: Path) -> None:
    """Make every relative path below ``value`` (a manifest's tree) relative to ``folder``
    absolute, in place; '~' and $VARS are left for deployer to expand."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in PATH_KEYS:
                value[key] = _absolute(item, folder)
            else:
                absolute_paths(item, folder)
    elif isinstance(value, list):
        for item in value:
            absolute_paths(item, folder)


def _absolute(value: Any, folder: Path) -> Any:
    if isinstance(value, list):
        return [_absolute(item, folder) for item in value]
    if not isinstance(value, str) or value.startswith(("~", "$")) or Path(value).is_absolute():
        return value
    return str(folder / value)


def variations(count: int, folder: Path) -> list[Path]:
    yaml = YAML()
    examples = [p for p in sorted((ROOT / "model_manifests").glob("*.yaml"))]
    folder.mkdir(parents=True, exist_ok=True)
    # The example varies fastest, so that any count from 5 up has every example.
    combos = itertools.cycle(itertools.product(ACCELERATORS, LENGTHS, ["auto", 1, 2], examples))
    paths = []
    for i, (accelerator, length, devices, example) in zip(range(count), combos, strict=False):
        doc = yaml.load(example.read_text())
        absolute_paths(doc["spec"], example.parent)
        doc["metadata"]["name"] = f"v{i}"
        doc["spec"]["serving"]["maxModelLen"] = length
        doc["spec"]["resources"] = {"accelerator": accelerator, "count": devices}
        doc["spec"]["quantize"] = {"method": "fp8" if i % 5 == 0 else "none"}
        path = folder / f"v{i}.yaml"
        with path.open("w") as out:
            yaml.dump(doc, out)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT} manifests, for CI")
    args = parser.parse_args()
    count = QUICK_COUNT if args.quick else args.count
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = variations(count, folder / "manifests")
        settings = Settings(home=folder / "home", cache=folder / "cache")

        started = time.perf_counter()
        for path in paths:
            YAML(typ="safe").load(path.read_text())
        parse_only = time.perf_counter() - started
        started = time.perf_counter()
        for path in paths:
            yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        parse_c = time.perf_counter() - started

        started = time.perf_counter()
        api.validate([folder / "manifests"])
        validated = time.perf_counter() - started
        fits = refused = 0
        for path in paths:
            try:
                api.plan(path, settings)  # loads and validates its manifest again
                fits += 1
            except PlanError:
                refused += 1
        total = time.perf_counter() - started
    table(
        [
            ("manifests", f"{count} ({fits} fit, {refused} refused with a reason)"),
            ("baseline: parse the YAML only (ruamel, pure Python)", f"{parse_only:.2f} s"),
            ("baseline: parse the YAML only (PyYAML CSafeLoader)", f"{parse_c:.2f} s"),
            ("validate all (deployer validate FOLDER)", f"{validated:.2f} s"),
            ("plan each (deployer plan FILE, validating it)", f"{total - validated:.2f} s"),
            ("validate all + plan each (aim < 5 s)", f"{total:.2f} s"),
            ("per manifest", f"{total / count * 1000:.1f} ms"),
            ("ratio to parsing alone (ruamel)", f"{total / parse_only:.1f}"),
            ("ratio to parsing alone (CSafeLoader)", f"{total / parse_c:.1f}"),
        ]
    )


if __name__ == "__main__":
    main()
