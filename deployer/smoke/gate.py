"""The SLO gate of a rollout: a short benchmark of the new engine against ``spec.slo`` before it
takes traffic (``rollout.gate: slo``).

The plan executor calls :func:`slo_gate` with the new engine's own endpoint; the verdict decides
whether the switch happens. The load itself is the bench runner's job (GuideLLM, in
``deployer/bench/``), which is not part of this deployer yet: until it is wired here, the gate
refuses to pass (a rollout asking for it rolls back, saying why) rather than pretend it measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from deployer.errors import UnsupportedError
from deployer.manifest.performance import SloSpec


@dataclass(frozen=True)
class GateVerdict:
    """Whether the new engine met the SLO, why, and what was measured (name -> value, e.g.
    ``ttft_ms_p99``), for the run's failure and the record."""

    passed: bool
    reason: str
    measured: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        figures = ", ".join(f"{name} {value:g}" for name, value in sorted(self.measured.items()))
        return f"{self.reason} ({figures})" if figures else self.reason


class RolloutGate(Protocol):
    """What a rollout gate is: the new engine's base URL (``.../v1``), its key, the SLO and
    how many seconds to measure; blocks for about that long."""

    def __call__(
        self, endpoint: str, api_key: str | None, slo: SloSpec, seconds: int
    ) -> GateVerdict: ...


def slo_gate(endpoint: str, api_key: str | None, slo: SloSpec, seconds: int) -> GateVerdict:
    """The SLO gate (:class:`RolloutGate`). Raises UnsupportedError until deployer's bench
    runner is wired in: no benchmark, no pass."""
    raise UnsupportedError(
        "rollout.gate slo needs deployer's bench runner, which this deployer does not have yet",
        hint="use rollout.gate: smoke (the smoke checks gate the rollout)",
    )
