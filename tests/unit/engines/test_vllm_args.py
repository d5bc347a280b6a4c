"""The vLLM command line: these serving settings and these decisions give exactly this argv."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deployer.engines.vllm import VllmSettings, build_args
from deployer.errors import PlanError
from deployer.manifest.models import ServingSpec

DECIDED = VllmSettings(
    model_path="/models/smollm2",
    served_model_name="smollm2-demo",
    host="127.0.0.1",
    port=8011,
)
BASE = [
    "--model",
    "/models/smollm2",
    "--served-model-name",
    "smollm2-demo",
    "--host",
    "127.0.0.1",
    "--port",
    "8011",
]


def serving(**fields: Any) -> ServingSpec:
    """A ServingSpec from manifest keys (camelCase), as a user writes them."""
    return ServingSpec.model_validate(fields)


def decided(**changes: Any) -> VllmSettings:
    return dataclasses.replace(DECIDED, **changes)


# (manifest's spec.serving, the planner's decisions) -> the flags after the fixed prefix
TYPED_FIELDS = [
    pytest.param({}, {}, [], id="defaults-add-nothing"),
    pytest.param({"dtype": "auto"}, {}, [], id="dtype-auto-omitted"),
    pytest.param({"dtype": "bfloat16"}, {}, ["--dtype", "bfloat16"], id="dtype-bfloat16"),
    pytest.param({"dtype": "float32"}, {}, ["--dtype", "float32"], id="dtype-float32"),
    pytest.param({"maxModelLen": 4096}, {}, ["--max-model-len", "4096"], id="max-model-len"),
    pytest.param({}, {"tensor_parallel_size": 1}, [], id="tensor-parallel-1-omitted"),
    pytest.param(
        {}, {"tensor_parallel_size": 4}, ["--tensor-parallel-size", "4"], id="tensor-parallel-4"
    ),
    pytest.param(
        {},
        {"kv_cache_bytes": 536870912},
        ["--kv-cache-memory-bytes", "536870912"],
        id="kv-cache-bytes",
    ),
    pytest.param(
        {"gpuMemoryUtilization": 0.85},
        {},
        ["--gpu-memory-utilization", "0.85"],
        id="gpu-memory-utilization",
    ),
    pytest.param({"maxNumSeqs": 8}, {}, ["--max-num-seqs", "8"], id="max-num-seqs"),
    pytest.param({"runner": "auto"}, {}, [], id="runner-auto-omitted"),
    pytest.param({"runner": "pooling"}, {}, ["--runner", "pooling"], id="runner-pooling"),
    pytest.param({"runner": "generate"}, {}, ["--runner", "generate"], id="runner-generate"),
    pytest.param({}, {"quantization": "fp8"}, ["--quantization", "fp8"], id="quantization-fp8"),
    pytest.param({}, {"trust_remote_code": True}, ["--trust-remote-code"], id="trust-remote-code"),
    pytest.param({}, {"trust_remote_code": False}, [], id="no-trust-remote-code"),
    pytest.param(
        {
            "dtype": "float16",
            "maxModelLen": 2048,
            "gpuMemoryUtilization": 0.5,
            "maxNumSeqs": 4,
            "runner": "pooling",
        },
        {
            "tensor_parallel_size": 2,
            "kv_cache_bytes": 1073741824,
            "quantization": "fp8",
            "trust_remote_code": True,
        },
        [
            "--dtype",
            "float16",
            "--max-model-len",
            "2048",
            "--tensor-parallel-size",
            "2",
            "--gpu-memory-utilization",
            "0.5",
            "--kv-cache-memory-bytes",
            "1073741824",
            "--max-num-seqs",
            "4",
            "--runner",
            "pooling",
            "--quantization",
            "fp8",
            "--trust-remote-code",
        ],
        id="everything-in-a-fixed-order",
    ),
]


@pytest.mark.parametrize(("fields", "decisions", "expected"), TYPED_FIELDS)
def test_typed_fields_become_flags(
    fields: dict[str, Any], decisions: dict[str, Any], expected: list[str]
) -> None:
    assert build_args(serving(**fields), decided(**decisions)) == BASE + expected


def test_decided_host_and_port_are_used() -> None:
    args = build_args(serving(host="0.0.0.0"), decided(host="0.0.0.0", port=9000))

    assert args[:8] == [
        "--model",
        "/models/smollm2",
        "--served-model-name",
        "smollm2-demo",
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
    ]


# spec.serving.args -> the flags after the fixed prefix
PASS_THROUGH = [
    pytest.param({"enforce-eager": True}, ["--enforce-eager"], id="true-is-a-bare-flag"),
    pytest.param({"enforce-eager": False}, [], id="false-is-omitted"),
    pytest.param({"swap-space": 4}, ["--swap-space", "4"], id="int"),
    pytest.param({"cpu-offload-gb": 1.5}, ["--cpu-offload-gb", "1.5"], id="float"),
    pytest.param({"tokenizer-mode": "mistral"}, ["--tokenizer-mode", "mistral"], id="string"),
    pytest.param(
        {"allowed-origins": ["http://a", "http://b"]},
        ["--allowed-origins", "http://a", "http://b"],
        id="list-gives-several-values",
    ),
    pytest.param({"cuda-graph-sizes": [1, 2, 4]}, ["--cuda-graph-sizes", "1", "2", "4"], id="ints"),
    pytest.param(
        {"seed": 0, "enable-prefix-caching": True, "block-size": 16, "disable-log-stats": False},
        ["--block-size", "16", "--enable-prefix-caching", "--seed", "0"],
        id="sorted-by-flag-name",
    ),
]


@pytest.mark.parametrize(("args", "expected"), PASS_THROUGH)
def test_pass_through_args(args: dict[str, Any], expected: list[str]) -> None:
    assert build_args(serving(args=args), DECIDED) == BASE + expected


def test_pass_through_args_come_after_typed_flags() -> None:
    args = build_args(serving(maxModelLen=2048, args={"a-flag": True}), DECIDED)

    assert args == [*BASE, "--max-model-len", "2048", "--a-flag"]


def test_pass_through_order_does_not_depend_on_manifest_order() -> None:
    one = build_args(serving(args={"b": 1, "a": 2, "c": True}), DECIDED)
    other = build_args(serving(args={"c": True, "a": 2, "b": 1}), DECIDED)

    assert one == other == [*BASE, "--a", "2", "--b", "1", "--c"]


# a flag deployer sets itself -> the manifest field to use instead
OWNED = [
    ("model", "spec.model"),
    ("served-model-name", "spec.serving.servedModelName"),
    ("host", "spec.serving.host"),
    ("port", "spec.serving.port"),
    ("max-model-len", "spec.serving.maxModelLen"),
    ("dtype", "spec.serving.dtype"),
    ("tensor-parallel-size", "spec.serving.tensorParallelSize"),
    ("gpu-memory-utilization", "spec.serving.gpuMemoryUtilization"),
    ("kv-cache-memory-bytes", "spec.serving.kvCacheMemory"),
    ("max-num-seqs", "spec.serving.maxNumSeqs"),
    ("runner", "spec.serving.runner"),
    ("quantization", "spec.quantize.method"),
    ("trust-remote-code", "spec.model.trustRemoteCode"),
    ("api-key", "spec.serving.apiKey"),
]


@pytest.mark.parametrize(("flag", "field"), OWNED)
def test_owned_flag_as_pass_through_names_the_field_to_use(flag: str, field: str) -> None:
    with pytest.raises(PlanError) as caught:
        build_args(serving(args={flag: "x"}), DECIDED)

    assert f"spec.serving.args.{flag}" in caught.value.message
    assert f"--{flag}" in caught.value.message
    assert caught.value.hint is not None
    assert field in caught.value.hint


# vLLM's parser (argparse, allow_abbrev) takes any unambiguous prefix of a flag: checked against
# vllm 0.32.0, `--api-ke K` sets the API key and `--por 9999` the port. A pass-through that
# abbreviates an owned flag is the owned flag, so it must be refused like the full name.
ABBREVIATED = [
    ("api-ke", "spec.serving.apiKey"),
    ("por", "spec.serving.port"),
    ("max-model", "spec.serving.maxModelLen"),
    ("served-model", "spec.serving.servedModelName"),
    ("trust-remote", "spec.model.trustRemoteCode"),
]


@pytest.mark.parametrize(("flag", "field"), ABBREVIATED)
def test_abbreviated_owned_flag_is_refused(flag: str, field: str) -> None:
    with pytest.raises(PlanError) as caught:
        build_args(serving(args={flag: "x"}), DECIDED)

    assert caught.value.hint is not None
    assert field in caught.value.hint


def test_owned_flag_is_refused_even_when_false() -> None:
    with pytest.raises(PlanError, match="--port"):
        build_args(serving(args={"port": False}), DECIDED)


def test_api_key_is_never_an_argument() -> None:
    spec = serving(apiKey={"env": "MY_VLLM_KEY"}, args={"enable-prefix-caching": True})

    args = build_args(spec, DECIDED)

    assert not any(a.startswith("--api-key") for a in args)
    assert "MY_VLLM_KEY" not in " ".join(args)


def test_same_inputs_give_the_same_list() -> None:
    fields = {"maxModelLen": 1024, "args": {"seed": 1, "enforce-eager": True}}

    assert build_args(serving(**fields), DECIDED) == build_args(serving(**fields), DECIDED)
