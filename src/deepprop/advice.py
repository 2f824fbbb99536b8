"""Noise-aware critical initialisation: which (sigma_w^2, sigma_b^2) to initialise a network at.

:func:`critical_init` answers in three regimes (follow-ups section 1, core paper sections 2-3):

1. ReLU family (positively homogeneous phi: relu, leaky relu, linear) with no noise or multiplicative
   noise only, sigma_b^2 = 0: the variance map is q' = sigma_w^2 mu2 E[phi(z)^2] q, so
   sigma_w^2 = 1 / (mu2 E[phi(z)^2]) preserves every q exactly and makes chi_1 = 1. For relu
   E[phi(z)^2] = 1/2: sigma_w^2 = 2 / mu2 (He initialisation when mu2 = 1; 2 rho for dropout with keep
   rate rho). With noise (mu2 > 1) the correlation map sends c = 1 to 1/mu2 < 1, so c* < 1 and xi_c is
   finite: the choice is exact for the signal, and the trainable depth is about 6 xi_c.
2. Additive noise (any phi): no initialisation is critical. The signal either grows without bound or
   settles on a noise floor that decorrelates inputs, so :func:`critical_init` says so and returns the
   bounded-signal setting with the largest xi_c (see :func:`maximize_xi_c`).
3. Smooth activations (tanh, erf, gelu, ...) without noise: the point of the critical line chi_1 = 1 at
   the given sigma_b^2 (default :data:`DEFAULT_SIGMA_B2` = 0.05, the core paper's value; sigma_b^2 = 0
   puts tanh's critical point at q* = 0, which the signal only approaches polynomially). With
   multiplicative noise there is no critical point (c* < 1 everywhere, core paper section 3.1): the
   (sigma_w^2, sigma_b^2) maximising xi_c is returned instead, as it is where no critical point
   exists at the requested sigma_b^2.

The maximisation (:func:`maximize_xi_c`) evaluates the engine's broadcasting ``mean_field`` on a
coarse grid over the search box (:data:`SEARCH_SIGMA_W2` x :data:`SEARCH_SIGMA_B2`), keeps the
bounded-signal points (phase not "unbounded", q* within :data:`DEFAULT_Q_STAR_RANGE`), and refines
the best grid point by a bounded, vectorised zoom (one batched engine call per three-fold refinement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from deepprop.activations import Activation
from deepprop.errors import ParameterError, warn_at_caller
from deepprop.prior import Network, NetworkPrior, Noise, _one_value, as_prior, check_finite_nonnegative
from deepprop.results import format_number
from deepprop.validation import check_positive, check_positive_int

DEFAULT_SIGMA_B2 = 0.05
"""sigma_b^2 used for smooth activations when none is given (the core paper's figures use 0.05)."""

SEARCH_SIGMA_W2 = (0.05, 8.0)
"""Search box for sigma_w^2 when maximising xi_c."""

SEARCH_SIGMA_B2 = (0.0, 2.0)
"""Search box for sigma_b^2 when maximising xi_c."""

DEFAULT_Q_STAR_RANGE = (0.1, 10.0)
"""Fixed-point pre-activation variances q* accepted as a "bounded signal" (for unit-variance inputs).

The upper cap is needed because for ReLU-family networks with additive noise (or a bias) xi_c grows
without bound as q* -> infinity: the noise floor becomes negligible next to the signal. The lower one
because with multiplicative noise a smooth odd activation reaches its largest xi_c, 1/log(mu2) (the
linear network's), as q* -> 0: the signal that keeps its correlations longest is one that vanishes.
Both are reported whenever they are the binding constraint."""

DEFAULT_DEPTH_MULTIPLE = 6.0

_GRID_Q = 13
_GRID_T = 21
_GRID_W2_1D = 80
_ZOOM = 7
_MAX_ROUNDS = 80


class AdviceWarning(UserWarning):
    """:func:`critical_init` returned a setting that is not an exact critical initialisation, or that sits on
    a bound of its search (the ``warning`` field of the result says which)."""


@dataclass(frozen=True)
class CriticalInit:
    """A recommended initialisation and what the mean-field theory predicts for it.

    Attributes
    ----------
    activation : str
        Engine name of the activation.
    sigma_w2, sigma_b2 : float
        Weights ~ N(0, sigma_w2 / fan_in), biases ~ N(0, sigma_b2).
    chi1 : float
        sigma_w2 mu2 E[phi'(sqrt(q*) z)^2]; 1 on the critical line.
    xi_c : float
        Correlation depth scale (inf at an exact critical point).
    max_depth : float
        depth_multiple * xi_c: the predicted maximum trainable depth.
    exact : bool
        True for an exact critical initialisation (chi_1 = 1 with the signal variance preserved), False when
        none exists and the deepest-trainable (largest xi_c) setting is returned instead.
    critical : bool
        chi_1 = 1 within the engine's tolerance at the recommendation: the one meaning of "critical" in
        deepprop (``mean_field(...).phase == "critical"``, :func:`~deepprop.theory.meanfield.critical_sigma_w2`).
        With multiplicative noise a critical point keeps gradients stable but not correlations (c* < 1,
        xi_c finite), which is why the largest xi_c may sit elsewhere.
    critical_sigma_w2 : float
        The sigma_w2 with chi_1 = 1 at the recommended sigma_b2 and this noise (NaN where there is none).
    explanation : str
        One or two sentences saying why this choice.
    regime : str
        "relu-family", "critical-line", "max-xi_c" or "additive-noise".
    q_star, c_star : float
        Fixed-point variance and correlation at the recommendation.
    on_boundary : bool
        True when the search stopped on an edge of the search box or on the q* cap: the optimum may lie
        beyond it.
    warning : str or None
        Why to be careful with this advice (not exact, or on a search bound); also raised as an
        :class:`AdviceWarning` when :func:`critical_init` returns it.
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    chi1: float
    xi_c: float
    max_depth: float
    exact: bool
    explanation: str
    regime: str
    q_star: float
    c_star: float
    keep_rate: float = 1.0
    noise_mult: float = 0.0
    noise_add: float = 0.0
    depth: int | None = None
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE
    on_boundary: bool = False
    critical: bool = False
    critical_sigma_w2: float = math.nan
    warning: str | None = None

    def to_dict(self) -> dict:
        """Plain Python scalars, ready for JSON."""
        return asdict(self)

    def to_dataframe(self):
        """A one-row ``pandas.DataFrame`` of :meth:`to_dict` (rows of several calls concatenate)."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()])

    def __str__(self) -> str:
        return self.explanation

    def __repr__(self) -> str:  # the explanation is a paragraph: str() prints it
        fields = ("sigma_w2", "sigma_b2", "chi1", "xi_c", "max_depth", "exact", "regime", "keep_rate")
        shown = ", ".join(f"{k}={getattr(self, k)!r}" if not isinstance(getattr(self, k), float)
                          else f"{k}={getattr(self, k):.6g}" for k in fields)
        return f"CriticalInit({self.activation!r}, {shown}{', on_boundary=True' if self.on_boundary else ''})"


@dataclass(frozen=True)
class DeepestSetting:
    """Result of :func:`maximize_xi_c`."""

    sigma_w2: float
    sigma_b2: float
    xi_c: float
    on_boundary: bool
    q_cap_active: bool
    feasible: bool


def _mean_field(act: Activation, sw2, sb2, noise: Noise, depth_multiple: float):
    from deepprop.theory.meanfield import mean_field

    return mean_field(NetworkPrior(act, sw2, sb2, noise), depth_multiple=depth_multiple)


def _scalar(x) -> float:
    return float(np.asarray(x).reshape(()))


def homogeneous_second_moment(act: Activation) -> float:
    """E[phi(z)^2] for a positively homogeneous phi: (phi(1)^2 + phi(-1)^2) / 2 exactly.

    phi(x) = x phi(1) for x > 0 and |x| phi(-1) for x < 0, and E[z^2; z > 0] = E[z^2; z < 0] = 1/2.
    """
    v = act.fn(torch.tensor([1.0, -1.0], dtype=torch.float64))
    return 0.5 * (float(v[0]) ** 2 + float(v[1]) ** 2)


def _feasible_score(mf, q_star_range: tuple[float, float]) -> np.ndarray:
    """log xi_c where the signal is bounded (q* within q_star_range), -inf elsewhere."""
    xi = np.asarray(mf.xi_c, dtype=np.float64)
    q = np.asarray(mf.q_star, dtype=np.float64)
    ok = (np.asarray(mf.phase) != "unbounded") & np.isfinite(q) & (xi > 0)
    ok &= (q >= q_star_range[0]) & (q <= q_star_range[1])
    ok &= ~np.isnan(xi)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ok, np.log(np.where(ok, xi, 1.0)), -np.inf)
    return score


