"""Tests for tfp_vae.surrogates."""

import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers as dl
from tfp_vae import surrogates
from tfp_vae._keras import keras

from _test_util import named_product

tfd = tfp.distributions
tfpl = tfp.layers

LATENT_SIZE = 3
DTYPES = ('float32', 'float64')


def make_layer(case, dtype='float32', **kwargs):
  if case == 'diag':
    return dl.DiagonalGaussianPosterior(LATENT_SIZE, dtype=dtype, **kwargs)
  if case == 'full_cov':
    return dl.FullCovarianceGaussianPosterior(LATENT_SIZE, dtype=dtype,
                                              **kwargs)
  if case == 'low_rank':
    return dl.LowRankGaussianPosterior(LATENT_SIZE, kwargs.pop('rank', 2),
                                       dtype=dtype, **kwargs)
  if case == 'iaf':
    return dl.InverseAutoregressiveFlowPosterior(
        LATENT_SIZE, flow_steps=2, flow_hidden_units=(8,), dtype=dtype,
        **kwargs)
  return dl.PointMassPosterior(LATENT_SIZE, dtype=dtype, **kwargs)


def correlated_gaussian(dtype='float32'):
  """A target with correlation, so only a full covariance can match it."""
  covariance = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
  return tfd.MultivariateNormalTriL(
      loc=np.array([1.0, -1.0, 0.5], dtype),
      scale_tril=np.linalg.cholesky(covariance).astype(dtype))


class NetworkShiftedNormal(dl._DistributionLayer):  # pylint: disable=protected-access
  """A layer with a sub-network, as an inverse autoregressive flow has.

  N(params + Dense(params), I): the Dense layer is built in `build` and read
  by the params -> distribution function, the shape a flow layer takes.
  """

  def __init__(self, latent_size, **kwargs):
    self._latent_size = latent_size
    super().__init__(**kwargs)

  def _distribution_kwargs(self):
    return dict(latent_size=self._latent_size)

  @staticmethod
  def params_size(latent_size, name=None):
    del name
    return latent_size

  def build(self, input_shape):
    self.shift_network = keras.layers.Dense(self._latent_size)
    self.shift_network.build(input_shape)
    super().build(input_shape)

  def _make_distribution_fn_for(self, validate_args):
    return lambda params: tfd.MultivariateNormalDiag(
        params + self.shift_network(params), tf.ones_like(params),
        validate_args=validate_args)


class TrainableSurrogateTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      named_product(case=['diag', 'full_cov', 'low_rank', 'point_mass'],
                    dtype=DTYPES))
  def test_params_are_its_only_trainable_variable(self, case, dtype):
    layer = make_layer(case, dtype)
    surrogate = surrogates.trainable_surrogate(layer, batch_shape=[2])
    (params,) = surrogate.trainable_variables
    self.assertIsInstance(params, tf.Variable)
    self.assertEqual(params.dtype, dtype)
    params_size = (type(layer).params_size(LATENT_SIZE, 2) if case == 'low_rank'
                   else type(layer).params_size(LATENT_SIZE))
    self.assertEqual(params.shape, [2, params_size])
    self.assertEqual(surrogate.batch_shape, [2])
    self.assertEqual(surrogate.event_shape, [LATENT_SIZE])
    self.assertEqual(surrogate.dtype, dtype)

  def test_calling_a_layer_on_a_variable_holds_no_variables(self):
    # The trap the surrogate exists for: a distribution built once.
    distribution = dl.DiagonalGaussianPosterior(LATENT_SIZE)(
        tf.Variable(tf.zeros([2 * LATENT_SIZE])))
    self.assertEmpty(distribution.trainable_variables)

  @parameterized.named_parameters(
      named_product(case=['diag', 'full_cov'], transform=['softplus', 'exp'],
                    dtype=DTYPES))
  def test_initial_distribution_is_normal_with_loc_and_scale(
      self, case, transform, dtype):
    transform_arg = ('scale_transform' if case == 'diag' else
                     'diag_transform')
    kwargs = {transform_arg: transform, 'min_scale': 0.01}
    if case == 'full_cov':
      kwargs['off_diagonal_scale'] = 0.03  # Must not matter: entries are 0.
    loc = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]], dtype)  # [2, 3]
    scale = np.array([0.1, 1.0, 2.5], dtype)
    surrogate = surrogates.trainable_surrogate(
        make_layer(case, dtype, **kwargs), initial_loc=loc,
        initial_scale=scale)
    self.assertEqual(surrogate.batch_shape, [2])
    self.assertAllClose(surrogate.mean(), loc)
    self.assertAllClose(surrogate.covariance(),
                        np.broadcast_to(np.diag(scale**2), [2, 3, 3]),
                        rtol=1e-5, atol=1e-6)

  def test_default_initialization_is_standard_normal(self):
    for case in ('diag', 'full_cov'):
      surrogate = surrogates.trainable_surrogate(make_layer(case))
      self.assertAllClose(surrogate.mean(), np.zeros(LATENT_SIZE))
      self.assertAllClose(surrogate.covariance(), np.eye(LATENT_SIZE))

  def test_point_mass_initialization_is_the_loc(self):
    surrogate = surrogates.trainable_surrogate(
        make_layer('point_mass'), initial_loc=[1.0, 2.0, 3.0])
    self.assertAllEqual(surrogate.sample(4, seed=(1, 2)),
                        np.tile([1.0, 2.0, 3.0], [4, 1]))

  @parameterized.named_parameters(
      named_product(case=['diag', 'full_cov', 'point_mass']))
  def test_each_call_rebuilds_from_the_variable(self, case):
    layer = make_layer(case, off_diagonal_scale=0.5) if case == 'full_cov' \
        else make_layer(case)
    surrogate = surrogates.trainable_surrogate(layer)
    (params,) = surrogate.trainable_variables
    new_params = tf.random.stateless_normal(params.shape, seed=(3, 4))
    params.assign(new_params)
    expected = layer._make_distribution_fn_for(False)(new_params)
    self.assertAllClose(surrogate.mean(), expected.mean())
    if case != 'point_mass':
      points = tf.random.stateless_normal([5, LATENT_SIZE], seed=(5, 6))
      self.assertAllClose(surrogate.log_prob(points), expected.log_prob(points))

  @parameterized.named_parameters(named_product(case=['diag', 'full_cov']))
  def test_gradient_reaches_params_inside_tf_function(self, case):
    surrogate = surrogates.trainable_surrogate(make_layer(case))

    @tf.function
    def gradients():
      with tf.GradientTape() as tape:
        samples = surrogate.sample(8, seed=(7, 8))  # [8, D]
        loss = tf.reduce_mean(
            surrogate.log_prob(samples) -
            correlated_gaussian().log_prob(samples))
      return tape.gradient(loss, surrogate.trainable_variables)

    (gradient,) = gradients()
    self.assertAllEqual(tf.math.is_finite(gradient), tf.ones_like(
        gradient, tf.bool))
    self.assertGreater(np.abs(gradient.numpy()).max(), 0.0)

  def test_fit_full_covariance_to_a_gaussian_recovers_it(self):
    target = correlated_gaussian()
    surrogate = surrogates.trainable_surrogate(
        make_layer('full_cov'), initial_scale=0.5)
    num_steps = 300
    learning_rate = keras.optimizers.schedules.PolynomialDecay(
        0.05, decay_steps=num_steps, end_learning_rate=0.002)
    tfp.vi.fit_surrogate_posterior(
        target.log_prob, surrogate,
        optimizer=keras.optimizers.Adam(learning_rate), num_steps=num_steps,
        sample_size=64, seed=(1, 2))
    # The family contains the target, so only optimization noise is left.
    self.assertAllClose(surrogate.mean(), target.mean(), atol=0.1)
    self.assertAllClose(surrogate.covariance(), target.covariance(), atol=0.1)
    self.assertLess(surrogate.kl_divergence(target), 0.02)

  @parameterized.named_parameters(named_product(dtype=DTYPES))
  def test_low_rank_starts_near_diagonal_but_off_the_saddle(self, dtype):
    loc = np.array([0.5, -1.0, 2.0], dtype)
    scale = np.array([0.1, 1.0, 2.5], dtype)
    layer = make_layer('low_rank', dtype, factor_scale=0.03)
    surrogate = surrogates.trainable_surrogate(layer, initial_loc=loc,
                                               initial_scale=scale,
                                               batch_shape=[2])
    self.assertAllClose(surrogate.mean(), np.stack([loc, loc]))
    covariance = surrogate.covariance().numpy()[0]  # [3, 3]
    # V = 0.01 * scale * N(0, 1): relative to scale_i * scale_j, every
    # entry of V V^T is about 1e-4 * R.
    relative = (covariance - np.diag(scale**2)) / np.outer(scale, scale)
    self.assertLess(np.abs(relative).max(), 1e-3)
    self.assertGreater(np.abs(relative - np.diag(np.diag(relative))).max(),
                       0.0)
    # The seed is fixed: a second surrogate starts at the same params.
    again = surrogates.trainable_surrogate(
        make_layer('low_rank', dtype, factor_scale=0.03), initial_loc=loc,
        initial_scale=scale, batch_shape=[2])
    self.assertAllEqual(again.trainable_variables[0],
                        surrogate.trainable_variables[0])

  def test_iaf_starts_as_its_diagonal_base(self):
    loc = np.array([0.5, -1.0, 2.0], 'float32')
    scale = np.array([0.1, 1.0, 2.5], 'float32')
    layer = make_layer('iaf')
    surrogate = surrogates.trainable_surrogate(layer, initial_loc=loc,
                                               initial_scale=scale)
    # The params and every weight of the flow's networks are trained.
    self.assertLen(surrogate.trainable_variables,
                   1 + len(layer.trainable_weights))
    points = tf.random.stateless_normal([5, LATENT_SIZE], seed=(1, 2))
    self.assertAllClose(
        surrogate.log_prob(points),
        tfd.MultivariateNormalDiag(loc, scale).log_prob(points), atol=1e-5)

  def test_fit_full_rank_low_rank_to_a_gaussian_recovers_it(self):
    # R = D: diag(d) + V V^T can be any covariance, the target's included.
    target = correlated_gaussian()
    surrogate = surrogates.trainable_surrogate(
        make_layer('low_rank', rank=LATENT_SIZE, factor_scale=1.0),
        initial_scale=0.5)
    num_steps = 300
    learning_rate = keras.optimizers.schedules.PolynomialDecay(
        0.05, decay_steps=num_steps, end_learning_rate=0.002)
    tfp.vi.fit_surrogate_posterior(
        target.log_prob, surrogate,
        optimizer=keras.optimizers.Adam(learning_rate), num_steps=num_steps,
        sample_size=64, seed=(1, 2))
    self.assertAllClose(surrogate.mean(), target.mean(), atol=0.1)
    self.assertAllClose(surrogate.covariance(), target.covariance(), atol=0.1)

  def test_fitting_a_point_mass_finds_the_mode(self):
    # log q of a point mass's own sample is 0, so the loss is -log p(z): MAP.
    target = correlated_gaussian()
    surrogate = surrogates.trainable_surrogate(make_layer('point_mass'))
    tfp.vi.fit_surrogate_posterior(
        target.log_prob, surrogate, optimizer=keras.optimizers.Adam(0.05),
        num_steps=400, seed=(1, 2))
    self.assertAllClose(surrogate.mean(), target.mode(), atol=0.02)

  def test_layer_weights_become_surrogate_variables(self):
    # The per-pixel scale is a weight of the layer, as a flow's networks
    # would be: it must be built and trained along with the params.
    layer = dl.IndependentNormalLikelihood([2, 2], scale='per_pixel')
    surrogate = surrogates.trainable_surrogate(
        layer, initial_params=tf.zeros([4]))
    self.assertCountEqual([v.name for v in surrogate.trainable_variables],
                          ['trainable_surrogate/params:0',
                           layer.raw_scale.name])
    with tf.GradientTape() as tape:
      log_prob = surrogate.log_prob(tf.fill([2, 2], 0.9))
    gradients = tape.gradient(log_prob, surrogate.trainable_variables)
    self.assertNotIn(None, gradients)

  def test_sub_network_weights_become_surrogate_variables(self):
    layer = NetworkShiftedNormal(LATENT_SIZE)
    surrogate = surrogates.trainable_surrogate(  # Dense needs a batch axis.
        layer, initial_params=tf.zeros([LATENT_SIZE]), batch_shape=[2])
    network = layer.shift_network
    self.assertCountEqual(
        [v.name for v in surrogate.trainable_variables],
        ['trainable_surrogate/params:0', network.kernel.name,
         network.bias.name])
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(surrogate.log_prob(tf.ones([LATENT_SIZE])))
    gradients = tape.gradient(loss, surrogate.trainable_variables)
    self.assertNotIn(None, gradients)

  def test_checkpoint_round_trip(self):
    surrogate = surrogates.trainable_surrogate(
        make_layer('full_cov'), initial_loc=[1.0, 2.0, 3.0])
    surrogate.trainable_variables[0].assign_add(
        tf.random.stateless_normal(
            surrogate.trainable_variables[0].shape, seed=(1, 1)))
    path = tf.train.Checkpoint(surrogate=surrogate).save(
        os.path.join(tempfile.mkdtemp(), 'ckpt'))
    restored = surrogates.trainable_surrogate(make_layer('full_cov'))
    tf.train.Checkpoint(surrogate=restored).restore(path).assert_consumed()
    self.assertAllEqual(restored.mean(), surrogate.mean())
    self.assertAllEqual(restored.covariance(), surrogate.covariance())

  @parameterized.named_parameters(
      ('not_a_package_layer', lambda: tfpl.MultivariateNormalTriL(3), {},
       '`layer`'),
      ('scale_at_min_scale', lambda: make_layer('diag', min_scale=0.1),
       {'initial_scale': 0.1}, '`initial_scale`'),
      ('negative_scale', lambda: make_layer('full_cov'),
       {'initial_scale': [1.0, -1.0, 1.0]}, '`initial_scale`'),
      ('scale_for_point_mass', lambda: make_layer('point_mass'),
       {'initial_scale': 1.0}, '`initial_scale`'),
      ('infinite_loc', lambda: make_layer('diag'),
       {'initial_loc': np.inf}, '`initial_loc`'),
      ('loc_of_wrong_size', lambda: make_layer('diag'),
       {'initial_loc': [0.0, 0.0]}, '`initial_loc`'),
      ('params_of_wrong_size', lambda: make_layer('diag'),
       {'initial_params': tf.zeros([5])}, '`initial_params`'),
      ('params_and_loc', lambda: make_layer('diag'),
       {'initial_params': tf.zeros([6]), 'initial_loc': 0.0},
       '`initial_params`'),
      ('no_params_for_a_likelihood',
       lambda: dl.IndependentBernoulliLikelihood([2]), {}, '`initial_params`'),
      ('negative_batch_shape', lambda: make_layer('diag'),
       {'batch_shape': [-1]}, '`batch_shape`'),
      ('batch_shape_against_params', lambda: make_layer('diag'),
       {'initial_params': tf.zeros([2, 6]), 'batch_shape': [3]},
       '`batch_shape`'),
  )
  def test_bad_arguments_raise_value_error_naming_them(
      self, make, kwargs, argument):
    with self.assertRaisesRegex(ValueError, argument):
      surrogates.trainable_surrogate(make(), **kwargs)


if __name__ == '__main__':
  tf.test.main()
