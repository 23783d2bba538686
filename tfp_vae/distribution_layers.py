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

Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the layers
compute their distributions in float32, the usual Keras rule for output
heads: half precision has no kernels for the Cholesky solves and loses the
log-densities' precision. A layer built without a `dtype` (or with a mixed
policy) gets `dtype='float32'`, and `call` casts its params to that dtype.
"""

import contextlib
import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._checks import check_positive_float
from tfp_vae._checks import check_positive_int
from tfp_vae._keras import keras
from tfp_vae.names import NORMAL_SCALES

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = [
    'DiagonalGaussianPosterior',
    'FullCovarianceGaussianPosterior',
    'LowRankGaussianPosterior',
    'InverseAutoregressiveFlowPosterior',
    'PointMassPosterior',
    'IndependentBernoulliLikelihood',
    'IndependentNormalLikelihood',
    'POSITIVE_TRANSFORMS',
]

_PACKAGE = 'tfp_vae'

# Names, not callables, live in configs: a config can only choose among these.
_CONVERT_TO_TENSOR_FNS = {
    'sample': tfd.Distribution.sample,
    'mean': tfd.Distribution.mean,
    'mode': tfd.Distribution.mode,
}

# Maps an unconstrained real to a positive scale. Softplus is the default: it
# is linear for large inputs, so a scale can grow without the exploding
# gradients `exp` gives.
POSITIVE_TRANSFORMS = {
    'softplus': tfb.Softplus,
    'exp': tfb.Exp,
}


def _check_event_shape(event_shape):
  try:
    shape = tuple(int(d) for d in event_shape)
  except TypeError:
    raise ValueError(
        f'`event_shape` must be a sequence of positive integers; got '
        f'{event_shape!r}.') from None
  if not shape or any(d <= 0 for d in shape):
    raise ValueError(
        f'`event_shape` must be a non-empty sequence of positive integers; '
        f'got {event_shape!r}.')
  return shape


def _float32_under_mixed_precision(dtype):
  """The dtype a distribution layer computes in: float32 unless told.

  A layer built without a dtype would otherwise take the global policy, and
  under `mixed_float16` compute its distribution in half precision (no
  `MatrixTriangularSolve` kernel, and a float16 posterior whose KL to a
  float32 prior fails). A mixed policy asked for explicitly means the same
  thing: float32 outputs are the policy's own rule for output layers. An
  explicit plain dtype ('float64', even 'float16') is kept.
  """
  if dtype is None:
    return 'float32'
  if isinstance(dtype, keras.mixed_precision.Policy):
    name = dtype.name
  elif isinstance(dtype, dict):  # A serialized policy, from a config.
    name = dtype.get('config', {}).get('name', '')
  else:
    name = dtype if isinstance(dtype, str) else ''
  if name.startswith('mixed_'):
    return keras.mixed_precision.Policy(name).variable_dtype
  return dtype


class _DistributionLayer(tfp.layers.DistributionLambda):
  """Base class: a `DistributionLambda` whose config is plain values.

  Subclasses define static `new` and `params_size`, and `_distribution_kwargs`
  (the keyword arguments of `new` other than `params`, `validate_args` and
  `name`). The config is `_distribution_kwargs()` plus `convert_to_tensor_fn`
  (a name), `validate_args` and the Keras base config.
  """

  # SavedModel export would otherwise swap `call` for a traced function whose
  # output is a plain tensor (the `convert_to_tensor_fn` value), so a parent
  # model that uses the distribution (`encode(x).mean()`) could not be traced.
  # Rebuilding from the plain-value config on load keeps the distribution.
  _must_restore_from_config = True

  # The tensor stand-ins a layer offers; a subclass may change the table.
  _convert_to_tensor_fns = _CONVERT_TO_TENSOR_FNS

  def __init__(self, convert_to_tensor_fn='sample', validate_args=False,
               **kwargs):
    check_choice(convert_to_tensor_fn, self._convert_to_tensor_fns,
                 'convert_to_tensor_fn')
    kwargs['dtype'] = _float32_under_mixed_precision(kwargs.get('dtype'))
    super().__init__(self._make_distribution_fn_for(validate_args),
                     self._convert_to_tensor_fns[convert_to_tensor_fn],
                     **kwargs)
    self._convert_to_tensor_fn_name = convert_to_tensor_fn
    self._validate_args = bool(validate_args)

  def _distribution_kwargs(self):
    raise NotImplementedError

  def call(self, inputs, *args, **kwargs):
    # `tf_keras.layers.Lambda.call` runs the function under a GradientTape
    # and warns ("should be a subclassed Layer rather than a Lambda layer")
    # about every variable read there that is not one of the layer's
    # weights. Its check is meant for stateless lambdas; these layers create
    # their weights in `build`, so the only untracked variables it can see
    # are the inputs themselves, e.g. the `tf.Variable` params of a surrogate
    # posterior in variational inference. Reading them here, outside that
    # tape, leaves the check nothing to warn about; an outer tape still
    # records the read, so gradients reach the variable as before.
    # Keras's autocast already brings floating tensors to the layer's
    # compute dtype (float32 under a mixed policy, see
    # `_float32_under_mixed_precision`), but not variables: a half-precision
    # variable read here is cast too, so `new` always sees one dtype.
    inputs = tf.nest.map_structure(self._as_compute_dtype_tensor, inputs)
    return super().call(inputs, *args, **kwargs)

  def _as_compute_dtype_tensor(self, value):
    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating and value.dtype != self.compute_dtype:
      value = tf.cast(value, self.compute_dtype)
    return value

  def _make_distribution_fn_for(self, validate_args):
    """The function from params to distribution; `new` with bound kwargs."""
    return functools.partial(type(self).new, validate_args=validate_args,
                             **self._distribution_kwargs())

  def get_config(self):
    # Skip DistributionLambda's and Lambda's get_config: they serialize the
    # function with cloudpickle/marshal, which would run code on load.
    config = keras.layers.Layer.get_config(self)
    config.update(self._distribution_kwargs())
    config.update(convert_to_tensor_fn=self._convert_to_tensor_fn_name,
                  validate_args=self._validate_args)
    return config

  @classmethod
  def from_config(cls, config):
    return cls(**config)


################################################################################
# Posteriors q(z | x), event shape [latent_size].
################################################################################


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiagonalGaussianPosterior(_DistributionLayer):
  """Diagonal Gaussian over a latent vector: `tfd.MultivariateNormalDiag`.

  Args:
    latent_size: Python `int` > 0, the event size D.
    scale_transform: 'softplus' (default) or 'exp', the map from the raw
      parameter to the standard deviation.
    min_scale: Python `float` >= 0 added to every standard deviation, so the
      posterior never collapses to a point (default 1e-5).
    convert_to_tensor_fn: 'sample' (default), 'mean' or 'mode': what the layer's
      output is as a tensor in the functional API. `VariationalAutoencoder`
      passes 'mean' instead: it draws its own samples with stateless seeds
      (`objectives.sample_latents`), so a sample drawn by the layer would
      only cost time.
    validate_args: Python `bool`, passed to the distribution.
    **kwargs: `tf_keras.layers.Layer` arguments (`name`, `dtype`, ...).

  Input: params `[..., 2 * latent_size]`. Output: a distribution with batch
  shape `[...]` and event shape `[latent_size]`.

  ```none
  loc, raw_scale = split(params, 2, axis=-1)
  q(z | x) = Normal(z; loc, diag(transform(raw_scale) + min_scale)^2)
  ```
  """

  def __init__(self, latent_size, scale_transform='softplus', min_scale=1e-5,
               convert_to_tensor_fn='sample', validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    self._scale_transform = check_choice(
        scale_transform, POSITIVE_TRANSFORMS, 'scale_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale',
                                           allow_zero=True)
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size,
                scale_transform=self._scale_transform,
                min_scale=self._min_scale)

  @staticmethod
  def params_size(latent_size, name=None):
    """Number of parameters: `2 * latent_size` (location and scale)."""
    del name
    return 2 * latent_size

  @staticmethod
  def new(params, latent_size, scale_transform='softplus', min_scale=1e-5,
          validate_args=False, name=None):
    """Builds the distribution from `params` of shape `[..., 2 * latent_size]`."""
    with tf.name_scope(name or 'DiagonalGaussianPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      loc, raw_scale = tf.split(params, [latent_size, latent_size], axis=-1)
      to_scale = tfb.Shift(tf.constant(min_scale, params.dtype))(
          POSITIVE_TRANSFORMS[scale_transform]())
      return tfd.MultivariateNormalDiag(
          loc=loc, scale_diag=to_scale.forward(raw_scale),
          validate_args=validate_args)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FullCovarianceGaussianPosterior(_DistributionLayer):
  """Full-covariance Gaussian over a latent vector: `tfd.MultivariateNormalTriL`.

  The Cholesky factor comes from `tfb.FillScaleTriL`: the D * (D + 1) / 2 raw
  parameters fill a lower-triangular matrix whose diagonal passes through a
  positive transform plus `min_scale`. Unlike `tfp.layers.MultivariateNormalTriL`
  (softplus and 1e-5, hard-coded), both are arguments here, and the
  off-diagonal entries can be scaled by a constant c.

  Why c: Adam moves every weight by about its learning rate per step,
  whatever the size of the weight's gradient. Early in training the
  gradients of the D * (D - 1) / 2 off-diagonal entries are mostly sampling
  noise, so the weights behind them random-walk, and every entry that drifts
  adds variance to q (row i of L holds i of them). With c < 1 the same weight
  steps move the entries c times less; the entries can still grow to any
  value, so the family is unchanged (see `VariationalAutoencoder` and
  BENCHMARKS.md for the measured effect on a 32-d latent).

  Args:
    latent_size: Python `int` > 0, the event size D.
    diag_transform: 'softplus' (default) or 'exp' for the Cholesky diagonal.
    min_scale: Python `float` >= 0 added to the Cholesky diagonal (default
      1e-5); it bounds the covariance's smallest eigenvalue away from 0.
    off_diagonal_scale: Python `float` c > 0 multiplying the raw off-diagonal
      entries (default 1: exactly `tfb.FillScaleTriL`). `ModelConfig`'s
      default is 0.03 instead, and the two differ on purpose: 0.03 is a
      measured remedy for one setting, an encoder whose raw entries are O(1)
      at initialisation and drift under Adam over D * (D - 1) / 2 noisy
      gradients (32-d latent on binarized MNIST, see `ModelConfig`), while a
      layer on its own serves any model (a regression head, a VI surrogate
      whose off-diagonal params start at 0), where c = 1 keeps the standard
      `tfb.FillScaleTriL` parameterization and c only rescales the step size
      of those params.
    convert_to_tensor_fn, validate_args, **kwargs: as in
      `DiagonalGaussianPosterior`.

  Input: params `[..., D + D * (D + 1) / 2]`. Output: batch `[...]`, event `[D]`.

  ```none
  loc, raw_tril = params[..., :D], params[..., D:]
  T = FillTriangular(raw_tril)
  L[i, i] = transform(T[i, i]) + min_scale
  L[i, j] = c * T[i, j]                      (i > j)
  q(z | x) = Normal(z; loc, L @ L^T)
  ```
  With c = 1, `L = FillScaleTriL(diag_bijector=transform,
  diag_shift=min_scale)(raw_tril)`.
  """

  def __init__(self, latent_size, diag_transform='softplus', min_scale=1e-5,
               off_diagonal_scale=1.0, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    self._diag_transform = check_choice(
        diag_transform, POSITIVE_TRANSFORMS, 'diag_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale',
                                           allow_zero=True)
    self._off_diagonal_scale = check_positive_float(off_diagonal_scale,
                                                    'off_diagonal_scale')
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size,
                diag_transform=self._diag_transform,
                min_scale=self._min_scale,
                off_diagonal_scale=self._off_diagonal_scale)

  @staticmethod
  def params_size(latent_size, name=None):
    """Number of parameters: `D + D * (D + 1) // 2`."""
    del name
    return latent_size + latent_size * (latent_size + 1) // 2

  @staticmethod
  def off_diagonal_params_mask(latent_size):
    """Which params fill the Cholesky factor's off-diagonal entries.

    Zeroing the weights that produce these params makes q(z|x) diagonal;
    `VariationalAutoencoder` starts training from there.

    Returns:
      numpy bool array `[params_size(latent_size)]`: False for the D
      locations and the D raw diagonal entries, True for the D * (D - 1) / 2
      raw off-diagonal entries.
    """
    num_tril = latent_size * (latent_size + 1) // 2
    # tfp.math.fill_triangular's order (numpy, so it also works while a
    # graph is traced): the lower triangle of
    # concat([x[D:], reverse(x)]) reshaped to [D, D].
    index = np.arange(num_tril)
    filled = np.concatenate([index[latent_size:], index[::-1]]).reshape(
        latent_size, latent_size)
    is_off_diagonal = np.ones(num_tril, dtype=bool)
    is_off_diagonal[np.diag(filled)] = False
    return np.concatenate([np.zeros(latent_size, dtype=bool),
                           is_off_diagonal])

  @staticmethod
  def new(params, latent_size, diag_transform='softplus', min_scale=1e-5,
          off_diagonal_scale=1.0, validate_args=False, name=None):
    """Builds the distribution from `params` of shape `[..., params_size]`."""
    with tf.name_scope(name or 'FullCovarianceGaussianPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      num_tril = latent_size * (latent_size + 1) // 2
      loc, raw_tril = tf.split(params, [latent_size, num_tril], axis=-1)
      # The map of tfb.FillScaleTriL(diag_bijector=transform,
      # diag_shift=min_scale), written without its tf.linalg.set_diag: when the
      # batch size is unknown at trace time (a tf.data batch), set_diag's
      # gradient builds a shape under tf.cond that XLA cannot compile, so
      # jit_compile=True training failed. The mask swaps the raw diagonal for
      # the transformed one exactly (no `+ new - old` cancellation).
      tril = tfb.FillTriangular(validate_args=validate_args).forward(
          raw_tril)  # [..., D, D]
      to_scale = tfb.Shift(tf.constant(min_scale, params.dtype))(
          POSITIVE_TRANSFORMS[diag_transform]())
      is_diagonal = tf.cast(tf.eye(latent_size), tf.bool)  # [D, D]
      scale_diag = to_scale.forward(tf.linalg.diag_part(tril))  # [..., D]
      if off_diagonal_scale != 1.0:
        tril = tril * tf.constant(off_diagonal_scale, params.dtype)
      scale_tril = tf.where(is_diagonal, tf.linalg.diag(scale_diag), tril)
      return tfd.MultivariateNormalTriL(
          loc=loc, scale_tril=scale_tril, validate_args=validate_args)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LowRankGaussianPosterior(_DistributionLayer):
  """Gaussian with a diagonal-plus-low-rank covariance over a latent vector.

  `tfd.MultivariateNormalDiagPlusLowRankCovariance`: the covariance is
  `diag(d) + V @ V^T` with V of shape `[D, R]`, between the diagonal (R = 0)
  and the full covariance (R = D, which can represent any covariance; see
  tests). Sampling, `log_prob` (Woodbury identity and the matrix determinant
  lemma) and the KL to a Gaussian prior cost O(D * R^2 + R^3), not O(D^3).

  Why `factor_scale` c, and no zeroed start: the objective depends on V only
  through `V @ V^T`, so V = 0 is a saddle point (its expected gradient is
  zero), and a posterior started there would leave it only by sampling noise.
  Instead V starts small and random: the encoder's raw factor entries are
  O(1) at initialisation and are multiplied by c = 0.03, the off-diagonal
  scale chosen for `FullCovarianceGaussianPosterior` (BENCHMARKS.md), so
  q(z|x) starts within ~R * 1e-3 of diagonal and Adam moves V c times more
  slowly than the other params, as it moves full_cov's off-diagonal entries.
  V can still grow to any value: the family is unchanged.

  Args:
    latent_size: Python `int` > 0, the event size D.
    rank: Python `int` in [1, latent_size], the rank R of the update.
    scale_transform: 'softplus' (default) or 'exp', the map from the raw
      parameter to the standard deviation of the diagonal part.
    min_scale: Python `float` >= 0 added to those standard deviations
      (default 1e-5).
    factor_scale: Python `float` c > 0 multiplying the raw factor entries
      (default 0.03, see above).
    convert_to_tensor_fn, validate_args, **kwargs: as in
      `DiagonalGaussianPosterior`.

  Input: params `[..., 2 * D + D * R]`. Output: batch `[...]`, event `[D]`.

  ```none
  loc, raw_scale, raw_factor = split(params, [D, D, D * R], axis=-1)
  d = (transform(raw_scale) + min_scale)^2                 # [..., D]
  V = c * reshape(raw_factor, [..., D, R])                 # [..., D, R]
  q(z | x) = Normal(z; loc, diag(d) + V @ V^T)
  z = loc + sqrt(d) * eps_1 + V @ eps_2,  eps_1 ~ N(0, I_D), eps_2 ~ N(0, I_R)
  ```
  With V = 0 it is `DiagonalGaussianPosterior` on the first 2 * D params.
  """

  def __init__(self, latent_size, rank, scale_transform='softplus',
               min_scale=1e-5, factor_scale=0.03, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    self._rank = check_positive_int(rank, 'rank')
    if self._rank > self._latent_size:
      raise ValueError(
          f'`rank` must be at most `latent_size`={self._latent_size} (a '
          f'higher rank adds parameters, not covariances); got {rank}.')
    self._scale_transform = check_choice(
        scale_transform, POSITIVE_TRANSFORMS, 'scale_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale',
                                            allow_zero=True)
    self._factor_scale = check_positive_float(factor_scale, 'factor_scale')
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size, rank=self._rank,
                scale_transform=self._scale_transform,
                min_scale=self._min_scale, factor_scale=self._factor_scale)

  @staticmethod
  def params_size(latent_size, rank, name=None):
    """Number of parameters: `2 * latent_size + latent_size * rank`."""
    del name
    return 2 * latent_size + latent_size * rank

  @staticmethod
  def new(params, latent_size, rank, scale_transform='softplus',
          min_scale=1e-5, factor_scale=0.03, validate_args=False, name=None):
    """Builds the distribution from `params` of shape `[..., params_size]`."""
    with tf.name_scope(name or 'LowRankGaussianPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      loc, raw_scale, raw_factor = tf.split(
          params, [latent_size, latent_size, latent_size * rank], axis=-1)
      to_scale = tfb.Shift(tf.constant(min_scale, params.dtype))(
          POSITIVE_TRANSFORMS[scale_transform]())
      factor = tf.reshape(
          raw_factor, tf.concat([tf.shape(raw_factor)[:-1],
                                 [latent_size, rank]], axis=0))  # [..., D, R]
      if factor_scale != 1.0:
        factor = factor * tf.constant(factor_scale, params.dtype)
      return _DiagPlusLowRankCovarianceGaussian(
          loc=loc, cov_diag_factor=tf.square(to_scale.forward(raw_scale)),
          cov_perturb_factor=factor, validate_args=validate_args)


def _capacitance_cholesky(diag_variance, factor):
  """Cholesky factor of `I_R + W^T W`, W = diag(1/sqrt(d)) @ V, and W.

  Args:
    diag_variance: `[..., D]`, d.
    factor: `[..., D, R]`, V.

  Returns:
    (cholesky `[..., R, R]`, whitened factor W `[..., D, R]`).
  """
  whitened = factor / tf.sqrt(diag_variance)[..., tf.newaxis]  # [..., D, R]
  rank = tf.compat.dimension_value(factor.shape[-1])
  capacitance = tf.linalg.matmul(whitened, whitened, transpose_a=True) + (
      tf.eye(rank, dtype=factor.dtype))  # [..., R, R]
  return tf.linalg.cholesky(capacitance), whitened


def _low_rank_log_det(diag_variance, capacitance_cholesky):
  """log det(diag(d) + V V^T) by the matrix determinant lemma."""
  return (tf.reduce_sum(tf.math.log(diag_variance), axis=-1) + 2.0 *
          tf.reduce_sum(tf.math.log(
              tf.linalg.diag_part(capacitance_cholesky)), axis=-1))


class _DiagPlusLowRankCovarianceGaussian(
    tfd.MultivariateNormalDiagPlusLowRankCovariance):
  """`tfd.MultivariateNormalDiagPlusLowRankCovariance` that XLA compiles.

  TFP's `log_prob` and `entropy` go through `LinearOperatorLowRankUpdate`,
  whose capacitance matrix is built by `LinearOperatorIdentity.add_to_tensor`;
  the gradient of that op needs a static batch size under XLA, so a
  `jit_compile=True` training step on `tf.data` batches (batch size unknown
  at trace time) failed to compile. The same Woodbury / determinant-lemma
  formulas are written here with plain ops (results agree to rounding;
  tests compare with scipy):

  ```none
  W = V / sqrt(d)[:, None];  C = I_R + W^T W = L L^T            # [R, R]
  y = (z - loc) / sqrt(d)
  (z - loc)^T Sigma^-1 (z - loc) = |y|^2 - |L^-1 W^T y|^2
  log det Sigma = sum(log d) + 2 * sum(log diag(L))
  ```
  """

  def _log_prob(self, x):
    diag_variance = self.cov_operator.base_operator.diag  # [B, D]
    cholesky, whitened = _capacitance_cholesky(diag_variance,
                                               self.cov_operator.u)
    whitened_x = (x - self.loc) / tf.sqrt(diag_variance)  # [..., B, D]
    projected = tf.linalg.matvec(whitened, whitened_x,
                                 adjoint_a=True)  # [..., B, R]
    cholesky = tf.broadcast_to(
        cholesky, tf.concat([tf.shape(projected), tf.shape(cholesky)[-1:]],
                            axis=0))  # [..., B, R, R]
    solved = tf.linalg.triangular_solve(
        cholesky, projected[..., tf.newaxis], lower=True)[..., 0]
    mahalanobis = (tf.reduce_sum(tf.square(whitened_x), axis=-1) -
                   tf.reduce_sum(tf.square(solved), axis=-1))
    event_size = tf.cast(tf.shape(diag_variance)[-1], self.dtype)
    return -0.5 * (mahalanobis + _low_rank_log_det(diag_variance, cholesky) +
                   event_size * np.log(2.0 * np.pi))

  def _entropy(self):
    diag_variance = self.cov_operator.base_operator.diag
    cholesky, _ = _capacitance_cholesky(diag_variance, self.cov_operator.u)
    event_size = tf.cast(tf.shape(diag_variance)[-1], self.dtype)
    return 0.5 * (_low_rank_log_det(diag_variance, cholesky) +
                  event_size * np.log(2.0 * np.pi * np.e))


def _kl_low_rank_to_linear_operator_gaussian(q, p, name=None):
  """KL(N(m_q, diag(d) + V V^T) || N(m_p, S S^T)) in closed form.

  TFP registers no KL for `MultivariateNormalDiagPlusLowRankCovariance`, so
  `tfd.kl_divergence(q, prior)` (the analytic ELBO's rate) had none. With
  C_q = [diag(sqrt(d)), V], so that Sigma_q = C_q C_q^T:

  ```none
  KL = 0.5 * (trace(Sigma_p^-1 Sigma_q) + |S^-1 (m_p - m_q)|^2 - D
              + log det Sigma_p - log det Sigma_q)
  trace(Sigma_p^-1 Sigma_q) = |S^-1 C_q|_F^2
                            = sum_i d_i * |S^-1 e_i|^2 + |S^-1 V|_F^2
  log det Sigma_q = sum log d + log det(I_R + V^T diag(1/d) V)   # the lemma
  ```
  For a diagonal S (the standard normal prior) the first trace term is
  `sum(d / s^2)`, O(D); otherwise S is solved against `diag(sqrt(d))`.
  """
  with tf.name_scope(name or 'kl_low_rank_to_linear_operator_gaussian'):
    covariance = q.cov_operator  # tf.linalg.LinearOperatorLowRankUpdate
    diag_variance = covariance.base_operator.diag  # [..., D]
    factor = covariance.u  # [..., D, R]
    scale_p = p.scale
    event_size = tf.cast(tf.shape(diag_variance)[-1], q.dtype)
    if isinstance(scale_p, (tf.linalg.LinearOperatorDiag,
                            tf.linalg.LinearOperatorIdentity,
                            tf.linalg.LinearOperatorScaledIdentity)):
      scale_p_diag = scale_p.diag_part()  # [..., D]
      trace_diag = tf.reduce_sum(diag_variance / tf.square(scale_p_diag),
                                 axis=-1)
    else:
      trace_diag = tf.reduce_sum(tf.square(scale_p.solve(
          tf.linalg.diag(tf.sqrt(diag_variance)))), axis=[-2, -1])
    trace_factor = tf.reduce_sum(tf.square(scale_p.solve(factor)),
                                 axis=[-2, -1])
    mahalanobis = tf.reduce_sum(tf.square(scale_p.solvevec(p.mean() - q.mean())),
                                axis=-1)
    log_det_p = 2.0 * scale_p.log_abs_determinant()
    # Not covariance.log_abs_determinant(): see _DiagPlusLowRankCovarianceGaussian.
    log_det_q = _low_rank_log_det(
        diag_variance, _capacitance_cholesky(diag_variance, factor)[0])
    return 0.5 * (trace_diag + trace_factor + mahalanobis - event_size +
                  log_det_p - log_det_q)


try:
  tfd.RegisterKL(tfd.MultivariateNormalDiagPlusLowRankCovariance,
                 tfd.MultivariateNormalLinearOperator)(
                     _kl_low_rank_to_linear_operator_gaussian)
except ValueError:  # A later TFP registers its own for this exact pair.
  pass


@contextlib.contextmanager
def _global_policy(dtype):
  """Sets `tf_keras`'s global dtype policy to `dtype` within the block."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(dtype)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _flow_of_base_mean(flow_distribution):
  """The flow applied to its base distribution's mean: `f(E[x])`.

  The IAF posterior's tensor stand-in (for `reconstruct` and the functional
  API): its own mean `E[f(x)]` has no closed form. It costs one network
  pass per step on `[..., D]`, and is pruned from traced graphs that do not
  use it.
  """
  distribution = getattr(flow_distribution, 'tensor_distribution',
                         flow_distribution)
  return distribution.bijector.forward(distribution.distribution.mean())


def _iaf_step(autoregressive_network, context, validate_args):
  """One IAF step as the inverse of a `tfb.MaskedAutoregressiveFlow`.

  MAF's forward is sequential (D network passes: each y_i needs y_<i) and
  its inverse is one pass; IAF is the inverse of MAF, so its forward (the
  sampling direction) is one network pass on the step's input u:

  ```none
  shift, raw_scale = network(u, context)      # output i sees u_<i only
  z = 2 * sigmoid(raw_scale) * u + shift
  log|det dz/du| = sum_i log(2) + log_sigmoid(raw_scale_i)
  ```

  The scale is a gate, as in Kingma et al. (2016) (their sigma = sigmoid(s)
  with z = sigma * u + (1 - sigma) * m), rescaled so that a network that
  outputs zero is the identity (scale 2 * sigmoid(0) = 1, shift 0): the
  scale stays in (0, 2), so K steps cannot blow a sample up by more than
  2^K, and its log is the stable `log_sigmoid`, whose gradient is bounded.

  The MAF's `bijector_fn` is memoized on its input tensor: MAF calls it once
  for the inverse (the sample) and again for the log-determinant of the
  same tensor, and the cache makes both one network pass.
  """
  built = {}

  def bijector_fn(u):
    key = u.ref()
    if key not in built:
      step_context = context  # [B, C]
      if u.shape.rank != context.shape.rank:  # Samples [L, B, D]: [L, B, C].
        # (Not for u [B, D]: a broadcast inside the while loop of the
        # flow's inverse has a gradient XLA cannot compile for an unknown B.)
        step_context = tf.broadcast_to(
            context, tf.concat([tf.shape(u)[:-1], tf.shape(context)[-1:]],
                               axis=0))
      shift, raw_scale = tf.unstack(
          autoregressive_network(u, conditional_input=step_context),
          num=2, axis=-1)  # [..., D] each
      log_scale = tf.math.log_sigmoid(raw_scale) + tf.constant(
          np.log(2.0), raw_scale.dtype)
      # MAF applies `bijector_fn(u).inverse(u)` in its inverse, our forward.
      built[key] = tfb.Invert(tfb.Shift(shift)(tfb.Scale(log_scale=log_scale)))
    return built[key]

  return tfb.Invert(tfb.MaskedAutoregressiveFlow(
      bijector_fn=bijector_fn, validate_args=validate_args))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InverseAutoregressiveFlowPosterior(_DistributionLayer):
  """A diagonal Gaussian through K inverse autoregressive flow steps.

  Kingma et al. (2016): the encoder gives a diagonal Gaussian base
  N(loc, diag(scale)^2) and a context vector h(x); each step k is an
  autoregressive affine map whose shift and scale come from a MADE
  (`tfb.AutoregressiveNetwork`, its hidden layers also fed the context),
  and the order is reversed between steps (the networks of odd steps read
  the coordinates right to left, which is reversing z without a gather).
  The whole is one `tfd.TransformedDistribution` of the base through
  `tfb.Chain` of `tfb.Invert(tfb.MaskedAutoregressiveFlow)` steps.

  Cost: drawing a sample is one network pass per step. `log_prob` of a
  sample drawn from the same distribution object (`sample`,
  `objectives.sample_latents`) reuses that pass through TFP's bijector cache
  (keyed on the sample tensor) and its memoized step parameters, so
  `log q(z|x) = base.log_prob(x) - log|det df/dx|` costs nothing more. The
  log-density of any other point needs the flow's inverse, D sequential
  network passes per step: exact, but for plots, not training (and far
  from the flow's mass, where a step contracts strongly, the inverse can
  overflow). The returned object is an instance of TFP's transformed
  distribution class (`tfd.TransformedDistribution(...)` builds its
  non-composite base class here), with `.distribution` the diagonal base
  and `.bijector` the chain of steps.

  The networks are this layer's weights: trainable, tracked, checkpointed
  and saved. The last layer of each starts at zero, so q(z|x) starts as the
  diagonal base posterior (as full_cov starts diagonal) and learns the flow
  from there (the last layer's gradient is not zero). An IAF whose networks
  output zero is exactly `DiagonalGaussianPosterior`.

  KL: no closed form; use the Monte Carlo estimator (`kl='mc'`).

  Args:
    latent_size: Python `int` >= 2, the event size D.
    flow_steps: Python `int` K > 0, the number of IAF steps (default 2).
    flow_hidden_units: sequence of positive `int`s, the MADE's hidden widths
      (default (64, 64); at least D - 1 units per layer let output i see
      every u_<i).
    context_size: Python `int` > 0, the size C of h(x) (default: D).
    scale_transform, min_scale: the base's scale, as in
      `DiagonalGaussianPosterior`.
    activation: the MADE's hidden activation (default 'relu').
    convert_to_tensor_fn: 'sample' (default) or 'flow_of_base_mean', the
      flow applied to the base mean (the flow's own mean has no closed form).
    validate_args, **kwargs: as in `DiagonalGaussianPosterior`.

  Input: params `[..., 2 * D + C]`. Output: batch `[...]`, event `[D]`.

  ```none
  loc, raw_scale, context = split(params, [D, D, C], axis=-1)
  x = loc + (transform(raw_scale) + min_scale) * eps,   eps ~ N(0, I)
  z_0 = x;  z_k = 2 * sigmoid(s_k) * z_{k-1} + m_k,
            (m_k, s_k) = MADE_k(z_{k-1}, context)      k = 1..K
  log q(z_K | x) = log N(x; loc, diag(scale)^2) - sum_k sum_i log(2 * sigmoid(s_k,i))
  ```

  References: Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling,
  Improved Variational Inference with Inverse Autoregressive Flow, NeurIPS
  2016. Germain et al., MADE: Masked Autoencoder for Distribution
  Estimation, ICML 2015.
  """

  _convert_to_tensor_fns = {
      'sample': tfd.Distribution.sample,
      'flow_of_base_mean': _flow_of_base_mean,
  }

  def __init__(self, latent_size, flow_steps=2, flow_hidden_units=(64, 64),
               context_size=None, scale_transform='softplus', min_scale=1e-5,
               activation='relu', convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    if self._latent_size < 2:
      raise ValueError(
          f'`latent_size` must be at least 2 for an autoregressive flow (with '
          f'one coordinate there is nothing to condition on); got '
          f'{latent_size}.')
    self._flow_steps = check_positive_int(flow_steps, 'flow_steps')
    try:
      hidden_units = tuple(flow_hidden_units)
    except TypeError:
      hidden_units = None
    if not hidden_units or any(
        isinstance(u, bool) or not isinstance(u, (int, np.integer)) or u <= 0
        for u in hidden_units):
      raise ValueError(f'`flow_hidden_units` must be a non-empty sequence of '
                       f'positive integers; got {flow_hidden_units!r}.')
    self._flow_hidden_units = tuple(int(u) for u in hidden_units)
    self._context_size = check_positive_int(
        latent_size if context_size is None else context_size, 'context_size')
    self._scale_transform = check_choice(
        scale_transform, POSITIVE_TRANSFORMS, 'scale_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale',
                                            allow_zero=True)
    self._activation = activation
    keras.activations.get(activation)  # Raises ValueError for a bad name.
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)
    self.autoregressive_networks = [
        self._make_autoregressive_network(step)
        for step in range(self._flow_steps)]

  def _make_autoregressive_network(self, step):
    """Step `step`'s MADE, built now and with its output layer at zero."""
    network = tfb.AutoregressiveNetwork(
        params=2, event_shape=[self._latent_size],
        hidden_units=list(self._flow_hidden_units), conditional=True,
        conditional_event_shape=[self._context_size],
        conditional_input_layers='all_layers',
        input_order='left-to-right' if step % 2 == 0 else 'right-to-left',
        activation=self._activation, dtype=self.dtype,
        name=f'autoregressive_network_{step}')
    # Built here, not on first call: a fresh layer must hold every weight so
    # that a checkpoint restores into it at once. TFP builds the MADE's
    # merge and activation layers without a dtype, so they would take a
    # global mixed policy and compute in half precision; the flow is part of
    # the distribution, which stays in the layer's dtype.
    with _global_policy(self.dtype):
      network.build([None, self._latent_size])
    # The output layer's weights are created last: the masked kernel
    # [H, 2 * D], its bias [2 * D] and the context's kernel [C, 2 * D].
    output_weights = network.weights[-3:]
    num_outputs = 2 * self._latent_size
    expected_shapes = [[self._flow_hidden_units[-1], num_outputs],
                       [num_outputs], [self._context_size, num_outputs]]
    if [w.shape.as_list() for w in output_weights] != expected_shapes:
      raise AssertionError(  # TFP changed how the MADE orders its weights.
          f'Unexpected AutoregressiveNetwork weights: '
          f'{[w.shape.as_list() for w in network.weights]}.')
    for weight in output_weights:
      weight.assign(tf.zeros_like(weight))
    return network

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size, flow_steps=self._flow_steps,
                flow_hidden_units=list(self._flow_hidden_units),
                context_size=self._context_size,
                scale_transform=self._scale_transform,
                min_scale=self._min_scale, activation=self._activation)

  def _make_distribution_fn_for(self, validate_args):
    # The networks are weights of this layer, so the function reads them from
    # the layer; `new` itself stays a pure static function of its arguments.
    expected_size = self.params_size(self._latent_size, self._context_size)

    def make_distribution(params):
      params = tf.convert_to_tensor(params, name='params')
      if tf.compat.dimension_value(params.shape[-1]) != expected_size:
        raise ValueError(
            f'InverseAutoregressiveFlowPosterior expects params of size '
            f'{expected_size} (2 * latent_size + context_size); got shape '
            f'{params.shape}.')
      return InverseAutoregressiveFlowPosterior.new(
          params, self._latent_size, self.autoregressive_networks,
          scale_transform=self._scale_transform, min_scale=self._min_scale,
          validate_args=validate_args)
    return make_distribution

  @staticmethod
  def params_size(latent_size, context_size=None, name=None):
    """Number of parameters: `2 * latent_size + context_size` (C default D)."""
    del name
    return 2 * latent_size + (latent_size if context_size is None
                              else context_size)

  @staticmethod
  def new(params, latent_size, autoregressive_networks,
          scale_transform='softplus', min_scale=1e-5, validate_args=False,
          name=None):
    """Builds the flow from `params` `[..., 2 * D + C]` and K networks.

    Args:
      params: `[..., 2 * latent_size + C]`: base location, base raw scale and
        the context h(x). C is read from the static last dimension.
      latent_size: Python `int` D.
      autoregressive_networks: K `tfb.AutoregressiveNetwork`s (params=2,
        event size D, conditional on C inputs), applied in order.
      scale_transform, min_scale, validate_args: as in the layer.
      name: name scope.

    Returns:
      `tfd.TransformedDistribution`, batch `[...]`, event `[D]`.
    """
    with tf.name_scope(name or 'InverseAutoregressiveFlowPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      num_params = tf.compat.dimension_value(params.shape[-1])
      if num_params is None or num_params <= 2 * latent_size:
        raise ValueError(
            f'InverseAutoregressiveFlowPosterior needs params with a static '
            f'last dimension 2 * latent_size + context_size > '
            f'{2 * latent_size}; got shape {params.shape}.')
      context_size = num_params - 2 * latent_size
      base_params, context = tf.split(
          params, [2 * latent_size, context_size], axis=-1)
      base = DiagonalGaussianPosterior.new(
          base_params, latent_size, scale_transform=scale_transform,
          min_scale=min_scale, validate_args=validate_args)
      steps = [_iaf_step(network, context, validate_args)
               for network in autoregressive_networks]
      # tfb.Chain applies its last bijector first.
      return tfd.TransformedDistribution(
          base, tfb.Chain(steps[::-1], validate_args=validate_args),
          validate_args=validate_args)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PointMassPosterior(_DistributionLayer):
  """A point mass at the encoder's output: `tfd.VectorDeterministic`.

  With it a VAE becomes a plain autoencoder (and, with noise on its inputs, a
  denoising autoencoder): the latent is the encoder's output, and the KL term
  is dropped because a point mass has no density with respect to the prior.

  Args:
    latent_size: Python `int` > 0.
    convert_to_tensor_fn, validate_args, **kwargs: as in
      `DiagonalGaussianPosterior` (every choice gives the point itself).

  Input: params `[..., latent_size]`. Output: batch `[...]`, event `[D]`.
  """

  def __init__(self, latent_size, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._latent_size = check_positive_int(latent_size, 'latent_size')
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size)

  @staticmethod
  def params_size(latent_size, name=None):
    """Number of parameters: `latent_size`."""
    del name
    return latent_size

  @staticmethod
  def new(params, latent_size, validate_args=False, name=None):
    """Builds the point mass at `params` of shape `[..., latent_size]`."""
    with tf.name_scope(name or 'PointMassPosterior'):
      params = tf.convert_to_tensor(params, name='params')
      if params.shape[-1] is not None and params.shape[-1] != latent_size:
        raise ValueError(f'PointMassPosterior expects params of size '
                         f'latent_size={latent_size}; got shape {params.shape}.')
      return _VectorPointMass(loc=params, validate_args=validate_args)


class _VectorPointMass(tfd.VectorDeterministic):
  """`tfd.VectorDeterministic` whose `_log_prob` exists.

  `tfd.VectorDeterministic` defines only `_prob` (its public `log_prob` takes
  the log), but `tfp.layers`' tensor-coercible output calls the wrapped
  distribution's `_log_prob` directly, so `layer(params).log_prob(z)` raised
  `AttributeError`. The density is that of `VectorDeterministic`: log 1 = 0
  at the atom (within its `atol`/`rtol`), log 0 = -inf elsewhere.
  """

  def _log_prob(self, x):
    return tf.math.log(self._prob(x))


################################################################################
# Likelihoods p(x | z), event shape = image shape.
################################################################################


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IndependentBernoulliLikelihood(_DistributionLayer):
  """Independent Bernoulli pixels: `tfd.Independent(tfd.Bernoulli(logits))`.

  Args:
    event_shape: the image shape, e.g. `(28, 28, 1)`.
    convert_to_tensor_fn: 'sample' (default), 'mean' (pixel probabilities) or
      'mode'.
    validate_args, **kwargs: as in `DiagonalGaussianPosterior`.

  Input: logits `[..., prod(event_shape)]`. Output: batch `[...]`, event
  `event_shape`, float samples in {0, 1} of the layer's dtype.

  ```none
  log p(x | z) = sum_pixels x * log sigmoid(l) + (1 - x) * log sigmoid(-l)
  ```
  """

  def __init__(self, event_shape, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._event_shape = _check_event_shape(event_shape)
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(event_shape=list(self._event_shape))

  @staticmethod
  def params_size(event_shape, name=None):
    """Number of parameters: one logit per pixel."""
    del name
    return int(np.prod(event_shape))

  @staticmethod
  def new(params, event_shape, validate_args=False, name=None):
    """Builds the distribution from logits `[..., prod(event_shape)]`."""
    with tf.name_scope(name or 'IndependentBernoulliLikelihood'):
      params = tf.convert_to_tensor(params, name='params')
      logits = tf.reshape(
          params, tf.concat([tf.shape(params)[:-1], event_shape], axis=0))
      return tfd.Independent(
          tfd.Bernoulli(logits=logits, dtype=params.dtype,
                        validate_args=validate_args),
          reinterpreted_batch_ndims=len(event_shape),
          validate_args=validate_args)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IndependentNormalLikelihood(_DistributionLayer):
  """Independent Normal pixels with mean in [0, 1] and a learned scale.

  The model of Kingma & Welling (2014) for Frey Face: the mean is squashed
  to [0, 1] by a sigmoid (pixel intensities live there), and the standard
  deviation is learned, either one per pixel shared by all inputs
  (`scale='per_pixel'`, a layer weight) or predicted by the decoder for each
  input (`scale='predicted'`, half of the parameters).

  Args:
    event_shape: the image shape, e.g. `(28, 20, 1)`.
    scale: 'per_pixel' (default) or 'predicted'.
    scale_transform: 'softplus' (default) or 'exp'.
    min_scale: Python `float` > 0 added to the standard deviation (default
      1e-3: without a floor a continuous likelihood's density grows without
      bound as a pixel's scale shrinks, and training diverges).
    convert_to_tensor_fn, validate_args, **kwargs: as in
      `DiagonalGaussianPosterior`.

  Input: `[..., P]` with P = prod(event_shape) ('per_pixel') or 2 * P
  ('predicted'). Output: batch `[...]`, event `event_shape`.

  ```none
  mean = sigmoid(mean_logits)
  scale = transform(raw_scale) + min_scale
  log p(x | z) = sum_pixels Normal(x; mean, scale).log_prob
  ```

  References: Kingma & Welling, Auto-Encoding Variational Bayes, 2014, App. C.2.
  """

  def __init__(self, event_shape, scale='per_pixel', scale_transform='softplus',
               min_scale=1e-3, convert_to_tensor_fn='sample',
               validate_args=False, **kwargs):
    self._event_shape = _check_event_shape(event_shape)
    self._scale = check_choice(scale, NORMAL_SCALES, 'scale')
    self._scale_transform = check_choice(
        scale_transform, POSITIVE_TRANSFORMS, 'scale_transform')
    self._min_scale = check_positive_float(min_scale, 'min_scale')
    super().__init__(convert_to_tensor_fn, validate_args, **kwargs)

  def _distribution_kwargs(self):
    return dict(event_shape=list(self._event_shape), scale=self._scale,
                scale_transform=self._scale_transform,
                min_scale=self._min_scale)

  def _make_distribution_fn_for(self, validate_args):
    if self._scale == 'predicted':
      return super()._make_distribution_fn_for(validate_args)
    # The per-pixel scale is a weight of this layer, so the function reads it
    # from the layer; `new` itself stays a pure static function.
    return self._new_with_per_pixel_scale

  def build(self, input_shape):
    if self._scale == 'per_pixel':
      # Initialised so that the scale starts at 1 after the transform:
      # softplus(log(e - 1)) = exp(0) = 1.
      initial_raw = 0.0 if self._scale_transform == 'exp' else np.log(np.e - 1)
      self.raw_scale = self.add_weight(
          name='raw_scale', shape=self._event_shape,
          initializer=keras.initializers.Constant(initial_raw), trainable=True)
    super().build(input_shape)

  def _new_with_per_pixel_scale(self, params):
    params = tf.convert_to_tensor(params, name='params')
    raw_scale = tf.broadcast_to(
        tf.reshape(tf.cast(self.raw_scale, params.dtype), [-1]),
        tf.shape(params))
    return IndependentNormalLikelihood.new(
        tf.concat([params, raw_scale], axis=-1), self._event_shape,
        scale='predicted', scale_transform=self._scale_transform,
        min_scale=self._min_scale, validate_args=self._validate_args)

  @staticmethod
  def params_size(event_shape, scale='per_pixel', name=None):
    """Number of parameters: P ('per_pixel') or 2 * P ('predicted')."""
    del name
    num_pixels = int(np.prod(event_shape))
    return num_pixels if scale == 'per_pixel' else 2 * num_pixels

  @staticmethod
  def new(params, event_shape, scale='predicted', scale_transform='softplus',
          min_scale=1e-3, validate_args=False, name=None):
    """Builds the distribution from `params` `[..., 2 * prod(event_shape)]`.

    `new` takes the predicted-scale layout (mean logits, then raw scales);
    the per-pixel layer appends its weight to the decoder's output before
    calling it.
    """
    if scale != 'predicted':
      raise ValueError(
          "`IndependentNormalLikelihood.new` needs params holding both mean "
          "logits and raw scales (scale='predicted'); the 'per_pixel' scale "
          "is a weight of the layer.")
    with tf.name_scope(name or 'IndependentNormalLikelihood'):
      params = tf.convert_to_tensor(params, name='params')
      num_pixels = int(np.prod(event_shape))
      mean_logits, raw_scale = tf.split(params, [num_pixels, num_pixels],
                                        axis=-1)
      full_shape = tf.concat([tf.shape(params)[:-1], event_shape], axis=0)
      to_scale = tfb.Shift(tf.constant(min_scale, params.dtype))(
          POSITIVE_TRANSFORMS[scale_transform]())
      return tfd.Independent(
          tfd.Normal(loc=tf.reshape(tf.sigmoid(mean_logits), full_shape),
                     scale=tf.reshape(to_scale.forward(raw_scale), full_shape),
                     validate_args=validate_args),
          reinterpreted_batch_ndims=len(event_shape),
          validate_args=validate_args)
