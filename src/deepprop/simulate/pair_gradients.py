"""Huang et al.'s single-input and pair gradient statistics with real (shared) backpropagation (follow-ups
section 2; their fig. 3).

Protocol (protocols.md): random networks, two independent N(0, I) inputs a and b, the squared-error loss
E_a = |z_a|^2 / 2 of the network's output against a zero target, backpropagated through the forward weights
and each input's own dropout masks. Per layer l, with the error delta^l = dE/dz^l and the layer's input y^{l-1},
the weight gradient of input a is delta_a (y_a)^T, so

    g_aa^l  = mean_ij (dE_a/dW_ij)^2                    = mean_i (delta_a,i)^2      * mean_j (y_a,j)^2,
    g~_ab^l = mean_ij |dE_a/dW_ij * dE_b/dW_ij|         = mean_i |delta_a,i delta_b,i| * mean_j |y_a,j y_b,j|

(the ABSOLUTE product: the signed one changes sign from layer to layer). The claim is that both decay (or
grow) with depth at the single-input rate chi_1 per layer. :func:`pair_gradient_profiles` returns both
profiles per network; :func:`depth_scale_ratio` fits log g against l over the bulk layers and compares the
two slopes (jackknife over networks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deepprop.networks import Ensemble
from deepprop.simulate.fitting import fit_log_linear
from deepprop.simulate.gradients import forward_pass


@dataclass
class PairProfiles:
    """Per network (networks, depth): g_aa (mean over the two inputs of each pair) and g~_ab, layers 1..L."""

    activation: str
    sigma_w2: float
    sigma_b2: float
    keep_rate: float
    width: int
    depth: int
    single: np.ndarray
    pair: np.ndarray


WEIGHT_BYTES = 1 << 29
"""Networks are run in chunks whose weights (kept for the backward pass) fit in this many bytes."""


def pair_gradient_profiles(activation: str, sigma_w2: float, sigma_b2: float, *, keep_rate: float = 1.0,
                           width: int = 1000, depth: int = 200, networks: int = 32, pairs: int = 1, seed: int = 0,
                           device: str | None = None, dtype: str = "float64") -> PairProfiles:
    """g_aa^l and g~_ab^l of ``networks`` random networks (module docstring); ``pairs`` independent input pairs
    per network are averaged (each its own a, b). Networks run in chunks of at most WEIGHT_BYTES of weights
    (chunk k drawn from seed + k), so width 1000 and depth 200 fit in memory."""
    itemsize = 8 if dtype == "float64" else 4
    per_net = (depth + 1) * width * width * itemsize
    chunk = max(1, min(networks, WEIGHT_BYTES // per_net))
    single, pair, name = [], [], activation
    for k, start in enumerate(range(0, networks, chunk)):
        ens = Ensemble.build(activation, sigma_w2, sigma_b2, width, networks=min(chunk, networks - start),
                             keep_rate=keep_rate, device=device, dtype=dtype)
        name = ens.activation.name
        a, b = _profiles(ens, depth, width, pairs, seed + k)
        single.append(a)
        pair.append(b)
    return PairProfiles(name, float(sigma_w2), float(sigma_b2), float(keep_rate), int(width), int(depth),
                        np.concatenate(single, axis=0), np.concatenate(pair, axis=0))


def _profiles(ens: Ensemble, depth: int, width: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gen = ens.generator(seed)
    x = torch.randn((ens.batch, width, 2 * pairs), generator=gen, device=ens.device, dtype=ens.dtype)
    with torch.enable_grad():
        fp = forward_pass(ens, x.clone().requires_grad_(True), depth, width, gen)
        loss = 0.5 * (fp.logits ** 2).sum()  # E = sum over inputs of |z_a|^2 / 2: zero target
        deltas = torch.autograd.grad(loss, fp.zs)
    single, pair = [], []
    with torch.no_grad():
        for layer in range(depth):
            d, y = deltas[layer], fp.inputs[layer].detach()  # error of layer l, input of layer l
            da, db, ya, yb = d[..., 0::2], d[..., 1::2], y[..., 0::2], y[..., 1::2]
            g_aa = 0.5 * ((da ** 2).mean(1) * (ya ** 2).mean(1) + (db ** 2).mean(1) * (yb ** 2).mean(1))
            g_ab = (da * db).abs().mean(1) * (ya * yb).abs().mean(1)
            single.append(g_aa.mean(-1).cpu().numpy())
            pair.append(g_ab.mean(-1).cpu().numpy())
    return np.stack(single, axis=1), np.stack(pair, axis=1)


def _slope(layers: np.ndarray, curve: np.ndarray) -> float:
    fit = fit_log_linear(layers, curve)
    return fit.slope if fit.ok else math.nan


@dataclass
class ScaleRatio:
    """Per-layer log slopes of the network-mean profiles (1/xi, signed), their ratio pair/single = xi_single /
    xi_pair, and the jackknife error of the ratio over networks."""

    slope_single: float
    slope_pair: float
    ratio: float
    ratio_err: float
    layers: tuple[int, int]


def depth_scale_ratio(p: PairProfiles, skip: float = 0.1) -> ScaleRatio:
    """Fit log g against the layer over the bulk (the first and last ``skip`` of the layers left out: the
    input transient and the readout), for g_aa and g~_ab, and their slope ratio with a jackknife error."""
    lo = max(1, int(round(skip * p.depth)))
    hi = p.depth - lo
    layers = np.arange(1, p.depth + 1)[lo:hi]

    def ratio(single: np.ndarray, pair: np.ndarray) -> tuple[float, float, float]:
        a, b = _slope(layers, single.mean(axis=0)[lo:hi]), _slope(layers, pair.mean(axis=0)[lo:hi])
        return a, b, b / a if a else math.nan

    a, b, r = ratio(p.single, p.pair)
    k = p.single.shape[0]
    err = math.nan
    if k >= 3:
        jack = np.array([ratio(np.delete(p.single, i, 0), np.delete(p.pair, i, 0))[2] for i in range(k)])
        if np.all(np.isfinite(jack)):
            err = math.sqrt((k - 1) / k * float(((jack - jack.mean()) ** 2).sum()))
    return ScaleRatio(a, b, r, err, (int(layers[0]), int(layers[-1])))
