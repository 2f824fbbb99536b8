"""The propagation profile of any PyTorch model: measured and predicted, step by step.

``profile(model, example_input)`` traces the model (:mod:`deepprop.integrations.graph`), measures at every
step the mean squared entry q, the correlation c of a pair of inputs and the gain chi of the step's
Jacobian over several initialisations (:mod:`deepprop.integrations.measure`), and puts the mean-field
prediction beside each where theory exists (:mod:`deepprop.integrations.theory_layers`), labelled
``exact``, ``approximate`` or ``none`` (measured only). ``Profile.to_frame()`` is the table;
``Profile.diagnosis`` the verdict read from it (:mod:`deepprop.integrations.diagnosis`).

Inputs: ``pairs`` Gaussian pairs (an int) with per-entry variance that of ``example_input`` and
correlation ``c0``, or data pairs ``(xa, xb)`` (two batches of equal shape).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deepprop.errors import ParameterError
from deepprop.integrations.graph import ModelGraph, reference_input, trace_model
from deepprop.integrations.measure import REDRAWS, Measured, gaussian_pairs, mean_and_error, measure
from deepprop.integrations.moments import EXACT, NONE, Moments
from deepprop.integrations.theory_layers import Displacement, Propagator, tangent_gain
from deepprop.results import format_number

COLUMNS = ("name", "kind", "q", "q_err", "q_theory", "c", "c_err", "c_theory", "chi", "chi_err", "chi_theory",
           "theory")
DETAIL_COLUMNS = ("what", "source", "weight_depth", "on_spine", "reference", "numel")
MAX_INITS = 10_000
DEFAULT_PAIRS = 4
LARGE_INPUT = 1024  # entries per example from which each pair already averages over many positions
LARGE_INPUT_PAIRS = 2
BATCHNORM_PAIRS = 32


@dataclass
class Profile:
    """A model's propagation profile: one row per step (see :data:`COLUMNS`) plus the end-to-end Jacobian.

    ``jacobian``: ``mean_sq_sv`` (mean squared singular value of the input-output Jacobian over its
    min(n_in, n_out) singular values) with ``_err`` and ``_theory``, and ``spread`` = var/mean^2 of the
    squared singular values (0 for an isometry; Hutchinson estimate), with ``_err``.
    """

    rows: list[dict[str, Any]]
    jacobian: dict[str, float]
    input_shape: tuple[int, ...]
    inputs: str
    c0: float | None
    q0: float
    inits: int
    pairs: int
    redraw: str
    method: str
    notes: list[str] = field(default_factory=list)
    graph: ModelGraph | None = field(default=None, repr=False)
    _diagnosis: Any = field(default=None, repr=False)

    def to_frame(self, details: bool = False):
        """pandas DataFrame with one row per step and the columns :data:`COLUMNS` (plus
        :data:`DETAIL_COLUMNS` when ``details``)."""
        import pandas as pd

        cols = COLUMNS + (DETAIL_COLUMNS if details else ())
        return pd.DataFrame([{k: r[k] for k in cols} for r in self.rows], columns=list(cols))

    @property
    def diagnosis(self):
        """The verdict read from this profile (:class:`deepprop.integrations.diagnosis.ProfileDiagnosis`)."""
        if self._diagnosis is None:
            from deepprop.integrations.diagnosis import diagnose_profile

            self._diagnosis = diagnose_profile(self)
        return self._diagnosis

    def to_dict(self) -> dict:
        """Plain values for JSON: ``rows`` (exactly :data:`COLUMNS`, as ``to_frame()``), ``row_details``
        (:data:`DETAIL_COLUMNS` per row, same order), the ``verdict`` block, the Jacobian, settings, notes."""
        return {
            "rows": [{k: r[k] for k in COLUMNS} for r in self.rows],
            "verdict": self.diagnosis.to_dict(),
            "jacobian": dict(self.jacobian),
            "row_details": [{"name": r["name"], **{k: r[k] for k in DETAIL_COLUMNS}} for r in self.rows],
            "input_shape": list(self.input_shape), "inputs": self.inputs, "c0": self.c0, "q0": self.q0,
            "inits": self.inits, "pairs": self.pairs, "redraw": self.redraw, "traced_by": self.method,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [f"profile of {len(self.rows)} steps ({self.method}), input {self.input_shape}, {self.inputs}, "
                 f"{self.inits} initialisations"]
        head = f"{'name':<24} {'kind':<14} {'q':>10} {'q_theory':>10} {'c':>7} {'c_theory':>8} {'chi':>8} " \
               f"{'chi_th':>8} theory"
        lines.append(head)
        for r in self.rows:
            lines.append(f"{r['name'][:24]:<24} {r['kind'][:14]:<14} {_fmt(r['q']):>10} {_fmt(r['q_theory']):>10} "
                         f"{_fmt(r['c'], 4):>7} {_fmt(r['c_theory'], 4):>8} {_fmt(r['chi'], 4):>8} "
                         f"{_fmt(r['chi_theory'], 4):>8} {r['theory']}")
        j = self.jacobian
        lines.append(f"end-to-end Jacobian: mean squared singular value {_fmt(j['mean_sq_sv'])} "
                     f"(theory {_fmt(j['mean_sq_sv_theory'])}), spread {_fmt(j['spread'])}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(str(self.diagnosis))
        return "\n".join(lines)


def _fmt(x: float, digits: int = 4) -> str:
    """``-`` for a missing or NaN number (a layer without one), else :func:`format_number`."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format_number(float(x), digits)


