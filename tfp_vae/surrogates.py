"""Trainable surrogate distributions for `tfp.vi`, built from the layers.

A distribution layer maps a params tensor to a distribution. Calling it on a
`tf.Variable` gives a distribution built once from the variable's value, so
it holds no variables (`trainable_variables == ()`) and
`tfp.vi.fit_surrogate_posterior` silently trains nothing. The route that
works keeps the params in a variable and rebuilds the distribution from it
on every method call: `tfp.experimental.util.DeferredModule` around the
layer's params -> distribution map (its static `new`, with the layer's
constructor arguments bound). `DeferredModule` is a `tf.Module`, and
`tf.Module` finds variables by walking an object's attributes, so the params
variable (held as an argument of the deferred call) and the layer (held in
`also_track`, with any weights of its own) are its `trainable_variables`.

```python
import tensorflow_probability as tfp
import tfp_vae

surrogate = tfp_vae.surrogates.trainable_surrogate(
    tfp_vae.FullCovarianceGaussianPosterior(3), initial_scale=0.1)
surrogate.trainable_variables        # (the params variable,)
tfp.vi.fit_surrogate_posterior(target_log_prob_fn, surrogate,
                               optimizer=..., num_steps=1000)
surrogate.mean(), surrogate.covariance()
```

The result behaves as the layer's distribution (`sample`, `log_prob`,
`mean`, `batch_shape`, ... are forwarded to a distribution built afresh on
each call), but it is a `DeferredModule`, not a `tfd.Distribution`:
`tfd.kl_divergence(surrogate, p)` does not dispatch on it, while the method
`surrogate.kl_divergence(p)` does.
"""

import inspect

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers

tfb = tfp.bijectors

__all__ = ['trainable_surrogate']


def trainable_surrogate(layer, initial_params=None, initial_loc=None,
                        initial_scale=None, batch_shape=(), name=None):
  """A distribution `layer(params)` whose params are a trainable variable.

  Args:
    layer: an instance of one of the package's distribution layers, built
      with the constructor arguments the surrogate should have, e.g.
      `FullCovarianceGaussianPosterior(3, min_scale=1e-4)`. Its dtype
      (float32 unless the layer was given another) is the params' dtype. If
      the layer has weights of its own (the per-pixel scale of
      `IndependentNormalLikelihood`, a flow's networks), they are built here
      if need be and become trainable variables of the surrogate too (shared
      with any model that uses the same layer object).
    initial_params: optional float `Tensor` `[*batch_shape, params_size]` or
      broadcastable to it: the variable's initial value, in the layer's own
      parameterization. Required for layers without a documented
      initialization (below); excludes `initial_loc` and `initial_scale`.
    initial_loc: optional float `Tensor` broadcastable to
      `[*batch_shape, latent_size]`, the surrogate's initial mean (default
      0). Posterior layers only.
    initial_scale: optional float `Tensor` broadcastable to
      `[*batch_shape, latent_size]`, each coordinate's initial standard
      deviation, > the layer's `min_scale` (default 1). Gaussian posterior
      layers only.
    batch_shape: Python sequence of ints >= 0, the surrogate's batch shape
      (default `()`, one distribution), broadcast with the batch shape of the
      initial values.
    name: Python `str`, the name scope of the params variable (default
      'trainable_surrogate').

  Returns:
    surrogate: a `tfp.experimental.util.DeferredModule` that acts as the
      layer's distribution (batch shape `batch_shape`), with the params
      variable `[*batch_shape, params_size]` (and the layer's weights, if
      any) as its `trainable_variables`. Build it eagerly, once: it creates
      that variable.

  Raises:
    ValueError: if `layer` is not one of the package's distribution layers,
      if `initial_params` has the wrong size, if it is missing for a layer
      without a documented initialization or given with `initial_loc` /
      `initial_scale`, if `initial_scale` does not apply to the layer or is
      not > `min_scale`, or if `batch_shape` is not a sequence of ints >= 0.

  Initialization (`initial_params=None`): the params at which the layer's
  distribution is exactly `Normal(initial_loc, diag(initial_scale)^2)`.

  ```none
  DiagonalGaussianPosterior:
    params = [loc, transform^-1(scale - min_scale)]
  FullCovarianceGaussianPosterior:
    params = [loc, FillTriangular^-1(T)],
      T[i, i] = transform^-1(scale[i] - min_scale),  T[i, j] = 0 (i > j)
    so L = diag(scale). Starting uncorrelated puts no spurious correlation
    into q, and is no stationary point: the ELBO's gradient with respect to
    an off-diagonal L[i, j] is E[d log p(z) / d z_i * eps_j], nonzero when
    the target correlates z_i and z_j.
  LowRankGaussianPosterior:
    params = [loc, transform^-1(scale - min_scale), V / factor_scale],
      V[i, r] = 0.01 * scale[i] * N(0, 1)  (a fixed seed)
    so the covariance is diag(scale^2) + V V^T, within 1e-4 * R of
    diag(scale^2): V = 0 would be a saddle point (the objective sees V only
    through V V^T, whose gradient in V vanishes there).
  InverseAutoregressiveFlowPosterior:
    params = [loc, transform^-1(scale - min_scale), 0 (the context)]
    and, with the layer's networks as built (outputs zero), q is exactly
    the diagonal base N(loc, diag(scale)^2).
  PointMassPosterior:
    params = loc (no scale: fitting a point mass maximizes log p(z, x),
    i.e. finds a MAP estimate, since the point's own log-density is 0).
  ```
  Any other layer, a family added later included, takes `initial_params`.
  The defaults, loc 0 and scale 1, are a standard normal: as wide as the
  usual unit prior, so the fit starts from the prior's spread and narrows.
  When the likelihood is sharp (many data), a smaller `initial_scale` keeps
  the first steps' samples, and so their gradients, near the posterior.
  """
  if not isinstance(layer, distribution_layers._DistributionLayer):  # pylint: disable=protected-access
    raise ValueError(
        f'`layer` must be one of tfp_vae\'s distribution layers (an instance, '
        f'e.g. FullCovarianceGaussianPosterior(3)); got {layer!r}.')
  batch_shape = _check_batch_shape(batch_shape)
  dtype = tf.as_dtype(layer.dtype)
  config = layer.get_config()
  params_size = _params_size(layer, config)
  layer_name = type(layer).__name__

  if initial_params is None:
    initialize = _INITIAL_PARAMS_FNS.get(type(layer))
    if initialize is None:
      raise ValueError(
          f'`initial_params` is required for a {layer_name} surrogate: it has '
          f'no loc/scale initialization; got initial_params=None.')
    initial_params = initialize(
        config, _loc_or_default(initial_loc, dtype),
        _scale_or_default(initial_scale, config, layer_name, dtype), dtype)
  else:
    if initial_loc is not None or initial_scale is not None:
      raise ValueError(
          f'`initial_params` excludes `initial_loc` and `initial_scale`; got '
          f'initial_loc={initial_loc!r}, initial_scale={initial_scale!r}.')
    initial_params = tf.convert_to_tensor(initial_params, dtype=dtype)
    if initial_params.shape[-1:] != [params_size]:
      raise ValueError(
          f'`initial_params` must have last dimension params_size='
          f'{params_size} for {layer_name}; got shape {initial_params.shape}.')

  try:
    params_shape = np.broadcast_shapes(tuple(batch_shape) + (params_size,),
                                       tuple(initial_params.shape))
  except ValueError:
    raise ValueError(
        f'The initial values (params shape {initial_params.shape}) must '
        f'broadcast with `batch_shape`={batch_shape}.') from None
  with tf.name_scope(name or 'trainable_surrogate'):
    params = tf.Variable(  # [*batch_shape, params_size]
        tf.broadcast_to(initial_params, params_shape), name='params')
  if not layer.built:
    # Keras creates a layer's weights on its first call; a surrogate of a
    # layer with weights needs them to exist before `also_track` lists them.
    layer(params)
  make_distribution = layer._make_distribution_fn_for(layer._validate_args)  # pylint: disable=protected-access
  return tfp.experimental.util.DeferredModule(
      make_distribution, params, also_track=layer)


