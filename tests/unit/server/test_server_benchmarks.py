"""A deployment's stored benchmarks through the real application on a real SQLite state: the API
lists them with their figures, the picture is served as SVG, the deployment page shows the newest
one's load points with the best point marked (and says when it measured another revision), and
none of it answers without a token or a session. The results are stored as ``deployer bench``
stores them; no engine runs."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from deployer.settings import Settings
from deployer.state import DeploymentStatus, StateStore
from tests.support.bench_examples import DIGEST_A, DIGEST_B, demo_run, partial_run, store
from tests.unit.server.test_server_pages import log_in

NAME = "smollm2-demo"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")
    with StateStore(settings.database_url) as state:
        state.upsert_deployment(
            NAME, target_kind="local", status=DeploymentStatus.FAILED, manifest_digest=DIGEST_A
        )
        state.upsert_deployment("fresh", target_kind="local", status=DeploymentStatus.FAILED)
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_lists_the_stored_figures_newest_first(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    older = store(settings, partial_run())
    newer = store(settings, demo_run())
    other = store(settings, demo_run(manifest_digest=DIGEST_B))
    url = f"/api/v1/deployments/{NAME}/benchmarks"
    answer = client.get(url, headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [i["id"] for i in items] == [other, newer, older]
    assert [i["manifest_digest"] for i in items] == [DIGEST_B, DIGEST_A, DIGEST_A]
    assert [i["current_revision"] for i in items] == [False, True, True]
    assert [i["status"] for i in items] == ["complete", "complete", "partial"]

    whole = items[1]
    first = whole["points"][0]
    assert (first["kind"], first["value"]) == ("concurrent", 1)
    assert first["requests_per_second"] == 0.24
    assert first["output_tokens_per_second"] == 30.5
    assert (first["ttft_ms"]["p50"], first["ttft_ms"]["p99"]) == (58, 81)
    assert (first["itl_ms"]["p99"], first["e2e_ms"]["p99"]) == (15.2, 4700)
    assert first["attainment"] == 1.0
    assert [p["meets_slo"] for p in whole["points"]] == [True, True, False]
    assert whole["points"][2]["missed"] == ["TTFT p99 396 ms > 300 ms", "ITL p99 39 ms > 30 ms"]
    # The best SLO-meeting point: concurrency 2 (not 4, the peak, which misses the SLO).
    assert whole["best_index"] == 1
    assert whole["best"]["value"] == 2
    assert whole["best"]["output_tokens_per_second"] == 52.8
    assert whole["picture"] == f"/api/v1/deployments/{NAME}/benchmarks/{newer}/latency.svg"
    # A partial result is never priced from: it has no best point.
    assert (items[2]["best"], items[2]["best_index"], len(items[2]["points"])) == (None, None, 2)

    current = client.get(f"{url}?every_revision=false&limit=1", headers=bearer(tokens["viewer"]))
    assert [i["id"] for i in current.json()["items"]] == [newer]
    none = client.get("/api/v1/deployments/fresh/benchmarks", headers=bearer(tokens["viewer"]))
    assert none.json() == {"items": []}


def test_the_picture_is_the_svg_of_latency_against_throughput_with_the_slo_line(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    found = store(settings, demo_run())
    answer = client.get(
        f"/api/v1/deployments/{NAME}/benchmarks/{found}/latency.svg",
        headers=bearer(tokens["viewer"]),
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/svg+xml"
    assert answer.headers["x-content-type-options"] == "nosniff"
    svg = ElementTree.fromstring(answer.content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    ids = {e.get("id") for e in svg.iter()}
    assert "slo-ttft_ms-p99-300" in ids  # the SLO target, a dashed line
    assert "best-0-ttft_ms" in ids  # the best point, a star
    assert "output tokens/s" in answer.text
    # Drawn once, then served from the stored file (the same bytes).
    drawn = settings.home / "benchmarks" / NAME / str(found) / "latency.svg"
    assert drawn.read_bytes() == answer.content
    again = client.get(
        f"/api/v1/deployments/{NAME}/benchmarks/{found}/latency.svg",
        headers=bearer(tokens["viewer"]),
    )
    assert again.content == answer.content


def test_an_unknown_benchmark_or_one_of_another_deployment_is_404(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    found = store(settings, demo_run())
    for url in (
        f"/api/v1/deployments/{NAME}/benchmarks/{found + 1}/latency.svg",
        f"/api/v1/deployments/fresh/benchmarks/{found}/latency.svg",
        "/api/v1/deployments/nobody/benchmarks",
    ):
        answer = client.get(url, headers=bearer(tokens["viewer"]))
        assert answer.status_code == 404, url
        assert answer.json()["code"] == "not_found", answer.text
    too_big = client.get(
        f"/api/v1/deployments/{NAME}/benchmarks/{2**63}/latency.svg",
        headers=bearer(tokens["viewer"]),
    )
    assert too_big.status_code == 422


def test_without_a_token_nothing_is_answered(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    found = store(settings, demo_run())
    for url in (
        f"/api/v1/deployments/{NAME}/benchmarks",
        f"/api/v1/deployments/{NAME}/benchmarks/{found}/latency.svg",
    ):
        missing = client.get(url)
        assert missing.status_code == 401, url
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.get(url, headers=bearer("dps_nope")).status_code == 401
    # The dashboard's session cookie reads it, as the page's <img> does.
    log_in(client, tokens["viewer"])
    assert client.get(f"/api/v1/deployments/{NAME}/benchmarks").status_code == 200


def _cells(html: str) -> list[list[str]]:
    table = re.search(r'<table id="bench-points">(.*?)</table>', html, re.S)
    assert table, html
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows[1:]
    ]


def test_the_page_shows_the_newest_results_points_with_the_best_marked(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    store(settings, partial_run())
    found = store(settings, demo_run())
    log_in(client, tokens["viewer"])
    page = client.get(f"/deployments/{NAME}").text
    assert _cells(page) == [
        ["concurrency 1", "0.24", "30.5", "58 ms", "81 ms", "15 ms", "4,700 ms", "100%", "yes"],
        ["concurrency 2 (best)", "0.41", "52.8", "104 ms", "212 ms", "24 ms", "5,650 ms", "98%",
         "yes"],
        ["concurrency 4", "0.66", "87.9", "205 ms", "396 ms", "39 ms", "7,390 ms", "71%",
         "no: TTFT p99 396 ms &gt; 300 ms; ITL p99 39 ms &gt; 30 ms"],
    ]  # fmt: skip
    assert len(re.findall(r'<tr class="best"', page)) == 1
    assert f'src="/api/v1/deployments/{NAME}/benchmarks/{found}/latency.svg"' in page
    assert "bench-other-revision" not in page
    assert "No benchmark yet" not in page


def test_the_page_labels_a_benchmark_of_another_revision(
    client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    store(settings, demo_run(manifest_digest=DIGEST_B))
    log_in(client, tokens["viewer"])
    page = client.get(f"/deployments/{NAME}").text
    other = re.search(r'<p id="bench-other-revision"[^>]*>(.*?)</p>', page, re.S)
    assert other, page
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", other.group(1)))
    assert DIGEST_B[:12] in text
    assert DIGEST_A[:12] in text
    assert "another revision than the one applied" in text


def test_a_deployment_without_a_benchmark_says_how_to_run_one(
    client: TestClient, tokens: dict[str, str]
) -> None:
    log_in(client, tokens["viewer"])
    page = client.get("/deployments/fresh").text
    assert "No benchmark yet: run <code>deployer bench fresh</code>." in page
    assert "bench-points" not in page
