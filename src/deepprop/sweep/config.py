"""Sweep descriptions: TOML files, command-line flags and presets, validated before any training.

A sweep is the grid depths x sigma_w2 x keep_rates x seeds (x repeats) with everything else fixed.
``steps`` is one training budget or several (``[45, 304, 2048]``): each network is then trained once, to the
largest budget, and evaluated after each; every budget is its own stored row, identical to the row of a sweep
run with that single budget (a network's random streams do not depend on how long it is trained).
Grid axes accept a list, a comma list "10,20,50" or an inclusive linspace "start:stop:count"
("10:300:30" = 10, 20, ..., 300; "1:4:31" = 1.0, 1.1, ..., 4.0); depths are rounded to integers.

The learning rate is a number or ``"paper"``: the rule of the paper's section 5, lr = 1e-3 for SGD below
depth 200 and 1e-4 from depth 200 on, and 1e-5 for RMSProp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepprop.data import DATASETS
from deepprop.errors import ParameterError
from deepprop.prior import NetworkPrior, check_keep_rate
from deepprop.sweep.schema import SHARED_IDENTITY
from deepprop.validation import check_int, check_seed, parse_values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PAPER_LR_DEPTH = 200


@dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep; one network per (depth, sigma_w2, keep_rate, seed)."""

    dataset: str = "digits"
    data_dir: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    activation: str = "tanh"
    sigma_b2: float = 0.05
    keep_rates: tuple[float, ...] = (1.0,)
    noise_mult: float = 0.0
    noise_add: float = 0.0
    weights: str = "gaussian"
    width: int = 300
    depths: tuple[int, ...] = (10, 20, 30)
    sigma_w2: tuple[float, ...] = (1.0, 2.0, 3.0)
    optimizer: str = "sgd"
    lr: float | str = "paper"
    steps: int | tuple[int, ...] = 200  # one budget, or several (sorted, each its own row)
    batch_size: int = 128
    seeds: tuple[int, ...] = (0,)
    dtype: str = "float32"
    precision: str = "fp32"
    eval_train: int | None = 10000
    eval_test: int | None = 10000
    device: str = "cpu"
    chunk_size: int | None = None
    executor: str = "local"
    ray_address: str | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    # ---- derived ---------------------------------------------------------------------------------------

    def lr_for(self, depth: int) -> float:
        """Learning rate of a network of this depth (the paper's rule when ``lr == "paper"``)."""
        if isinstance(self.lr, str):
            if self.optimizer == "rmsprop":
                return 1e-5
            return 1e-3 if depth < PAPER_LR_DEPTH else 1e-4
        return float(self.lr)

    @property
    def budgets(self) -> tuple[int, ...]:
        """The training budgets in steps, ascending (one element unless ``steps`` lists several)."""
        return (self.steps,) if isinstance(self.steps, int) else tuple(self.steps)

    @property
    def max_steps(self) -> int:
        """Steps each network is trained for (the largest budget)."""
        return max(self.budgets)

    @property
    def n_trainings(self) -> int:
        """Networks trained: one per (depth, sigma_w2, keep_rate, seed), whatever the number of budgets."""
        return len(self.depths) * len(self.sigma_w2) * len(self.keep_rates) * len(self.seeds)

    @property
    def n_networks(self) -> int:
        """Rows of the sweep: one per trained network and budget."""
        return self.n_trainings * len(self.budgets)

    # ---- the network: a base prior and its grid axes ------------------------------------------------------

    @property
    def prior(self) -> NetworkPrior:
        """The prior every network of the sweep shares (activation, sigma_b2, the noise), with the grid axes'
        first values; a network's own prior replaces them with its cell's (:meth:`prior_numbers`)."""
        return NetworkPrior.build(self.activation, self.sigma_w2[0], self.sigma_b2, keep_rate=self.keep_rates[0],
                                  noise_mult=self.noise_mult, noise_add=self.noise_add)

    @property
    def axes(self) -> dict[str, tuple[float, ...]]:
        """The prior's numbers the sweep varies, by their prior name: sigma_w2 and keep_rate."""
        return {"sigma_w2": self.sigma_w2, "keep_rate": self.keep_rates}

    def prior_record(self) -> dict[str, Any]:
        """What the store records of the network: ``{"base": prior record, "axes": {name: values}}``."""
        return {"base": self.prior.record(), "axes": {k: list(v) for k, v in self.axes.items()}}

    def prior_numbers(self) -> dict[str, float]:
        """The base prior's five numbers as floats (a network's, with its cell's sigma_w2 and keep_rate)."""
        return {k: float(v) for k, v in self.prior.keywords().items()}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def replace(self, **changes: Any) -> SweepConfig:
        return validate(dataclasses.replace(self, **changes))


