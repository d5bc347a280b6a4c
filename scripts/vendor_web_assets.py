#!/usr/bin/env python3
"""Vendor the dashboard's JavaScript and CSS from pinned npm packages, with no Node involved.

Each package's registry tarball is downloaded, checked against the sha512 integrity pinned below
(the SRI string package-lock.json records), and only the files the dashboard serves are taken
from it, with the package's LICENSE beside them, into deployer/web/static/vendor/<dir>/.
VENDORED.json there names each package, version, integrity and every file's sha256.

Idempotent: when every file on disk matches VENDORED.json and the pins, nothing is fetched.
`--check` only verifies (exit 1 on any difference) and never touches the network.

    python scripts/vendor_web_assets.py           # fetch what is missing or different
    python scripts/vendor_web_assets.py --check   # verify the committed files
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "deployer" / "web" / "static" / "vendor"
MANIFEST = VENDOR / "VENDORED.json"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    name: str  # the npm package
    version: str
    integrity: str  # sha512 SRI of the registry tarball
    directory: str  # under vendor/
    files: tuple[str, ...]  # paths inside the tarball's package/ folder, LICENSE last

    @property
    def tarball_url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    Package(
        name="htmx.org",
        version="2.0.11",
        integrity="sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        directory="htmx",
        files=("dist/htmx.min.js", "LICENSE"),
    ),
    Package(
        name="uplot",
        version="1.6.32",
        integrity="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        directory="uplot",
        files=("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"),
    ),
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def target(package: Package, member: str) -> Path:
    return VENDOR / package.directory / Path(member).name


def manifest_entry(package: Package, hashes: dict[str, str]) -> dict[str, object]:
    return {
        "package": package.name,
        "version": package.version,
        "integrity": package.integrity,
        "tarball": package.tarball_url,
        "files": hashes,
    }


def problems() -> list[str]:
    """What differs between the pins, VENDORED.json and the files on disk (empty: all match)."""
    if not MANIFEST.is_file():
        return [f"{MANIFEST.relative_to(ROOT)} is missing"]
    recorded = {entry["package"]: entry for entry in json.loads(MANIFEST.read_text())["packages"]}
    found: list[str] = []
    if set(recorded) != {p.name for p in PACKAGES}:
        pins = [p.name for p in PACKAGES]
        found.append(f"VENDORED.json lists {sorted(recorded)}, the pins {pins}")
    for package in PACKAGES:
        entry = recorded.get(package.name)
        if entry is None:
            continue
        if (entry["version"], entry["integrity"]) != (package.version, package.integrity):
            found.append(
                f"{package.name}: VENDORED.json has {entry['version']}, pinned {package.version}"
            )
        expected = {f"{package.directory}/{target(package, m).name}" for m in package.files}
        if set(entry["files"]) != expected:
            found.append(f"{package.name}: VENDORED.json lists {sorted(entry['files'])}")
        for relative, digest in entry["files"].items():
            path = VENDOR / relative
            if not path.is_file():
                found.append(f"{relative} is missing")
            elif sha256(path.read_bytes()) != digest:
                found.append(f"{relative} differs from its sha256 in VENDORED.json")
    return found


def fetch(package: Package) -> bytes:
    url = package.tarball_url
    if not url.startswith("https://"):
        raise SystemExit(f"refusing a non-https tarball URL: {url}")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https only, above)
        data: bytes = response.read()
    actual = sri_sha512(data)
    if actual != package.integrity:
        raise SystemExit(
            f"{package.name}@{package.version}: integrity {actual}, pinned {package.integrity}"
        )
    return data


def extract(package: Package, tarball: bytes) -> dict[str, str]:
    """Write the package's chosen files (read by name: nothing else leaves the tarball)."""
    hashes: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in package.files:
            source = archive.extractfile(f"package/{member}")
            if source is None:
                raise SystemExit(f"{package.name}: package/{member} is not a file")
            data = source.read()
            path = target(package, member)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            hashes[f"{package.directory}/{path.name}"] = sha256(data)
    return hashes


def vendor() -> int:
    if not problems():
        print(f"vendor: all {len(PACKAGES)} packages match {MANIFEST.name}; nothing to do")
        return 0
    entries = []
    for package in PACKAGES:
        print(f"vendor: {package.name}@{package.version} from {package.tarball_url}")
        entries.append(manifest_entry(package, extract(package, fetch(package))))
    MANIFEST.write_text(json.dumps({"packages": entries}, indent=2) + "\n")
    left = problems()
    for problem in left:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if left else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify only; never fetch")
    args = parser.parse_args()
    if args.check:
        found = problems()
        for problem in found:
            print(f"error: {problem}", file=sys.stderr)
        print("vendor: ok" if not found else f"vendor: {len(found)} problem(s)")
        return 1 if found else 0
    return vendor()


if __name__ == "__main__":
    sys.exit(main())
