"""Tests for tfp_vae.distribution_layers.

Every layer is checked against the `tfp.layers` contract (distribution type,
batch and event shape, `params_size`, gradients, dtypes, plain config,
save/load) and its densities against independent numpy/scipy formulas.
"""

import json
import os
import tempfile
import zipfile

from absl.testing import parameterized
import numpy as np
from scipy import special
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers as dl
from tfp_vae import objectives
from tfp_vae._keras import keras

from _test_util import named_product

tfb = tfp.bijectors
tfd = tfp.distributions

LATENT_SIZE = 3
# Two channels, so a layout mistake (pixels vs channels) changes the numbers.
IMAGE_SHAPE = (2, 3, 2)
NUM_PIXELS = int(np.prod(IMAGE_SHAPE))
NUM_INPUTS = 5
BATCH_SIZE = 4

POSTERIOR_CASES = ('diag', 'full_cov', 'low_rank', 'iaf', 'point_mass')
LOW_RANK = 2
FLOW_HIDDEN_UNITS = (8,)
LIKELIHOOD_CASES = ('bernoulli', 'normal_per_pixel', 'normal_predicted')
ALL_CASES = POSTERIOR_CASES + LIKELIHOOD_CASES
DTYPES = ('float32', 'float64')

# (outer distribution class, inner class for tfd.Independent, event shape)
EXPECTED = {
    'diag': (tfd.MultivariateNormalDiag, None, [LATENT_SIZE]),
    'full_cov': (tfd.MultivariateNormalTriL, None, [LATENT_SIZE]),
    'low_rank': (tfd.MultivariateNormalDiagPlusLowRankCovariance, None,
                 [LATENT_SIZE]),
    # tfd.TransformedDistribution(...) of a non-composite bijector (the MADE
    # networks) is an instance of TFP's private base class only.
    'iaf': (tfd.TransformedDistribution.__mro__[1], None, [LATENT_SIZE]),
    'point_mass': (tfd.VectorDeterministic, None, [LATENT_SIZE]),
    'bernoulli': (tfd.Independent, tfd.Bernoulli, list(IMAGE_SHAPE)),
    'normal_per_pixel': (tfd.Independent, tfd.Normal, list(IMAGE_SHAPE)),
    'normal_predicted': (tfd.Independent, tfd.Normal, list(IMAGE_SHAPE)),
}


def make_layer(case, **kwargs):
  """Returns (layer, params_size) for one of `ALL_CASES`."""
  if case == 'diag':
    return (dl.DiagonalGaussianPosterior(LATENT_SIZE, **kwargs),
            dl.DiagonalGaussianPosterior.params_size(LATENT_SIZE))
  if case == 'full_cov':
    return (dl.FullCovarianceGaussianPosterior(LATENT_SIZE, **kwargs),
            dl.FullCovarianceGaussianPosterior.params_size(LATENT_SIZE))
  if case == 'low_rank':
    return (dl.LowRankGaussianPosterior(LATENT_SIZE, LOW_RANK, **kwargs),
            dl.LowRankGaussianPosterior.params_size(LATENT_SIZE, LOW_RANK))
  if case == 'iaf':
    if kwargs.get('convert_to_tensor_fn') == 'mean':
      kwargs['convert_to_tensor_fn'] = 'flow_of_base_mean'  # No closed form.
    layer = dl.InverseAutoregressiveFlowPosterior(
        LATENT_SIZE, flow_steps=2, flow_hidden_units=FLOW_HIDDEN_UNITS,
        **kwargs)
    # Away from the identity the networks start at, so that a flow weight
    # that is lost, or not trained, shows.
    randomize_flow_weights(layer, seed=7)
    return layer, dl.InverseAutoregressiveFlowPosterior.params_size(
        LATENT_SIZE)
  if case == 'point_mass':
    return (dl.PointMassPosterior(LATENT_SIZE, **kwargs),
            dl.PointMassPosterior.params_size(LATENT_SIZE))
  if case == 'bernoulli':
    return (dl.IndependentBernoulliLikelihood(IMAGE_SHAPE, **kwargs),
            dl.IndependentBernoulliLikelihood.params_size(IMAGE_SHAPE))
  scale = case[len('normal_'):]
  return (dl.IndependentNormalLikelihood(IMAGE_SHAPE, scale=scale, **kwargs),
          dl.IndependentNormalLikelihood.params_size(IMAGE_SHAPE, scale))


def randomize_flow_weights(layer, seed, stddev=0.2):
  """Random values for every IAF network weight (masks kept)."""
  rng = np.random.RandomState(seed)
  for network in layer.autoregressive_networks:
    for weight in network.weights:
      value = tf.constant(stddev * rng.randn(*weight.shape.as_list()),
                          weight.dtype)
      # A masked kernel's constraint is its MADE mask: keep the flow
      # autoregressive.
      if weight.constraint is not None:
        value = weight.constraint(value)
      weight.assign(value)


def make_points(case, dtype, seed=0):
  """Fixed points in the support of the case's distribution, batch first."""
  rng = np.random.RandomState(seed)
  if case in POSTERIOR_CASES:
    return rng.randn(BATCH_SIZE, LATENT_SIZE).astype(dtype)
  if case == 'bernoulli':
    return (rng.rand(BATCH_SIZE, *IMAGE_SHAPE) < 0.5).astype(dtype)
  return rng.rand(BATCH_SIZE, *IMAGE_SHAPE).astype(dtype)


def make_model(case, dtype, **kwargs):
  """`Sequential([Dense(params_size), layer])` over NUM_INPUTS features."""
  layer, params_size = make_layer(case, dtype=dtype, **kwargs)
  model = keras.Sequential([
      keras.layers.InputLayer(input_shape=(NUM_INPUTS,), dtype=dtype),
      keras.layers.Dense(params_size, dtype=dtype,
                         kernel_initializer=keras.initializers.GlorotUniform(
                             seed=1)),
      layer,
  ])
  inputs = np.random.RandomState(2).randn(BATCH_SIZE, NUM_INPUTS).astype(dtype)
  return model, layer, inputs


def np_softplus(x):
  return np.logaddexp(0.0, x)


NP_TRANSFORMS = {'softplus': np_softplus, 'exp': np.exp}


def np_fill_triangular(x):
  """numpy port of `tfp.math.fill_triangular` (lower) for `[..., m]` vectors."""
  m = x.shape[-1]
  n = int(np.sqrt(0.25 + 2 * m) - 0.5)
  flat = np.concatenate([x[..., n:], x[..., ::-1]], axis=-1)
  return np.tril(flat.reshape(x.shape[:-1] + (n, n)))


def np_scale_tril(raw_tril, transform='softplus', min_scale=1e-5):
  """The Cholesky factor the full-covariance layer documents, in numpy."""
  tril = np_fill_triangular(raw_tril)
  diag_index = np.arange(tril.shape[-1])
  tril[..., diag_index, diag_index] = (
      NP_TRANSFORMS[transform](tril[..., diag_index, diag_index]) + min_scale)
  return tril


def np_kl_to_standard_normal(loc, covariance):
  """KL(N(loc, covariance) || N(0, I)), the closed form, batched."""
  dim = loc.shape[-1]
  _, log_det = np.linalg.slogdet(covariance)
  return 0.5 * (np.trace(covariance, axis1=-2, axis2=-1) +
                np.sum(loc**2, axis=-1) - dim - log_det)


def tolerance(dtype):
  return 1e-4 if dtype == 'float32' else 1e-10


def contains_callable(value):
  if callable(value):
    return True
  if isinstance(value, dict):
    return any(contains_callable(v) for v in value.values())
  if isinstance(value, (list, tuple)):
    return any(contains_callable(v) for v in value)
  return False