def _check_batch_shape(batch_shape):
  try:
    dims = [int(d) for d in batch_shape]
  except (TypeError, ValueError):
    raise ValueError(f'`batch_shape` must be a sequence of integers >= 0; got '
                     f'{batch_shape!r}.') from None
  if any(d < 0 for d in dims):
    raise ValueError(f'`batch_shape` must be a sequence of integers >= 0; got '
                     f'{batch_shape!r}.')
  return dims


def _params_size(layer, config):
  """The layer's `params_size`, called with the config values it names."""
  # Every layer's static `params_size` takes a subset of its constructor
  # arguments (latent_size; event_shape and scale; ...), so reading the
  # names off its signature serves families added later as well.
  params_size_fn = type(layer).params_size
  arg_names = [n for n in inspect.signature(params_size_fn).parameters
               if n != 'name']
  return int(params_size_fn(**{n: config[n] for n in arg_names if n in config}))


def _loc_or_default(initial_loc, dtype):
  loc = tf.convert_to_tensor(0. if initial_loc is None else initial_loc,
                             dtype=dtype)
  loc_values = tf.get_static_value(loc)
  if loc_values is not None and not np.all(np.isfinite(loc_values)):
    raise ValueError(f'`initial_loc` must be finite; got {initial_loc!r}.')
  return loc


def _scale_or_default(initial_scale, config, layer_name, dtype):
  """The initial scale, checked against the layer; None for a point mass."""
  if 'min_scale' not in config:  # A point mass has no scale.
    if initial_scale is not None:
      raise ValueError(f'`initial_scale` does not apply to {layer_name} (it '
                       f'has no scale); got initial_scale={initial_scale!r}.')
    return None
  scale = tf.convert_to_tensor(1. if initial_scale is None else initial_scale,
                               dtype=dtype)
  scale_values = tf.get_static_value(scale)
  if scale_values is not None and not np.all(
      np.isfinite(scale_values) & (scale_values > config['min_scale'])):
    raise ValueError(
        f'`initial_scale` must be finite and > the layer\'s min_scale='
        f'{config["min_scale"]}; got {initial_scale!r}.')
  return scale