# keys accepted in a TOML file / as overrides (grid axes may also be given by their singular name)
CONFIG_KEYS = {f.name for f in dataclasses.fields(SweepConfig)} - {"extra"}
ALIASES = {
    "keep_rate": "keep_rates",
    "seed": "seeds",
    "depth": "depths",
    "sigma_w2s": "sigma_w2",
    "sw2": "sigma_w2",
    "sb2": "sigma_b2",
    "learning_rate": "lr",
    "preset": None,
}


def run_identity(
    cfg: SweepConfig, depth: int, sigma_w2: float, keep_rate: float, seed: int, steps: int | None = None
) -> dict[str, Any]:
    """The fields that define one stored row: a network's training run evaluated after ``steps`` steps.

    ``steps`` defaults to the sweep's only budget (it must be given when the sweep has several).
    """
    if steps is None:
        if len(cfg.budgets) != 1:
            raise ParameterError("steps", f"name one of the sweep's budgets {list(cfg.budgets)}")
        steps = cfg.budgets[0]
    ident: dict[str, Any] = {k: getattr(cfg, k) for k in SHARED_IDENTITY}
    ident.update(
        steps=int(steps),
        depth=int(depth),
        sigma_w2=_canon(sigma_w2),
        keep_rate=_canon(keep_rate),
        seed=int(seed),
        lr=_canon(cfg.lr_for(depth)),
    )
    return ident


def run_key(identity: Mapping[str, Any]) -> str:
    """Stable hex key of a run identity (SHA-256 of its canonical JSON)."""
    blob = json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


NOT_TRAINING = ("steps", "eval_train", "eval_test")
"""Identity fields that do not change how a network trains (how long, and on how many examples it is scored)."""


def training_key(identity: Mapping[str, Any]) -> str:
    """Key of the training run behind a row: the identity without budget and evaluation sizes.

    A network's initial weights, noise and data order derive from it, so the rows of one network at
    several budgets are the prefix of one training run.
    """
    return run_key({k: v for k, v in identity.items() if k not in NOT_TRAINING})


def _canon(x: float) -> float:
    """Round floats to 12 significant digits so that 0.1 + 0.2 and 0.3 name the same run."""
    return float(f"{float(x):.12g}")


# ---- parsing ------------------------------------------------------------------------------------------


def parse_grid(name: str, spec: Any, *, integer: bool = False) -> tuple:
    """A grid axis from a list, a number, "a,b,c" or an inclusive linspace "start:stop:count"."""
    values: list[float]
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ParameterError(name, "is an empty grid")
        try:
            values = list(parse_values(text, integer=integer))
        except ValueError as exc:
            raise ParameterError(name, f"{exc} (expected numbers, 'a,b,c' or start:stop:count; got {spec!r})") from exc
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values = [spec if integer and isinstance(spec, int) else float(spec)]
    elif isinstance(spec, (list, tuple)):
        try:
            values = [v if integer and isinstance(v, int) and not isinstance(v, bool) else float(v) for v in spec]
        except (TypeError, ValueError) as exc:
            raise ParameterError(name, f"must be a list of numbers (got {spec!r})") from exc
    else:
        raise ParameterError(name, f"must be a list, 'a,b,c' or start:stop:count (got {spec!r})")
    if not values:
        raise ParameterError(name, "is an empty grid")
    if not all(math.isfinite(v) for v in values):
        raise ParameterError(name, f"must be finite (got {spec!r})")
    if integer:
        if any(v != round(v) for v in values):
            raise ParameterError(name, f"must be whole numbers (got {spec!r})")
        out = tuple(dict.fromkeys(int(v) if isinstance(v, (int, np.integer)) else int(round(v)) for v in values))
    else:
        out = tuple(dict.fromkeys(_canon(v) for v in values))
    return out


