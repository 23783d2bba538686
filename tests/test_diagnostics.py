"""Tests for tfp_vae.evaluation.diagnostics and the estimator's diagnostics.

Known values: equal weights give ESS = K, one weight carrying all the mass
gives 1, m equal weights and the rest 0 give m; the log-space formula agrees
with (sum w)^2 / sum w^2 computed directly in float64 where that does not
overflow, and does not overflow where that would.
"""

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import evaluation
from tfp_vae import objectives
from tfp_vae.evaluation import diagnostics

tfd = tfp.distributions


class EffectiveSampleSizeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(np.float32, np.float64)
  def test_equal_weights_give_k(self, dtype):
    log_weights = np.full([500, 3], -93.7, dtype)  # [K, B]
    self.assertAllClose(diagnostics.effective_sample_size(log_weights),
                        [500.] * 3, rtol=1e-5)

  @parameterized.parameters(np.float32, np.float64)
  def test_one_dominant_weight_gives_one(self, dtype):
    log_weights = np.full([1000, 2], -1e4, dtype)
    log_weights[17, 0] = -100.
    log_weights[999, 1] = 50.
    self.assertAllClose(diagnostics.effective_sample_size(log_weights),
                        [1., 1.], rtol=1e-6)

  def test_m_equal_weights_and_zeros_give_m(self):
    log_weights = np.full([64, 3], -np.inf)
    for column, count in enumerate([1, 5, 64]):
      log_weights[:count, column] = -12.
    self.assertAllClose(diagnostics.effective_sample_size(log_weights),
                        [1., 5., 64.], rtol=1e-12)

  def test_matches_the_direct_formula_and_axis(self):
    log_weights = np.random.RandomState(0).randn(7, 300) * 2.  # [B, K]
    weights = np.exp(log_weights)
    direct = np.sum(weights, 1)**2 / np.sum(weights**2, 1)
    self.assertAllClose(
        diagnostics.effective_sample_size(log_weights, axis=1), direct,
        rtol=1e-12)

  def test_is_shift_invariant_where_exp_would_overflow(self):
    log_weights = np.random.RandomState(1).randn(200, 4).astype(np.float32)
    reference = diagnostics.effective_sample_size(log_weights)
    for shift in (-1e4, 1e4):  # exp(+-1e4) over/underflows in float32.
      self.assertAllClose(
          diagnostics.effective_sample_size(log_weights + shift),
          reference, rtol=1e-3)

  def test_from_sums_equals_from_weights(self):
    log_weights = np.random.RandomState(2).randn(100, 5) - 80.
    self.assertAllClose(
        diagnostics.effective_sample_size_from_sums(
            tf.reduce_logsumexp(log_weights, 0),
            tf.reduce_logsumexp(2 * log_weights, 0)),
        diagnostics.effective_sample_size(log_weights), rtol=1e-12)


class SummarizeEffectiveSampleSizeTest(tf.test.TestCase,
                                       parameterized.TestCase):

  def test_known_values(self):
    summary = diagnostics.summarize_effective_sample_size(
        [1., 9., 50., 200.], num_importance_samples=1000)
    self.assertEqual(summary['threshold'], 10.)  # 1% of K by default
    self.assertEqual(summary['fraction_below_threshold'], 0.5)
    self.assertEqual(summary['mean'], 65.)
    self.assertEqual(summary['median'], 29.5)
    self.assertEqual(summary['min'], 1.)
    self.assertAllClose(summary['mean_fraction'], 0.065)
    self.assertEqual(summary['num_examples'], 4)
    summary = diagnostics.summarize_effective_sample_size(
        [1., 9., 50., 200.], 1000, threshold_fraction=0.1)
    self.assertEqual(summary['fraction_below_threshold'], 0.75)

  @parameterized.parameters(
      dict(effective_sample_sizes=[], name='effective_sample_sizes'),
      dict(effective_sample_sizes=[[1.]], name='effective_sample_sizes'),
      dict(num_importance_samples=0, name='num_importance_samples'),
      dict(threshold_fraction=0., name='threshold_fraction'),
      dict(threshold_fraction=1.5, name='threshold_fraction'),
      dict(threshold_fraction='x', name='threshold_fraction'))
  def test_bad_arguments_are_refused_by_name(self, name, **kwargs):
    arguments = dict(effective_sample_sizes=[3.], num_importance_samples=10)
    arguments.update(kwargs)
    with self.assertRaisesRegex(ValueError, name):
      diagnostics.summarize_effective_sample_size(**arguments)


