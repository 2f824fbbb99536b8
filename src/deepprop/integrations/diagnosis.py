"""A verdict read from a model's propagation profile: can signal and gradient cross its depth?

Along the spine of the model (the steps every path from the input to the output passes through: the
layers of a plain network, the block outputs of a residual one), indexed by the weight depth l (number of
Linear / Conv layers before the step), the profile gives the measured q^l, c^l and gains chi^l. Three
criteria decide, each from the measurement (the theory beside it is reported, never substituted):

1. correlation (the core paper, section 5): a network trains when its depth L <= 6 xi_c, i.e. when the
   distance of the correlation from its limit shrinks by less than e^6 over the depth. Measured in two ways:
   the representation that reaches the readout must still tell the inputs apart, 1 - c^L > e^-6 (1 - c^0)
   (a collapse onto c = 1, exponential in the ordered phase, fails; behind a global average pooling the
   representation before the pooling is read, since the pooled features' common mean dominates their
   uncentred correlation and the readout's bias absorbs it);
   and where c^l settles, the fit c^l = c_inf + A exp(-l / xi_c) must give L <= 6 xi_c. A correlation that
   keeps moving over the whole depth without settling passes the second test.
2. forward signal: the mean squared activation must stay within 10^6 of the input's over the spine and be
   finite (float32 overflow or underflow stops training whatever the depth scales say).
3. gradients: the end-to-end gain G = prod chi^l (the mean squared singular value of the input-output
   Jacobian relative to a unit gain) must stay within 10^6: |log10 G| <= 6.
4. conditioning (can only turn a verdict into "cannot tell"): the spread var/mean^2 of the end-to-end
   Jacobian's squared singular values, against the depth L, which is what the product of L critical Gaussian
   linear layers gives (Pennington, Schoenholz & Ganguli 2018); a network far worse conditioned than that
   (ReLU CNNs at the critical point, for instance) may stall however its signal propagates.

"cannot tell": a criterion whose measured value is within two standard errors of its threshold, or a
correlation that moved but whose relaxation could not be fitted. The verdict names the steps whose
prediction is exact, approximate, or measured only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEPTH_MULTIPLE = 6.0
SIGNAL_DECADES = 6.0
GRADIENT_DECADES = 6.0
CONFIDENCE = 2.0  # standard errors
THEORY_STILL = 0.05
"""A theory correlation that moves less than this over the whole depth started at (or near) its own limit."""


@dataclass
class ProfileDiagnosis:
    """What a profile says about trainability (see module docstring).

    ``trainable`` is True, False or None ("cannot tell"); ``verdict`` one sentence; ``reasons`` one line per
    criterion; ``modelled`` / ``approximated`` / ``measured_only`` the steps by theory label.
    """

    verdict: str
    trainable: bool | None
    depth: int
    xi_c: float
    xi_c_err: float
    xi_c_theory: float
    c_limit: float
    log10_signal_range: tuple[float, float]
    log10_gain: float
    log10_gain_err: float
    log10_gain_theory: float
    reasons: list[str]
    modelled: list[str]
    approximated: list[str]
    measured_only: list[str]
    depth_multiple: float = DEPTH_MULTIPLE
    notes: list[str] = field(default_factory=list)
    xi_c_reason: str | None = None  # why xi_c (and c_limit) is not a number: the correlation was not fitted

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "xi_c_reason"}
        d["log10_signal_range"] = list(self.log10_signal_range)
        if not math.isfinite(self.xi_c_theory):
            d["xi_c_theory_reason"] = ("the theory's c^l from the same c0 does not settle within the depth, or a "
                                       "step has no theory: no scale to compare")
        if self.xi_c_reason is not None:
            for key in ("xi_c", "xi_c_err", "c_limit"):
                if not math.isfinite(d[key]):
                    d[f"{key}_reason"] = self.xi_c_reason
        return d

    def __str__(self) -> str:
        parts = [f"verdict: {self.verdict}"]
        parts += [f"  {r}" for r in self.reasons]
        parts.append(f"  theory: {len(self.modelled)} steps exact, {len(self.approximated)} approximate, "
                     f"{len(self.measured_only)} measured only"
                     + (f" ({', '.join(self.measured_only[:6])}{', ...' if len(self.measured_only) > 6 else ''})"
                        if self.measured_only else ""))
        return "\n".join(parts + [f"  note: {n}" for n in self.notes])


def _spine(profile) -> list[dict[str, Any]]:
    """The last spine row at each weight depth, input first."""
    by_depth: dict[int, dict[str, Any]] = {}
    for r in profile.rows:
        if r["on_spine"]:
            by_depth[int(r["weight_depth"])] = r
    return [by_depth[k] for k in sorted(by_depth)]


def _repeated(spine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spine rows of the network's repeated kind (the most common kind after the input): the correlation
    is fitted on one kind of step only, since a step of another kind (a readout without dropout in front, a
    pre-activation among post-activations) has its own correlation, not a point of the same relaxation."""
    kinds = [r["kind"] for r in spine[1:]]
    if not kinds:
        return spine
    main = max(dict.fromkeys(kinds), key=kinds.count)
    return [r for r in spine[1:] if r["kind"] == main]


