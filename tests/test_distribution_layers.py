"""Tests for tfp_vae.distribution_layers.

Every layer is checked against the `tfp.layers` contract (distribution type,
batch and event shape, `params_size`, gradients, dtypes, plain config,
save/load) and its densities against independent numpy/scipy formulas.
"""

import json
import os
import tempfile

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

POSTERIOR_CASES = ('diag', 'full_cov', 'point_mass')
LIKELIHOOD_CASES = ('bernoulli', 'normal_per_pixel', 'normal_predicted')
ALL_CASES = POSTERIOR_CASES + LIKELIHOOD_CASES
DTYPES = ('float32', 'float64')

# (outer distribution class, inner class for tfd.Independent, event shape)
EXPECTED = {
    'diag': (tfd.MultivariateNormalDiag, None, [LATENT_SIZE]),
    'full_cov': (tfd.MultivariateNormalTriL, None, [LATENT_SIZE]),
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
  if case == 'point_mass':
    return (dl.PointMassPosterior(LATENT_SIZE, **kwargs),
            dl.PointMassPosterior.params_size(LATENT_SIZE))
  if case == 'bernoulli':
    return (dl.IndependentBernoulliLikelihood(IMAGE_SHAPE, **kwargs),
            dl.IndependentBernoulliLikelihood.params_size(IMAGE_SHAPE))
  scale = case[len('normal_'):]
  return (dl.IndependentNormalLikelihood(IMAGE_SHAPE, scale=scale, **kwargs),
          dl.IndependentNormalLikelihood.params_size(IMAGE_SHAPE, scale))


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
    self.assertEqual(config['convert_to_tensor_fn'], 'mean')
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
    self.assertAllEqual(actual.mean(), expected.mean())
    if case != 'point_mass':
      self.assertAllEqual(actual.log_prob(points), expected.log_prob(points))
      self.assertAllEqual(actual.stddev(), expected.stddev())

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
    layer, params_size = make_layer(case)
    params = tf.Variable(tf.zeros([params_size]))  # As in VI: params to fit.
    with self.assertNoLogs('tensorflow', level='WARNING'):
      with tf.GradientTape() as tape:
        mean = tf.reduce_sum(layer(params).mean())
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
