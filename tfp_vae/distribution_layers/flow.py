"""The inverse autoregressive flow posterior layer (Kingma et al. 2016).

`InverseAutoregressiveFlowPosterior`: a diagonal Gaussian base from the
encoder through K IAF steps (`tfb.Invert(tfb.MaskedAutoregressiveFlow)` of
a conditional `tfb.AutoregressiveNetwork`), one
`tfd.TransformedDistribution`. `flow_of_base_mean` is its tensor stand-in.
"""

import contextlib

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._checks import check_positive_float
from tfp_vae._checks import check_positive_int
from tfp_vae._checks import check_positive_int_sequence
from tfp_vae._keras import keras
from tfp_vae.distribution_layers._base import _DistributionLayer
from tfp_vae.distribution_layers._base import _PACKAGE
from tfp_vae.distribution_layers._base import POSITIVE_TRANSFORMS
from tfp_vae.distribution_layers.gaussian import DiagonalGaussianPosterior

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['InverseAutoregressiveFlowPosterior', 'flow_of_base_mean']


@contextlib.contextmanager
def _global_policy(dtype):
  """Sets `tf_keras`'s global dtype policy to `dtype` within the block."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(dtype)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def flow_of_base_mean(flow_distribution):
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
      'flow_of_base_mean': flow_of_base_mean,
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
    self._flow_hidden_units = check_positive_int_sequence(
        flow_hidden_units, 'flow_hidden_units')
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
