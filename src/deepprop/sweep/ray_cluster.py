"""Connecting a sweep's driver to a Ray cluster, checked before any work starts.

``None`` starts a local Ray instance in this process; ``auto`` joins the cluster started on this machine
(``ray start --head``); ``HOST:PORT`` / ``ray://HOST:PORT`` a remote head node, which must answer a TCP
connect within :data:`RAY_CONNECT_TIMEOUT_S` (Ray itself retries for minutes and prints multi-line logs).
"""

from __future__ import annotations

import os
from pathlib import Path

from deepprop.errors import ParameterError

RAY_CONNECT_TIMEOUT_S = 3.0
"""How long the driver waits for a TCP answer from --ray-address before refusing (Ray itself retries for
minutes and prints multi-line logs)."""


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` / ``ray://host:port`` address nothing answers at (one TCP connect)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ParameterError("ray_address", f"must be HOST:PORT, ray://HOST:PORT or auto (got {address!r})")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ParameterError("ray_address", f"no Ray cluster answers at {address} ({exc.strerror or exc}); start "
                                            "one with `ray start --head` or leave out --ray-address") from exc


def connect_ray(address: str | None) -> bool:
    """Connect this driver to the Ray cluster at ``address`` before any work (see the module docstring).

    Returns True when this call initialised Ray (the caller shuts it down), False when it already was."""
    from deepprop.errors import require

    ray = require("ray", "ray", "--executor ray")
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local"):
        _check_reachable(address)
        if (Path.home() / ".ray" / "auth_token").is_file():
            # Ray enables token authentication on `ray start` when this file exists, but a driver given an
            # explicit address only sends the token with RAY_AUTH_MODE=token; an explicit setting wins.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise ParameterError("ray_address", f"no Ray cluster reachable at {address!r} ({exc})") from exc
    return True