def _raw_scale(scale, transform_name, min_scale):
  """transform^-1(scale - min_scale): the raw param giving `scale`."""
  transform = distribution_layers.POSITIVE_TRANSFORMS[transform_name]()
  return transform.inverse(scale - tf.constant(min_scale, scale.dtype))


def _diagonal_initial_params(config, loc, scale, dtype):
  raw_scale = _raw_scale(scale, config['scale_transform'], config['min_scale'])
  loc, raw_scale = _broadcast_together(loc, raw_scale, config['latent_size'])
  return tf.cast(tf.concat([loc, raw_scale], axis=-1), dtype)


def _full_covariance_initial_params(config, loc, scale, dtype):
  latent_size = config['latent_size']
  raw_diag = _raw_scale(scale, config['diag_transform'], config['min_scale'])
  loc, raw_diag = _broadcast_together(loc, raw_diag, latent_size)
  # The raw vector whose filled triangle is diag(raw_diag): zeros off the
  # diagonal, whatever `off_diagonal_scale` multiplies them by.
  raw_tril = tfb.FillTriangular().inverse(tf.linalg.diag(raw_diag))
  return tf.cast(tf.concat([loc, raw_tril], axis=-1), dtype)


def _low_rank_initial_params(config, loc, scale, dtype):
  latent_size, rank = config['latent_size'], config['rank']
  raw_scale = _raw_scale(scale, config['scale_transform'], config['min_scale'])
  loc, raw_scale = _broadcast_together(loc, raw_scale, latent_size)
  # V = 0 is a saddle point of any objective of V @ V^T (see
  # `LowRankGaussianPosterior`), so V starts small and random, from a fixed
  # seed: every surrogate built alike starts alike.
  noise = tf.random.stateless_normal([latent_size, rank],
                                     seed=_LOW_RANK_FACTOR_SEED,
                                     dtype=scale.dtype)  # [D, R]
  factor = _LOW_RANK_FACTOR_SIZE * scale[..., tf.newaxis] * noise
  raw_factor = tf.reshape(
      factor / tf.constant(config['factor_scale'], scale.dtype),
      tf.concat([tf.shape(factor)[:-2], [latent_size * rank]], axis=0))
  raw_factor = tf.broadcast_to(
      raw_factor, tf.concat([tf.shape(loc)[:-1], [latent_size * rank]],
                            axis=0))  # [..., D * R]
  return tf.cast(tf.concat([loc, raw_scale, raw_factor], axis=-1), dtype)


def _flow_initial_params(config, loc, scale, dtype):
  base_params = _diagonal_initial_params(config, loc, scale, dtype)
  # A zero context: with the layer's fresh networks (zero outputs) the flow
  # is the identity, so q starts as the diagonal base.
  context = tf.zeros(tf.concat([tf.shape(base_params)[:-1],
                                [config['context_size']]], axis=0), dtype)
  return tf.concat([base_params, context], axis=-1)


def _point_mass_initial_params(config, loc, scale, dtype):
  del scale  # None: checked by `_scale_or_default`.
  loc, _ = _broadcast_together(loc, loc, config['latent_size'])
  return tf.cast(loc, dtype)


def _broadcast_together(loc, raw_scale, latent_size):
  """Both broadcast to their common shape, at least `[latent_size]`."""
  try:
    shape = np.broadcast_shapes(loc.shape, raw_scale.shape, (latent_size,))
  except ValueError:
    raise ValueError(
        f'`initial_loc` and `initial_scale` must broadcast to [..., '
        f'latent_size={latent_size}]; got shapes {loc.shape} and '
        f'{raw_scale.shape}.') from None
  return tf.broadcast_to(loc, shape), tf.broadcast_to(raw_scale, shape)


# Families with a loc/scale initialization. A family added later needs an
# entry here to take `initial_loc` / `initial_scale`; until then its
# surrogates take `initial_params`.
_INITIAL_PARAMS_FNS = {
    distribution_layers.DiagonalGaussianPosterior: _diagonal_initial_params,
    distribution_layers.FullCovarianceGaussianPosterior:
        _full_covariance_initial_params,
    distribution_layers.LowRankGaussianPosterior: _low_rank_initial_params,
    distribution_layers.InverseAutoregressiveFlowPosterior:
        _flow_initial_params,
    distribution_layers.PointMassPosterior: _point_mass_initial_params,
}
# The low-rank factor's start: V = 0.01 * scale[i] * N(0, 1) from this seed,
# so q's covariance starts within 1e-4 * R (relative, per entry) of
# diag(scale^2).
_LOW_RANK_FACTOR_SEED = (20161205, 0)
_LOW_RANK_FACTOR_SIZE = 0.01
