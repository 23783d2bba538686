"""Gaussian posterior layers q(z|x) over a latent vector, and the point mass.

  `DiagonalGaussianPosterior`        tfd.MultivariateNormalDiag
  `FullCovarianceGaussianPosterior`  tfd.MultivariateNormalTriL
  `PointMassPosterior`               tfd.VectorDeterministic (autoencoder)

The low-rank-plus-diagonal Gaussian is in `low_rank.py`, the flow in
`flow.py`. Event shape `[latent_size]`; the layer contract is `_base.py`'s.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._checks import check_positive_float
from tfp_vae._checks import check_positive_int
from tfp_vae._keras import keras
from tfp_vae.distribution_layers._base import _DistributionLayer
from tfp_vae.distribution_layers._base import _PACKAGE
from tfp_vae.distribution_layers._base import POSITIVE_TRANSFORMS

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['DiagonalGaussianPosterior', 'FullCovarianceGaussianPosterior',
           'PointMassPosterior']


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
