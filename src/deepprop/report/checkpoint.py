"""Where finished claims are kept: one :class:`deepprop.checkpoint.Checkpoint` per tier, in OUT/claims/<tier>/.

Each finished claim is one file written atomically, so a SIGKILL loses at most the claim in progress; the
same command again skips the finished ones. A saved claim that cannot be read back (a corrupted or
hand-edited file, a row without its id and verdict) is never shown: it is discarded with a
:class:`CorruptedClaimWarning` naming the file, and a run that selects it computes it again.

:func:`report_state` says what an output directory holds, so that ``deepprop reproduce --out DIR`` writes
only into an empty directory or a deepprop report (anything else needs ``--force``).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from deepprop.checkpoint import SIGNATURE_FILE, Checkpoint
from deepprop.errors import CheckpointError

REPORT_SIGNATURE = "deepprop reproduce"
RECORD_KEYS = ("id", "verdict")
"""Keys every saved claim row has; a row without them is treated as corrupted."""


class CorruptedClaimWarning(UserWarning):
    """A saved claim could not be read back and was discarded (it is recomputed when selected)."""


def _signature(tier: str) -> dict[str, str]:
    return {"report": REPORT_SIGNATURE, "tier": tier}


def _warn(message: str) -> None:
    warnings.warn(message, CorruptedClaimWarning, stacklevel=3)


def claims_checkpoint(out: Path, tier: str) -> Checkpoint:
    """The finished claims of ``tier`` in OUT (rows of other tiers live in their own folders), with any
    saved claim that cannot be read back discarded (and warned about)."""
    folder = Path(out) / "claims" / tier
    try:
        ckpt = Checkpoint(folder, _signature(tier), param="out")
    except CheckpointError as exc:
        _warn(f"saved claims in {folder} are unreadable ({exc}); discarding them, they are recomputed when run")
        _discard_folder(folder)
        ckpt = Checkpoint(folder, _signature(tier), param="out")
    for key, why in ckpt.drop_unreadable():
        _warn(f"saved claim {key} is corrupted ({why}); discarded, it is recomputed when run")
    for key in list(ckpt.keys()):
        value = ckpt[key]
        if not isinstance(value, dict) or any(k not in value for k in RECORD_KEYS) or value.get("id") != key:
            ckpt.discard(key)
            _warn(f"saved claim {key} in {folder} is not a claim row (missing id or verdict); discarded, it is "
                  "recomputed when run")
    return ckpt


def _discard_folder(folder: Path) -> None:
    """Remove a claims folder whose signature is unreadable: only deepprop's own files (.json, .npz)."""
    for f in folder.iterdir() if folder.is_dir() else ():
        if f.is_file() and (f.suffix in (".json", ".npz") or f.name.startswith(".")):
            f.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def load_result(ckpt: Checkpoint, claim_id: str) -> dict[str, Any] | None:
    """The saved row of a claim, or None (also for one that cannot be read back, with a warning)."""
    if claim_id not in ckpt:
        return None
    try:
        return ckpt[claim_id]
    except CheckpointError as exc:
        _warn(f"saved claim {claim_id} is corrupted ({exc}); discarded")
        ckpt.discard(claim_id)
        return None


def report_state(out: Path) -> str:
    """What OUT holds: "absent", "empty", "report" (a deepprop report: its claims.json or saved claims), or
    "other" (files that are not deepprop's)."""
    out = Path(out)
    if not out.exists():
        return "absent"
    if not out.is_dir():
        return "other"
    entries = [p for p in out.iterdir() if not p.name.startswith(".deepprop-probe-")]
    if not entries:
        return "empty"
    claims = out / "claims.json"
    if claims.is_file():
        try:
            doc = json.loads(claims.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and "deepprop_version" in doc and "claims" in doc:
                return "report"
        except (OSError, UnicodeDecodeError, ValueError):
            pass
    saved = out / "claims"
    if saved.is_dir() and any((d / SIGNATURE_FILE).is_file() for d in saved.iterdir() if d.is_dir()):
        return "report"
    return "other"
