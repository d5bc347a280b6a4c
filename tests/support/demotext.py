"""The demo manifest's text as tests and benchmarks edit it."""

from __future__ import annotations

from pathlib import Path

DEMO_MANIFEST = (
    Path(__file__).resolve().parents[2] / "model_manifests" / "demo" / "smollm2-135m.yaml"
)
#: Where the demo's spec.slo and spec.benchmark start and where they end (its smoke checks).
DEMO_MEASURED = ("  # What the demo must measure up to", "  smoke:\n")


def demo_unmeasured() -> str:
    """The demo manifest's text without its spec.slo and spec.benchmark, for a test or a
    benchmark that declares its own."""
    text = DEMO_MANIFEST.read_text()
    start, end = (text.index(mark) for mark in DEMO_MEASURED)
    return text[:start] + text[end:]
