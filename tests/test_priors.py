"""Tests for tfp_vae.priors."""

import json

from absl.testing import parameterized
import numpy as np
from scipy import special
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers
from tfp_vae import objectives
from tfp_vae import priors

from _test_util import named_product

tfd = tfp.distributions

DTYPES = ('float32', 'float64')


def tolerance(dtype):
  return 1e-5 if dtype == 'float32' else 1e-10


def np_mixture_log_prob(points, mixture_logits, loc, scale):
  """log sum_k softmax(logits)_k prod_d Normal(z_d; loc_kd, scale_kd)."""
  log_weights = mixture_logits - special.logsumexp(mixture_logits)  # [K]
  component_log_probs = stats.norm.logpdf(
      points[..., None, :], loc, scale).sum(axis=-1)  # [..., K]
  return special.logsumexp(log_weights + component_log_probs, axis=-1)


class StandardNormalPriorTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(dtype=DTYPES,
                                                 latent_size=(1, 4)))
  def test_distribution_and_log_prob(self, dtype, latent_size):
    prior = priors.StandardNormalPrior(latent_size, dtype=dtype)
    distribution = prior.distribution()
    self.assertIsInstance(distribution, tfd.MultivariateNormalDiag)
    self.assertEqual(distribution.batch_shape, [])
    self.assertEqual(distribution.event_shape, [latent_size])
    self.assertEqual(distribution.dtype, tf.as_dtype(dtype))
    self.assertTrue(priors.StandardNormalPrior.has_analytic_kl)
    self.assertEmpty(prior.trainable_weights)
    points = np.random.RandomState(0).randn(3, 5, latent_size).astype(dtype)
    expected = stats.multivariate_normal(
        np.zeros(latent_size), np.eye(latent_size)).logpdf(points)
    self.assertAllClose(distribution.log_prob(points), expected,
                        rtol=tolerance(dtype), atol=tolerance(dtype))
    # Calling the layer gives the same distribution.
    self.assertAllClose(prior(None).log_prob(points), expected,
                        rtol=tolerance(dtype), atol=tolerance(dtype))

  def test_config_round_trip(self):
    prior = priors.StandardNormalPrior(3, name='p', dtype='float64')
    config = prior.get_config()
    json.dumps(config)
    clone = priors.StandardNormalPrior.from_config(config)
    self.assertEqual(clone.get_config(), config)
    self.assertEqual(clone.distribution().dtype, tf.float64)

  @parameterized.named_parameters(('zero', 0), ('negative', -1),
                                  ('float', 1.5), ('bool', True))
  def test_invalid_latent_size(self, latent_size):
    with self.assertRaisesRegex(ValueError, '`latent_size`'):
      priors.StandardNormalPrior(latent_size)


