"""deepprop: mean-field theory of signal propagation in deep networks, as an instrument.

The numerical core (``activations`` -> ``gauss`` -> ``maps`` -> ``fixed_points`` -> ``depth_scales``,
gathered by ``meanfield``) knows nothing of simulation, training, storage or the command line, which
sit on top of it.
"""

from deepprop.activations import ACTIVATIONS, Activation, get_activation
from deepprop.errors import ParameterError
from deepprop.noise import Noise

__version__ = "0.1.0"

__all__ = ["ACTIVATIONS", "Activation", "Noise", "ParameterError", "get_activation", "__version__"]