def fit_correlation_scale(depth: np.ndarray, c: np.ndarray,
                          err: np.ndarray | None = None) -> tuple[float, float, float, str]:
    """(xi, its standard error, c_inf, status) of c^l = c_inf + A exp(-l / xi).

    status: "fit" (a relaxation resolved within half the depth), "flat" (c did not move beyond its errors:
    xi >> depth), "slow" (c still moving at the end: xi longer than half the depth), "short" (fewer than five
    depths: too few for the three-parameter fit) or "failed".
    """
    from scipy.optimize import curve_fit

    ok = np.isfinite(c)
    x, y = depth[ok].astype(float), c[ok].astype(float)
    e = None if err is None else np.asarray(err, dtype=float)[ok]
    if x.size < 3:
        return math.nan, math.nan, math.nan, "short"
    noise = float(np.nanmedian(e)) if e is not None and np.isfinite(e).any() else 0.0
    span = float(np.nanmax(y) - np.nanmin(y))
    if span <= max(3 * noise, 1e-6):
        return math.inf, math.nan, float(y[-1]), "flat"
    if x.size < 5:
        return math.nan, math.nan, math.nan, "short"
    sigma = None
    if e is not None:
        pos = e[np.isfinite(e) & (e > 0)]
        floor = max(float(np.median(pos)) if pos.size else 0.0, 1e-4 * max(span, 1e-12))
        sigma = np.maximum(np.nan_to_num(e, nan=floor), floor)
    tail = float(y[-max(2, y.size // 5):].mean())

    def model(xx, y_inf, amp, rate):
        return y_inf + amp * np.exp(-rate * (xx - x[0]))

    best = None
    for guess in (0.5, 0.1, 0.02, 2.0 / max(x[-1] - x[0], 1.0)):
        try:
            p, cov = curve_fit(model, x, y, p0=(tail, y[0] - tail, guess), sigma=sigma, maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        resid = float(np.sum(((y - model(x, *p)) / (sigma if sigma is not None else 1.0)) ** 2))
        if best is None or resid < best[0]:
            best = (resid, p, cov)
    if best is None:
        return math.nan, math.nan, math.nan, "failed"
    _, (y_inf, amp, rate), cov = best
    rate_err = math.sqrt(cov[2, 2]) if np.isfinite(cov[2, 2]) and cov[2, 2] >= 0 else math.nan
    if not (math.isfinite(rate) and rate > 0):
        return math.inf, math.nan, float(y[-1]), "slow"
    xi = 1.0 / rate
    if xi > 0.5 * (x[-1] - x[0]):  # not relaxed over the depth: 6 xi_c > 3 L whatever the fit's error
        return xi, rate_err / rate**2 if math.isfinite(rate_err) else math.nan, float(y_inf), "slow"
    return xi, rate_err / rate**2 if math.isfinite(rate_err) else math.nan, float(y_inf), "fit"


def diagnose_profile(profile) -> ProfileDiagnosis:
    """Apply the three criteria of the module docstring to a :class:`~deepprop.integrations.profile.Profile`."""
    rows = profile.rows
    spine = _spine(profile)
    spine_all = [r for r in rows if r["on_spine"]]
    depth = int(max(r["weight_depth"] for r in rows))
    labels = {"exact": [], "approximate": [], "none": []}
    for r in rows[1:]:
        labels[r["theory"]].append(r["name"])
    reasons: list[str] = []
    decided: list[bool | None] = []
    notes: list[str] = []

    # 1. correlation: no collapse of the representation that reaches the output, and L <= 6 xi_c
    rep = _representation([r for r in rows if r["on_spine"]])
    c_first, c_last, c_last_err = spine[0]["c"], rep["c"], rep["c_err"]
    shrink = math.exp(-DEPTH_MULTIPLE)
    gap0, gap = 1.0 - c_first, 1.0 - c_last
    collapsed = gap0 > 0 and gap + CONFIDENCE * (c_last_err if math.isfinite(c_last_err) else 0.0) <= shrink * gap0
    if collapsed:
        reasons.append(f"correlation: 1 - c shrinks from {gap0:.3g} (input) to {gap:.2g} at {rep['name']} (by more "
                       f"than e^{DEPTH_MULTIPLE:g}): the inputs collapse onto one another")
        decided.append(False)
    body = _repeated(spine)
    d = np.array([r["weight_depth"] for r in body], dtype=float)
    c = np.array([r["c"] for r in body], dtype=float)
    ce = np.array([r["c_err"] for r in body], dtype=float)
    xi, xi_err, c_inf, status = fit_correlation_scale(d, c, ce)
    ct = np.array([r["c_theory"] for r in body], dtype=float)
    xi_th, theory_moves = math.nan, True
    if np.all(np.isfinite(ct)):
        xi_th, _, _, st_th = fit_correlation_scale(d, ct, None)
        if st_th != "fit":  # a scale beyond the depth, or none: an extrapolation, not a prediction
            xi_th = math.nan
        theory_moves = abs(float(ct[-1] - ct[0])) >= THEORY_STILL
    limit = DEPTH_MULTIPLE * xi if math.isfinite(xi) else math.inf
    theory_relaxes = math.isfinite(xi_th) and depth > DEPTH_MULTIPLE * xi_th
    if collapsed:
        pass
    elif status in ("flat", "slow") and (theory_relaxes or not theory_moves):
        # a pair whose theory barely moves (or settles well within the depth) most likely started at the
        # correlation's own limit (c0 near c*): its stillness says nothing about xi_c
        reasons.append(f"correlation: c goes {c_first:.3f} -> {c_last:.3f} (at {rep['name']}) without settling "
                       f"over {depth} weight layers, and the theory from the same c0 goes {ct[0]:.3f} -> "
                       f"{ct[-1]:.3f}: the pair may have started at the correlation's limit, cannot tell "
                       f"(profile again from another c0, e.g. c0=0.99)")
        decided.append(None)
    elif status in ("flat", "slow"):
        reasons.append(f"correlation: c goes {c_first:.3f} -> {c_last:.3f} (at {rep['name']}) without settling "
                       f"over {depth} weight layers (xi_c >~ depth): information about input differences survives")
        decided.append(True)
    elif status == "short":
        reasons.append(f"correlation: c goes {c_first:.3f} -> {c_last:.3f} (at {rep['name']}) over {depth} weight "
                       "layers, too few to fit a depth scale; no collapse")
        decided.append(True)
    elif status == "failed":
        reasons.append(f"correlation: c^l goes {c[0]:.3f} -> {c[-1]:.3f} but no relaxation could be fitted: cannot "
                       "tell from the correlation")
        decided.append(None)
    else:
        band = CONFIDENCE * DEPTH_MULTIPLE * xi_err if math.isfinite(xi_err) else math.inf
        text = (f"correlation: c^l relaxes to {c_inf:.3f} with xi_c = {xi:.3g} +- {xi_err:.2g} weight layers; "
                f"depth {depth} vs {DEPTH_MULTIPLE:g} xi_c = {limit:.3g}")
        if abs(depth - limit) <= band:
            decided.append(None)
            reasons.append(text + ": within the fit's uncertainty of the bound, cannot tell")
        else:
            decided.append(bool(depth <= limit))
            reasons.append(text + (": inside the trainable bound" if depth <= limit else ": beyond it"))

    # 2. forward signal
    q = np.array([r["q"] for r in spine_all], dtype=float)
    q0 = q[0] if q.size and q[0] > 0 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = np.log10(q / q0)
    if not np.all(np.isfinite(q)) or not np.all(np.isfinite(logq)):
        lo, hi = math.nan, math.nan
        reasons.append("forward signal: not finite along the depth (overflow, underflow or NaN)")
        decided.append(False)
    else:
        lo, hi = float(logq.min()), float(logq.max())
        worst_dec = max(abs(lo), abs(hi))
        direction = "grows" if abs(hi) >= abs(lo) else "shrinks"
        text = f"forward signal: q^l {direction} by up to 10^{worst_dec:.1f} relative to the input"
        if worst_dec > SIGNAL_DECADES:
            decided.append(False)
            what = "explodes" if direction == "grows" else "vanishes"
            reasons.append(text + f" (beyond 10^{SIGNAL_DECADES:g}: {what})")
        else:
            decided.append(True)
            reasons.append(text)

    # 3. gradients
    gain, gain_err, gain_th = _gain(spine_all, {r["name"]: r["numel"] for r in rows})
    if not math.isfinite(gain):
        reasons.append("gradients: the end-to-end gain is not finite")
        decided.append(False)
    else:
        band = CONFIDENCE * gain_err if math.isfinite(gain_err) else 0.0
        text = (f"gradients: end-to-end gain prod chi = 10^{gain:.2f} +- {gain_err:.2f}"
                + (f" (theory 10^{gain_th:.2f})" if math.isfinite(gain_th) else ""))
        if abs(abs(gain) - GRADIENT_DECADES) <= band:
            decided.append(None)
            reasons.append(text + f": within its error of 10^+-{GRADIENT_DECADES:g}, cannot tell")
        elif abs(gain) > GRADIENT_DECADES:
            decided.append(False)
            reasons.append(text + (": gradients explode" if gain > 0 else ": gradients vanish"))
        else:
            decided.append(True)
            reasons.append(text)

    # 4. conditioning (can only make the verdict "cannot tell")
    spread, spread_err = profile.jacobian.get("spread", math.nan), profile.jacobian.get("spread_err", math.nan)
    if profile.jacobian.get("batch_coupled"):
        reasons.append("conditioning: not used (BatchNorm in training mode couples the examples of the batch)")
        decided.append(True)
    elif math.isfinite(spread):
        err = spread_err if math.isfinite(spread_err) else 0.0
        text = (f"conditioning: the end-to-end Jacobian's squared singular values spread var/mean^2 = {spread:.3g} "
                f"+- {err:.2g} (a critical Gaussian linear network of depth {depth} has ~{depth})")
        if spread - CONFIDENCE * err > depth:
            decided.append(None)
            reasons.append(text + ": worse conditioned, training may stall: cannot tell")
        else:
            decided.append(True)
            reasons.append(text)

    if False in decided:
        trainable: bool | None = False
        verdict = "expect it not to train"
    elif None in decided:
        trainable = None
        verdict = "cannot tell"
    else:
        trainable = True
        verdict = "expect it to train"
    why = [r.split(":")[0] for r, dec in zip(reasons, decided, strict=True) if dec is trainable]
    verdict += f" ({', '.join(why)})" if why and trainable is not True else ""
    if labels["none"]:
        verdict += f"; {len(labels['none'])} of {len(rows) - 1} steps measured only"
    if profile.notes:
        notes += profile.notes
    xi_reason = {"flat": "c did not move beyond its errors over the depth: no relaxation to fit (xi_c >~ depth)",
                 "slow": "c still moves at the end of the depth: the relaxation is not resolved (xi_c >~ half the "
                         "depth; a fitted scale or limit would be an extrapolation)",
                 "short": "fewer than five depths: too few for the three-parameter fit",
                 "failed": "the fit of c^l = c_inf + A exp(-l / xi_c) did not converge"}.get(status)
    if xi_reason is not None:
        xi, xi_err, c_inf = math.nan, math.nan, math.nan
    return ProfileDiagnosis(
        verdict=verdict, trainable=trainable, depth=depth, xi_c=xi, xi_c_err=xi_err, xi_c_theory=xi_th,
        c_limit=c_inf, xi_c_reason=xi_reason, log10_signal_range=(lo, hi), log10_gain=gain, log10_gain_err=gain_err,
        log10_gain_theory=gain_th, reasons=reasons, modelled=labels["exact"], approximated=labels["approximate"],
        measured_only=labels["none"], notes=notes)


_POOLING = ("flatten", "global_avgpool", "adaptive_avgpool", "avgpool", "identity", "dropout")


def _representation(spine: list[dict[str, Any]]) -> dict[str, Any]:
    """The spine row whose correlation speaks for what the readout sees: the input of the last weight layer on
    the spine (a Linear head reads it), or the output when the spine does not end in a weight layer; behind a
    global average pooling, the representation before the pooling: the pooled correlation of ReLU-like features
    is dominated by their common mean, which the readout's bias absorbs."""
    i = len(spine) - 1
    for j in range(len(spine) - 1, 0, -1):
        if spine[j]["kind"] in ("linear", "conv"):
            i = j - 1
            break
    while i > 0 and spine[i]["kind"] in _POOLING:
        i -= 1
    return spine[i]


def _gain(spine: list[dict[str, Any]], numel: dict[str, int]) -> tuple[float, float, float]:
    """log10 of the product over the spine of each step's mean squared singular value (chi times
    n_in / min(n_in, n_out), so that a layer that only reduces the dimension has gain 1); measured, with an
    error from the per-step relative errors added in quadrature, and from the theory where every step has it."""
    steps = [r for r in spine[1:] if r["reference"] is not None]
    if not steps:
        return 0.0, 0.0, 0.0
    dim = np.array([numel[r["reference"]] / min(numel[r["reference"]], r["numel"]) for r in steps], dtype=float)
    vals = np.array([r["chi"] for r in steps], dtype=float) * dim
    errs = np.array([r["chi_err"] for r in steps], dtype=float) * dim
    th = np.array([r["chi_theory"] for r in steps], dtype=float) * dim
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(vals)
        rel = np.nan_to_num(errs / vals, nan=0.0) / math.log(10)
    gain = float(np.sum(logs)) if np.all(np.isfinite(logs)) else math.nan
    err = float(np.sqrt(np.sum(rel**2)))
    gain_th = float(np.sum(np.log10(th))) if np.all(np.isfinite(th)) and np.all(th > 0) else math.nan
    return gain, err, gain_th
