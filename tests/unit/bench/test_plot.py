"""The picture: latency against throughput, the SLO line where the SLO says, the best point
marked, the same bytes for the same results. The SVG is read back the way a person reads the
chart: a drawn line's height against the axis' tick labels."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.bench.plot import draw, panel_metrics
from deployer.bench.results import BenchResult
from deployer.manifest.performance import SloSpec
from tests.support.bench_examples import demo_run, partial_run, tuned_run

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "bench"
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"


def drawn(results: list[BenchResult], name: str) -> ET.Element:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png, svg = ARTIFACTS / f"{name}.png", ARTIFACTS / f"{name}.svg"
    draw(results, png, svg)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return ET.fromstring(svg.read_bytes())


@pytest.fixture(scope="module")
def two_runs() -> ET.Element:
    """Run A and run B in one picture (also left in test-artifacts/bench to look at)."""
    return drawn([demo_run(), tuned_run()], "demo-vs-tuned")


def group(root: ET.Element, gid: str) -> ET.Element:
    found = root.find(f".//{SVG}g[@id='{gid}']")
    assert found is not None, f"no <g id={gid!r}> in the SVG"
    return found


def scale(panel: ET.Element, axis: str) -> Callable[[float], float]:
    """Pixel -> data value along ``axis`` ('x' or 'y'), from the panel's tick marks and labels."""
    ticks = []
    for tick in panel.iter(f"{SVG}g"):
        if not tick.get("id", "").startswith(f"{axis}tick_"):
            continue
        mark = tick.find(f".//{SVG}use")
        label = tick.find(f".//{SVG}text")
        assert mark is not None
        assert label is not None
        ticks.append((float(mark.get(axis, "nan")), float(label.text or "nan")))
    (p0, v0), (p1, v1) = ticks[0], ticks[-1]
    return lambda pixel: v0 + (pixel - p0) * (v1 - v0) / (p1 - p0)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_the_slo_line_is_drawn_at_the_target(two_runs: ET.Element) -> None:
    root = two_runs
    for metric, target in (("ttft_ms", 300), ("itl_ms", 30)):
        panel = group(root, f"panel-{metric}")
        path = group(panel, f"slo-{metric}-p99-{target}").find(f"{SVG}path")
        assert path is not None
        _, y_start, _, y_end = (float(v) for v in re.findall(r"[\d.]+", path.get("d", "")))
        assert y_start == y_end  # horizontal
        assert scale(panel, "y")(y_start) == pytest.approx(target, abs=target * 0.002)
    assert "SLO TTFT p99 300 ms" in texts(root)
    assert "SLO ITL p99 30 ms" in texts(root)


def test_each_run_s_best_slo_meeting_point_is_marked(two_runs: ET.Element) -> None:
    root = two_runs
    panel = group(root, "panel-ttft_ms")
    to_x, to_y = scale(panel, "x"), scale(panel, "y")
    for gid, (tokens, ttft) in (("best-0-ttft_ms", (52.8, 212)), ("best-1-ttft_ms", (99.3, 268))):
        star = group(panel, gid).find(f".//{SVG}use")
        assert star is not None
        assert to_x(float(star.get("x", "nan"))) == pytest.approx(tokens, abs=0.2)
        assert to_y(float(star.get("y", "nan"))) == pytest.approx(ttft, abs=0.5)
    labels = texts(root)
    assert labels.count("c=2, best") == 2  # run A, in both panels
    assert labels.count("c=4, best") == 2  # run B
    assert "c=1" in labels
    legend = " ".join(labels)
    assert "smollm2-demo run 41" in legend
    assert "smollm2-demo run 57" in legend


def test_a_partial_run_has_no_best_point_and_says_partial() -> None:
    root = drawn([partial_run()], "partial")
    assert root.find(f".//{SVG}g[@id='best-0-ttft_ms']") is None
    assert any(t.endswith(", partial") for t in texts(root))


def test_the_same_results_draw_the_same_bytes(tmp_path: Path) -> None:
    for name in ("one", "two"):
        draw([demo_run(), tuned_run()], tmp_path / f"{name}.png", tmp_path / f"{name}.svg")
    assert (tmp_path / "one.svg").read_bytes() == (tmp_path / "two.svg").read_bytes()
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()


def test_one_panel_per_metric_the_slo_sets() -> None:
    batch = SloSpec.model_validate({"preset": "batch"}).model_dump(by_alias=True, mode="json")
    assert panel_metrics([demo_run(slo=batch)]) == [("e2e_ms", "p99")]
    assert panel_metrics([demo_run(slo=None)]) == [("ttft_ms", "p99"), ("itl_ms", "p99")]
    p90 = {"ttftMs": {"p90": 250}, "e2eMs": {"p50": 4000}}
    assert panel_metrics([demo_run(slo=p90)]) == [("ttft_ms", "p90"), ("e2e_ms", "p50")]
    # Two runs: each metric at the highest percentile either sets.
    assert panel_metrics([demo_run(slo=p90), demo_run()]) == [
        ("ttft_ms", "p99"),
        ("itl_ms", "p99"),
        ("e2e_ms", "p50"),
    ]


def test_without_an_slo_there_is_no_slo_line() -> None:
    root = drawn([demo_run(slo=None)], "no-slo")
    gids = [g.get("id", "") for g in root.iter(f"{SVG}g")]
    assert "panel-ttft_ms" in gids
    assert not [g for g in gids if g.startswith("slo-")]
    assert "best-0-ttft_ms" in gids  # without an SLO, the point with the most tokens/s


def test_nothing_to_draw_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        draw([], tmp_path / "x.png", tmp_path / "x.svg")


def test_matplotlib_is_imported_only_when_drawing() -> None:
    code = (
        "import sys, deployer.bench.plot, deployer.bench.report, deployer.bench.compare, "
        "deployer.cli.main; print('matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
