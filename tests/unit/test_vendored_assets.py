"""The committed vendor files are exactly what VENDORED.json and the script's pins say."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from deployer.web import static_dir, vendored_manifest

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vendor_web_assets", ROOT / "scripts" / "vendor_web_assets.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_vendored_file_matches_its_sha256() -> None:
    manifest = json.loads(vendored_manifest().read_text())
    vendor = static_dir() / "vendor"
    listed = set()
    for entry in manifest["packages"]:
        for relative, digest in entry["files"].items():
            listed.add(relative)
            assert hashlib.sha256((vendor / relative).read_bytes()).hexdigest() == digest, relative
    on_disk = {
        str(p.relative_to(vendor)) for p in vendor.rglob("*") if p.is_file() and p.parent != vendor
    }
    assert on_disk == listed  # nothing unlisted sits in vendor/
    assert {"htmx/htmx.min.js", "htmx/LICENSE", "uplot/uPlot.iife.min.js"} <= listed


def test_manifest_agrees_with_the_scripts_pins() -> None:
    script = _script()
    assert static_dir() / "vendor" == script.VENDOR
    assert script.problems() == []
    manifest = json.loads(vendored_manifest().read_text())
    pinned = {p.name: (p.version, p.integrity) for p in script.PACKAGES}
    recorded = {e["package"]: (e["version"], e["integrity"]) for e in manifest["packages"]}
    assert recorded == pinned
    assert all(i.startswith("sha512-") for _, i in pinned.values())


def test_a_hand_edited_vendor_file_is_caught(tmp_path: Path, monkeypatch) -> None:
    script = _script()
    copy = tmp_path / "vendor"
    for path in (static_dir() / "vendor").rglob("*"):
        if path.is_file():
            dest = copy / path.relative_to(static_dir() / "vendor")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    monkeypatch.setattr(script, "VENDOR", copy)
    monkeypatch.setattr(script, "MANIFEST", copy / "VENDORED.json")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    assert script.problems() == []
    edited = copy / "htmx" / "htmx.min.js"
    edited.write_bytes(edited.read_bytes() + b"\n// local change\n")
    assert script.problems() == ["htmx/htmx.min.js differs from its sha256 in VENDORED.json"]
    (copy / "uplot" / "LICENSE").unlink()
    assert "uplot/LICENSE is missing" in script.problems()


def test_sri_matches_the_npm_form() -> None:
    # The integrity string npm writes for b"": sha512 of nothing, base64.
    assert _script().sri_sha512(b"") == (
        "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="
    )