def _network(prior: Network, noise: dict) -> tuple[Activation, Noise]:
    """The activation and (single-valued) noise of a prior or of the loose form; the prior's sigma_w2 and
    sigma_b2 are what the advice chooses, so they are not used."""
    if isinstance(prior, NetworkPrior):
        if noise:
            raise ParameterError("prior", "pass either a NetworkPrior or noise values, not both")
    else:
        prior = as_prior(prior, 1.0, 0.0, **noise)
    return prior.activation, prior.noise.single()


def maximize_xi_c(
    prior: Network,
    *,
    sigma_b2: float | None = None,
    sigma_w2_range: tuple[float, float] = SEARCH_SIGMA_W2,
    sigma_b2_range: tuple[float, float] = SEARCH_SIGMA_B2,
    q_star_range: tuple[float, float] = DEFAULT_Q_STAR_RANGE,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
    xtol: float = 1e-6,
    **noise: float,
) -> DeepestSetting:
    """The bounded-signal (sigma_w^2, sigma_b^2) with the largest xi_c: the deepest trainable setting.

    Maximises xi_c over sigma_w^2 in ``sigma_w2_range`` and sigma_b^2 in ``sigma_b2_range`` (or over
    sigma_w^2 alone when ``sigma_b2`` is given) subject to a bounded signal: phase != "unbounded" and q*
    within ``q_star_range`` (see :data:`DEFAULT_Q_STAR_RANGE`). In 2-D the search runs in coordinates
    (log q*, t): sigma_w^2 = lo(q*) + t (hi(q*) - lo(q*)) spans the values whose bias sigma_b^2 = q* -
    sigma_w^2 V(q*), V(q) = mu2 E[phi(sqrt(q) z)^2] + s_add^2 (one engine step), stays in the sigma_b^2
    box, so every constraint is an edge of the unit square (optima sit on them). A coarse grid of the
    engine's vectorised ``mean_field`` finds the basin; a bounded pattern search then evaluates a 7 x 7
    grid (7 points in 1-D) of half-width one step around the best point, keeps the step while the best
    point walks out of the window and shrinks it three-fold otherwise, until the step is below ``xtol``
    (unit-square coordinates). Each round is one batched engine call (a handful of vectorised calls
    instead of ~100 scalar ones). An infinite xi_c (an exact critical point) is returned as is.

    ``prior``: a NetworkPrior (its activation and noise) or an activation with the noise keywords.
    """
    act, noise = _network(prior, noise)
    w_lo, w_hi = (float(v) for v in sigma_w2_range)
    b_lo, b_hi = (float(v) for v in sigma_b2_range)
    if not (0 < w_lo < w_hi and math.isfinite(w_hi)):
        raise ParameterError("sigma_w2_range", f"must be 0 < low < high < inf (got {sigma_w2_range})")
    if not (0 <= b_lo < b_hi and math.isfinite(b_hi)):
        raise ParameterError("sigma_b2_range", f"must be 0 <= low < high < inf (got {sigma_b2_range})")
    if not (0 <= q_star_range[0] < q_star_range[1]):
        raise ParameterError("q_star_range", f"must be 0 <= low < high (got {q_star_range})")

    one_d = sigma_b2 is not None
    q_lo, q_hi = (float(v) for v in q_star_range)
    q_lo = max(q_lo, 1e-8 * q_hi)
    if one_d:
        b_lo = b_hi = float(sigma_b2)

    def to_params(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-square coordinates -> (sigma_w2, sigma_b2, feasible)."""
        u, v = np.broadcast_arrays(u, v)
        if one_d:
            return w_lo + u * (w_hi - w_lo), np.full(u.shape, b_lo), np.ones(u.shape, dtype=bool)
        # 2-D: u -> log q*, v -> position of sigma_w2 between the smallest and largest value that keep the
        # bias sigma_b2 = q* - sigma_w2 V(q*) inside [b_lo, b_hi], with V(q) = mu2 E[phi(sqrt(q) z)^2] +
        # s_add^2. Every constraint (box, q* range, bias range) is then an edge of the unit square.
        q = np.exp(math.log(q_lo) + u * (math.log(q_hi) - math.log(q_lo)))
        gain = _variance_gain(act, q, noise)
        lo = np.maximum(w_lo, (q - b_hi) / gain)
        hi = np.minimum(w_hi, (q - b_lo) / gain)
        sw2 = lo + v * (hi - lo)
        sb2 = np.clip(q - sw2 * gain, b_lo, b_hi)
        return sw2, sb2, hi >= lo

    def best_of(u: np.ndarray, v: np.ndarray) -> tuple[int, int, float, float, float]:
        sw2, sb2, ok = to_params(u[:, None], v[None, :])
        sw2 = np.where(ok, sw2, w_lo)
        score = np.where(ok, _feasible_score(_mean_field(act, sw2, sb2, noise, depth_multiple), q_star_range),
                         -np.inf)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        return int(i), int(j), float(score[i, j]), float(sw2[i, j]), float(sb2[i, j])

    u_grid = np.linspace(0.0, 1.0, _GRID_W2_1D if one_d else _GRID_Q)
    v_grid = np.array([0.0]) if one_d else np.linspace(0.0, 1.0, _GRID_T)
    i, j, s, sw2_best, sb2_best = best_of(u_grid, v_grid)
    if s == -np.inf:
        return DeepestSetting(math.nan, math.nan, math.nan, False, False, feasible=False)
    x = np.array([u_grid[i], v_grid[j]])
    half = np.array([u_grid[1] - u_grid[0], 0.0 if one_d else v_grid[1] - v_grid[0]])
    for _ in range(_MAX_ROUNDS):
        if s == np.inf or half.max() <= xtol:
            break
        uv = np.clip(np.linspace(x[0] - half[0], x[0] + half[0], _ZOOM), 0.0, 1.0)
        vv = np.array([x[1]]) if one_d else np.clip(
            np.linspace(x[1] - half[1], x[1] + half[1], _ZOOM), 0.0, 1.0)
        i, j, s_new, sw2_new, sb2_new = best_of(uv, vv)
        walking = i in (0, _ZOOM - 1) and uv[i] not in (0.0, 1.0)
        walking |= not one_d and j in (0, _ZOOM - 1) and vv[j] not in (0.0, 1.0)
        if s_new > s:
            x, s, sw2_best, sb2_best = np.array([uv[i], vv[j]]), s_new, sw2_new, sb2_new
        else:
            walking = False
        if not walking:
            half = half * 2.0 / (_ZOOM - 1)  # shrink unless the best point is walking out of the window
    return _setting(act, noise, sw2_best, sb2_best, (w_lo, w_hi), (b_lo, b_hi), one_d, q_star_range,
                    depth_multiple)


def _variance_gain(act: Activation, q: np.ndarray, noise: Noise) -> np.ndarray:
    """V(q) = mu2 E[phi(sqrt(q) z)^2] + s_add^2: one engine step of the variance map at sw2 = 1, sb2 = 0."""
    from deepprop.theory.meanfield import trajectory

    q1, _ = trajectory(NetworkPrior(act, 1.0, 0.0, noise), q0=np.array(q), c0=1.0, depth=1)
    return q1[..., 1]


def _setting(act, noise, sw2, sb2, wbox, bbox, one_d, q_star_range, depth_multiple) -> DeepestSetting:
    mf = _mean_field(act, sw2, sb2, noise, depth_multiple)
    q = _scalar(mf.q_star)
    edge = abs(sw2 - wbox[0]) < 1e-4 * wbox[1] or abs(sw2 - wbox[1]) < 1e-4 * wbox[1]
    if not one_d:
        edge |= abs(sb2 - bbox[1]) < 1e-4 * bbox[1] or (bbox[0] > 0 and abs(sb2 - bbox[0]) < 1e-4 * bbox[1])
    q_cap = bool(np.isfinite(q) and (q > 0.99 * q_star_range[1] or q < 1.01 * q_star_range[0]))
    return DeepestSetting(sw2, sb2, _scalar(mf.xi_c), bool(edge or q_cap), q_cap, feasible=True)


def _check_depth(depth: int | None) -> int | None:
    return None if depth is None else check_positive_int("depth", depth)


def depth_sentence(depth: int, max_depth: float, depth_multiple: float) -> str:
    """'depth 120 > 6*xi_c = 71: expect it not to train' style comparison."""
    k = f"{depth_multiple:g}*xi_c"
    if not math.isfinite(max_depth) and not math.isnan(max_depth):
        return f"depth {depth} < {k} = inf: signal propagates at any depth, expect it to train"
    if math.isnan(max_depth):
        return f"depth {depth}: no finite depth scale (the signal is unbounded), expect it not to train"
    if depth <= max_depth:
        return f"depth {depth} <= {k} = {max_depth:.0f}: expect it to train"
    return f"depth {depth} > {k} = {max_depth:.0f}: expect it not to train"


def critical_init(
    prior: Network,
    *,
    sigma_b2: float | None = None,
    depth: int | None = None,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
    q_star_range: tuple[float, float] = DEFAULT_Q_STAR_RANGE,
    **noise: float,
) -> CriticalInit:
    """Recommend (sigma_w^2, sigma_b^2) for a network with this activation and noise; see module doc.

    ``critical_init(prior)`` takes the activation and noise of a NetworkPrior (its sigma_w2 and sigma_b2 are
    what is chosen; pass ``sigma_b2`` to hold the bias fixed), ``critical_init("relu", keep_rate=0.8)`` the
    loose form: ``keep_rate`` is the probability of KEEPING a unit (``nn.Dropout(p)`` has keep_rate = 1 - p),
    ``noise_mult`` the std of multiplicative Gaussian noise eps ~ N(1, s^2), ``noise_add`` the std of
    additive Gaussian noise. ``depth`` (optional) adds a verdict on whether a network of that many
    layers is predicted to train (depth <= depth_multiple * xi_c).

    Whenever the answer is not exact or sits on a bound of the search, the result's ``warning`` says so and
    an :class:`AdviceWarning` is raised.
    """
    act, noise = _network(prior, noise)
    kr, nm, na = noise.scalar()  # one value each (ParameterError naming the one that is an array)
    mu2 = float(noise.mu2)
    additive = float(noise.add_var) > 0
    if sigma_b2 is not None:
        sigma_b2 = _one_value("sigma_b2", check_finite_nonnegative("sigma_b2", sigma_b2))
    depth = _check_depth(depth)
    depth_multiple = check_positive("depth_multiple", depth_multiple)
    common = dict(activation=act.name, keep_rate=kr, noise_mult=nm, noise_add=na, depth=depth,
                  depth_multiple=depth_multiple)
    noise_text = _noise_text(noise)
    result = _advise(act, noise, sigma_b2, q_star_range, depth_multiple, common, noise_text, mu2, additive)
    if result.warning is not None:
        warn_at_caller(result.warning, AdviceWarning)
    return result


def _advise(act: Activation, noise: Noise, sigma_b2: float | None, q_star_range: tuple[float, float],
            depth_multiple: float, common: dict, noise_text: str, mu2: float, additive: bool) -> CriticalInit:
    """The three regimes of the module docstring, in order."""
    kr, nm = common["keep_rate"], common["noise_mult"]
    if not additive and act.homogeneous and not sigma_b2:
        m2 = homogeneous_second_moment(act)
        extra_mu2 = float(np.prod([float(k.mu2()) for k in noise.extra])) if noise.extra else 1.0
        sw2 = kr / ((1.0 + nm * nm) * m2) / extra_mu2  # = 1 / (mu2 E[phi^2]); exactly 2 rho for relu with dropout
        mf = _mean_field(act, sw2, 0.0, noise, depth_multiple)
        head = (f"{act.name} is positively homogeneous: sigma_w2 = 1/(mu2 E[phi(z)^2]) = {sw2:.6g} "
                f"with sigma_b2 = 0 preserves the signal variance exactly (chi_1 = 1)")
        if mu2 == 1.0:
            tail = "; without noise this is the exact critical point (xi_c = inf)"
        else:
            tail = (f"; the noise ({noise_text}, mu2 = {mu2:.4g}) stops inputs correlating fully "
                    f"(c* = {_scalar(mf.c_star):.5f}), so xi_c = {_scalar(mf.xi_c):.4g} stays finite")
        return _result(mf, sw2, 0.0, True, "relu-family", head + tail, common, False)

    if not additive and mu2 == 1.0 and not act.homogeneous:
        sb2 = DEFAULT_SIGMA_B2 if sigma_b2 is None else sigma_b2
        from deepprop.theory.meanfield import critical_sigma_w2

        sw2 = _scalar(critical_sigma_w2(act, sb2))
        mf = _mean_field(act, sw2, sb2, noise, depth_multiple) if math.isfinite(sw2) else None
        # Use the root only where the engine's own fixed point agrees that chi_1 = 1 there (an activation
        # whose variance map has several fixed points may put q* elsewhere).
        if mf is not None and str(np.asarray(mf.phase).reshape(())) == "critical":
            text = (f"{act.name} at sigma_b2 = {sb2:g}: sigma_w2 = {sw2:.6g} lies on the critical line "
                    f"chi_1 = 1, where xi_c diverges (the order-to-chaos transition)")
            return _result(mf, sw2, sb2, True, "critical-line", text, common, False, divergent=True)

    best = maximize_xi_c(NetworkPrior(act, 1.0, 0.0, noise), sigma_b2=sigma_b2, q_star_range=q_star_range,
                         depth_multiple=depth_multiple)
    if not best.feasible:
        text = (f"no bounded-signal setting found for {act.name} with {noise_text or 'no noise'} in the "
                f"search box sigma_w2 in {SEARCH_SIGMA_W2}, sigma_b2 in {SEARCH_SIGMA_B2}")
        nan = math.nan
        return CriticalInit(sigma_w2=nan, sigma_b2=nan, chi1=nan, xi_c=nan, max_depth=nan, exact=False,
                            explanation=text, regime="none", q_star=nan, c_star=nan, **common,
                            warning="no advice: " + text)
    mf = _mean_field(act, best.sigma_w2, best.sigma_b2, noise, depth_multiple)
    where = "at the given sigma_b2" if sigma_b2 is not None else "over sigma_w2 and sigma_b2"
    if additive:
        regime = "additive-noise"
        head = (f"no critical initialisation exists with additive noise ({noise_text}): the signal "
                f"either grows without bound or settles on a noise floor that decorrelates inputs; the "
                f"bounded-signal choice with the largest xi_c {where} is sigma_w2 = {best.sigma_w2:.4g}, "
                f"sigma_b2 = {best.sigma_b2:.4g} (xi_c = {best.xi_c:.4g})")
    else:
        regime = "max-xi_c"
        why = (f"with {noise_text} there is no critical point of the correlations (c* < 1 everywhere; "
               f"chi_1 = 1 still keeps gradients stable, at sigma_w2 = "
               f"{format_number(_critical_sigma_w2(act, best.sigma_b2, noise), 4)})" if mu2 != 1.0 else
               f"{act.name} has no critical point at sigma_b2 = {sigma_b2:g}" if sigma_b2 is not None else
               f"{act.name} has no critical point at sigma_b2 = {DEFAULT_SIGMA_B2:g}")
        head = (f"{why}; the deepest trainable setting (largest xi_c {where}) is "
                f"sigma_w2 = {best.sigma_w2:.4g}, sigma_b2 = {best.sigma_b2:.4g} with xi_c = {best.xi_c:.4g}")
    if best.q_cap_active:
        lo, hi = q_star_range
        head += (f"; xi_c keeps growing as the signal variance leaves the accepted range, so the answer sits "
                 f"on its edge ({lo:g} <= q* <= {hi:g}, q* = {_scalar(mf.q_star):.4g})")
    elif best.on_boundary:
        head += "; it lies on the edge of the search box, so a better setting may exist outside it"
    return _result(mf, best.sigma_w2, best.sigma_b2, False, regime, head, common, best.on_boundary)


def _critical_sigma_w2(act: Activation, sigma_b2: float, noise: Noise) -> float:
    """sigma_w2 on the critical line chi_1 = 1 at ``sigma_b2`` with this noise (NaN where none)."""
    from deepprop.theory.meanfield import critical_sigma_w2

    return _scalar(critical_sigma_w2(NetworkPrior(act, 1.0, sigma_b2, noise)))


def _noise_text(noise: Noise) -> str:
    kr, nm, na = noise.scalar()
    parts = []
    if kr != 1.0:
        parts.append(f"dropout keep rate {kr:g}")
    if nm:
        parts.append(f"multiplicative noise std {nm:g}")
    if na:
        parts.append(f"additive noise std {na:g}")
    parts += [f"{kind.parameter_name} {float(kind.value):g}" for kind in noise.extra if kind.is_active()]
    return ", ".join(parts)


def _result(mf, sw2: float, sb2: float, exact: bool, regime: str, text: str, common: dict,
            on_boundary: bool, divergent: bool = False) -> CriticalInit:
    """Package a recommendation. ``divergent``: a noise-free point on chi_1 = 1, where c* = 1 and
    xi_c = -1/log chi_1 is infinite (the engine's root is exact only to ~1e-12, giving a huge finite value).
    """
    xi = math.inf if divergent else _scalar(mf.xi_c)
    max_depth = math.inf if divergent else _scalar(mf.max_depth)
    text = text + f"; predicted maximum trainable depth {format_number(max_depth, 4)} layers."
    if common["depth"] is not None:
        text += " " + depth_sentence(common["depth"], max_depth, common["depth_multiple"]) + "."
    warning = None
    if not exact:
        warning = (f"{common['activation']}: not an exact critical initialisation (regime {regime}); "
                   f"the setting with the largest xi_c is returned: sigma_w2 = {format_number(float(sw2), 4)}, "
                   f"sigma_b2 = {format_number(float(sb2), 4)}, xi_c = {format_number(xi, 4)}")
    if on_boundary:
        warning = (warning + "; " if warning else "") + ("it sits on a bound of the search (box edge or q* "
                                                          "range): a better setting may lie beyond it")
    noise = mf.prior.noise
    return CriticalInit(sigma_w2=float(sw2), sigma_b2=float(sb2), chi1=_scalar(mf.chi1), xi_c=xi,
                        max_depth=max_depth, exact=exact, explanation=text, regime=regime,
                        q_star=_scalar(mf.q_star), c_star=1.0 if divergent else _scalar(mf.c_star),
                        on_boundary=on_boundary, critical=str(np.asarray(mf.phase).reshape(())) == "critical",
                        critical_sigma_w2=float(sw2) if divergent else _critical_sigma_w2(mf.prior.activation,
                                                                                             float(sb2), noise),
                        warning=warning, **common)


def maximize_depth_result(
    prior: Network,
    *,
    sigma_b2: float | None = None,
    **noise: float,
) -> dict:
    """The deepest trainable setting (:func:`maximize_xi_c`) and the mean-field point there, as a dict.

    ``prior``: a NetworkPrior (its activation and noise) or an activation with the noise keywords. With
    ``sigma_b2`` given only sigma_w^2 is searched; otherwise both over the search box
    (:data:`SEARCH_SIGMA_W2` x :data:`SEARCH_SIGMA_B2`). Keys: activation, the noise, the search box,
    ``feasible`` and ``on_boundary``, and where feasible sigma_w2, sigma_b2, q_star, c_star, chi1, xi_c,
    max_depth (= 6 xi_c) and phase of :func:`deepprop.theory.meanfield.mean_field` at the optimum.
    """
    from deepprop.theory.meanfield import mean_field

    act, nz = _network(prior, noise)
    best = maximize_xi_c(NetworkPrior(act, 1.0, 0.0, nz), sigma_b2=sigma_b2)
    kr, nm, na = nz.scalar()
    out = {"activation": act.name, "keep_rate": kr, "noise_mult": nm, "noise_add": na,
           "search_sigma_w2": list(SEARCH_SIGMA_W2),
           "search_sigma_b2": list(SEARCH_SIGMA_B2) if sigma_b2 is None else [sigma_b2, sigma_b2],
           "feasible": best.feasible, "on_boundary": best.on_boundary}
    if best.feasible:
        point = mean_field(NetworkPrior(act, best.sigma_w2, best.sigma_b2, nz)).to_dict()
        out.update({k: point[k] for k in ("sigma_w2", "sigma_b2", "q_star", "c_star", "chi1", "xi_c",
                                          "max_depth", "phase")})
    return out
