"""The base class of every distribution layer: the `tfp.layers` contract.

`_DistributionLayer` is a `tfp.layers.DistributionLambda` whose config holds
plain values only: each subclass gives static `params_size` and `new`, and
`_distribution_kwargs` (the arguments of `new` that its config stores). Also
here: what every layer shares, the registry package name, the tensor
stand-ins (`convert_to_tensor_fn` names), the positive transforms, and the
float32 rule under a mixed-precision policy.

Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the layers
compute their distributions in float32, the usual Keras rule for output
heads: half precision has no kernels for the Cholesky solves and loses the
log-densities' precision. A layer built without a `dtype` (or with a mixed
policy) gets `dtype='float32'`, and `call` casts its params to that dtype.
"""

import functools

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_choice
from tfp_vae._keras import keras

tfb = tfp.bijectors
tfd = tfp.distributions

# The package every layer is registered under: `tfp_vae>ClassName` in saved
# models. It and the class names must never change, or saved models stop
# loading.
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