# ---------------------------------------------------------------------------------------------- checks


def check_model(model: Any) -> torch.device:
    if not isinstance(model, nn.Module):
        raise ParameterError("model", f"must be a torch.nn.Module (got {type(model).__name__})")
    params = list(model.parameters())
    if not params:
        raise ParameterError("model", "has no parameters: nothing to profile or initialise")
    devices = sorted({str(p.device) for p in params} | {str(b.device) for b in model.buffers()})
    if len(devices) > 1:
        raise ParameterError("model", f"its parameters are on several devices ({', '.join(devices)}): move it to one")
    return params[0].device


def check_input(example_input: Any, device: torch.device) -> torch.Tensor:
    if not isinstance(example_input, torch.Tensor):
        raise ParameterError("example_input", f"must be a torch.Tensor batch, e.g. torch.randn(1, 3, 32, 32) "
                                              f"(got {type(example_input).__name__})")
    if example_input.dim() < 2 or not example_input.is_floating_point():
        raise ParameterError("example_input", "must be a floating-point batch with a leading batch dimension "
                                              f"(got shape {tuple(example_input.shape)}, {example_input.dtype})")
    if example_input.device != device:
        raise ParameterError("example_input", f"is on {example_input.device} but the model on {device}: "
                                              "put both on one device")
    if not bool(torch.isfinite(example_input).all()):
        raise ParameterError("example_input", "contains NaN or infinite values")
    return example_input


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ParameterError(name, f"must be an integer in [{lo}, {hi}] (got {value!r})")
    return int(value)


def _check_c0(c0: Any) -> float:
    try:
        v = float(c0)
    except (TypeError, ValueError):
        raise ParameterError("c0", f"must be a number in [-1, 1] (got {c0!r})") from None
    if not (-1.0 <= v <= 1.0):
        raise ParameterError("c0", f"must be in [-1, 1] (got {c0!r})")
    return v


# ---------------------------------------------------------------------------------------------- start moments


def gaussian_start(shape: tuple[int, ...], q0: float, c0: float) -> tuple[Moments, Displacement | None]:
    """Moments of Gaussian pairs with per-entry variance q0 and correlation c0 (a zero-mean Gaussian field)."""
    full = lambda v: torch.full(shape, float(v), dtype=torch.float64)  # noqa: E731
    zero = torch.zeros((), dtype=torch.float64)
    start = Moments(full(q0), full(q0), full(c0 * q0), zero, zero, full(1.0), True, EXACT,
                    f"Gaussian input pairs: q0 = {q0:.4g}, c0 = {c0:g}")
    if len(shape) < 2:
        return start, None
    disp_shape = (1,) + tuple(2 * s - 1 for s in shape[1:])
    centre = (0,) + tuple(s - 1 for s in shape[1:])

    def delta(v: float) -> torch.Tensor:
        d = torch.zeros(disp_shape, dtype=torch.float64)
        d[centre] = v
        return d

    return start, Displacement(delta(q0), delta(q0), delta(c0 * q0), delta(1.0))


