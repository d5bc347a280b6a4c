"""A deployment's cost per token as a benchmark measured it (made by :mod:`deployer.bench.cost`):
plain figures, kept here so that a plan (:mod:`deployer.planner`) can carry them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

HOURS_PER_MONTH = 730


class Traffic(BaseModel):
    """What the deployment served while it was watched: generated tokens per second on
    average over ``hours`` hours of scrapes."""

    model_config = ConfigDict(frozen=True)

    output_tokens_per_second: float
    hours: float


class MeasuredCost(BaseModel):
    """The deployment's cost per token, measured."""

    model_config = ConfigDict(frozen=True)

    #: Which benchmark, of which revision, at which load.
    run_id: int | None
    measured_at: datetime
    tool: str
    load: str
    output_tokens_per_second: float
    input_tokens_per_second: float
    #: The price: per device-hour, how many devices, and where the price came from.
    hourly_usd_per_device: float
    devices: int
    price_source: str
    #: Usage basis, at the best SLO-meeting load.
    per_million_output: float
    per_million_tokens: float
    #: Allocation basis, from the traffic the engine actually served (None: not watched).
    traffic: Traffic | None = None
    allocated_per_million_output: float | None = None

    @property
    def per_hour(self) -> float:
        return self.hourly_usd_per_device * self.devices

    @property
    def per_month(self) -> float:
        return self.per_hour * HOURS_PER_MONTH

    def utilization(self) -> float | None:
        """The share of the measured capacity the observed traffic used."""
        if self.traffic is None or self.output_tokens_per_second <= 0:
            return None
        return self.traffic.output_tokens_per_second / self.output_tokens_per_second

    def summary(self) -> str:
        """One line for ``plan`` and ``status``."""
        text = (
            f"measured: ${self.per_million_output:.3f} per million output tokens "
            f"(${self.per_million_tokens:.3f} per million input and output tokens) at "
            f"{self.output_tokens_per_second:,.1f} output tokens/s, {self.load}, the best load "
            f"meeting the SLO ({self.tool}, run {self.run_id}); ${self.per_hour:.2f}/hour "
            f"({self.price_source})"
        )
        if self.allocated_per_million_output is not None and self.traffic is not None:
            text += (
                f"; allocated: ${self.allocated_per_million_output:.3f} per million output "
                f"tokens at the {self.traffic.output_tokens_per_second:,.2f} tokens/s served "
                f"over {self.traffic.hours:,.1f} h ({(self.utilization() or 0):.0%} of capacity)"
            )
        else:
            text += "; allocated: no traffic watched yet (the usage figure holds at full use)"
        return text
