"""``deployer status --watch``: a live table of every deployment and its engine's load.

Each refresh reads the state and every running engine's metrics (requests running and waiting,
KV cache use, generated tokens per second since the last refresh, mean time to first token and
between tokens since the engine started); a multi-host deployment has a row per replica, each
with its own engine's load. An engine whose metrics cannot be read shows why in its row; the
others still refresh. Ctrl-C (or SIGTERM) ends it, leaving the last table on the screen; it
also ends when started from a shell that ignores SIGINT (a background job), where Ctrl-C
would otherwise be lost.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from deployer import api
from deployer.cli.context import STATE
from deployer.cli.render import liveness

if TYPE_CHECKING:
    from deployer.api import DeploymentView
    from deployer.api.types import EngineLoad

COLUMNS = (
    "name",
    "status",
    "live",
    "target",
    "running",
    "waiting",
    "KV cache",
    "tokens/s",
    "TTFT",
    "ITL",
    "last run",
)


def watch(name: str | None, include_destroyed: bool, interval: float) -> None:
    """Redraw the table every ``interval`` seconds until interrupted."""
    settings = STATE.settings()
    previous: dict[str, EngineLoad] = {}
    with _ends_on_signal():
        try:
            with Live(console=STATE.console, auto_refresh=False) as live:
                while True:
                    views = api.status(settings, name, include_destroyed=include_destroyed)
                    loads = api.engine_load(views)
                    live.update(_table(views, loads, previous), refresh=True)
                    previous = {k: v for k, v in loads.items() if not isinstance(v, str)}
                    time.sleep(interval)
        except KeyboardInterrupt:
            pass  # Live has drawn its last table on the way out


@contextmanager
def _ends_on_signal() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, whatever the process inherited."""

    def interrupt(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _table(
    views: list[DeploymentView],
    loads: dict[str, EngineLoad | str],
    previous: dict[str, EngineLoad],
) -> Table:
    table = Table(box=None, caption=f"refreshed {time.strftime('%H:%M:%S')}; Ctrl-C ends")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in COLUMNS[4:10] else "left")
    if not views:
        table.add_row("no deployments", *[""] * (len(COLUMNS) - 1))
    for view in views:
        endpoint = view.record.endpoint or ""
        table.add_row(
            view.record.name,
            view.record.status.value,
            liveness(view.healthy, view.running),
            view.record.target_kind,
            # A multi-host deployment's load is on its replicas' rows, one engine each.
            *_load_cells(None if view.replicas else loads.get(endpoint), previous.get(endpoint)),
            view.last_run.status.value if view.last_run else "-",
        )
        for replica in view.replicas:
            table.add_row(
                f"  └ {escape(replica.host)}",
                "",
                liveness(replica.healthy, replica.running, "down"),
                "",
                *_load_cells(loads.get(replica.endpoint), previous.get(replica.endpoint)),
                "",
            )
    return table


def _load_cells(load: EngineLoad | str | None, earlier: EngineLoad | None) -> list[str]:
    if load is None:
        return ["-"] * 6
    if isinstance(load, str):
        return [f"[red]metrics: {escape(load)}[/]", *[""] * 5]
    rate = load.tokens_per_second(earlier) if earlier else None
    return [
        _number(load.requests_running),
        _number(load.requests_waiting),
        f"{load.kv_cache_usage:.1%}" if load.kv_cache_usage is not None else "-",
        f"{rate:.1f}" if rate is not None else "-",
        _ms(load.time_to_first_token.mean if load.time_to_first_token else None),
        _ms(load.inter_token_latency.mean if load.inter_token_latency else None),
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"