def data_start(xa: torch.Tensor, xb: torch.Tensor) -> tuple[Moments, Displacement | None]:
    """Moments of data pairs (per-element averages over the pairs) and their spatial second moments."""
    a, b = xa.detach().to("cpu", torch.float64), xb.detach().to("cpu", torch.float64)
    start = Moments((a * a).mean(0), (b * b).mean(0), (a * b).mean(0), a.mean(0), b.mean(0),
                    torch.ones(a.shape[1:], dtype=torch.float64), False, EXACT, "data pairs")
    if a.dim() < 3 or a.dim() > 4:
        return start, None
    spatial = tuple(a.shape[2:])
    size = tuple(2 * s - 1 for s in spatial)
    dims = tuple(range(2, a.dim()))
    fa = torch.fft.rfftn(a, s=size, dim=dims)
    fb = torch.fft.rfftn(b, s=size, dim=dims)

    def corr(f1, f2):
        c = torch.fft.irfftn(torch.conj(f1) * f2, s=size, dim=dims).mean((0, 1))
        c = torch.roll(c, shifts=tuple(s - 1 for s in spatial), dims=tuple(range(len(spatial))))
        counts = torch.ones((), dtype=torch.float64)
        for i, s in enumerate(spatial):
            n = torch.tensor([s - abs(d) for d in range(-s + 1, s)], dtype=torch.float64)
            counts = counts[..., None] * n if i else n
        return (c / counts)[None]

    delta = torch.zeros((1,) + size, dtype=torch.float64)
    delta[(0,) + tuple(s - 1 for s in spatial)] = 1.0
    return start, Displacement(corr(fa, fa), corr(fb, fb), corr(fa, fb), delta)


# ---------------------------------------------------------------------------------------------- profile


