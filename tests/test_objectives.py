"""Tests for tfp_vae.objectives: identities of the ELBO and the IWAE bound."""

from absl.testing import parameterized
import numpy as np
from scipy import special
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers as dl
from tfp_vae import objectives

from _test_util import named_product

tfd = tfp.distributions

DTYPES = ('float32', 'float64')
POSTERIORS = ('diag', 'full_cov')
# Monte Carlo checks pass when the estimate is within this many standard
# errors (computed from the same samples) of the exact value.
NUM_STANDARD_ERRORS = 4.0


def assert_within_standard_errors(test, estimate, exact, standard_error):
  error = np.abs(np.asarray(estimate, np.float64) -
                 np.asarray(exact, np.float64))
  test.assertTrue(
      np.all(error <= NUM_STANDARD_ERRORS * standard_error),
      msg=f'|estimate - exact| = {error}, standard errors = {standard_error}')


def make_posterior(kind, batch_size, latent_size, dtype, seed=0):
  """A posterior from the package's layers, with random (fixed) params."""
  rng = np.random.RandomState(seed)
  if kind == 'diag':
    params_size = dl.DiagonalGaussianPosterior.params_size(latent_size)
    params = 0.7 * rng.randn(batch_size, params_size).astype(dtype)
    return dl.DiagonalGaussianPosterior.new(params, latent_size), params
  params_size = dl.FullCovarianceGaussianPosterior.params_size(latent_size)
  params = 0.7 * rng.randn(batch_size, params_size).astype(dtype)
  return dl.FullCovarianceGaussianPosterior.new(params, latent_size), params


def new_posterior(kind, params, latent_size):
  if kind == 'diag':
    return dl.DiagonalGaussianPosterior.new(params, latent_size)
  return dl.FullCovarianceGaussianPosterior.new(params, latent_size)


def standard_normal(latent_size, dtype):
  return tfd.MultivariateNormalDiag(tf.zeros(latent_size, dtype),
                                    tf.ones(latent_size, dtype))


class LinearGaussianModel:
  """z ~ N(0, I_D), x | z ~ N(W z + b, s^2 I_P): the marginal is known.

  ```none
  log p(x)  = MVN(b, W W^T + s^2 I).log_prob(x)
  p(z | x)  = N(mu, Sigma),  Sigma = inv(I + W^T W / s^2),
              mu = Sigma W^T (x - b) / s^2
  ```
  """

  def __init__(self, latent_size=2, data_size=3, noise_scale=0.5, seed=0):
    rng = np.random.RandomState(seed)
    self.weights = rng.randn(data_size, latent_size)
    self.bias = rng.randn(data_size)
    self.noise_scale = noise_scale
    self.latent_size = latent_size
    self.data_size = data_size

  def decode(self, latents):  # [..., D] -> batch [...], event [P]
    dtype = latents.dtype
    loc = (tf.linalg.matvec(tf.cast(self.weights, dtype), latents) +
           tf.cast(self.bias, dtype))
    return tfd.Independent(
        tfd.Normal(loc, tf.constant(self.noise_scale, dtype)), 1)

  def log_marginal(self, images):  # numpy/scipy, independent of TFP
    covariance = (self.weights @ self.weights.T +
                  self.noise_scale**2 * np.eye(self.data_size))
    return stats.multivariate_normal(self.bias, covariance).logpdf(images)

  def exact_posterior(self, images):  # [B, P] -> (loc [B, D], cov [D, D])
    precision = (np.eye(self.latent_size) +
                 self.weights.T @ self.weights / self.noise_scale**2)
    covariance = np.linalg.inv(precision)
    loc = (images - self.bias) @ self.weights @ covariance.T / (
        self.noise_scale**2)
    return loc, covariance


class MonteCarloKlTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(
      posterior=POSTERIORS, dtype=DTYPES, latent_size=(2, 5)))
  def test_monte_carlo_kl_converges_to_analytic(self, posterior, dtype,
                                                latent_size):
    num_samples = 200_000
    approx_posterior, _ = make_posterior(posterior, 2, latent_size, dtype)
    prior = standard_normal(latent_size, dtype)
    latents = objectives.sample_latents(approx_posterior, num_samples,
                                        seed=(1, 2))  # [N, B, D]
    log_ratio = self.evaluate(approx_posterior.log_prob(latents) -
                              prior.log_prob(latents)).astype(np.float64)
    estimate = log_ratio.mean(axis=0)  # [B]
    standard_error = log_ratio.std(axis=0) / np.sqrt(num_samples)
    analytic = self.evaluate(tfd.kl_divergence(approx_posterior, prior))
    self.assertTrue(np.all(analytic > 0.1))
    self.assertTrue(np.all(standard_error < 0.02))
    assert_within_standard_errors(self, estimate, analytic, standard_error)

  def test_log_q_of_a_sample_needs_no_solve_when_the_scale_is_ill_conditioned(
      self):
    # A 40-d full-covariance q early in a KL warm-up: tiny diagonal under
    # large off-diagonal entries. Solving L x = z - loc in float32 amplifies
    # rounding by ~|L_ij / L_jj| per row (here past float32's range); the sample's
    # log q comes from the noise that made it instead:
    # log N(eps; 0, I) - sum_i log L_ii.
    size = 40
    rng = np.random.RandomState(0)
    scale_tril = np.tril(3.0 * rng.randn(size, size), -1) + np.diag(
        np.full(size, 2e-5))
    approx_posterior = tfd.MultivariateNormalTriL(
        loc=rng.randn(2, size).astype(np.float32),
        scale_tril=np.stack([scale_tril] * 2).astype(np.float32))
    noise = objectives.standard_normal_slice([3, 2, size], seed=[5, 6])
    latents = objectives.latents_from_noise(approx_posterior, noise)
    expected = (stats.norm.logpdf(self.evaluate(noise).astype(np.float64))
                .sum(-1) - np.log(np.diag(scale_tril)).sum())  # [3, 2]
    self.assertAllClose(approx_posterior.log_prob(latents), expected,
                        rtol=1e-5)
    # The solve on the same numbers, for contrast (a copy misses the cache):
    # far off, or not even a number.
    solved = self.evaluate(approx_posterior.log_prob(tf.identity(latents)))
    self.assertFalse(np.allclose(solved, expected, rtol=1e-3))

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS,
                                                 dtype=DTYPES))
  def test_elbo_rates_agree_between_mc_and_analytic(self, posterior, dtype):
    num_samples = 100_000
    model = LinearGaussianModel(latent_size=3, data_size=4)
    approx_posterior, _ = make_posterior(posterior, 3, 3, dtype, seed=1)
    prior = standard_normal(3, dtype)
    images = np.random.RandomState(2).randn(3, 4).astype(dtype)
    latents = objectives.sample_latents(approx_posterior, num_samples,
                                        seed=(3, 4))
    analytic = objectives.elbo(images, approx_posterior, prior, model.decode,
                               latents, kl='analytic')
    monte_carlo = objectives.elbo(images, approx_posterior, prior,
                                  model.decode, latents, kl='mc')
    self.assertEqual(monte_carlo.rate.shape, [3])
    # Same latents, so the distortion is the same number.
    self.assertAllEqual(analytic.distortion, monte_carlo.distortion)
    log_ratio = self.evaluate(approx_posterior.log_prob(latents) -
                              prior.log_prob(latents)).astype(np.float64)
    standard_error = log_ratio.std(axis=0) / np.sqrt(num_samples)
    assert_within_standard_errors(self, monte_carlo.rate, analytic.rate,
                                  standard_error)
    self.assertAllClose(analytic.elbo, -analytic.distortion - analytic.rate)
    self.assertAllClose(monte_carlo.elbo,
                        -monte_carlo.distortion - monte_carlo.rate)


class ElboTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS,
                                                 dtype=DTYPES))
  def test_elbo_terms_from_their_definitions(self, posterior, dtype):
    model = LinearGaussianModel()
    approx_posterior, _ = make_posterior(posterior, 4, 2, dtype)
    prior = standard_normal(2, dtype)
    images = np.random.RandomState(1).randn(4, 3).astype(dtype)
    latents = objectives.sample_latents(approx_posterior, 6, seed=(5, 6))
    self.assertEqual(latents.shape, [6, 4, 2])
    self.assertEqual(latents.dtype, tf.as_dtype(dtype))
    terms = objectives.elbo(images, approx_posterior, prior, model.decode,
                            latents)
    self.assertEqual(terms.elbo.dtype, tf.as_dtype(dtype))
    log_likelihood = self.evaluate(
        model.decode(latents).log_prob(images))  # [L, B]
    self.assertAllClose(terms.distortion, -log_likelihood.mean(axis=0))
    self.assertAllClose(terms.rate,
                        tfd.kl_divergence(approx_posterior, prior))
    self.assertAllClose(terms.elbo, -terms.distortion - terms.rate)

  def test_point_mass_posterior_has_zero_rate(self):
    model = LinearGaussianModel()
    loc = np.random.RandomState(0).randn(4, 2)
    approx_posterior = dl.PointMassPosterior(2, dtype='float64')(loc)
    self.assertTrue(objectives.is_point_mass(approx_posterior))
    latents = objectives.sample_latents(approx_posterior, 3, seed=(1, 2))
    self.assertAllEqual(latents, np.broadcast_to(loc, [3, 4, 2]))
    images = np.random.RandomState(1).randn(4, 3)
    for kl in ('analytic', 'mc'):
      terms = objectives.elbo(images, approx_posterior,
                              standard_normal(2, 'float64'), model.decode,
                              latents, kl=kl)
      self.assertAllEqual(terms.rate, np.zeros(4))
      self.assertAllClose(terms.elbo, model.decode(loc).log_prob(images))
    with self.assertRaisesRegex(ValueError, 'density'):
      objectives.iwae_bound(images, approx_posterior,
                            standard_normal(2, 'float64'), model.decode,
                            latents)

  def test_unknown_kl_is_refused(self):
    approx_posterior, _ = make_posterior('diag', 2, 2, 'float64')
    latents = objectives.sample_latents(approx_posterior, 1, seed=(1, 2))
    with self.assertRaisesRegex(ValueError, 'bogus'):
      objectives.elbo(np.zeros([2, 3]), approx_posterior,
                      standard_normal(2, 'float64'),
                      LinearGaussianModel().decode, latents, kl='bogus')

  def test_log_mean_exp_is_stable_and_exact(self):
    values = np.array([[1000.0, -1000.0], [1001.0, -1001.0],
                       [999.0, -999.0]])
    expected = special.logsumexp(values, axis=0) - np.log(3)
    self.assertAllClose(objectives.log_mean_exp(values, axis=0), expected)
    self.assertAllClose(objectives.log_mean_exp(values.T, axis=1), expected)


class IwaeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS,
                                                 dtype=DTYPES))
  def test_iwae_with_one_sample_equals_mc_elbo(self, posterior, dtype):
    model = LinearGaussianModel()
    approx_posterior, _ = make_posterior(posterior, 5, 2, dtype)
    prior = standard_normal(2, dtype)
    images = np.random.RandomState(1).randn(5, 3).astype(dtype)
    latents = objectives.sample_latents(approx_posterior, 1, seed=(7, 8))
    iwae = objectives.iwae_bound(images, approx_posterior, prior,
                                 model.decode, latents)
    elbo = objectives.elbo(images, approx_posterior, prior, model.decode,
                           latents, kl='mc')
    tol = 1e-5 if dtype == 'float32' else 1e-12
    self.assertAllClose(iwae.iwae, elbo.elbo, rtol=tol, atol=tol)
    self.assertAllClose(iwae.elbo, elbo.elbo, rtol=tol, atol=tol)

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS))
  def test_iwae_is_at_least_the_elbo_of_the_same_samples(self, posterior):
    model = LinearGaussianModel()
    approx_posterior, _ = make_posterior(posterior, 5, 2, 'float64')
    prior = standard_normal(2, 'float64')
    images = np.random.RandomState(1).randn(5, 3)
    latents = objectives.sample_latents(approx_posterior, 10, seed=(7, 8))
    iwae = objectives.iwae_bound(images, approx_posterior, prior,
                                 model.decode, latents)
    elbo = objectives.elbo(images, approx_posterior, prior, model.decode,
                           latents, kl='mc')
    # Same K samples: the ELBO part is the MC ELBO, and Jensen's inequality
    # holds for every draw, not only in expectation.
    self.assertAllClose(iwae.elbo, elbo.elbo)
    self.assertAllClose(iwae.rate, elbo.rate)
    self.assertAllClose(iwae.distortion, elbo.distortion)
    self.assertAllGreater(self.evaluate(iwae.iwae - iwae.elbo), 0.0)
    # And IWAE is log mean exp of the log weights, recomputed here.
    log_weights = self.evaluate(
        model.decode(latents).log_prob(images) + prior.log_prob(latents) -
        approx_posterior.log_prob(latents))  # [K, B]
    self.assertAllClose(iwae.iwae,
                        special.logsumexp(log_weights, axis=0) - np.log(10))

  def test_exact_posterior_recovers_log_marginal_for_every_sample(self):
    model = LinearGaussianModel()
    images = np.random.RandomState(3).randn(4, 3)
    loc, covariance = model.exact_posterior(images)
    approx_posterior = tfd.MultivariateNormalTriL(
        loc, np.linalg.cholesky(covariance))
    prior = standard_normal(2, 'float64')
    log_marginal = model.log_marginal(images)
    for num_samples in (1, 7):
      latents = objectives.sample_latents(approx_posterior, num_samples,
                                          seed=(1, num_samples))
      iwae = objectives.iwae_bound(images, approx_posterior, prior,
                                   model.decode, latents)
      elbo = objectives.elbo(images, approx_posterior, prior, model.decode,
                             latents, kl='mc')
      self.assertAllClose(iwae.iwae, log_marginal, atol=1e-9, rtol=1e-9)
      self.assertAllClose(elbo.elbo, log_marginal, atol=1e-9, rtol=1e-9)

  def test_iwae_increases_with_k_towards_log_marginal(self):
    model = LinearGaussianModel()
    image = np.random.RandomState(0).randn(3)
    log_marginal = model.log_marginal(image)
    loc, covariance = model.exact_posterior(image[None])
    # A poor posterior (shifted and too wide), so the bounds are far apart.
    num_replicates = 2000
    approx_posterior = tfd.MultivariateNormalTriL(
        np.tile(loc + 0.5, (num_replicates, 1)),
        np.tile(1.5 * np.linalg.cholesky(covariance), (num_replicates, 1, 1)))
    images = np.tile(image, (num_replicates, 1))
    prior = standard_normal(2, 'float64')
    means, standard_errors = [], []
    for i, num_samples in enumerate((1, 5, 50)):
      latents = objectives.sample_latents(approx_posterior, num_samples,
                                          seed=(11, i))  # [K, R, D]
      iwae = self.evaluate(objectives.iwae_bound(
          images, approx_posterior, prior, model.decode, latents).iwae)
      means.append(iwae.mean())
      standard_errors.append(iwae.std() / np.sqrt(num_replicates))
    for k in range(2):
      # Non-decreasing beyond noise; here (a poor q) clearly increasing.
      gap_error = np.hypot(standard_errors[k], standard_errors[k + 1])
      self.assertGreater(means[k + 1] - means[k],
                         NUM_STANDARD_ERRORS * gap_error)
    for mean, standard_error in zip(means, standard_errors):
      self.assertLess(mean, log_marginal + NUM_STANDARD_ERRORS * standard_error)
    # K = 50 gets within 1 nat of log p(x), K = 1 does not.
    self.assertLess(log_marginal - means[-1], 1.0)
    self.assertGreater(log_marginal - means[0], 1.0)


class SampleLatentsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*named_product(
      posterior=POSTERIORS, dtype=DTYPES, split=(1, 3)))
  def test_replica_slices_equal_the_global_draw(self, posterior, dtype, split):
    global_batch, latent_size, num_samples = 4, 3, 5
    seed = tf.constant([3, 9])
    _, params = make_posterior(posterior, global_batch, latent_size, dtype)
    whole = objectives.sample_latents(
        new_posterior(posterior, params, latent_size), num_samples, seed)
    first = objectives.sample_latents(
        new_posterior(posterior, params[:split], latent_size), num_samples,
        seed, example_offset=0, total_examples=global_batch)
    second = objectives.sample_latents(
        new_posterior(posterior, params[split:], latent_size), num_samples,
        seed, example_offset=split, total_examples=global_batch)
    self.assertEqual(first.shape, [num_samples, split, latent_size])
    # The noise is the same bits (see test_standard_normal_slice_*); `loc +
    # scale @ noise` may round differently for a different batch size.
    tol = 1e-6 if dtype == 'float32' else 1e-14
    self.assertAllClose(tf.concat([first, second], axis=1), whole, rtol=tol,
                        atol=tol)
    # An explicit global size equal to the batch changes nothing.
    self.assertAllEqual(
        objectives.sample_latents(
            new_posterior(posterior, params, latent_size), num_samples, seed,
            example_offset=0, total_examples=global_batch), whole)
    # And a different seed is a different draw.
    self.assertNotAllClose(
        objectives.sample_latents(
            new_posterior(posterior, params, latent_size), num_samples,
            tf.constant([3, 10])), whole)

  @parameterized.named_parameters(*named_product(batch_axis=(0, 1, 2)))
  def test_standard_normal_slice_along_any_axis(self, batch_axis):
    seed = tf.constant([1, 2])
    global_shape = [2, 3, 4]
    local_shape = list(global_shape)
    local_shape[batch_axis] = 1
    whole = tf.random.stateless_normal(global_shape, seed, dtype=tf.float64)
    for offset in range(global_shape[batch_axis]):
      part = objectives.standard_normal_slice(
          local_shape, seed, example_offset=offset,
          total_examples=global_shape[batch_axis], dtype=tf.float64,
          batch_axis=batch_axis)
      expected = tf.gather(whole, [offset], axis=batch_axis)
      self.assertAllEqual(part, expected)

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS))
  def test_samples_have_the_posterior_mean_and_covariance(self, posterior):
    num_samples = 100_000
    approx_posterior, _ = make_posterior(posterior, 1, 3, 'float64', seed=4)
    latents = self.evaluate(objectives.sample_latents(
        approx_posterior, num_samples, seed=(2, 3)))[:, 0]  # [N, D]
    covariance = self.evaluate(approx_posterior.covariance())[0]
    standard_deviation = np.sqrt(np.diag(covariance))
    self.assertAllClose(latents.mean(axis=0), approx_posterior.mean()[0],
                        atol=float(4 * standard_deviation.max() /
                                   np.sqrt(num_samples)))
    # A transposed Cholesky factor would give L^T L instead of L L^T.
    self.assertAllClose(np.cov(latents.T), covariance, atol=0.03, rtol=0.03)

  @parameterized.named_parameters(*named_product(posterior=POSTERIORS))
  def test_samples_are_differentiable_in_the_params(self, posterior):
    _, params = make_posterior(posterior, 2, 3, 'float32')
    params = tf.Variable(params)
    with tf.GradientTape() as tape:
      latents = objectives.sample_latents(new_posterior(posterior, params, 3),
                                          4, seed=(1, 2))
      loss = tf.reduce_sum(latents**2)
    gradient = self.evaluate(tape.gradient(loss, params))
    # Every parameter (location and every scale entry) moves the samples.
    self.assertTrue(np.all(np.abs(gradient) > 0))

  def test_other_distributions_fall_back_to_seeded_sampling(self):
    approx_posterior = tfd.Independent(
        tfd.Normal(tf.zeros([4, 3]), tf.ones([4, 3])), 1)
    seed = tf.constant([1, 2])
    latents = objectives.sample_latents(approx_posterior, 5, seed)
    self.assertEqual(latents.shape, [5, 4, 3])
    self.assertAllEqual(latents,
                        objectives.sample_latents(approx_posterior, 5, seed))
    self.assertNotAllClose(
        latents,
        objectives.sample_latents(approx_posterior, 5, seed, example_offset=4))



class PosteriorLocationTest(tf.test.TestCase):

  def test_is_the_mean_of_a_gaussian(self):
    params = np.random.RandomState(0).randn(4, 2 * 3 + 3 * 2).astype('float32')
    approx_posterior = dl.LowRankGaussianPosterior(3, 2)(params)
    self.assertAllEqual(objectives.posterior_location(approx_posterior),
                        approx_posterior.mean())

  def test_is_the_flow_of_the_base_mean_for_an_iaf(self):
    layer = dl.InverseAutoregressiveFlowPosterior(3, flow_steps=2,
                                                  flow_hidden_units=(8,))
    rng = np.random.RandomState(1)
    for weight in layer.trainable_weights:  # A flow that is not the identity.
      weight.assign(0.3 * rng.randn(*weight.shape))
    approx_posterior = layer(rng.randn(4, 9).astype('float32'))
    q = objectives.unwrap_distribution(approx_posterior)
    location = objectives.posterior_location(approx_posterior)  # [4, 3]
    self.assertAllClose(location, q.bijector.forward(q.distribution.mean()))
    self.assertNotAllClose(location, q.distribution.mean())

if __name__ == '__main__':
  tf.test.main()