class HelpersTest(tf.test.TestCase):

  def test_np_fill_triangular_follows_tfp_documented_order(self):
    # The example in tfp.math.fill_triangular's docstring.
    self.assertAllEqual(
        np_fill_triangular(np.arange(1, 7)),
        [[4, 0, 0], [6, 5, 0], [3, 2, 1]])
    raw = np.random.RandomState(0).randn(2, 10)
    self.assertAllClose(np_fill_triangular(raw),
                        tfp.math.fill_triangular(raw))


class LayerContractTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(case=ALL_CASES, dtype=DTYPES))
  def test_distribution_type_shapes_and_dtype(self, case, dtype):
    model, _, inputs = make_model(case, dtype)
    output = model(inputs)
    distribution = output.tensor_distribution
    outer, inner, event_shape = EXPECTED[case]
    self.assertIsInstance(distribution, outer)
    if inner is not None:
      self.assertIsInstance(distribution.distribution, inner)
      self.assertEqual(distribution.reinterpreted_batch_ndims,
                       len(IMAGE_SHAPE))
    self.assertEqual(distribution.batch_shape, [BATCH_SIZE])
    self.assertEqual(distribution.event_shape, event_shape)
    self.assertEqual(distribution.dtype, tf.as_dtype(dtype))
    log_prob = distribution.log_prob(make_points(case, dtype))
    self.assertEqual(log_prob.shape, [BATCH_SIZE])
    self.assertEqual(log_prob.dtype, tf.as_dtype(dtype))
    sample = distribution.sample(seed=(1, 2))
    self.assertEqual(sample.shape, [BATCH_SIZE] + event_shape)
    self.assertEqual(sample.dtype, tf.as_dtype(dtype))

  @parameterized.named_parameters(*named_product(case=ALL_CASES, dtype=DTYPES))
  def test_leading_sample_and_batch_dims_become_batch_shape(self, case, dtype):
    # The model decodes latents [L, B, D]: params [L, B, P] -> batch [L, B].
    layer, params_size = make_layer(case, dtype=dtype)
    params = np.random.RandomState(0).randn(2, BATCH_SIZE,
                                            params_size).astype(dtype)
    distribution = layer(params)
    self.assertEqual(distribution.batch_shape, [2, BATCH_SIZE])
    self.assertEqual(distribution.event_shape, EXPECTED[case][2])

  @parameterized.named_parameters(*named_product(case=ALL_CASES))
  def test_params_size_is_what_the_layer_consumes(self, case):
    layer, params_size = make_layer(case)
    rng = np.random.RandomState(0)
    distribution = layer(rng.randn(BATCH_SIZE, params_size).astype('float32'))
    self.assertEqual(distribution.event_shape, EXPECTED[case][2])
    if case == 'point_mass':
      return  # A point mass takes its event size from its params.
    layer, _ = make_layer(case)
    with self.assertRaises((ValueError, tf.errors.InvalidArgumentError)):
      layer(rng.randn(BATCH_SIZE, params_size + 1).astype('float32'))

  def test_params_sizes_have_known_values(self):
    self.assertEqual(dl.DiagonalGaussianPosterior.params_size(5), 10)
    self.assertEqual(dl.FullCovarianceGaussianPosterior.params_size(5),
                     5 + 15)
    self.assertEqual(dl.PointMassPosterior.params_size(5), 5)
    self.assertEqual(
        dl.IndependentBernoulliLikelihood.params_size((28, 28, 1)), 784)
    self.assertEqual(
        dl.IndependentNormalLikelihood.params_size((28, 20, 1)), 560)
    self.assertEqual(
        dl.IndependentNormalLikelihood.params_size((28, 20, 1), 'predicted'),
        1120)

  def test_normal_new_refuses_per_pixel_params(self):
    with self.assertRaisesRegex(ValueError, 'predicted'):
      dl.IndependentNormalLikelihood.new(
          tf.zeros([1, NUM_PIXELS]), IMAGE_SHAPE, scale='per_pixel')

  @parameterized.named_parameters(*named_product(
      case=POSTERIOR_CASES, dtype=DTYPES))
  def test_gradient_reaches_dense_through_reparameterized_sample(
      self, case, dtype):
    model, _, inputs = make_model(case, dtype)
    dense = model.layers[0]
    weights = np.random.RandomState(3).randn(LATENT_SIZE).astype(dtype)
    with tf.GradientTape() as tape:
      distribution = model(inputs)
      self.assertEqual(distribution.reparameterization_type,
                       tfd.FULLY_REPARAMETERIZED)
      latents = distribution.sample(seed=(4, 5))  # [B, D]
      loss = tf.reduce_sum(latents**2 * weights)
    kernel_grad, bias_grad = tape.gradient(loss, [dense.kernel, dense.bias])
    for grad in (kernel_grad, bias_grad):
      self.assertIsNotNone(grad)
      self.assertEqual(grad.dtype, tf.as_dtype(dtype))
      self.assertTrue(np.all(np.isfinite(grad)))
      self.assertGreater(self.evaluate(tf.norm(grad)), 0.0)

  @parameterized.named_parameters(*named_product(
      case=LIKELIHOOD_CASES, dtype=DTYPES))
  def test_gradient_reaches_dense_and_scale_through_log_prob(self, case, dtype):
    model, layer, inputs = make_model(case, dtype)
    dense = model.layers[0]
    points = make_points(case, dtype)
    variables = [dense.kernel, dense.bias]
    if case == 'normal_per_pixel':
      self.assertEqual(layer.raw_scale.shape, IMAGE_SHAPE)
      self.assertIn(layer.raw_scale, layer.trainable_weights)
      variables.append(layer.raw_scale)
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(model(inputs).log_prob(points))
    for grad in tape.gradient(loss, variables):
      self.assertIsNotNone(grad)
      self.assertTrue(np.all(np.isfinite(grad)))
      self.assertGreater(self.evaluate(tf.norm(grad)), 0.0)

  @parameterized.named_parameters(*named_product(case=ALL_CASES))
  def test_gradient_compiles_under_xla_with_unknown_batch_size(self, case):
    # Keras traces a train step once for a tf.data batch of unknown size; its
    # gradient must still compile with jit_compile=True.
    layer, params_size = make_layer(case)
    params = np.random.RandomState(0).randn(BATCH_SIZE,
                                            params_size).astype('float32')
    points = make_points(case, 'float32')
    layer(params)  # Builds the per-pixel scale, if any.

    def log_prob_loss_and_gradient(params):
      with tf.GradientTape() as tape:
        tape.watch(params)
        loss = -tf.reduce_sum(layer(params).log_prob(points))
      return loss, tape.gradient(loss, params)

    def sample_loss_gradient(params):
      # The reparameterized path the VAE trains through.
      with tf.GradientTape() as tape:
        tape.watch(params)
        latents = objectives.sample_latents(
            layer(params), 2, tf.constant([1, 2]), example_offset=0,
            total_examples=tf.shape(params)[0])
        loss = tf.reduce_sum(latents**2)
      return tape.gradient(loss, params)

    signature = [tf.TensorSpec([None, params_size], tf.float32)]
    params = tf.constant(params)
    if case != 'point_mass':  # A point mass has no density off its atom.
      compiled = tf.function(log_prob_loss_and_gradient, jit_compile=True,
                             input_signature=signature)
      expected_loss, expected_gradient = log_prob_loss_and_gradient(params)
      loss, gradient = compiled(params)
      self.assertAllClose(loss, expected_loss, rtol=1e-5)
      self.assertAllClose(gradient, expected_gradient, rtol=1e-4, atol=1e-5)
      self.assertGreater(self.evaluate(tf.norm(gradient)), 0.0)
    if case in POSTERIOR_CASES:
      # XLA draws other noise than eager for the same stateless seed (TF's
      # 'auto_select' algorithm), so only the compiled gradient is checked.
      compiled = tf.function(sample_loss_gradient, jit_compile=True,
                             input_signature=signature)
      gradient = self.evaluate(compiled(params))
      self.assertTrue(np.all(np.isfinite(gradient)))
      self.assertGreater(np.linalg.norm(gradient), 0.0)

  @parameterized.named_parameters(*named_product(case=ALL_CASES))
  def test_get_config_is_plain_and_round_trips(self, case):
    layer, _ = make_layer(case, convert_to_tensor_fn='mean',
                          validate_args=True, name='my_layer')
    config = layer.get_config()
    self.assertFalse(contains_callable(config))
    self.assertEqual(json.loads(json.dumps(config)), config)
    self.assertEqual(config['convert_to_tensor_fn'],
                     'flow_of_base_mean' if case == 'iaf' else 'mean')
    self.assertTrue(config['validate_args'])
    self.assertNotIn('make_distribution_fn', config)
    clone = type(layer).from_config(config)
    self.assertEqual(clone.get_config(), config)

  # SavedModel export is slow, so float64 goes through `.keras` only.
  @parameterized.named_parameters(
      *named_product(case=ALL_CASES, save_format=('keras',), dtype=DTYPES),
      *named_product(case=ALL_CASES, save_format=('tf',), dtype=('float32',)))
  def test_save_load_round_trip(self, case, save_format, dtype):
    model, layer, inputs = make_model(case, dtype)
    if case == 'normal_per_pixel':
      # Away from its initial value, so a weight that is not restored shows.
      layer.raw_scale.assign(
          np.random.RandomState(5).randn(*IMAGE_SHAPE).astype(dtype))
    points = make_points(case, dtype)
    expected = model(inputs)
    with tempfile.TemporaryDirectory() as tmp:
      if save_format == 'keras':
        path = os.path.join(tmp, 'model.keras')
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
      else:
        path = os.path.join(tmp, 'saved_model')
        model.save(path, save_format='tf')
        loaded = keras.models.load_model(path)
    loaded_layer = loaded.layers[-1]
    self.assertIsInstance(loaded_layer, type(layer))
    self.assertEqual(loaded_layer.get_config(), layer.get_config())
    actual = loaded(inputs)
    self.assertIsInstance(actual.tensor_distribution, EXPECTED[case][0])
    self.assertAllEqual(actual.log_prob(points), expected.log_prob(points))
    if case == 'iaf':  # No closed-form mean: compare seeded samples.
      self.assertAllEqual(actual.sample(2, seed=(3, 4)),
                          expected.sample(2, seed=(3, 4)))
      return
    self.assertAllEqual(actual.mean(), expected.mean())
    if case != 'point_mass':
      self.assertAllEqual(actual.stddev(), expected.stddev())

  @parameterized.named_parameters(*named_product(case=ALL_CASES))
  def test_a_model_saved_before_the_split_into_modules_loads(self, case):
    # Before `distribution_layers` became a package every layer lived in the
    # module `tfp_vae.distribution_layers`, and `.keras` files record that
    # module beside the registered name `tfp_vae>ClassName`. Such a file is
    # made here by writing the old module back into a saved config.
    model, layer, inputs = make_model(case, 'float32')
    points = make_points(case, 'float32')
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, 'model.keras')
      model.save(path)
      old_path = os.path.join(tmp, 'old_model.keras')
      with zipfile.ZipFile(path) as new, zipfile.ZipFile(old_path, 'w') as old:
        for item in new.infolist():
          data = new.read(item.filename)
          if item.filename == 'config.json':
            config = json.loads(data)
            layer_config = config['config']['layers'][-1]
            self.assertEqual(layer_config['registered_name'],
                             f'tfp_vae>{type(layer).__name__}')
            self.assertTrue(layer_config['module'].startswith(
                'tfp_vae.distribution_layers.'))
            layer_config['module'] = 'tfp_vae.distribution_layers'
            data = json.dumps(config).encode()
          old.writestr(item, data)
      loaded = keras.models.load_model(old_path, safe_mode=True)
    self.assertIsInstance(loaded.layers[-1], type(layer))
    self.assertAllEqual(loaded(inputs).log_prob(points),
                        model(inputs).log_prob(points))

  @parameterized.named_parameters(*named_product(name=('mean', 'mode',
                                                      'sample')))
  def test_convert_to_tensor_fn_picks_the_tensor_stand_in(self, name):
    layer = dl.DiagonalGaussianPosterior(LATENT_SIZE, convert_to_tensor_fn=name)
    params = np.random.RandomState(0).randn(
        BATCH_SIZE, 2 * LATENT_SIZE).astype('float32')
    distribution = layer(params)
    as_tensor = tf.convert_to_tensor(distribution)
    self.assertEqual(as_tensor.shape, [BATCH_SIZE, LATENT_SIZE])
    if name == 'sample':
      self.assertNotAllClose(as_tensor, distribution.mean())
    else:
      self.assertAllClose(as_tensor, distribution.mean())

  @parameterized.named_parameters(
      ('latent_size_zero', dl.DiagonalGaussianPosterior, (0,), {},
       'latent_size', '0'),
      ('latent_size_float', dl.DiagonalGaussianPosterior, (2.5,), {},
       'latent_size', '2.5'),
      ('scale_transform', dl.DiagonalGaussianPosterior, (3,),
       {'scale_transform': 'bogus'}, 'scale_transform', 'bogus'),
      ('convert_to_tensor_fn', dl.DiagonalGaussianPosterior, (3,),
       {'convert_to_tensor_fn': 'lambda'}, 'convert_to_tensor_fn', 'lambda'),
      ('diag_min_scale', dl.DiagonalGaussianPosterior, (3,),
       {'min_scale': -1.0}, 'min_scale', '-1.0'),
      ('full_cov_latent_size', dl.FullCovarianceGaussianPosterior, (0,), {},
       'latent_size', '0'),
      ('diag_transform', dl.FullCovarianceGaussianPosterior, (3,),
       {'diag_transform': 'bogus'}, 'diag_transform', 'bogus'),
      ('full_cov_convert', dl.FullCovarianceGaussianPosterior, (3,),
       {'convert_to_tensor_fn': 'lambda'}, 'convert_to_tensor_fn', 'lambda'),
      ('point_mass_latent_size', dl.PointMassPosterior, (-2,), {},
       'latent_size', '-2'),
      ('point_mass_convert', dl.PointMassPosterior, (3,),
       {'convert_to_tensor_fn': 'lambda'}, 'convert_to_tensor_fn', 'lambda'),
      ('bernoulli_empty_shape', dl.IndependentBernoulliLikelihood, ((),), {},
       'event_shape', '()'),
      ('bernoulli_zero_dim', dl.IndependentBernoulliLikelihood, ((2, 0, 1),),
       {}, 'event_shape', '(2, 0, 1)'),
      ('bernoulli_convert', dl.IndependentBernoulliLikelihood, ((2, 2, 1),),
       {'convert_to_tensor_fn': 'lambda'}, 'convert_to_tensor_fn', 'lambda'),
      ('normal_scale', dl.IndependentNormalLikelihood, ((2, 2, 1),),
       {'scale': 'bogus'}, 'scale', 'bogus'),
      ('normal_scale_transform', dl.IndependentNormalLikelihood, ((2, 2, 1),),
       {'scale_transform': 'bogus'}, 'scale_transform', 'bogus'),
      ('normal_min_scale_zero', dl.IndependentNormalLikelihood, ((2, 2, 1),),
       {'min_scale': 0.0}, 'min_scale', '0.0'),
      ('full_cov_off_diagonal_scale', dl.FullCovarianceGaussianPosterior,
       (3,), {'off_diagonal_scale': -0.1}, 'off_diagonal_scale', '-0.1'),
  )
  def test_invalid_constructor_args_raise_value_error_naming_them(
      self, cls, args, kwargs, argument, value):
    with self.assertRaises(ValueError) as raised:
      cls(*args, **kwargs)
    message = str(raised.exception)
    self.assertIn(f'`{argument}`', message)
    self.assertIn(value, message)

  def test_lambda_warning_is_captured_when_it_fires(self):
    # The control for the test below: a plain DistributionLambda called on
    # a variable does log tf_keras's Lambda warning, and the capture sees it.
    layer = tfp.layers.DistributionLambda(lambda t: tfd.Normal(t, 1.0))
    with self.assertLogs('tensorflow', level='WARNING') as logs:
      layer(tf.Variable(tf.zeros([2])))
    self.assertIn('rather than a Lambda layer', '\n'.join(logs.output))

  @parameterized.named_parameters(named_product(case=ALL_CASES))
  def test_calling_on_a_variable_logs_no_warning_and_keeps_gradients(
      self, case):
    # The layer's 'mean' stand-in: the mean, or for the IAF (whose mean has
    # no closed form) the flow of the base mean.
    layer, params_size = make_layer(case, convert_to_tensor_fn='mean')
    params = tf.Variable(tf.zeros([params_size]))  # As in VI: params to fit.
    with self.assertNoLogs('tensorflow', level='WARNING'):
      with tf.GradientTape() as tape:
        mean = tf.reduce_sum(tf.convert_to_tensor(layer(params)))
    self.assertIsNotNone(tape.gradient(mean, params))


