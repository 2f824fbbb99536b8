"""One Ray context manager: it disconnects exactly the connection it made, on success and on error."""

from __future__ import annotations

import sys
import types

import pytest

from deepprop.sweep import ray_cluster


@pytest.fixture
def fake_ray(monkeypatch):
    calls = []
    ray = types.SimpleNamespace(shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", ray)
    return calls


@pytest.mark.parametrize("already_connected", [False, True])
def test_ray_connection_shuts_down_only_what_it_started(monkeypatch, fake_ray, already_connected):
    connects = []

    def connect(address):
        connects.append(address)
        fake_ray.append("connect")
        return not already_connected  # connect_ray's contract: True when this call initialised Ray

    monkeypatch.setattr(ray_cluster, "connect_ray", connect)
    with ray_cluster.ray_connection("127.0.0.1:1") as started:
        assert started is not already_connected
    with pytest.raises(KeyError), ray_cluster.ray_connection("127.0.0.1:1"):
        raise KeyError("an error inside the block")
    expected = ["connect"] if already_connected else ["connect", "shutdown"]
    assert fake_ray == expected * 2 and connects == ["127.0.0.1:1"] * 2
    with ray_cluster.ray_connection("127.0.0.1:1", enabled=False) as started:
        assert started is False
    assert fake_ray == expected * 2  # disabled: neither connected nor shut down
