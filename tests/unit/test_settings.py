"""Settings: where deployer keeps things, and that a name cannot lead anywhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import InvalidNameError
from deployer.settings import Settings, check_name


@pytest.mark.parametrize("name", ["smollm2-demo", "a", "x" * 63, "0-9"])
def test_deployment_names_are_dns_1123_labels(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["../../x", "../x", "a/b", ".", "", "-a", "a-", "Demo", "a_b", "x" * 64, "a\0b"]
)
def test_anything_else_is_refused_before_a_path_is_built(name: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache=tmp_path / "cache")

    with pytest.raises(InvalidNameError, match="is not a deployment name") as caught:
        settings.deployment_dir(name)

    assert caught.value.hint == "deployer status lists the deployments by name"
    assert not (tmp_path / "home").exists()
