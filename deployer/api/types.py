"""The result types clients render, and the helpers they render them with, from one place: the
CLI imports the API, errors, events and settings only (an import contract holds it)."""

from deployer.planner import Plan, ReplicaState
from deployer.quantize.artifact import QuantizeRecord
from deployer.sizing.capacity import CapacityPlan
from deployer.smoke import SmokeReport
from deployer.state.records import RunRecord
from deployer.units import human_bytes

__all__ = [
    "CapacityPlan",
    "Plan",
    "QuantizeRecord",
    "ReplicaState",
    "RunRecord",
    "SmokeReport",
    "human_bytes",
]