def profile(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    inits: int = 8,
    pairs: int | tuple[torch.Tensor, torch.Tensor] | None = None,
    c0: float = 0.5,
    seed: int = 0,
    redraw: str = "permute",
    jacobian: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """Measure and predict q^l, c^l and chi^l of ``model`` at every step (see module docstring).

    Parameters
    ----------
    model : the model, as initialised now (it is copied, never changed).
    example_input : a batch (leading batch dimension) the model runs on; its shape per example sets the
        inputs' shape and its mean square the Gaussian inputs' variance q0.
    inits : number of initialisations averaged (errors are standard errors over them).
    pairs : number of Gaussian input pairs per initialisation (default 4; 2 for inputs of 1024 entries or more,
        such as images, whose statistics already average over every position; 32 when the model has BatchNorm in
        training mode, whose batch statistics then come from 64 examples as in training), or data
        ``(xa, xb)``: two batches.
    c0 : correlation of the Gaussian pairs (ignored for data pairs).
    redraw : "permute" (random signed permutations of every weight's rows and columns: the same weight
        distribution) or "reset" (each module's ``reset_parameters``: PyTorch's default initialisation).
    jacobian : also estimate the spread of the end-to-end Jacobian's squared singular values (one backward
        pass per initialisation).
    """
    device = check_model(model)
    x = check_input(example_input, device)
    inits = _check_int("inits", inits, 1, MAX_INITS)
    if redraw not in REDRAWS:
        raise ParameterError("redraw", f"must be one of {', '.join(REDRAWS)} (got {redraw!r})")
    shape = tuple(x.shape[1:])
    batch_norm = model.training and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if pairs is None:
        pairs = BATCHNORM_PAIRS if batch_norm else (DEFAULT_PAIRS if math.prod(shape) < LARGE_INPUT
                                                    else LARGE_INPUT_PAIRS)
    q0 = float(x.detach().double().square().mean())
    if not q0 > 0:
        q0 = 1.0
    if isinstance(pairs, (tuple, list)):
        if len(pairs) != 2 or not all(isinstance(p, torch.Tensor) for p in pairs):
            raise ParameterError("pairs", "must be an integer or a tuple (xa, xb) of two tensors")
        xa, xb = (p.to(device=device, dtype=x.dtype) for p in pairs)
        if xa.shape != xb.shape or tuple(xa.shape[1:]) != shape or xa.shape[0] < 1:
            raise ParameterError("pairs", f"xa and xb must both have shape (n, {', '.join(map(str, shape))}) "
                                          f"(got {tuple(xa.shape)} and {tuple(xb.shape)})")
        n_pairs, c0_used, inputs_text = int(xa.shape[0]), None, f"{int(xa.shape[0])} data pairs"
        start, disp = data_start(xa, xb)

        def inputs(k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            return xa, xb
    else:
        n_pairs = _check_int("pairs", pairs, 1, 100_000)
        c0_used = _check_c0(c0)
        inputs_text = f"{n_pairs} Gaussian pairs at c0 = {c0_used:g}"
        start, disp = gaussian_start(shape, q0, c0_used)

        def inputs(k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            return gaussian_pairs(shape, n_pairs, c0_used, q0, gen, x.dtype, device)

    graph = trace_model(model, x)
    theory = Propagator(graph, start, disp)
    data = measure(graph, inputs, inits=inits, seed=seed, redraw=redraw, jacobian=jacobian, progress=progress)
    rows = _rows(graph, theory, data)
    notes = list(graph.notes)
    notes += _mode_notes(model, graph)
    bad = [r["name"] for r in rows if not math.isfinite(r["q"])]
    if bad:
        notes.append(f"the forward signal is not finite from step {bad[0]} on (overflow or NaN) in some "
                     "initialisations")
    jac = _jacobian(graph, theory, data, x)
    jac["batch_coupled"] = bool(batch_norm)
    return Profile(rows, jac, shape, inputs_text, c0_used, q0, inits, n_pairs, redraw,
                   graph.method, notes, graph)


def _mode_notes(model: nn.Module, graph: ModelGraph) -> list[str]:
    kinds = {s.kind for s in graph.steps}
    notes = []
    if model.training and "batchnorm" in kinds:
        notes.append("BatchNorm in training mode normalises with the statistics of the profiling batch "
                     "(2 x pairs examples); its steps and everything after them are measured only")
    if not model.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        notes.append("the model is in eval mode: its Dropout is the identity here (call model.train() to profile "
                     "it with dropout)")
    return notes


def _rows(graph: ModelGraph, theory: Propagator, data: Measured) -> list[dict[str, Any]]:
    q, q_err = mean_and_error(data.q)
    c, c_err = mean_and_error(data.c)
    rows = []
    for step in graph.steps:
        if step.kind == "identity":
            continue
        i = step.index
        ref = reference_input(graph, i) if i > 0 else None
        while ref is not None and graph.steps[ref].kind == "identity" and graph.steps[ref].inputs:
            ref = graph.steps[ref].inputs[0]  # identity steps have no row: their input's tangent is theirs
        with np.errstate(invalid="ignore", divide="ignore"):
            chi_k = data.tangent[:, i] / data.tangent[:, ref] if ref is not None else np.full(data.q.shape[0], np.nan)
        chi, chi_err = mean_and_error(chi_k[:, None])
        state = theory.states[i]
        label = NONE if state is None else state.label
        rows.append({
            "name": step.name, "kind": step.kind,
            "q": float(q[i]), "q_err": float(q_err[i]), "q_theory": state.q if state is not None else math.nan,
            "c": float(c[i]), "c_err": float(c_err[i]), "c_theory": state.c if state is not None else math.nan,
            "chi": float(chi[0]), "chi_err": float(chi_err[0]),
            "chi_theory": tangent_gain(graph, theory.states, i, ref) if i > 0 else math.nan,
            "theory": label,
            "what": step.what, "source": state.source if state is not None else theory.reasons[i],
            "weight_depth": step.weight_depth, "on_spine": bool(step.on_spine),
            "reference": graph.steps[ref].name if ref is not None else None, "numel": step.numel,
        })
    return rows


def _jacobian(graph: ModelGraph, theory: Propagator, data: Measured, x: torch.Tensor) -> dict[str, float]:
    n_in = math.prod(x.shape[1:])
    n_out = graph.steps[graph.output].numel
    rank = max(min(n_in, n_out), 1)
    tr1 = data.jv * n_in / data.v2  # E||Jv||^2 with v ~ N(0, I): tr(J^T J), rescaled by the probe's norm
    tr2 = data.jtjv * n_in / data.v2
    m1, m1_err = mean_and_error((tr1 / rank)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        spread_k = rank * tr2 / tr1**2 - 1.0
    if np.all(np.isnan(tr2)) or not (np.nanmean(tr1) > 0 and np.nanmean(tr2) > 0):
        spread, spread_err = np.array([np.nan]), np.array([np.nan])  # no probe, or the gain underflowed
    else:
        mean_tr1, mean_tr2 = np.nanmean(tr1), np.nanmean(tr2)
        spread = np.array([rank * mean_tr2 / mean_tr1**2 - 1.0])
        _, spread_err = mean_and_error(spread_k[:, None])
    state = theory.states[graph.output]
    th = n_out * state.tangent / rank if state is not None else math.nan
    return {"mean_sq_sv": float(m1[0]), "mean_sq_sv_err": float(m1_err[0]), "mean_sq_sv_theory": float(th),
            "spread": float(spread[0]), "spread_err": float(spread_err[0]), "n_in": n_in, "n_out": n_out}
