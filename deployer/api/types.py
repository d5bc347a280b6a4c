"""The result types clients render, and the helpers they render them with, from one place: the
CLI imports the API, errors, events and settings only (an import contract holds it).

Every result the API returns is a frozen pydantic model (:class:`Result`) whose ``to_json`` is
its JSON document: what ``-o json`` prints, and what an HTTP API would answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from deployer.planner import Plan, ReplicaState
from deployer.quantize.artifact import QuantizeRecord
from deployer.sizing.capacity import CapacityPlan
from deployer.smoke import SmokeReport
from deployer.state.records import RunRecord
from deployer.units import human_bytes

if TYPE_CHECKING:
    # For annotations only: the metrics reader imports prometheus_client (a tenth of a second),
    # which only ``status --watch`` pays for.
    from deployer.metrics.engine_load import EngineLoad as EngineLoad


class Result(BaseModel):
    """A result of the API: frozen; may hold the core's own (non-pydantic) types. Infinite and
    NaN floats stay floats in JSON (as ``json.dumps`` writes them), not null."""

    model_config = ConfigDict(
        frozen=True, arbitrary_types_allowed=True, ser_json_inf_nan="constants"
    )

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON document (``-o json``)."""
        return self.model_dump(mode="json")


class _CheckView(BaseModel):
    title: str
    passed: bool
    answer: str
    latency_ms: float | None
    failures: list[str]


class SmokeView(BaseModel):
    """A smoke report as JSON: whether it passed, its summary line, and each check."""

    passed: bool
    summary: str
    checks: list[_CheckView]

    @classmethod
    def of(cls, report: SmokeReport) -> SmokeView:
        return cls(
            passed=report.passed,
            summary=report.summary(),
            checks=[
                _CheckView(
                    title=r.title,
                    passed=r.passed,
                    answer=r.answer,
                    latency_ms=r.latency_ms,
                    failures=list(r.failures),
                )
                for r in report.results
            ],
        )


def smoke_json(report: SmokeReport) -> dict[str, Any]:
    """``report`` as JSON (see :class:`SmokeView`)."""
    return SmokeView.of(report).model_dump(mode="json")


__all__ = [
    "CapacityPlan",
    "Plan",
    "QuantizeRecord",
    "ReplicaState",
    "Result",
    "RunRecord",
    "SmokeReport",
    "SmokeView",
    "human_bytes",
    "smoke_json",
]