class MixtureOfGaussiansPriorTest(tf.test.TestCase, parameterized.TestCase):

  def _prior_with_random_weights(self, dtype, latent_size=3,
                                 num_components=4):
    prior = priors.MixtureOfGaussiansPrior(latent_size, num_components,
                                           seed=1, dtype=dtype)
    rng = np.random.RandomState(0)
    prior.loc.assign(rng.randn(num_components, latent_size))
    prior.raw_scale.assign(rng.randn(num_components, latent_size))
    prior.mixture_logits.assign(rng.randn(num_components))
    return prior

  @parameterized.named_parameters(*named_product(dtype=DTYPES,
                                                 latent_size=(1, 3)))
  def test_log_prob_matches_numpy_mixture(self, dtype, latent_size):
    prior = self._prior_with_random_weights(dtype, latent_size)
    distribution = prior.distribution()
    self.assertIsInstance(distribution, tfd.MixtureSameFamily)
    self.assertEqual(distribution.batch_shape, [])
    self.assertEqual(distribution.event_shape, [latent_size])
    self.assertEqual(distribution.dtype, tf.as_dtype(dtype))
    points = (2 * np.random.RandomState(1).randn(6, 2, latent_size)).astype(
        dtype)
    expected = np_mixture_log_prob(
        points.astype(np.float64),
        prior.mixture_logits.numpy().astype(np.float64),
        prior.loc.numpy().astype(np.float64),
        np.logaddexp(0.0, prior.raw_scale.numpy().astype(np.float64)) + 1e-5)
    self.assertAllClose(distribution.log_prob(points), expected,
                        rtol=tolerance(dtype), atol=tolerance(dtype))

  def test_initial_state(self):
    prior = priors.MixtureOfGaussiansPrior(2, 5, seed=3)
    self.assertFalse(priors.MixtureOfGaussiansPrior.has_analytic_kl)
    self.assertEqual(prior.loc.shape, [5, 2])
    self.assertEqual(prior.raw_scale.shape, [5, 2])
    self.assertEqual(prior.mixture_logits.shape, [5])
    self.assertLen(prior.trainable_weights, 3)
    distribution = prior.distribution()
    # Scales start at 1 and the weights uniform.
    self.assertAllClose(
        distribution.components_distribution.stddev(),
        np.full([5, 2], 1 + 1e-5))
    self.assertAllClose(distribution.mixture_distribution.probs_parameter(),
                        np.full([5], 0.2))
    # Seeded, distinct component locations.
    same_seed = priors.MixtureOfGaussiansPrior(2, 5, seed=3)
    other_seed = priors.MixtureOfGaussiansPrior(2, 5, seed=4)
    self.assertAllEqual(prior.loc, same_seed.loc)
    self.assertNotAllClose(prior.loc, other_seed.loc)
    self.assertEqual(len({tuple(row) for row in prior.loc.numpy()}), 5)

  def test_sample_shape(self):
    prior = priors.MixtureOfGaussiansPrior(3, 4)
    samples = prior.distribution().sample(7, seed=(1, 2))
    self.assertEqual(samples.shape, [7, 3])

  def test_gradient_reaches_every_variable(self):
    prior = self._prior_with_random_weights('float32')
    points = np.random.RandomState(2).randn(8, 3).astype('float32')
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(prior.distribution().log_prob(points))
    gradients = tape.gradient(loss, prior.trainable_weights)
    for gradient in gradients:
      self.assertIsNotNone(gradient)
      self.assertGreater(self.evaluate(tf.norm(gradient)), 0.0)

  def test_analytic_kl_is_refused_and_mc_kl_works(self):
    prior = self._prior_with_random_weights('float32')
    params = np.random.RandomState(3).randn(2, 6).astype('float32')
    posterior = distribution_layers.DiagonalGaussianPosterior(3)(params)
    with self.assertRaises(NotImplementedError):
      tfd.kl_divergence(posterior.tensor_distribution, prior.distribution())
    images = np.zeros([2, 4], np.float32)

    def decode(latents):  # [L, B, D] -> batch [L, B], event [4]
      loc = tf.concat([latents, latents[..., :1]], axis=-1)
      return tfd.Independent(tfd.Normal(loc, 1.0), 1)

    latents = objectives.sample_latents(posterior, 4, seed=(1, 2))
    with self.assertRaisesRegex(ValueError, "kl='mc'"):
      objectives.elbo(images, posterior, prior.distribution(), decode, latents,
                      kl='analytic')
    terms = objectives.elbo(images, posterior, prior.distribution(), decode,
                            latents, kl='mc')
    expected_rate = np.mean(
        posterior.log_prob(latents) - prior.distribution().log_prob(latents),
        axis=0)
    self.assertAllClose(terms.rate, expected_rate)

  def test_config_round_trip_rebuilds_the_same_initial_prior(self):
    prior = priors.MixtureOfGaussiansPrior(3, 4, seed=7, name='mix')
    config = prior.get_config()
    json.dumps(config)
    self.assertEqual(config['num_components'], 4)
    self.assertEqual(config['seed'], 7)
    clone = priors.MixtureOfGaussiansPrior.from_config(config)
    self.assertEqual(clone.get_config(), config)
    self.assertAllEqual(clone.loc, prior.loc)

  @parameterized.named_parameters(
      ('latent_size', 0, 3, '`latent_size`'),
      ('num_components', 3, 0, '`num_components`'),
      ('num_components_float', 3, 2.5, '`num_components`'),
  )
  def test_invalid_sizes(self, latent_size, num_components, name):
    with self.assertRaisesRegex(ValueError, name):
      priors.MixtureOfGaussiansPrior(latent_size, num_components)


if __name__ == '__main__':
  tf.test.main()
