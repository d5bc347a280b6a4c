"""Reading an engine's load from its metrics page: vLLM 0.32's real page, a renamed metric from
an older release, and pages that are not an engine's (garbage, another exporter, an error, too
large) served by a real HTTP server on the loopback; and the API reading every replica."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer.api import DeploymentView, engine_load
from deployer.metrics.engine_load import (
    MAX_PAGE_BYTES,
    EngineLoad,
    KvPool,
    ScrapeError,
    read,
    scrape,
)
from deployer.planner import ReplicaState
from deployer.state import DeploymentRecord, DeploymentStatus

#: The CPU build's /metrics after the demo answered one chat request (captured from a real
#: `deployer apply` of model_manifests/demo/smollm2-135m.yaml).
PAGE = (Path(__file__).parent / "vllm-0.32.0-cpu.prom").read_text()


def test_vllms_page_gives_requests_kv_use_tokens_and_latency() -> None:
    load = read(PAGE, at=100.0)
    assert load.engine == "vllm"
    assert (load.requests_running, load.requests_waiting, load.kv_cache_usage) == (0, 0, 0)
    assert load.prompt_tokens == 37  # the page's vllm:prompt_tokens_total
    assert load.generation_tokens == 8
    assert load.time_to_first_token is not None
    assert load.time_to_first_token.count == 1
    assert load.inter_token_latency is not None
    assert load.inter_token_latency.count == 7
    mean = load.inter_token_latency.mean
    assert mean is not None
    assert 0 < mean < 1
    assert load.inter_token_latency.buckets[-1] == (float("inf"), 7)
    assert load.renamed == ()


def test_the_engines_own_kv_pool_figures_are_read_from_its_cache_config() -> None:
    pool = read(PAGE).kv_pool
    # The page's vllm:cache_config_info labels (SmolLM2 at 2048 tokens, 512 MiB of KV).
    assert pool == KvPool(
        blocks=182,
        block_size=128,
        size_tokens=23296,
        max_concurrency=11.375,
        memory_bytes=536870912,
    )
    without = PAGE.replace('num_gpu_blocks="182"', 'num_gpu_blocks="None"')
    assert read(without).kv_pool is None


def test_an_older_releases_names_are_read_and_reported() -> None:
    older = PAGE.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc").replace(
        "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"
    )
    busy = older.replace(
        'vllm:gpu_cache_usage_perc{engine="0",model_name="smollm2-demo"} 0.0',
        'vllm:gpu_cache_usage_perc{engine="0",model_name="smollm2-demo"} 0.25',
    )
    load = read(busy)
    assert load.kv_cache_usage == 0.25
    assert load.inter_token_latency is not None
    assert load.inter_token_latency.count == 7
    assert set(load.renamed) == {
        "vllm:gpu_cache_usage_perc",
        "vllm:time_per_output_token_seconds",
    }


def test_tokens_per_second_between_two_readings() -> None:
    first = read(PAGE, at=100.0)
    later = replace(first, at=102.0, generation_tokens=48.0)
    assert later.tokens_per_second(first) == 20.0
    restarted = replace(first, at=103.0, generation_tokens=2.0)
    assert restarted.tokens_per_second(first) is None  # the counter went back


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ("<html>hello</html>", "not a Prometheus metrics page"),
        ("# TYPE node_load1 gauge\nnode_load1 0.5\n", "no engine metrics deployer knows"),
        ("", "no engine metrics deployer knows"),
    ],
    ids=["html", "another-exporter", "empty"],
)
def test_a_page_that_is_not_an_engines_is_refused(page: str, reason: str) -> None:
    with pytest.raises(ScrapeError, match=reason):
        read(page)


class _Server(http.server.ThreadingHTTPServer):
    status = 200
    body = b""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.send_response(self.server.status)
        self.end_headers()
        if self.path == "/metrics":
            self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    served = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=served.serve_forever, daemon=True).start()
    yield served
    served.shutdown()
    served.server_close()


def url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_scrape_reads_the_served_page(server: _Server) -> None:
    server.body = PAGE.encode()
    load = scrape(url(server))
    assert isinstance(load, EngineLoad)
    assert load.generation_tokens == 8


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b"boom", "answered HTTP 500"),
        (200, b"\x00\x01garbage{{{", "not a Prometheus metrics page"),
        (200, b"x" * (MAX_PAGE_BYTES + 1), "sent more than 4 MiB"),
    ],
    ids=["http-500", "garbage", "too-large"],
)
def test_a_failed_scrape_says_why(server: _Server, status: int, body: bytes, reason: str) -> None:
    server.status, server.body = status, body
    with pytest.raises(ScrapeError, match=reason):
        scrape(url(server))


def test_nothing_listening_is_a_scrape_failure() -> None:
    with pytest.raises(ScrapeError, match=r"127\.0\.0\.1:9/metrics"):
        scrape("http://127.0.0.1:9/v1", timeout=0.5)


def test_each_running_replica_is_read_and_one_failure_spares_the_others(server: _Server) -> None:
    server.body = PAGE.encode()
    now = datetime.now(UTC)
    record = DeploymentRecord(
        name="fleet",
        target_kind="ssh",
        status=DeploymentStatus.HEALTHY,
        manifest_path=None,
        manifest_digest=None,
        spec_digest=None,
        endpoint=url(server),
        served_model_name="fleet",
        message=None,
        created_at=now,
        updated_at=now,
        last_run_id=None,
    )
    replicas = (
        ReplicaState(host="a", endpoint=url(server), running=True, healthy=True),
        ReplicaState(host="b", endpoint="http://127.0.0.1:9/v1", running=True, healthy=False),
        ReplicaState(host="c", endpoint="http://127.0.0.1:10/v1", running=False, healthy=False),
    )
    view = DeploymentView(
        record=record, running=True, healthy=True, pid=None, detail=None, replicas=replicas
    )
    loads = engine_load([view])
    assert set(loads) == {url(server), "http://127.0.0.1:9/v1"}  # c is not running
    served = loads[url(server)]
    assert isinstance(served, EngineLoad)
    assert served.generation_tokens == 8
    assert "127.0.0.1:9/metrics" in str(loads["http://127.0.0.1:9/v1"])
