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
  `PointMassPosterior`               tfd.VectorDeterministic (plain autoencoder)

Likelihoods (event shape = the image shape, via `tfd.Independent`):
  `IndependentBernoulliLikelihood`   Bernoulli(logits)
  `IndependentNormalLikelihood`      Normal(sigmoid(mean_logits), learned scale)

Longer than 500 lines: one concept, the `tfp.layers` contract, implemented
once for each distribution a VAE's encoder or decoder outputs; the layers
share its base class and checks, so they stay together.
"""

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

  def __init__(self, convert_to_tensor_fn='sample', validate_args=False,
               **kwargs):
    check_choice(convert_to_tensor_fn, _CONVERT_TO_TENSOR_FNS,
                 'convert_to_tensor_fn')
    super().__init__(self._make_distribution_fn_for(validate_args),
                     _CONVERT_TO_TENSOR_FNS[convert_to_tensor_fn], **kwargs)
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
    inputs = tf.nest.map_structure(tf.convert_to_tensor, inputs)
    return super().call(inputs, *args, **kwargs)

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
      return tfd.VectorDeterministic(loc=params, validate_args=validate_args)


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
