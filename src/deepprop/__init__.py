"""deepprop: mean-field theory of signal propagation in deep networks, as an instrument.

Everything a notebook needs imports from here::

    from deepprop import NetworkPrior, mean_field, trajectory, phase_diagram, critical_init, simulate_forward

    prior = NetworkPrior.build("tanh", sigma_w2=1.76, sigma_b2=0.05, keep_rate=0.9)
    mf = mean_field(prior)               # q*, c*, chi1, chi_c, xi_q, xi_c, xi_grad, phase (broadcasts over grids)
    mf.to_dataframe()                    # or mf.to_dataset(), mf[i]; critical_sigma_w2(prior) -> a float
    trajectory(prior, depth=50)          # q^l, c^l for l = 0..depth from q0 = DEFAULT_Q0 = 1, c0 = 0.6
    phase_diagram(prior, sw2_values, sb2_values)   # an xarray.Dataset: arrays are dimensions, scalars attributes
    critical_init(prior)                 # where to initialise, and how deep it trains (warns when not exact)
    simulate_forward(prior, width=500, depth=20)   # finite random networks beside the theory
    profile(model, torch.randn(1, 3, 32, 32))      # any PyTorch model: q^l, c^l, chi^l measured and predicted
    init_(model, example_input=x), diagnose(model) # critical initialisation / verdict of PyTorch models

Every public function takes a :class:`NetworkPrior` first; ``mean_field("tanh", 1.76, 0.05, keep_rate=0.9)``
(an activation and loose numbers) is a convenience converted into one. Noise kinds beyond the standard
three (dropout, multiplicative and additive Gaussian noise: :class:`Noise`) go in ``extra_noise`` (e.g.
:class:`UniformDropout`). Long computations are silent unless given a
``progress(done, total)`` callback.

Rooms, each importing only the ones below it (see ARCHITECTURE.md): ``activations``, ``noise_models`` and
``prior`` (what a random network is) -> ``theory`` (Gaussian expectations -> maps -> fixed points -> depth
scales) -> ``networks`` (finite random networks in torch), ``advice``, ``grid_export`` -> ``simulate`` /
``sweep`` -> ``integrations`` -> ``plots`` / ``report`` -> ``cli``.
"""

from deepprop import _aliases
from deepprop._version import __version__
from deepprop.activations import ACTIVATIONS, Activation, ClosedForm, get_activation
from deepprop.errors import DatasetError, DeeppropError, MissingExtraError, ParameterError, StoreError
from deepprop.noise_models import Dropout, GaussianAdditive, GaussianMultiplicative, NoiseKind, UniformDropout
from deepprop.prior import NetworkPrior, Noise
from deepprop.results import Progress, format_number
from deepprop.theory.meanfield import (
    DEFAULT_C0,
    DEFAULT_Q0,
    MeanField,
    critical_sigma_w2,
    mean_field,
    measured_depth_scales,
    trajectory,
)

_LAZY = {  # heavier rooms (xarray, the advice search, torch models, simulations) load on first use
    "phase_diagram": "deepprop.theory.grid",
    "gradient_theory": "deepprop.theory.backprop",
    "jacobian_moments": "deepprop.theory.spectrum",
    "equal_gain_information": "deepprop.theory.spectrum",
    "information_map": "deepprop.theory.spectrum",
    "phase_diagram_resumable": "deepprop.grid_export",
    "export": "deepprop.grid_export",
    "critical_init": "deepprop.advice",
    "CriticalInit": "deepprop.advice",
    "AdviceWarning": "deepprop.advice",
    "maximize_xi_c": "deepprop.advice",
    "Ensemble": "deepprop.networks",
    "simulate_forward": "deepprop.simulate",
    "simulate_gradients": "deepprop.simulate",
    "jacobian_spectrum": "deepprop.simulate",
    "ForwardResult": "deepprop.simulate",
    "GradientResult": "deepprop.simulate",
    "JacobianResult": "deepprop.simulate",
    "profile": "deepprop.integrations.profile",
    "Profile": "deepprop.integrations.profile",
    "init_": "deepprop.integrations.pytorch",
    "diagnose": "deepprop.integrations.pytorch",
    "InitReport": "deepprop.integrations.pytorch",
    "Diagnosis": "deepprop.integrations.pytorch",
    "UnrecognisedModuleWarning": "deepprop.integrations.pytorch",
}


SUBPACKAGES = ("activations", "advice", "data", "errors", "integrations", "networks", "noise_models", "plots",
               "prior", "report", "simulate", "sweep", "theory", "validation")
"""Modules reachable as attributes after a plain ``import deepprop`` (``deepprop.data.load_dataset``), loaded on
first use as ``scipy.stats`` is."""


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in SUBPACKAGES:
        return importlib.import_module(f"deepprop.{name}")
    raise AttributeError(f"module 'deepprop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(SUBPACKAGES))


_aliases.install()

__all__ = [  # the eager names above and every lazy one (a test checks both lists)
    "ACTIVATIONS", "Activation", "AdviceWarning", "ClosedForm", "CriticalInit", "DEFAULT_C0", "DEFAULT_Q0",
    "DatasetError", "DeeppropError", "Diagnosis", "Dropout", "Ensemble", "ForwardResult", "GaussianAdditive",
    "GaussianMultiplicative", "GradientResult", "InitReport", "JacobianResult", "MeanField", "MissingExtraError",
    "NetworkPrior", "Noise", "NoiseKind", "ParameterError", "Profile", "Progress", "StoreError", "UniformDropout",
    "UnrecognisedModuleWarning", "__version__", "critical_init", "critical_sigma_w2", "diagnose",
    "equal_gain_information", "export", "format_number", "get_activation", "gradient_theory", "information_map",
    "init_", "jacobian_moments", "jacobian_spectrum", "maximize_xi_c", "mean_field", "measured_depth_scales",
    "phase_diagram", "phase_diagram_resumable", "profile", "simulate_forward", "simulate_gradients", "trajectory",
]
