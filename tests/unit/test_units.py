from __future__ import annotations

import pytest

from deployer.units import human_bytes


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (512 * 1024**2, "512.0 MiB"),
        (269060552, "256.6 MiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_sizes_read_as_people_expect(value: int | None, text: str) -> None:
    assert human_bytes(value) == text
