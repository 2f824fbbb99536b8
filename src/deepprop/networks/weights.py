"""Random weight matrices: Gaussian, or scaled Haar (semi-)orthogonal, from one standard normal draw.

Both kinds have the same per-entry variance sigma_w2 / fan_in:

* Gaussian: W = sqrt(sigma_w2 / fan_in) G with G_ij ~ N(0, 1);
* orthogonal: W = sqrt(sigma_w2 max(rows, cols) / fan_in) Q, Q Haar-distributed with orthonormal columns
  (rows >= cols) or rows (rows < cols). Q comes from the QR decomposition of G with the signs of
  diag(R) folded into Q, which makes it exactly Haar (Mezzadri 2007); a square layer gets
  sqrt(sigma_w2) times an orthogonal matrix.

Functions take the draw G (batched over leading dimensions) and return the matrices for sigma_w2 = 1;
callers multiply by sqrt(sigma_w2), which lets one draw serve a whole sweep of sigma_w2 values
(common random numbers).
"""

from __future__ import annotations

import math

import torch

WEIGHT_KINDS = ("gaussian", "orthogonal")


def haar_orthogonal(gauss: torch.Tensor) -> torch.Tensor:
    """Haar-distributed (semi-)orthogonal matrices of the shape of ``gauss``, batched over leading dims."""
    transpose = gauss.shape[-2] < gauss.shape[-1]
    a = gauss.transpose(-1, -2) if transpose else gauss
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.transpose(-1, -2) if transpose else q


def unit_weights(gauss: torch.Tensor, fan_in: int, kind: str) -> torch.Tensor:
    """Weights with sigma_w2 = 1 from a standard normal draw: entry variance 1 / fan_in (see module doc)."""
    if kind == "orthogonal":
        rows, cols = gauss.shape[-2], gauss.shape[-1]
        return haar_orthogonal(gauss) * math.sqrt(max(rows, cols) / fan_in)
    if kind == "gaussian":
        return gauss / math.sqrt(fan_in)
    raise ValueError(f"weight kind must be one of {WEIGHT_KINDS} (got {kind!r})")
