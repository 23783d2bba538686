"""Likelihood layers p(x|z) over images: event shape = the image shape.

  `IndependentBernoulliLikelihood`   Bernoulli(logits)
  `IndependentNormalLikelihood`      Normal(sigmoid(mean_logits), learned scale)

Each is `tfd.Independent(..., reinterpreted_batch_ndims=<image rank>)`; the
layer contract is `_base.py`'s.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._checks import check_positive_float
from tfp_vae._keras import keras
from tfp_vae.distribution_layers._base import _check_event_shape
from tfp_vae.distribution_layers._base import _DistributionLayer
from tfp_vae.distribution_layers._base import _PACKAGE
from tfp_vae.distribution_layers._base import POSITIVE_TRANSFORMS
from tfp_vae.names import NORMAL_SCALES

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['IndependentBernoulliLikelihood', 'IndependentNormalLikelihood']


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
