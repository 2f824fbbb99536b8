"""Resumable sweeps: finished points are written to a JSON file after each chunk, atomically.

A checkpoint belongs to one set of run parameters (its ``signature``); a file written for other
parameters is ignored rather than mixed in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Checkpoint:
    """Point results keyed by a string (e.g. repr(sigma_w2)); a no-op when ``path`` is None."""

    def __init__(self, path: str | os.PathLike[str] | None, signature: dict[str, Any]):
        self.path = None if path is None else Path(path)
        self.signature = json.loads(json.dumps(signature))
        self.points: dict[str, Any] = {}
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("signature") == signature:
                self.points = dict(data.get("points", {}))

    def __contains__(self, key: str) -> bool:
        return key in self.points

    def __getitem__(self, key: str) -> Any:
        return self.points[key]

    def save(self, key: str, value: Any) -> None:
        """Record a finished point and rewrite the file (write to a temporary file, then rename)."""
        self.points[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"signature": self.signature, "points": self.points}))
        os.replace(tmp, self.path)
