"""The one random-network engine: finite random networks in torch, batched over many networks.

* :mod:`~deepprop.networks.weights`: Gaussian and Haar-orthogonal weight matrices;
* :mod:`~deepprop.networks.noise`: dropout / multiplicative / additive layer-input noise;
* :mod:`~deepprop.networks.random`: counter-based random streams (training);
* :mod:`~deepprop.networks.ensemble`: :class:`Ensemble`, K networks of one prior drawn layer by layer
  (simulation of signal and gradient propagation).

Used by :mod:`deepprop.simulate` and :mod:`deepprop.sweep`; imports only the prior and activations.
"""

from deepprop.networks.ensemble import DTYPES, Ensemble, resolve_dtype
from deepprop.networks.noise import LayerNoise
from deepprop.networks.weights import WEIGHT_KINDS, haar_orthogonal, unit_weights

__all__ = [
    "DTYPES", "WEIGHT_KINDS", "Ensemble", "LayerNoise", "haar_orthogonal", "resolve_dtype", "unit_weights",
]
