"""Connecting a sweep's driver to a Ray cluster, checked before any work starts.

``None`` starts a local Ray instance in this process; ``auto`` joins the cluster started on this machine
(``ray start --head``: its address is read from ``RAY_ADDRESS`` or Ray's session file); ``HOST:PORT`` /
``ray://HOST:PORT`` a remote head node. Before Ray is asked to connect (Ray itself retries for a minute
and prints pages of logs), the address must answer within :data:`RAY_CONNECT_TIMEOUT_S`: a TCP connect,
then, for a head node's GCS port, the HTTP/2 handshake every gRPC server (Ray's GCS is one) answers. An
address that fails either is refused in one line, naming ``--ray-address``, within a few seconds. While
Ray connects its own logging is silenced (the C++ core's lines on stderr included), and a connection that
still does not complete within :data:`RAY_INIT_TIMEOUT_S` is refused the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from deepprop.errors import ParameterError

RAY_CONNECT_TIMEOUT_S = 3.0
"""How long the driver waits for a TCP (and HTTP/2) answer from --ray-address before refusing."""
RAY_INIT_TIMEOUT_S = 5.0
"""How long ``ray.init`` may take once the address answered (a cluster that accepts but never completes).
A driver joins a running cluster in 0.2-1.3 s on a loaded 2-core machine (measured, 2026-12-06)."""
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
HTTP2_SETTINGS = 0x4


def _split(address: str) -> tuple[str, int]:
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError("ray_address", f"must be HOST:PORT, ray://HOST:PORT or auto (got {address!r})")
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """Refuse an address nothing answers at (one TCP connect), or (a GCS address, not ray://) whose port
    does not speak HTTP/2 as Ray's gRPC server does."""
    host, port = _split(address)
    deadline = time.monotonic() + RAY_CONNECT_TIMEOUT_S
    try:
        sock = socket.create_connection((host, port), timeout=RAY_CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ParameterError("ray_address", f"no Ray cluster answers at {address} ({exc.strerror or exc}); start "
                                            "one with `ray start --head` or leave out --ray-address") from None
    with sock:
        if address.startswith("ray://"):
            return  # Ray Client speaks its own protocol behind a proxy; the TCP answer is what we can check
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.5))
            sock.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                part = sock.recv(9 - len(head))
                if not part:
                    break
                head += part
        except OSError:
            head = b""
    if len(head) < 9 or head[3] != HTTP2_SETTINGS:
        raise ParameterError("ray_address", f"{address} answers, but not as a Ray head node (no gRPC/HTTP2 "
                                            "handshake); give the GCS address printed by `ray start --head` "
                                            "(port 6379 by default)")


def _auto_address() -> str:
    """The address ``ray.init(address="auto")`` would use: RAY_ADDRESS, else Ray's session file."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    tmp = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    try:
        text = tmp.read_text().strip()
    except OSError:
        text = ""
    if not text:
        raise ParameterError("ray_address", "auto: no Ray cluster was started on this machine (run `ray start "
                                            "--head`, give its HOST:PORT, or leave out --ray-address)")
    return text


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Ray's own output off: Python loggers named ray* at ERROR, and file descriptors 1 and 2 pointed at
    /dev/null (the C++ core writes there directly) for the duration."""
    loggers = [logging.getLogger(n) for n in ("ray", "ray.worker", "ray._private", "ray.util")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:  # no real descriptors (an embedding host): leave them alone
        pass
    try:
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (no limit elsewhere, or without SIGALRM)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):  # noqa: ANN001, ARG001 - signal handler
        raise TimeoutError(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_ray(address: str | None) -> str | None:
    """Everything about ``address`` that can be checked without starting Ray: the ``ray`` extra is
    installed, the address is well formed, and (``auto`` resolved) something answers there as a Ray head
    node would. Returns the address to give ``ray.init`` (None: a private local instance)."""
    import importlib.util
    import sys

    from deepprop.errors import MissingExtraError

    loaded = sys.modules.get("ray", False)
    if loaded is None or (loaded is False and importlib.util.find_spec("ray") is None):
        raise MissingExtraError("ray", "--executor ray")
    if address is not None and not str(address).strip():
        raise ParameterError("ray_address", "must not be empty (HOST:PORT, ray://HOST:PORT or auto)")
    target = _auto_address() if address == "auto" else address
    if target not in (None, "local") and not (loaded and loaded.is_initialized()):
        _check_reachable(target)
    return target


def connect_ray(address: str | None) -> bool:
    """Connect this driver to the Ray cluster at ``address`` before any work (see the module docstring).

    Returns True when this call initialised Ray (the caller shuts it down), False when it already was."""
    from deepprop.errors import require

    target = check_ray(address)
    ray = require("ray", "ray", "--executor ray")  # imported only now: seconds, spent on an address that answers
    if ray.is_initialized():
        return False
    if target not in (None, "local") and (Path.home() / ".ray" / "auth_token").is_file():
        # Ray enables token authentication on `ray start` when this file exists, but a driver given an
        # explicit address only sends the token with RAY_AUTH_MODE=token; an explicit setting wins.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    limit = _time_limit(RAY_INIT_TIMEOUT_S) if target not in (None, "local") else contextlib.nullcontext()
    try:
        with silenced(), limit:
            ray.init(address=target, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     logging_level=logging.ERROR)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        with silenced():
            ray.shutdown()
        raise ParameterError("ray_address", f"no Ray cluster reachable at {address!r} ({type(exc).__name__}: "
                                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return True


@contextlib.contextmanager
def ray_connection(address: str | None, *, enabled: bool = True) -> Iterator[bool]:
    """Connected to Ray at ``address`` for the duration of the block (:func:`connect_ray`); shuts down only
    the connection this block made (one already open is left as it was). With ``enabled`` False, nothing
    happens. Yields whether this block connected."""
    started = connect_ray(address) if enabled else False
    try:
        yield started
    finally:
        if started:
            import ray

            ray.shutdown()