class KnownValuesTest(tf.test.TestCase, parameterized.TestCase):
  """Densities against numpy/scipy computed from the raw parameters."""

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp'), latent_size=(1, 4)))
  def test_diagonal_log_prob_matches_scipy(self, dtype, transform,
                                           latent_size):
    rng = np.random.RandomState(0)
    min_scale = 0.1
    params = rng.randn(BATCH_SIZE, 2 * latent_size).astype(dtype)
    points = rng.randn(BATCH_SIZE, latent_size).astype(dtype)
    layer = dl.DiagonalGaussianPosterior(
        latent_size, scale_transform=transform, min_scale=min_scale,
        dtype=dtype)
    distribution = layer(params)
    loc = params[:, :latent_size].astype(np.float64)
    scale = NP_TRANSFORMS[transform](
        params[:, latent_size:].astype(np.float64)) + min_scale
    expected = stats.norm.logpdf(points, loc, scale).sum(axis=-1)
    self.assertAllClose(distribution.log_prob(points), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    self.assertAllClose(distribution.stddev(), scale, atol=tolerance(dtype),
                        rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp'), latent_size=(1, 2, 4)))
  def test_full_covariance_log_prob_matches_scipy(self, dtype, transform,
                                                  latent_size):
    rng = np.random.RandomState(1)
    min_scale = 0.1
    params_size = dl.FullCovarianceGaussianPosterior.params_size(latent_size)
    params = rng.randn(BATCH_SIZE, params_size).astype(dtype)
    points = rng.randn(BATCH_SIZE, latent_size).astype(dtype)
    layer = dl.FullCovarianceGaussianPosterior(
        latent_size, diag_transform=transform, min_scale=min_scale,
        dtype=dtype)
    distribution = layer(params)
    params64 = params.astype(np.float64)
    loc = params64[:, :latent_size]
    scale_tril = np_scale_tril(params64[:, latent_size:], transform, min_scale)
    self.assertAllClose(distribution.scale.to_dense(), scale_tril,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    expected = [
        stats.multivariate_normal(loc[b], scale_tril[b] @ scale_tril[b].T)
        .logpdf(points[b]) for b in range(BATCH_SIZE)]
    self.assertAllClose(distribution.log_prob(points), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp')))
  def test_full_covariance_scale_is_fill_scale_tril(self, dtype, transform):
    # The documented construction, `tfb.FillScaleTriL(transform, min_scale)`.
    rng = np.random.RandomState(2)
    params = rng.randn(BATCH_SIZE, 3 + 6).astype(dtype)
    distribution = dl.FullCovarianceGaussianPosterior.new(
        params, 3, diag_transform=transform, min_scale=0.01)
    bijector = tfb.FillScaleTriL(
        diag_bijector=dl.POSITIVE_TRANSFORMS[transform](),
        diag_shift=tf.constant(0.01, dtype))
    self.assertAllClose(distribution.scale.to_dense(),
                        bijector.forward(params[:, 3:]),
                        atol=tolerance(dtype), rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_off_diagonal_scale_multiplies_only_the_off_diagonal(self, dtype):
    params = np.random.RandomState(3).randn(BATCH_SIZE, 3 + 6).astype(dtype)
    unscaled = dl.FullCovarianceGaussianPosterior.new(params, 3)
    scaled = dl.FullCovarianceGaussianPosterior.new(params, 3,
                                                    off_diagonal_scale=0.25)
    unscaled_tril, scaled_tril = self.evaluate(
        [unscaled.scale.to_dense(), scaled.scale.to_dense()])
    self.assertAllClose(np.tril(scaled_tril, -1),
                        0.25 * np.tril(unscaled_tril, -1),
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    self.assertAllEqual(np.diagonal(scaled_tril, axis1=-2, axis2=-1),
                        np.diagonal(unscaled_tril, axis1=-2, axis2=-1))
    # The layer passes it on and keeps it in its config.
    layer = dl.FullCovarianceGaussianPosterior(3, off_diagonal_scale=0.25,
                                               dtype=dtype)
    self.assertAllClose(layer(params).scale.to_dense(), scaled_tril,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    restored = dl.FullCovarianceGaussianPosterior.from_config(
        layer.get_config())
    self.assertEqual(restored.get_config()['off_diagonal_scale'], 0.25)

  @parameterized.parameters(1, 2, 5)
  def test_off_diagonal_params_mask_marks_exactly_the_off_diagonal(
      self, latent_size):
    mask = dl.FullCovarianceGaussianPosterior.off_diagonal_params_mask(
        latent_size)
    size = dl.FullCovarianceGaussianPosterior.params_size(latent_size)
    self.assertEqual(mask.shape, (size,))
    self.assertEqual(mask.sum(), latent_size * (latent_size - 1) // 2)
    self.assertFalse(mask[:latent_size].any())  # The locations.
    # Params that are 1 where the mask is True and 0 elsewhere fill exactly
    # the strictly lower triangle with ones (the diagonal: softplus(0)).
    distribution = dl.FullCovarianceGaussianPosterior.new(
        mask.astype(np.float32)[None], latent_size, min_scale=0.0)
    scale = self.evaluate(distribution.scale.to_dense())[0]
    self.assertAllEqual(scale != 0, np.tril(np.ones([latent_size] * 2)) != 0)
    self.assertAllClose(np.diag(scale), [np.log(2.0)] * latent_size)
    self.assertAllEqual(np.tril(scale, -1),
                        np.tril(np.ones([latent_size] * 2), -1))

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_bernoulli_log_prob_matches_scipy(self, dtype):
    rng = np.random.RandomState(3)
    logits = (2 * rng.randn(BATCH_SIZE, NUM_PIXELS)).astype(dtype)
    points = make_points('bernoulli', dtype)
    distribution = dl.IndependentBernoulliLikelihood(
        IMAGE_SHAPE, dtype=dtype)(logits)
    probs = special.expit(logits.astype(np.float64)).reshape(
        (BATCH_SIZE,) + IMAGE_SHAPE)
    expected = stats.bernoulli.logpmf(points, probs).sum(axis=(1, 2, 3))
    self.assertAllClose(distribution.log_prob(points), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    self.assertAllClose(distribution.mean(), probs, atol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp')))
  def test_normal_predicted_log_prob_matches_scipy(self, dtype, transform):
    rng = np.random.RandomState(4)
    min_scale = 0.05
    params = rng.randn(BATCH_SIZE, 2 * NUM_PIXELS).astype(dtype)
    points = make_points('normal_predicted', dtype)
    distribution = dl.IndependentNormalLikelihood(
        IMAGE_SHAPE, scale='predicted', scale_transform=transform,
        min_scale=min_scale, dtype=dtype)(params)
    params64 = params.astype(np.float64)
    # Layout: all mean logits (one image, row-major H, W, C), then all raw
    # scales.
    image_shape = (BATCH_SIZE,) + IMAGE_SHAPE
    mean = special.expit(params64[:, :NUM_PIXELS]).reshape(image_shape)
    scale = (NP_TRANSFORMS[transform](params64[:, NUM_PIXELS:]) +
             min_scale).reshape(image_shape)
    expected = stats.norm.logpdf(points, mean, scale).sum(axis=(1, 2, 3))
    self.assertAllClose(distribution.log_prob(points), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    self.assertAllClose(distribution.mean(), mean, atol=tolerance(dtype))
    self.assertAllClose(distribution.stddev(), scale, atol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp')))
  def test_normal_per_pixel_log_prob_matches_scipy(self, dtype, transform):
    rng = np.random.RandomState(5)
    min_scale = 0.05
    layer = dl.IndependentNormalLikelihood(
        IMAGE_SHAPE, scale='per_pixel', scale_transform=transform,
        min_scale=min_scale, dtype=dtype)
    params = rng.randn(BATCH_SIZE, NUM_PIXELS).astype(dtype)
    layer(params)  # Builds the raw_scale weight.
    # The scale starts at 1 (before the floor) for either transform.
    self.assertAllClose(layer(params).stddev(),
                        np.full((BATCH_SIZE,) + IMAGE_SHAPE, 1 + min_scale),
                        atol=tolerance(dtype))
    raw_scale = rng.randn(*IMAGE_SHAPE).astype(dtype)
    layer.raw_scale.assign(raw_scale)
    points = make_points('normal_per_pixel', dtype)
    distribution = layer(params)
    mean = special.expit(params.astype(np.float64)).reshape(
        (BATCH_SIZE,) + IMAGE_SHAPE)
    scale = NP_TRANSFORMS[transform](raw_scale.astype(np.float64)) + min_scale
    expected = stats.norm.logpdf(points, mean, scale).sum(axis=(1, 2, 3))
    self.assertAllClose(distribution.log_prob(points), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, latent_size=(1, 2, 5)))
  def test_analytic_kl_matches_closed_form(self, dtype, latent_size):
    rng = np.random.RandomState(6)
    prior = tfd.MultivariateNormalDiag(tf.zeros(latent_size, dtype),
                                       tf.ones(latent_size, dtype))
    # Diagonal.
    params = rng.randn(BATCH_SIZE, 2 * latent_size).astype(dtype)
    diag = dl.DiagonalGaussianPosterior.new(params, latent_size)
    loc = params[:, :latent_size].astype(np.float64)
    variance = (np_softplus(params[:, latent_size:].astype(np.float64)) +
                1e-5)**2
    expected = np_kl_to_standard_normal(loc, variance[..., None] *
                                        np.eye(latent_size))
    self.assertAllClose(tfd.kl_divergence(diag, prior), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))
    # Full covariance.
    params_size = dl.FullCovarianceGaussianPosterior.params_size(latent_size)
    params = rng.randn(BATCH_SIZE, params_size).astype(dtype)
    full = dl.FullCovarianceGaussianPosterior.new(params, latent_size)
    loc = params[:, :latent_size].astype(np.float64)
    scale_tril = np_scale_tril(params[:, latent_size:].astype(np.float64))
    covariance = scale_tril @ np.swapaxes(scale_tril, -1, -2)
    expected = np_kl_to_standard_normal(loc, covariance)
    self.assertAllClose(tfd.kl_divergence(full, prior), expected,
                        atol=tolerance(dtype), rtol=tolerance(dtype))


class DiagonalScaleTrilTest(tf.test.TestCase, parameterized.TestCase):
  """A full-covariance posterior with a diagonal Cholesky factor is diagonal."""

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, latent_size=(1, 4), transform=('softplus', 'exp')))
  def test_same_log_prob_kl_and_entropy_as_diagonal(self, dtype, latent_size,
                                                    transform):
    rng = np.random.RandomState(7)
    loc = rng.randn(BATCH_SIZE, latent_size).astype(dtype)
    raw_diag = rng.randn(BATCH_SIZE, latent_size).astype(dtype)
    # The TriL params whose filled matrix is diag(raw_diag): zeros off the
    # diagonal, wherever FillTriangular puts them.
    raw_tril = self.evaluate(
        tfp.math.fill_triangular_inverse(tf.linalg.diag(raw_diag)))
    self.assertEqual(raw_tril.shape[-1], latent_size * (latent_size + 1) // 2)
    self.assertEqual(np.count_nonzero(raw_tril[0]), latent_size)
    self.assertAllEqual(np.sort(raw_tril, axis=-1),
                        np.sort(np.concatenate(
                            [raw_diag,
                             np.zeros((BATCH_SIZE, raw_tril.shape[-1] -
                                       latent_size), dtype)], axis=-1),
                                axis=-1))
    full = dl.FullCovarianceGaussianPosterior(
        latent_size, diag_transform=transform, dtype=dtype)(
            np.concatenate([loc, raw_tril], axis=-1))
    diag = dl.DiagonalGaussianPosterior(
        latent_size, scale_transform=transform, dtype=dtype)(
            np.concatenate([loc, raw_diag], axis=-1))
    self.assertAllClose(full.scale.to_dense(),
                        tf.linalg.diag(diag.stddev()), atol=0, rtol=0)
    points = rng.randn(3, BATCH_SIZE, latent_size).astype(dtype)
    tol = tolerance(dtype)
    self.assertAllClose(full.log_prob(points), diag.log_prob(points),
                        atol=tol, rtol=tol)
    prior = tfd.MultivariateNormalDiag(tf.zeros(latent_size, dtype),
                                       tf.ones(latent_size, dtype))
    self.assertAllClose(tfd.kl_divergence(full, prior),
                        tfd.kl_divergence(diag, prior), atol=tol, rtol=tol)
    self.assertAllClose(full.entropy(), diag.entropy(), atol=tol, rtol=tol)
    self.assertAllClose(full.covariance(),
                        tf.linalg.diag(diag.variance()), atol=tol, rtol=tol)


class NonVaeModelTest(tf.test.TestCase, parameterized.TestCase):
  """A posterior layer as the head of a plain regression model."""

  @parameterized.named_parameters(
      ('positive_correlation', 0.8, False),
      ('negative_correlation_jit', -0.8, True),
  )
  def test_full_covariance_regression_learns_noise_correlation(
      self, correlation, jit_compile):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    num_examples, num_features = 512, 3
    features = rng.randn(num_examples, num_features).astype('float32')
    weights = rng.randn(num_features, 2)
    noise_covariance = np.array([[1.0, correlation], [correlation, 1.0]])
    targets = (features @ weights + rng.multivariate_normal(
        [0.0, 0.0], noise_covariance, size=num_examples)).astype('float32')
    # A tf.data pipeline whose batch size is unknown at trace time, as users
    # write it; under XLA this needs every gradient to compile with a dynamic
    # batch dimension.
    dataset = tf.data.Dataset.from_tensor_slices(
        (features, targets)).batch(64)
    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(num_features,)),
        keras.layers.Dense(16, activation='relu'),
        keras.layers.Dense(dl.FullCovarianceGaussianPosterior.params_size(2)),
        dl.FullCovarianceGaussianPosterior(2),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=lambda y, rv: -rv.log_prob(y), jit_compile=jit_compile)
    initial_loss = model.evaluate(dataset, verbose=0)
    history = model.fit(dataset, epochs=25, verbose=0)
    final_loss = history.history['loss'][-1]
    # The best possible loss is the noise's entropy, about 2.33 nats here.
    self.assertLess(final_loss, 0.25 * initial_loss)
    self.assertLess(final_loss, 3.5)
    predicted_covariance = model(features[:32]).covariance()  # [32, 2, 2]
    off_diagonal = self.evaluate(predicted_covariance[:, 0, 1])
    self.assertAllEqual(np.sign(off_diagonal),
                        np.full_like(off_diagonal, np.sign(correlation)))


if __name__ == '__main__':
  tf.test.main()


def np_softplus_inverse(y):
  return np.log(np.expm1(y))


class LowRankTest(tf.test.TestCase, parameterized.TestCase):

  def _params(self, dtype, latent_size=LATENT_SIZE, rank=LOW_RANK, seed=0):
    size = dl.LowRankGaussianPosterior.params_size(latent_size, rank)
    return np.random.RandomState(seed).randn(BATCH_SIZE, size).astype(dtype)

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, transform=('softplus', 'exp'), factor_scale=(1.0, 0.03)))
  def test_log_prob_matches_scipy(self, dtype, transform, factor_scale):
    params = self._params(dtype)
    distribution = dl.LowRankGaussianPosterior.new(
        params, LATENT_SIZE, LOW_RANK, scale_transform=transform,
        factor_scale=factor_scale)
    loc = params[:, :LATENT_SIZE]
    scale = NP_TRANSFORMS[transform](params[:, LATENT_SIZE:2 * LATENT_SIZE])
    scale = scale + 1e-5
    factor = factor_scale * params[:, 2 * LATENT_SIZE:].reshape(
        BATCH_SIZE, LATENT_SIZE, LOW_RANK)
    covariance = (np.einsum('bi,ij->bij', scale**2, np.eye(LATENT_SIZE)) +
                  factor @ np.swapaxes(factor, -1, -2))
    points = make_points('low_rank', dtype)
    expected = [stats.multivariate_normal(loc[b], covariance[b]).logpdf(
        points[b]) for b in range(BATCH_SIZE)]
    self.assertAllClose(distribution.log_prob(points), expected,
                        rtol=tolerance(dtype))
    self.assertAllClose(distribution.covariance(), covariance,
                        rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_zero_factor_is_the_diagonal_posterior(self, dtype):
    params = self._params(dtype)
    params[:, 2 * LATENT_SIZE:] = 0.0
    low_rank = dl.LowRankGaussianPosterior.new(params, LATENT_SIZE, LOW_RANK)
    diagonal = dl.DiagonalGaussianPosterior.new(
        params[:, :2 * LATENT_SIZE], LATENT_SIZE)
    points = make_points('low_rank', dtype)
    self.assertAllClose(low_rank.log_prob(points), diagonal.log_prob(points),
                        rtol=tolerance(dtype))
    prior = tfd.MultivariateNormalDiag(tf.zeros(LATENT_SIZE, dtype),
                                       tf.ones(LATENT_SIZE, dtype))
    self.assertAllClose(tfd.kl_divergence(low_rank, prior),
                        tfd.kl_divergence(diagonal, prior),
                        rtol=tolerance(dtype))

  @parameterized.named_parameters(*named_product(
      dtype=DTYPES, latent_size=(1, 4), prior_kind=('standard', 'tril')))
  def test_analytic_kl_matches_closed_form(self, dtype, latent_size,
                                           prior_kind):
    # The registered KL, against the dense closed form; the standard normal
    # takes the diagonal fast path, a correlated prior the general solve.
    rank = min(LOW_RANK, latent_size)
    params = self._params(dtype, latent_size, rank, seed=1)
    q = dl.LowRankGaussianPosterior.new(params, latent_size, rank,
                                        factor_scale=1.0)
    rng = np.random.RandomState(2)
    if prior_kind == 'standard':
      p = tfd.MultivariateNormalDiag(tf.zeros(latent_size, dtype),
                                     tf.ones(latent_size, dtype))
    else:
      tril = np.tril(rng.randn(latent_size, latent_size)) + 2 * np.eye(
          latent_size)
      p = tfd.MultivariateNormalTriL(rng.randn(latent_size).astype(dtype),
                                     tril.astype(dtype))
    dense_q = tfd.MultivariateNormalTriL(
        q.mean(), tf.linalg.cholesky(q.covariance()))
    self.assertAllClose(tfd.kl_divergence(q, p), tfd.kl_divergence(dense_q, p),
                        rtol=10 * tolerance(dtype))
    if prior_kind == 'standard':
      self.assertAllClose(
          tfd.kl_divergence(q, p),
          np_kl_to_standard_normal(self.evaluate(q.mean()),
                                   self.evaluate(q.covariance())),
          rtol=10 * tolerance(dtype))

  def test_analytic_kl_to_the_package_prior(self):
    from tfp_vae import priors  # pylint: disable=g-import-not-at-top
    prior = priors.StandardNormalPrior(LATENT_SIZE).distribution()
    layer, _ = make_layer('low_rank')
    q = layer(self._params('float32'))
    kl = objectives.elbo(
        tf.zeros([BATCH_SIZE, 1]), q, prior,
        lambda z: tfd.Independent(tfd.Normal(z[..., :1], 1.0), 1),
        objectives.sample_latents(q, 1, tf.constant([1, 2])),
        kl='analytic').rate
    self.assertEqual(kl.shape, [BATCH_SIZE])
    self.assertTrue(np.all(np.isfinite(kl)) and np.all(kl > 0))

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_full_rank_represents_a_given_full_covariance(self, dtype):
    # Exact construction: diag(d) + V V^T = Sigma with d below Sigma's
    # smallest eigenvalue and V the Cholesky factor of Sigma - diag(d).
    latent_size = 4
    rng = np.random.RandomState(3)
    root = rng.randn(latent_size, latent_size)
    covariance = root @ root.T + 0.1 * np.eye(latent_size)
    variance = 0.5 * np.linalg.eigvalsh(covariance).min()
    factor = np.linalg.cholesky(covariance - variance * np.eye(latent_size))
    factor_scale = 0.03
    loc = rng.randn(latent_size)
    params = np.concatenate([
        loc, np.full(latent_size, np_softplus_inverse(np.sqrt(variance) - 1e-5)),
        (factor / factor_scale).reshape(-1)]).astype(dtype)
    q = dl.LowRankGaussianPosterior.new(params, latent_size, latent_size,
                                        factor_scale=factor_scale)
    self.assertAllClose(q.covariance(), covariance, rtol=tolerance(dtype),
                        atol=tolerance(dtype))
    target = tfd.MultivariateNormalTriL(loc.astype(dtype),
                                        np.linalg.cholesky(covariance).astype(
                                            dtype))
    points = rng.randn(6, latent_size).astype(dtype)
    self.assertAllClose(q.log_prob(points), target.log_prob(points),
                        rtol=tolerance(dtype))
    self.assertAllClose(tfd.kl_divergence(q, target), 0.0,
                        atol=10 * tolerance(dtype))

  def test_full_rank_fit_to_a_known_gaussian_recovers_it(self):
    # Gradient descent on the KL to a correlated target reaches it: nothing
    # in the parameterisation stops R = D from matching a full covariance.
    latent_size = 3
    rng = np.random.RandomState(4)
    root = rng.randn(latent_size, latent_size)
    covariance = (root @ root.T + 0.2 * np.eye(latent_size)).astype('float32')
    target = tfd.MultivariateNormalTriL(
        tf.constant([0.5, -1.0, 2.0]), np.linalg.cholesky(covariance))
    params = tf.Variable(0.1 * rng.randn(
        dl.LowRankGaussianPosterior.params_size(latent_size, latent_size)
    ).astype('float32'))
    optimizer = keras.optimizers.Adam(0.05)

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        q = dl.LowRankGaussianPosterior.new(params, latent_size, latent_size,
                                            factor_scale=1.0)
        loss = tfd.kl_divergence(q, target)
      optimizer.apply_gradients([(tape.gradient(loss, params), params)])
      return loss

    for _ in range(1500):
      loss = step()
    self.assertLess(float(loss), 1e-3)
    q = dl.LowRankGaussianPosterior.new(params, latent_size, latent_size,
                                        factor_scale=1.0)
    self.assertAllClose(q.covariance(), covariance, atol=0.05, rtol=0.05)

  def test_sample_latents_is_the_reparameterization_of_sliced_noise(self):
    params = self._params('float32')
    q = dl.LowRankGaussianPosterior.new(params, LATENT_SIZE, LOW_RANK)
    seed = tf.constant([3, 4])
    self.assertEqual(objectives.reparameterization_noise_size(q),
                     LATENT_SIZE + LOW_RANK)
    latents = objectives.sample_latents(q, 2, seed)  # [2, B, D]
    noise = objectives.standard_normal_slice(
        [2, BATCH_SIZE, LATENT_SIZE + LOW_RANK], seed)
    scale = np.sqrt(self.evaluate(q.cov_operator.base_operator.diag))
    factor = self.evaluate(q.cov_operator.u)
    expected = (params[:, :LATENT_SIZE] + scale * noise[..., :LATENT_SIZE] +
                np.einsum('bdr,lbr->lbd', factor, noise[..., LATENT_SIZE:]))
    self.assertAllClose(latents, expected, rtol=1e-5, atol=1e-6)
    # Two replicas holding halves of the batch draw the same latents.
    half = BATCH_SIZE // 2
    halves = [objectives.sample_latents(
        dl.LowRankGaussianPosterior.new(params[rows], LATENT_SIZE, LOW_RANK),
        2, seed, example_offset=rows.start, total_examples=BATCH_SIZE)
              for rows in (slice(0, half), slice(half, BATCH_SIZE))]
    self.assertAllClose(tf.concat(halves, axis=1), latents)

  def test_rank_above_latent_size_is_refused(self):
    with self.assertRaisesRegex(ValueError, '`rank`.*4'):
      dl.LowRankGaussianPosterior(3, 4)
    with self.assertRaisesRegex(ValueError, '`factor_scale`'):
      dl.LowRankGaussianPosterior(3, 2, factor_scale=0.0)


class _CountingCalls:
  """Counts the calls of each IAF network of a layer (eager or traced)."""

  def __init__(self, layer):
    self.counts = [0] * len(layer.autoregressive_networks)
    for index, network in enumerate(layer.autoregressive_networks):
      network.call = self._counting(network.call, index)

  def _counting(self, call, index):
    def counted(*args, **kwargs):
      self.counts[index] += 1
      return call(*args, **kwargs)
    return counted

  def reset(self):
    self.counts = [0] * len(self.counts)


def np_iaf_forward(layer, params, base_latents):
  """The IAF steps by hand: z_k = 2 sigmoid(s_k) z_{k-1} + m_k, and log|det|."""
  context = params[..., 2 * LATENT_SIZE:]
  latents = base_latents
  log_det = np.zeros(base_latents.shape[:-1])
  for network in layer.autoregressive_networks:
    context_k = np.broadcast_to(context, latents.shape[:-1] + context.shape[-1:])
    outputs = network(latents, conditional_input=context_k).numpy()
    shift, raw_scale = outputs[..., 0], outputs[..., 1]
    scale = 2.0 * special.expit(raw_scale)
    latents = scale * latents + shift
    log_det += np.sum(np.log(scale), axis=-1)
  return latents, log_det


class InverseAutoregressiveFlowTest(tf.test.TestCase, parameterized.TestCase):

  def _layer_and_params(self, dtype='float32', **kwargs):
    layer, params_size = make_layer('iaf', dtype=dtype, **kwargs)
    params = np.random.RandomState(0).randn(BATCH_SIZE,
                                            params_size).astype(dtype)
    return layer, params

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_sample_log_prob_is_base_log_prob_minus_log_det(self, dtype):
    layer, params = self._layer_and_params(dtype)
    q = layer(params)
    seed = tf.constant([5, 6])
    latents = objectives.sample_latents(q, 3, seed)  # [3, B, D]
    noise = objectives.standard_normal_slice([3, BATCH_SIZE, LATENT_SIZE],
                                             seed, dtype=dtype)
    base = dl.DiagonalGaussianPosterior.new(params[:, :2 * LATENT_SIZE],
                                            LATENT_SIZE)
    base_latents = base.loc + base.scale.matvec(noise)
    expected_latents, log_det = np_iaf_forward(layer, params,
                                               self.evaluate(base_latents))
    self.assertAllClose(latents, expected_latents, rtol=tolerance(dtype),
                        atol=tolerance(dtype))
    expected_log_prob = self.evaluate(base.log_prob(base_latents)) - log_det
    self.assertAllClose(q.log_prob(latents), expected_log_prob,
                        rtol=tolerance(dtype))
    # The same density by inverting the flow (a copy misses the cache):
    # this checks the inverse, and that the cached value is the density.
    self.assertAllClose(q.log_prob(tf.identity(latents)), expected_log_prob,
                        rtol=10 * tolerance(dtype))

  @parameterized.named_parameters(('eager', False), ('xla', True))
  def test_training_path_runs_each_network_once_never_inverts(self, compiled):
    # sample_latents, the Monte Carlo KL and the IWAE weights of the same
    # samples: one pass of each network in all. Inverting the flow (D
    # sequential passes per step) would count D + 1 or more.
    layer, params = self._layer_and_params(
        convert_to_tensor_fn='flow_of_base_mean')
    counter = _CountingCalls(layer)
    prior = tfd.MultivariateNormalDiag(tf.zeros(LATENT_SIZE),
                                       tf.ones(LATENT_SIZE))
    decode = lambda z: tfd.Independent(tfd.Normal(z, 1.0), 1)
    targets = np.zeros([BATCH_SIZE, LATENT_SIZE], np.float32)

    def objective(params):
      q = layer(params)
      counter.reset()  # The tensor stand-in's pass is not the objective's.
      latents = objectives.sample_latents(q, 2, tf.constant([1, 2]))
      elbo = objectives.elbo(targets, q, prior, decode, latents, kl='mc')
      iwae = objectives.iwae_bound(targets, q, prior, decode, latents)
      return elbo.elbo + iwae.iwae

    if compiled:
      objective = tf.function(objective, jit_compile=True)
    values = objective(tf.constant(params))
    self.assertTrue(np.all(np.isfinite(values)))
    self.assertEqual(counter.counts, [1, 1])
    # Control: a point the flow did not produce needs the inversion.
    counter.reset()
    layer(params).log_prob(make_points('iaf', 'float32'))
    self.assertGreater(min(counter.counts), LATENT_SIZE)

  @parameterized.named_parameters(*named_product(dtype=DTYPES))
  def test_zero_networks_are_exactly_the_diagonal_posterior(self, dtype):
    layer = dl.InverseAutoregressiveFlowPosterior(
        LATENT_SIZE, flow_steps=3, flow_hidden_units=FLOW_HIDDEN_UNITS,
        dtype=dtype)
    for network in layer.autoregressive_networks:
      for weight in network.weights:
        weight.assign(tf.zeros_like(weight))
    params = np.random.RandomState(1).randn(
        BATCH_SIZE, layer.params_size(LATENT_SIZE)).astype(dtype)
    flow = layer(params)
    diagonal = dl.DiagonalGaussianPosterior(LATENT_SIZE, dtype=dtype)(
        params[:, :2 * LATENT_SIZE])
    seed = tf.constant([7, 8])
    flow_latents = objectives.sample_latents(flow, 4, seed)
    diagonal_latents = objectives.sample_latents(diagonal, 4, seed)
    self.assertAllClose(flow_latents, diagonal_latents, rtol=1e-6, atol=0)
    self.assertAllClose(flow.log_prob(flow_latents),
                        diagonal.log_prob(diagonal_latents), rtol=1e-6)
    points = make_points('iaf', dtype)
    self.assertAllClose(flow.log_prob(points), diagonal.log_prob(points),
                        rtol=1e-6)
    # The same ELBO (Monte Carlo KL) and IWAE bound on the same noise.
    prior = tfd.MultivariateNormalDiag(tf.zeros(LATENT_SIZE, dtype),
                                       tf.ones(LATENT_SIZE, dtype))
    decode = lambda z: tfd.Independent(tfd.Normal(z, tf.ones([], dtype)), 1)
    targets = make_points('diag', dtype, seed=2)
    for estimator in (
        lambda q, z: objectives.elbo(targets, q, prior, decode, z, kl='mc'),
        lambda q, z: objectives.iwae_bound(targets, q, prior, decode, z)):
      self.assertAllClose(estimator(flow, flow_latents),
                          estimator(diagonal, diagonal_latents), rtol=1e-6)

  def test_a_fresh_layer_is_the_diagonal_posterior(self):
    # The networks' output layers start at zero (an identity flow).
    layer = dl.InverseAutoregressiveFlowPosterior(LATENT_SIZE)
    params = np.random.RandomState(1).randn(
        BATCH_SIZE, layer.params_size(LATENT_SIZE)).astype('float32')
    diagonal = dl.DiagonalGaussianPosterior.new(params[:, :2 * LATENT_SIZE],
                                                LATENT_SIZE)
    points = make_points('iaf', 'float32')
    self.assertAllClose(layer(params).log_prob(points),
                        diagonal.log_prob(points), rtol=1e-6)

  def test_gradient_reaches_every_flow_weight(self):
    layer, params = self._layer_and_params()
    prior = tfd.MultivariateNormalDiag(tf.zeros(LATENT_SIZE),
                                       tf.ones(LATENT_SIZE))
    params = tf.constant(params)
    with tf.GradientTape() as tape:
      tape.watch(params)
      q = layer(params)
      latents = objectives.sample_latents(q, 2, tf.constant([1, 2]))
      # The Monte Carlo KL alone: its gradient reaches the flow through both
      # the samples and log q(z|x).
      loss = tf.reduce_sum(q.log_prob(latents) - prior.log_prob(latents))
    variables = layer.trainable_variables
    self.assertLen(variables, 2 * 6)  # Per network: 2 layers x (W, b, W_c).
    gradients = tape.gradient(loss, variables + [params])
    names = [v.name for v in variables] + ['params']
    for name, gradient in zip(names, gradients):
      self.assertIsNotNone(gradient, name)
      self.assertTrue(np.all(np.isfinite(gradient)), name)
      self.assertGreater(np.linalg.norm(gradient), 0.0, name)

  def test_fresh_flow_output_layers_get_gradients(self):
    # At the identity start only the output layers can move first; they must.
    layer = dl.InverseAutoregressiveFlowPosterior(
        LATENT_SIZE, flow_hidden_units=FLOW_HIDDEN_UNITS)
    params = tf.constant(np.random.RandomState(1).randn(
        BATCH_SIZE, layer.params_size(LATENT_SIZE)).astype('float32'))
    with tf.GradientTape() as tape:
      q = layer(params)
      latents = objectives.sample_latents(q, 2, tf.constant([1, 2]))
      loss = tf.reduce_sum(tf.square(latents - 1.0))
    gradients = tape.gradient(
        loss, [network.weights[-3] for network in layer.autoregressive_networks])
    for gradient in gradients:
      self.assertGreater(np.linalg.norm(gradient), 0.0)

  def test_checkpoint_restores_the_flow_weights(self):
    layer, params = self._layer_and_params()
    points = make_points('iaf', 'float32')
    expected = layer(params).log_prob(points)
    with tempfile.TemporaryDirectory() as tmp:
      path = tf.train.Checkpoint(layer=layer).save(os.path.join(tmp, 'ckpt'))
      fresh = dl.InverseAutoregressiveFlowPosterior.from_config(
          layer.get_config())
      # Restores into a fresh layer at once: its weights exist already.
      tf.train.Checkpoint(layer=fresh).restore(path).assert_consumed()
    self.assertAllEqual(fresh(params).log_prob(points), expected)

  def test_flow_of_base_mean_stand_in(self):
    layer, params = self._layer_and_params(
        convert_to_tensor_fn='flow_of_base_mean')
    q = layer(params)
    base_mean = params[:, :LATENT_SIZE]
    expected, _ = np_iaf_forward(layer, params, base_mean)
    self.assertAllClose(tf.convert_to_tensor(q), expected, rtol=1e-5,
                        atol=1e-6)

  @parameterized.named_parameters(
      ('latent_size_one', dict(latent_size=1), 'latent_size', '1'),
      ('flow_steps', dict(latent_size=3, flow_steps=0), 'flow_steps', '0'),
      ('hidden_units', dict(latent_size=3, flow_hidden_units=(8, 0)),
       'flow_hidden_units', '(8, 0)'),
      ('context_size', dict(latent_size=3, context_size=-1), 'context_size',
       '-1'),
      ('convert', dict(latent_size=3, convert_to_tensor_fn='mean'),
       'convert_to_tensor_fn', 'mean'),
  )
  def test_invalid_constructor_args_raise_value_error_naming_them(
      self, kwargs, argument, value):
    with self.assertRaises(ValueError) as raised:
      dl.InverseAutoregressiveFlowPosterior(**kwargs)
    self.assertIn(f'`{argument}`', str(raised.exception))
    self.assertIn(value, str(raised.exception))


class PointMassLogProbTest(tf.test.TestCase):

  def test_log_prob_through_the_layer_output(self):
    layer = dl.PointMassPosterior(LATENT_SIZE)
    atoms = make_points('point_mass', 'float32')
    point_mass = layer(atoms)
    self.assertAllEqual(point_mass.log_prob(atoms), np.zeros(BATCH_SIZE))
    self.assertAllEqual(point_mass.log_prob(atoms + 1.0),
                        np.full(BATCH_SIZE, -np.inf))
    self.assertTrue(objectives.is_point_mass(point_mass))


class MixedPrecisionTest(tf.test.TestCase, parameterized.TestCase):

  def tearDown(self):
    keras.mixed_precision.set_global_policy('float32')
    super().tearDown()

  @parameterized.named_parameters(*named_product(
      policy=('mixed_float16', 'mixed_bfloat16'),
      case=('diag', 'full_cov', 'low_rank', 'iaf', 'bernoulli')))
  def test_head_computes_in_float32_under_a_mixed_policy(self, policy, case):
    keras.mixed_precision.set_global_policy(policy)
    layer, params_size = make_layer(case)
    self.assertEqual(layer.compute_dtype, 'float32')
    # A half-precision Dense feeds it, as in a mixed-precision model.
    dense = keras.layers.Dense(params_size)
    inputs = np.random.RandomState(0).randn(BATCH_SIZE, NUM_INPUTS).astype(
        'float32')
    with tf.GradientTape() as tape:
      params = dense(inputs)
      self.assertNotEqual(params.dtype, tf.float32)
      distribution = layer(params)
      self.assertEqual(distribution.dtype, tf.float32)
      log_prob = distribution.log_prob(make_points(case, 'float32'))
      loss = -tf.reduce_sum(log_prob)
    self.assertEqual(log_prob.dtype, tf.float32)
    self.assertTrue(np.all(np.isfinite(log_prob)))
    if case in ('diag', 'full_cov', 'low_rank'):
      prior = tfd.MultivariateNormalDiag(tf.zeros(LATENT_SIZE),
                                         tf.ones(LATENT_SIZE))
      self.assertEqual(
          tfd.kl_divergence(distribution.tensor_distribution, prior).dtype,
          tf.float32)
    gradient = tape.gradient(loss, dense.kernel)
    self.assertTrue(np.all(np.isfinite(gradient)))

  def test_explicit_mixed_dtype_also_means_float32(self):
    layer = dl.FullCovarianceGaussianPosterior(LATENT_SIZE,
                                               dtype='mixed_float16')
    self.assertEqual(layer.compute_dtype, 'float32')
    self.assertEqual(dl.DiagonalGaussianPosterior(LATENT_SIZE,
                                                  dtype='float64').dtype,
                     'float64')
