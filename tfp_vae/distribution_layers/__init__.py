"""Keras layers whose output is a `tfd.Distribution`: posteriors and likelihoods.

Every layer here follows the `tfp.layers` contract, so it drops into any
`tf_keras` model, `Sequential` and functional ones included:

* `params_size(...)` (static) says how many units the preceding `Dense` needs;
* `new(params, ..., validate_args=False, name=None)` (static) builds the
  `tfd.Distribution` from a parameter tensor;
* calling the layer on `params` of shape `[..., params_size]` returns that
  distribution; in the functional API it also stands in for a tensor through
  `convert_to_tensor_fn` ('sample', 'mean' or 'mode');
* `get_config()` holds plain values only (no functions, no pickles), and each
  class is registered with `tf_keras`'s serializable registry, so models that
  use the layers save and load in `.keras` and SavedModel formats, in safe mode.

The layers subclass `tfp.layers.DistributionLambda` for its tensor coercion,
but never use its function-pickling `get_config`/`from_config`.

Posteriors (event shape `[latent_size]`):
  `DiagonalGaussianPosterior`        tfd.MultivariateNormalDiag
  `FullCovarianceGaussianPosterior`  tfd.MultivariateNormalTriL
  `LowRankGaussianPosterior`         tfd.MultivariateNormalDiagPlusLowRankCovariance
  `InverseAutoregressiveFlowPosterior`
                                     tfd.TransformedDistribution: a diagonal
                                     Gaussian through K IAF steps
  `PointMassPosterior`               tfd.VectorDeterministic (plain autoencoder)

Likelihoods (event shape = the image shape, via `tfd.Independent`):
  `IndependentBernoulliLikelihood`   Bernoulli(logits)
  `IndependentNormalLikelihood`      Normal(sigmoid(mean_logits), learned scale)

One module per family of layers: `_base.py` (the contract, the base class),
`gaussian.py` (diagonal, full covariance, point mass), `low_rank.py`,
`flow.py` (IAF) and `likelihoods.py`. Every class is registered as
`tfp_vae>ClassName`, whichever module defines it, so models saved before
the layers were split into modules load unchanged.

Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the layers
compute their distributions in float32, the usual Keras rule for output
heads: half precision has no kernels for the Cholesky solves and loses the
log-densities' precision. A layer built without a `dtype` (or with a mixed
policy) gets `dtype='float32'`, and `call` casts its params to that dtype.
"""

# pylint: disable=g-importing-member
from tfp_vae.distribution_layers._base import POSITIVE_TRANSFORMS
# The base class, for layers of other packages (and `surrogates`) that
# follow the same contract.
from tfp_vae.distribution_layers._base import _DistributionLayer
from tfp_vae.distribution_layers.flow import InverseAutoregressiveFlowPosterior
from tfp_vae.distribution_layers.flow import flow_of_base_mean
from tfp_vae.distribution_layers.gaussian import DiagonalGaussianPosterior
from tfp_vae.distribution_layers.gaussian import FullCovarianceGaussianPosterior
from tfp_vae.distribution_layers.gaussian import PointMassPosterior
from tfp_vae.distribution_layers.likelihoods import IndependentBernoulliLikelihood
from tfp_vae.distribution_layers.likelihoods import IndependentNormalLikelihood
from tfp_vae.distribution_layers.low_rank import LowRankGaussianPosterior

__all__ = [
    'DiagonalGaussianPosterior',
    'FullCovarianceGaussianPosterior',
    'LowRankGaussianPosterior',
    'InverseAutoregressiveFlowPosterior',
    'PointMassPosterior',
    'IndependentBernoulliLikelihood',
    'IndependentNormalLikelihood',
    'POSITIVE_TRANSFORMS',
    'flow_of_base_mean',
]
