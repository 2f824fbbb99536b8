"""Where finished claims are kept: one :class:`deepprop.checkpoint.Checkpoint` per tier, in OUT/claims/<tier>/.

Each finished claim is one file written atomically, so a SIGKILL loses at most the claim in progress; the
same command again skips the finished ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepprop.checkpoint import Checkpoint


def claims_checkpoint(out: Path, tier: str) -> Checkpoint:
    """The finished claims of ``tier`` in OUT (rows of other tiers live in their own folders)."""
    return Checkpoint(Path(out) / "claims" / tier, {"report": "deepprop reproduce", "tier": tier})


def load_result(ckpt: Checkpoint, claim_id: str) -> dict[str, Any] | None:
    """The saved row of a claim, or None."""
    return ckpt[claim_id] if claim_id in ckpt else None
