"""The planner: pure functions from a manifest and observed facts to a :class:`Plan`."""

from deployer.planner.plan import (
    Facts,
    Observed,
    Plan,
    PlannedStep,
    ReplicaState,
    RolloutPlan,
    StepAction,
    Surge,
    TargetSteps,
    make_plan,
)

__all__ = [
    "Facts",
    "Observed",
    "Plan",
    "PlannedStep",
    "ReplicaState",
    "RolloutPlan",
    "StepAction",
    "Surge",
    "TargetSteps",
    "make_plan",
]
