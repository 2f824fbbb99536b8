"""deepprop: mean-field theory of signal propagation in deep networks, as an instrument.

The public API in one screen::

    from deepprop import NetworkPrior, mean_field, trajectory, phase_diagram, critical_sigma_w2, critical_init

    prior = NetworkPrior.build("tanh", sigma_w2=1.76, sigma_b2=0.05, keep_rate=1.0)
    mean_field(prior)                    # q*, c*, chi1, chi_c, xi_q, xi_c, xi_grad, phase (broadcasts over grids)
    trajectory(prior, q0=1.0, c0=0.5, depth=50)      # q^l, c^l for l = 0..depth
    phase_diagram("tanh", sw2_values, sb2_values)    # an xarray.Dataset over the outer-product grid
    critical_sigma_w2("tanh", sigma_b2=0.05)         # the edge of chaos, chi1 = 1
    critical_init("relu", keep_rate=0.8)             # where to initialise, and how deep it trains
    profile(model, torch.randn(1, 3, 32, 32))        # any PyTorch model: q^l, c^l, chi^l measured and predicted
    init_(model, example_input=x)                     # critical initialisation of Linear / Conv / residual models

Rooms, each importing only the ones below it (see ARCHITECTURE.md): ``activations`` and ``prior`` (what a
random network is) -> ``theory`` (Gaussian expectations -> maps -> fixed points -> depth scales) ->
``networks`` (finite random networks in torch) -> ``simulate`` / ``sweep`` -> ``plots`` / ``report`` -> ``cli``.
"""

from deepprop import _aliases
from deepprop._version import __version__
from deepprop.activations import ACTIVATIONS, Activation, get_activation
from deepprop.errors import DatasetError, DeeppropError, MissingExtraError, ParameterError, StoreError
from deepprop.prior import NetworkPrior, Noise
from deepprop.theory.meanfield import MeanField, critical_sigma_w2, mean_field, measured_depth_scales, trajectory

_LAZY = {  # heavier rooms (xarray, the advice search) load on first use
    "phase_diagram": "deepprop.theory.grid",
    "critical_init": "deepprop.advice",
    "CriticalInit": "deepprop.advice",
    "profile": "deepprop.integrations.profile",
    "Profile": "deepprop.integrations.profile",
    "init_": "deepprop.integrations.pytorch",
    "diagnose": "deepprop.integrations.pytorch",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepprop' has no attribute {name!r}")


_aliases.install()

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "CriticalInit",
    "DatasetError",
    "DeeppropError",
    "MeanField",
    "MissingExtraError",
    "NetworkPrior",
    "Noise",
    "ParameterError",
    "Profile",
    "StoreError",
    "__version__",
    "critical_init",
    "critical_sigma_w2",
    "diagnose",
    "get_activation",
    "init_",
    "mean_field",
    "measured_depth_scales",
    "phase_diagram",
    "profile",
    "trajectory",
]
