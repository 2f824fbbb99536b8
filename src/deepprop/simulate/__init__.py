"""Finite-width experiments: random networks measured side by side with the mean-field theory.

* :func:`simulate_forward` - q^l, c^l of input pairs through an ensemble (figs. 1-3);
* :func:`simulate_gradients` - per-layer gradient norms and covariances on real data (fig. 4,
  eq. 14-17; follow-ups section 2, shared vs independent backward weights);
* :func:`jacobian_spectrum` - input-output Jacobian singular values and channel mutual information
  (follow-ups section 3).
"""

from deepprop.networks import Ensemble
from deepprop.simulate.forward import ForwardResult, simulate_forward
from deepprop.simulate.gradients import GradientResult, simulate_gradients
from deepprop.simulate.jacobian import JacobianResult, jacobian_spectrum

__all__ = [
    "Ensemble", "ForwardResult", "GradientResult", "JacobianResult",
    "jacobian_spectrum", "simulate_forward", "simulate_gradients",
]
