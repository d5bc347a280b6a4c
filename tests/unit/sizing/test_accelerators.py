"""The accelerator catalog: names, capabilities, the CPU, and cost arithmetic."""

from __future__ import annotations

import pytest

from deployer.errors import PlanError
from deployer.sizing.accelerators import (
    CATALOG,
    GiB,
    MiB,
    cost,
    cpu_accelerator,
    host_memory_bytes,
    identify,
    lookup,
)

EXPECTED_NAMES = [
    "H200",
    "H100-80GB",
    "A100-80GB",
    "A100-40GB",
    "L40S",
    "L4",
    "A10G",
    "T4",
    "RTX-4090",
    "MI300X",
]


def test_catalog_holds_the_documented_devices() -> None:
    assert list(CATALOG) == EXPECTED_NAMES


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("H100", "H100-80GB"),
        ("h100-80gb", "H100-80GB"),
        ("H100_80GB", "H100-80GB"),
        ("A100", "A100-80GB"),
        ("a100-40gb", "A100-40GB"),
        ("4090", "RTX-4090"),
        ("rtx 4090", "RTX-4090"),
        ("l40s", "L40S"),
        ("mi300x", "MI300X"),
        ("t4", "T4"),
    ],
)
def test_lookup_is_case_insensitive_and_knows_aliases(name: str, canonical: str) -> None:
    assert lookup(name).name == canonical


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(PlanError) as raised:
        lookup("V100")
    assert "V100" in str(raised.value)
    for name in EXPECTED_NAMES:
        assert name in str(raised.value)


@pytest.mark.parametrize(
    ("name", "fp8", "bf16"),
    [
        ("H200", True, True),
        ("H100-80GB", True, True),
        ("L40S", True, True),
        ("L4", True, True),
        ("RTX-4090", True, True),
        ("MI300X", True, True),
        ("A100-80GB", False, True),
        ("A100-40GB", False, True),
        ("A10G", False, True),
        ("T4", False, False),
    ],
)
def test_fp8_needs_ada_hopper_or_cdna3_and_t4_has_no_bf16(name: str, fp8: bool, bf16: bool) -> None:
    acc = lookup(name)
    assert acc.supports_quantization("fp8") is fp8
    assert ("fp8" in acc.dtypes) is fp8
    assert acc.supports_dtype("bfloat16") is bf16
    assert acc.supports_dtype("float16")
    assert acc.supports_quantization("int8")
    assert acc.supports_quantization("w4a16")
    assert acc.supports_quantization("none")


@pytest.mark.parametrize(
    ("name", "nominal_gib", "vendor"),
    [
        ("H200", 141, "nvidia"),
        ("H100-80GB", 80, "nvidia"),
        ("A100-80GB", 80, "nvidia"),
        ("A100-40GB", 40, "nvidia"),
        ("L40S", 48, "nvidia"),
        ("L4", 24, "nvidia"),
        ("A10G", 24, "nvidia"),
        ("T4", 16, "nvidia"),
        ("RTX-4090", 24, "nvidia"),
        ("MI300X", 192, "amd"),
    ],
)
def test_memory_is_the_visible_share_of_the_nominal_size(
    name: str, nominal_gib: int, vendor: str
) -> None:
    acc = lookup(name)
    assert acc.vendor == vendor
    # Visible memory: the nominal GiB less reserved memory, at most 1/16 (ECC on GDDR cards).
    assert nominal_gib * GiB * 15 / 16 - 64 * MiB <= acc.memory_bytes <= nominal_gib * GiB
    assert acc.bandwidth_gb_s > 0
    assert acc.hourly_usd is not None
    assert acc.hourly_usd > 0


def test_cpu_accelerator() -> None:
    cpu = cpu_accelerator(24 * GiB)
    assert cpu.name == "CPU"
    assert cpu.vendor == "cpu"
    assert cpu.architecture == "cpu"
    assert cpu.memory_bytes == 24 * GiB
    assert cpu.supports_dtype("bfloat16")
    assert not cpu.supports_dtype("fp8")
    assert not cpu.supports_quantization("fp8")
    assert cpu.supports_quantization("int8")
    assert cpu.supports_quantization("w4a16")
    assert cpu.hourly_usd is None
    assert not cpu_accelerator(24 * GiB, bfloat16=False).supports_dtype("bfloat16")


def test_host_memory_is_positive() -> None:
    assert host_memory_bytes() > 256 * MiB


@pytest.mark.parametrize(
    ("name", "count", "tokens_per_second", "hourly", "per_hour", "per_million"),
    [
        # 2 x 2.00 $/h = 4 $/h; 1000 tok/s = 3.6M tok/h -> 4 / 3.6 = 1.111 $/M tokens.
        ("H100", 2, 1000.0, 2.0, 4.0, 4.0 / 3.6),
        # Catalog price: 1 x L4 at 0.80 $/h, 500 tok/s = 1.8M tok/h -> 0.444 $/M tokens.
        ("L4", 1, 500.0, None, 0.80, 0.80 / 1.8),
    ],
)
def test_cost(
    name: str,
    count: int,
    tokens_per_second: float,
    hourly: float | None,
    per_hour: float,
    per_million: float,
) -> None:
    result = cost(lookup(name), count, tokens_per_second, hourly)
    assert result.per_hour == pytest.approx(per_hour)
    assert result.per_million_tokens == pytest.approx(per_million)
    assert result.count == count


def test_cost_refuses_an_unknown_price_and_zero_throughput() -> None:
    with pytest.raises(PlanError, match="no hourly price") as raised:
        cost(cpu_accelerator(8 * GiB), 1, 10.0)
    assert raised.value.hint is not None
    assert cost(cpu_accelerator(8 * GiB), 1, 10.0, hourly_usd=0.1).per_hour == pytest.approx(0.1)
    with pytest.raises(PlanError, match="positive"):
        cost(lookup("L4"), 1, 0.0)


@pytest.mark.parametrize(
    ("smi_name", "memory_mib", "expected"),
    [
        ("NVIDIA L40S", 46068, "L40S"),
        ("NVIDIA L4", 23034, "L4"),
        ("NVIDIA A100-SXM4-80GB", 81920, "A100-80GB"),
        ("NVIDIA A100-PCIE-40GB", 40960, "A100-40GB"),
        ("NVIDIA H100 80GB HBM3", 81559, "H100-80GB"),
        ("Tesla T4", 15360, "T4"),
        ("NVIDIA A10G", 23028, "A10G"),
        ("NVIDIA GeForce RTX 4090", 24564, "RTX-4090"),
        ("NVIDIA GeForce GTX 1080", 8192, None),
    ],
)
def test_identify_names_what_nvidia_smi_reports(
    smi_name: str, memory_mib: int, expected: str | None
) -> None:
    found = identify(smi_name, memory_mib)
    assert (found.name if found else None) == expected