def _positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(name, f"must be a positive integer (got {value!r})")
    check_int(name, value, 1)  # and < 2**63


def _parse_budgets(spec: Any) -> Any:
    """``steps``: an integer, or a list / "a,b,c" of integers -> one int or a sorted tuple of distinct ints."""
    if isinstance(spec, (list, tuple)) or (isinstance(spec, str) and "," in spec):
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        values = []
        for item in items:
            try:
                v = float(item)
            except (TypeError, ValueError) as exc:
                raise ParameterError("steps", f"must be positive integers (got {spec!r})") from exc
            if not (math.isfinite(v) and v == int(v) and v >= 1):
                raise ParameterError("steps", f"must be positive integers (got {spec!r})")
            values.append(int(v))
        if not values:
            raise ParameterError("steps", "is an empty list of budgets")
        budgets = tuple(sorted(set(values)))
        return budgets[0] if len(budgets) == 1 else budgets
    if isinstance(spec, str):
        try:
            return int(spec)
        except ValueError as exc:
            raise ParameterError("steps", f"must be a positive integer or a list of them (got {spec!r})") from exc
    return spec


def validate(cfg: SweepConfig) -> SweepConfig:
    """Return ``cfg`` if every field is in range, else raise ParameterError naming the field."""
    from deepprop.activations import get_activation

    if cfg.dataset not in DATASETS:
        raise ParameterError("dataset", f"must be one of {', '.join(DATASETS)} (got {cfg.dataset!r})")
    get_activation(cfg.activation)
    for name in ("width", "batch_size"):
        _positive_int(name, getattr(cfg, name))
    if isinstance(cfg.steps, tuple):
        if not cfg.steps:
            raise ParameterError("steps", "is an empty list of budgets")
        for s in cfg.steps:
            _positive_int("steps", s)
    else:
        _positive_int("steps", cfg.steps)
    for name in ("n_train", "n_test", "eval_train", "eval_test", "chunk_size"):
        _positive_int(name, getattr(cfg, name), allow_none=True)
    for name in ("depths", "sigma_w2", "keep_rates", "seeds"):
        if len(getattr(cfg, name)) == 0:
            raise ParameterError(name, "is an empty grid")
    if any(d < 1 for d in cfg.depths):
        raise ParameterError("depths", f"must be >= 1 (got {min(cfg.depths)})")
    if any(not (s > 0) for s in cfg.sigma_w2):
        raise ParameterError("sigma_w2", f"must be > 0 (got {min(cfg.sigma_w2)})")
    check_keep_rate(cfg.keep_rates, "keep_rates")
    if any(s < 0 for s in cfg.seeds):
        raise ParameterError("seeds", f"must be >= 0 (got {min(cfg.seeds)})")
    for s in cfg.seeds:
        check_seed("seeds", s)
    for name in ("sigma_b2", "noise_mult", "noise_add"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ParameterError(name, f"must be finite and >= 0 (got {v!r})")
    choices = {
        "weights": ("gaussian", "orthogonal"),
        "optimizer": ("sgd", "rmsprop"),
        "dtype": ("float32", "float64"),
        "precision": ("fp32", "tf32", "bf16"),
        "executor": ("local", "ray"),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ParameterError(name, f"must be one of {', '.join(allowed)} (got {getattr(cfg, name)!r})")
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        raise ParameterError("device", f"must be cpu or cuda[:N] (got {cfg.device!r})")
    if isinstance(cfg.lr, str):
        if cfg.lr != "paper":
            raise ParameterError("lr", f"must be a positive number or 'paper' (got {cfg.lr!r})")
    elif not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ParameterError("lr", f"must be a positive number or 'paper' (got {cfg.lr!r})")
    return cfg


def from_mapping(values: Mapping[str, Any], base: SweepConfig | None = None) -> SweepConfig:
    """Build a validated config from ``base`` (default: defaults) overridden by ``values``.

    Unknown keys are rejected by name before anything else happens.
    """
    changes: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        key = ALIASES.get(key, key) if key in ALIASES else key
        if key is None:
            continue
        if key not in CONFIG_KEYS:
            raise ParameterError(raw_key, f"unknown config key; allowed: {', '.join(sorted(CONFIG_KEYS))}")
        changes[key] = value
    for key in ("depths", "sigma_w2", "keep_rates", "seeds"):
        if key in changes:
            changes[key] = parse_grid(key, changes[key], integer=key in ("depths", "seeds"))
    if "steps" in changes:
        changes["steps"] = _parse_budgets(changes["steps"])
    if "lr" in changes and not isinstance(changes["lr"], str):
        changes["lr"] = float(changes["lr"])
    elif "lr" in changes:
        try:
            changes["lr"] = float(changes["lr"])
        except ValueError:
            changes["lr"] = changes["lr"].strip().lower()
    for key in ("sigma_b2", "noise_mult", "noise_add"):
        if key in changes:
            try:
                changes[key] = float(changes[key])
            except (TypeError, ValueError) as exc:
                raise ParameterError(key, f"must be a number (got {changes[key]!r})") from exc
    cfg = dataclasses.replace(base or SweepConfig(), **changes)
    return validate(cfg)


def load_toml(path: str | Path, base: SweepConfig | None = None) -> SweepConfig:
    """Read a sweep from a TOML file (flat keys, or under a [sweep] table)."""
    p = Path(path)
    if not p.is_file():
        raise ParameterError("config", f"no such file: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError("config", f"{p}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ParameterError("config", f"{p}: not a TOML text file (not UTF-8: {exc.reason} at byte "
                                       f"{exc.start})") from exc
    if set(data) == {"sweep"} and isinstance(data["sweep"], dict):
        data = data["sweep"]
    preset = data.get("preset")
    if preset is not None:
        base = preset_config(str(preset), full=bool(data.get("full", False)))
        data = {k: v for k, v in data.items() if k != "full"}
    return from_mapping(data, base)


# ---- presets --------------------------------------------------------------------------------------------

# fig. 5a: tanh, sb2 = 0.05, 10 <= L <= 300, 1 <= sw2 <= 4, SGD, 200 steps on MNIST
_FIG5A_FULL: dict[str, Any] = dict(
    dataset="mnist",
    activation="tanh",
    sigma_b2=0.05,
    width=300,
    depths="10:300:30",
    sigma_w2="1:4:30",
    optimizer="sgd",
    lr="paper",
    steps=200,
    batch_size=128,
    device="cuda",
)
# Reduced for a CPU: digits, width 64; lr 1e-2 because 1e-3 barely moves a width-64 net in 200 steps.
_FIG5A_REDUCED: dict[str, Any] = dict(
    dataset="digits",
    activation="tanh",
    sigma_b2=0.05,
    width=64,
    depths="10:100:4",
    sigma_w2="1:4:7",
    optimizer="sgd",
    lr=1e-2,
    steps=200,
    batch_size=64,
)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fig5a": {"full": _FIG5A_FULL, "reduced": _FIG5A_REDUCED},
    # fig. 6: the same with dropout, keep rates 0.99, 0.98, 0.94
    "fig6": {
        "full": {**_FIG5A_FULL, "keep_rates": [0.99, 0.98, 0.94]},
        "reduced": {**_FIG5A_REDUCED, "keep_rates": [0.99, 0.94]},
    },
}


def preset_config(name: str, *, full: bool = False) -> SweepConfig:
    """The paper's setting ``name`` (fig5a, fig6): reduced size for a CPU, or ``full`` for a GPU."""
    if name not in PRESETS:
        raise ParameterError("preset", f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return from_mapping(PRESETS[name]["full" if full else "reduced"])
