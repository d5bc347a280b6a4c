"""The SLO gate of a rollout: a short benchmark of the new engine against ``spec.slo`` before it
takes traffic (``rollout.gate: slo``).

The plan executor calls ``deployer.api.bench.slo_gate`` with the new engine's own endpoint (one
short GuideLLM load point judged against spec.slo); the verdict decides whether the switch
happens: a verdict that fails, or a gate that cannot run, rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
