"""deployer diff's comparison: a rendered object against its live version (pure)."""

from __future__ import annotations

import pytest

from deployer.targets.kubernetes import changed_fields, compare

RENDERED = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "chat", "namespace": "llm", "labels": {"app": "chat"}},
    "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 8000}]},
}
LIVE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "chat", "labels": {"app": "chat"}, "uid": "u", "resourceVersion": "7"},
    "spec": {
        "type": "ClusterIP",
        "clusterIP": "10.0.0.1",
        "ports": [{"name": "http", "port": "8000", "protocol": "TCP"}],
    },
    "status": {"loadBalancer": {}},
}


def test_an_absent_object_is_created() -> None:
    assert compare(RENDERED, None).describe() == "+ Service/chat"


def test_fields_the_server_adds_are_not_changes() -> None:
    change = compare(RENDERED, LIVE)
    assert (change.action, change.fields) == ("unchanged", ())


@pytest.mark.parametrize(
    ("live_spec", "field"),
    [
        ({"type": "NodePort", "ports": [{"name": "http", "port": 8000}]}, "spec.type"),
        ({"type": "ClusterIP", "ports": [{"name": "http", "port": 9000}]}, "spec.ports.port"),
        ({"type": "ClusterIP", "ports": []}, "spec.ports"),
        ({"ports": [{"name": "http", "port": 8000}]}, "spec.type"),
    ],
)
def test_a_differing_or_missing_field_is_an_update_naming_it(
    live_spec: dict[str, object], field: str
) -> None:
    change = compare(RENDERED, {**LIVE, "spec": live_spec})
    assert change.action == "update"
    assert change.fields == (field,)
    assert change.describe() == f"~ Service/chat: {field}"


def test_scalars_compare_as_the_server_returns_them() -> None:
    assert changed_fields({"a": 1, "b": True}, {"a": "1", "b": True}) == []
    assert changed_fields({"b": True}, {"b": "True"}) == ["b"]