class LinearGaussianModel:
  """z ~ N(0, I_2), x | z ~ N(W z + b, 0.25 I_4), float64: p(z|x) is known."""

  def __init__(self, num_examples=12):
    rng = np.random.RandomState(0)
    self.weights, self.bias = rng.randn(4, 2), rng.randn(4)
    self.data = (rng.randn(num_examples, 2) @ self.weights.T + self.bias +
                 0.5 * rng.randn(num_examples, 4))
    self.covariance = np.linalg.inv(np.eye(2) +
                                    self.weights.T @ self.weights / 0.25)
    self.log_marginal = stats.multivariate_normal(
        self.bias, self.weights @ self.weights.T + 0.25 * np.eye(4)).logpdf(
            self.data)
    self.prior = tfd.MultivariateNormalDiag(loc=tf.zeros([2], tf.float64))

  def _mean(self, images):
    return tf.linalg.matmul(images - self.bias,
                            self.weights @ self.covariance / 0.25)

  def exact_posterior(self, images):
    return tfd.MultivariateNormalTriL(
        loc=self._mean(images),
        scale_tril=np.linalg.cholesky(self.covariance))

  def worse_posterior(self, images):
    return tfd.MultivariateNormalDiag(
        loc=self._mean(images) + 0.4,
        scale_diag=np.sqrt(np.diag(self.covariance)) * 1.3)

  def decode(self, latents):
    return tfd.Independent(tfd.Normal(
        tf.linalg.matvec(self.weights, latents) + self.bias,
        tf.constant(0.5, tf.float64)), 1)


class ImportanceSamplingStatisticsTest(tf.test.TestCase,
                                       parameterized.TestCase):

  @parameterized.parameters(True, False)
  def test_exact_posterior_gives_equal_weights(self, jit_compile):
    model = LinearGaussianModel()
    statistics = evaluation.importance_sampling_statistics(
        model.data, model.exact_posterior, model.decode, model.prior,
        num_importance_samples=300, samples_per_chunk=70, batch_size=5,
        jit_compile=jit_compile)
    # Every weight is p(x): ESS = K, and ELBO = log p(x) = the estimate.
    self.assertAllClose(statistics.effective_sample_size, [300.] * 12,
                        rtol=1e-8)
    self.assertAllClose(statistics.elbo, model.log_marginal, atol=1e-9)
    self.assertAllClose(statistics.log_likelihood, model.log_marginal,
                        atol=1e-9)

  @parameterized.parameters((None, None), (300, 12), (70, 5), (1, 7))
  def test_equals_the_same_quantities_from_the_stored_weights(
      self, samples_per_chunk, batch_size):
    # The draw is the one `sample_latents_per_example` reproduces, so the
    # log-weights can be formed in full, [K, N], and reduced directly.
    model = LinearGaussianModel()
    statistics = evaluation.importance_sampling_statistics(
        model.data, model.worse_posterior, model.decode, model.prior,
        num_importance_samples=300, samples_per_chunk=samples_per_chunk,
        batch_size=batch_size, seed=4, jit_compile=False)
    approx_posterior = model.worse_posterior(model.data)
    latents = evaluation.sample_latents_per_example(
        approx_posterior, 300, seed=4, example_indices=np.arange(12))
    log_weights = (model.decode(latents).log_prob(model.data) +
                   model.prior.log_prob(latents) -
                   approx_posterior.log_prob(latents))  # [K, N]
    self.assertAllClose(statistics.log_likelihood,
                        objectives.log_mean_exp(log_weights), atol=1e-10)
    self.assertAllClose(statistics.elbo, tf.reduce_mean(log_weights, 0),
                        atol=1e-10)
    self.assertAllClose(statistics.effective_sample_size,
                        diagnostics.effective_sample_size(log_weights),
                        rtol=1e-10)
    self.assertAllLess(statistics.effective_sample_size, 300.)

  @parameterized.parameters(True, False)
  def test_log_likelihood_is_the_estimator_s(self, jit_compile):
    model = LinearGaussianModel()
    kwargs = dict(images=model.data, encode=model.worse_posterior,
                  decode=model.decode, prior=model.prior,
                  num_importance_samples=500, samples_per_chunk=64,
                  batch_size=5, seed=9, jit_compile=jit_compile)
    self.assertAllClose(
        evaluation.importance_sampling_statistics(**kwargs).log_likelihood,
        evaluation.importance_sampled_log_likelihood(**kwargs),
        atol=1e-12, rtol=0)

  def test_encoder_inputs_replace_the_images_for_the_proposal(self):
    model = LinearGaussianModel()
    means = model._mean(model.data).numpy()  # pylint: disable=protected-access
    scale_tril = np.linalg.cholesky(model.covariance)

    def posterior_from_means(batch_means):
      return tfd.MultivariateNormalTriL(loc=batch_means,
                                        scale_tril=scale_tril)

    kwargs = dict(images=model.data, decode=model.decode, prior=model.prior,
                  num_importance_samples=50, batch_size=5, seed=2,
                  jit_compile=False)
    from_inputs = evaluation.importance_sampling_statistics(
        encode=posterior_from_means, encoder_inputs=means, **kwargs)
    from_images = evaluation.importance_sampling_statistics(
        encode=model.exact_posterior, **kwargs)
    for got, expected in zip(from_inputs, from_images):
      self.assertAllClose(got, expected, atol=1e-10)
    with self.assertRaisesRegex(ValueError, 'encoder_inputs'):
      evaluation.importance_sampling_statistics(
          encode=posterior_from_means, encoder_inputs=means[:3], **kwargs)


if __name__ == '__main__':
  tf.test.main()
