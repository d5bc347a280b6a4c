"""The accelerators deployer can plan for: memory, bandwidth, what they run, and what they cost.

Pure data and lookups, except :func:`host_memory_bytes`, which reads this host and is kept last.

Memory sizes
    ``memory_bytes`` is the total a device reports to CUDA or ROCm (``nvidia-smi``'s ``MiB``
    figure x 2**20), because that is what vLLM multiplies by ``gpu_memory_utilization``
    (``vllm/v1/worker/utils.py``, ``request_memory``: ``ceil(total_memory * utilization)``).
    Vendors quote binary capacities as "GB": an H100's "80 GB" of HBM3 is 80 GiB, of which
    81,559 MiB are visible. GDDR cards (L40S, L4, A10G, T4) run with ECC on by default, which hides
    1/16 of the memory: a 48 GiB L40S shows 46,068 MiB. Figures vary by a few MiB between boards
    and drivers; they are accurate to well under 1%.

Bandwidths
    Peak memory bandwidth from the vendor's datasheet, GB/s (10**9 bytes); for H100 and A100 the
    SXM variant.

Prices
    ``hourly_usd`` is an assumption: a rounded on-demand price for one device on a public cloud or
    GPU cloud in 2025. Prices differ by provider, region and commitment; pass your own to
    :func:`cost`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from deployer.errors import PlanError

Vendor = Literal["nvidia", "amd", "cpu"]

MiB = 1024**2
GiB = 1024**3

#: Quantization methods deployer offers, as named in manifests.
QUANTIZATION_METHODS = ("fp8", "int8", "w4a16")

#: Architectures with native FP8 tensor cores (vLLM's FP8 W8A8 kernels need compute capability
#: 8.9+, or CDNA3 on AMD). vLLM can run FP8 *weight-only* through Marlin on Ampere, but slower
#: and with different numerics; deployer does not plan that.
FP8_ARCHITECTURES = frozenset({"ada", "hopper", "cdna3"})


@dataclass(frozen=True)
class Accelerator:
    """One kind of device; every size is per device."""

    name: str
    vendor: Vendor
    memory_bytes: int
    bandwidth_gb_s: float
    dtypes: frozenset[str]
    quantization: frozenset[str]
    architecture: str
    hourly_usd: float | None

    def supports_dtype(self, dtype: str) -> bool:
        return dtype in self.dtypes

    def supports_quantization(self, method: str) -> bool:
        """``"none"`` always runs; otherwise the method must be in :attr:`quantization`."""
        return method == "none" or method in self.quantization


@dataclass(frozen=True)
class Cost:
    """What ``count`` devices cost per hour, and per million generated tokens at a throughput."""

    accelerator: str
    count: int
    hourly_usd_per_device: float
    per_hour: float
    tokens_per_second: float
    per_million_tokens: float


def lookup(name: str) -> Accelerator:
    """The catalog entry for ``name``, case-insensitive, aliases included (``"H100"``, ``"4090"``).

    Raises :class:`PlanError` listing the known names when ``name`` is unknown.
    """
    key = _normalize(name)
    canonical = _ALIASES.get(key)
    if canonical is None:
        known = ", ".join(CATALOG)
        raise PlanError(
            f"unknown accelerator {name!r}; known: {known}",
            hint="use one of the known names, or cpu for the host's CPU",
        )
    return CATALOG[canonical]


def cpu_accelerator(
    memory_bytes: int, *, bfloat16: bool = True, bandwidth_gb_s: float = 40.0
) -> Accelerator:
    """The host CPU as an accelerator with ``memory_bytes`` of (host) memory.

    Dtypes: vLLM's CPU platform lists bfloat16, float16 and float32 on x86 and aarch64
    (``vllm/platforms/cpu.py``, ``CpuPlatform.supported_dtypes``); pass ``bfloat16=False`` for a
    host where bf16 is not wanted (no AVX512-BF16/AMX: it runs, but emulated).
    Quantization: int8 (W8A8) and w4a16 serve well on the CPU build; fp8 loads but runs about
    25x slower without AMX, so it is not offered (measured, ``REAL_COMPONENTS.md``).
    ``bandwidth_gb_s`` is an assumption (two DDR5 channels); only the throughput estimate uses it.
    """
    dtypes = {"float32", "float16"} | ({"bfloat16"} if bfloat16 else set())
    return Accelerator(
        name="CPU",
        vendor="cpu",
        memory_bytes=memory_bytes,
        bandwidth_gb_s=bandwidth_gb_s,
        dtypes=frozenset(dtypes),
        quantization=frozenset({"int8", "w4a16"}),
        architecture="cpu",
        hourly_usd=None,
    )


def cost(
    accelerator: Accelerator,
    count: int,
    tokens_per_second: float,
    hourly_usd: float | None = None,
) -> Cost:
    """Cost of ``count`` devices per hour and per million tokens at ``tokens_per_second``.

    ``hourly_usd`` (per device) overrides the catalog's assumed price. Raises :class:`PlanError`
    when no price is known (the CPU) or the throughput or count is not positive.
    """
    price = accelerator.hourly_usd if hourly_usd is None else hourly_usd
    if price is None:
        raise PlanError(
            f"no hourly price known for {accelerator.name}",
            hint="pass the price per device-hour (hourly_usd)",
        )
    if count < 1 or tokens_per_second <= 0:
        raise PlanError(
            f"cost needs a positive count and throughput, got {count} devices at "
            f"{tokens_per_second} tokens/s"
        )
    per_hour = price * count
    tokens_per_hour = tokens_per_second * 3600
    return Cost(
        accelerator=accelerator.name,
        count=count,
        hourly_usd_per_device=price,
        per_hour=per_hour,
        tokens_per_second=tokens_per_second,
        per_million_tokens=per_hour / tokens_per_hour * 1_000_000,
    )


_ALL_FLOATS = frozenset({"float32", "float16", "bfloat16", "fp8"})
_NO_FP8 = frozenset({"float32", "float16", "bfloat16"})
_NO_BF16 = frozenset({"float32", "float16"})
_ALL_QUANT = frozenset(QUANTIZATION_METHODS)
#: Ampere and Turing run W8A8 int8 (CUTLASS, sm75+) and W4A16 (Marlin on sm80+, Exllama below).
_INT_QUANT = frozenset({"int8", "w4a16"})


def _gpu(
    name: str,
    vendor: Vendor,
    mib: int,
    bandwidth: float,
    architecture: str,
    hourly: float,
) -> Accelerator:
    fp8 = architecture in FP8_ARCHITECTURES
    dtypes = _ALL_FLOATS if fp8 else _NO_FP8
    if architecture == "turing":
        dtypes = _NO_BF16
    return Accelerator(
        name=name,
        vendor=vendor,
        memory_bytes=mib * MiB,
        bandwidth_gb_s=bandwidth,
        dtypes=dtypes,
        quantization=_ALL_QUANT if fp8 else _INT_QUANT,
        architecture=architecture,
        hourly_usd=hourly,
    )


# name, vendor, visible MiB (nominal capacity), GB/s, architecture, assumed $/device-hour
CATALOG: Mapping[str, Accelerator] = MappingProxyType(
    {
        a.name: a
        for a in (
            _gpu("H200", "nvidia", 143_771, 4800, "hopper", 3.80),  # 141 GB HBM3e
            _gpu("H100-80GB", "nvidia", 81_559, 3350, "hopper", 2.99),  # 80 GiB HBM3
            _gpu("A100-80GB", "nvidia", 81_920, 2039, "ampere", 1.79),  # 80 GiB HBM2e
            _gpu("A100-40GB", "nvidia", 40_960, 1555, "ampere", 1.29),  # 40 GiB HBM2
            _gpu("L40S", "nvidia", 46_068, 864, "ada", 1.86),  # 48 GiB GDDR6, ECC on
            _gpu("L4", "nvidia", 23_034, 300, "ada", 0.80),  # 24 GiB GDDR6, ECC on
            _gpu("A10G", "nvidia", 23_028, 600, "ampere", 1.01),  # 24 GiB GDDR6, ECC on
            _gpu("T4", "nvidia", 15_360, 320, "turing", 0.53),  # 16 GiB GDDR6, ECC on
            _gpu("RTX-4090", "nvidia", 24_564, 1008, "ada", 0.69),  # 24 GiB GDDR6X, no ECC
            _gpu("MI300X", "amd", 196_592, 5300, "cdna3", 2.50),  # 192 GiB HBM3
        )
    }
)


def _normalize(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_ALIASES: dict[str, str] = {_normalize(canonical): canonical for canonical in CATALOG}
_ALIASES.update(
    {
        "h100": "H100-80GB",
        "a100": "A100-80GB",
        "4090": "RTX-4090",
        "rtx4090": "RTX-4090",
        "geforcertx4090": "RTX-4090",
        "h200141gb": "H200",
        "l40s48gb": "L40S",
        "mi300": "MI300X",
    }
)


def identify(device_name: str, memory_mib: int) -> Accelerator | None:
    """The catalog entry for a device as ``nvidia-smi`` names it ("NVIDIA L40S", "NVIDIA
    A100-SXM4-80GB", "Tesla T4", "NVIDIA GeForce RTX 4090"), or None when it is not in the
    catalog. The longest catalog family found in the name wins ("L40S" over "L4"); between
    sizes of one family (A100 40 and 80 GB) the memory ``nvidia-smi`` reports decides. Pure."""
    name = _normalize(device_name)
    matches: list[tuple[int, Accelerator]] = []
    for canonical, accelerator in CATALOG.items():
        # "A100-80GB" -> "a100", "RTX-4090" -> "4090": the part every product name carries.
        parts = [part for part in canonical.split("-") if not re.fullmatch(r"\d+GB", part)]
        family = _normalize("".join(parts)).removeprefix("rtx")
        if family in name:
            matches.append((len(family), accelerator))
    if not matches:
        return None
    longest = max(length for length, _ in matches)
    candidates = [acc for length, acc in matches if length == longest]
    return min(candidates, key=lambda acc: abs(acc.memory_bytes - memory_mib * MiB))


# --- this host (impure) --------------------------------------------------------------------------


def host_memory_bytes() -> int:
    """Total physical memory of this host, from ``os.sysconf`` (reads the machine)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
