"""The dashboard's static files, shipped inside the package (no CDN, works air-gapped).

static/vendor/ holds htmx and uPlot exactly as their pinned npm packages publish them, each with
its LICENSE, and VENDORED.json with every file's sha256; scripts/vendor_web_assets.py writes and
verifies them. The server mounts static_dir() as it is.
"""

from __future__ import annotations

from pathlib import Path

_STATIC = Path(__file__).resolve().parent / "static"


def static_dir() -> Path:
    """The folder to serve as the dashboard's /static (vendor/ inside it)."""
    return _STATIC


def vendored_manifest() -> Path:
    """VENDORED.json: each vendored package, its version, integrity and files' sha256."""
    return _STATIC / "vendor" / "VENDORED.json"
