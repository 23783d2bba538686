"""Tests for tfp_vae.evaluation: identities and known values, not snapshots."""

import json

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers as dl
from tfp_vae import evaluation
from tfp_vae import objectives
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

_DATA_DIM = 5
_LATENT_DIM = 2
_NOISE_SCALE = 0.5


class LinearGaussianModel:
  """z ~ N(0, I_2), x | z ~ N(W z + b, sigma^2 I_5): log p(x) is known.

  ```none
  p(x)     = N(x; b, W W^T + sigma^2 I)
  p(z | x) = N(z; cov @ W^T (x - b) / sigma^2, cov),
             cov = (I + W^T W / sigma^2)^-1
  ```

  With `orthogonal=True` the columns of W are orthogonal, so the exact
  posterior's covariance is diagonal.
  """

  def __init__(self, dtype, num_examples=40, orthogonal=False, seed=0):
    rng = np.random.RandomState(seed)
    if orthogonal:
      basis, _ = np.linalg.qr(rng.randn(_DATA_DIM, _LATENT_DIM))
      weights = basis * np.array([2.0, 0.7])
    else:
      weights = rng.randn(_DATA_DIM, _LATENT_DIM)
    bias = rng.randn(_DATA_DIM)
    latents = rng.randn(num_examples, _LATENT_DIM)
    data = (latents @ weights.T + bias +
            _NOISE_SCALE * rng.randn(num_examples, _DATA_DIM))
    self.dtype = dtype
    self.weights, self.bias, self.data = weights, bias, data.astype(dtype)
    # The exact answers, in float64 with numpy/scipy only.
    self.log_marginal = stats.multivariate_normal(
        bias, weights @ weights.T + _NOISE_SCALE**2 * np.eye(_DATA_DIM)
    ).logpdf(data.astype(np.float64))
    self.posterior_covariance = np.linalg.inv(
        np.eye(_LATENT_DIM) + weights.T @ weights / _NOISE_SCALE**2)
    self.prior = tfd.MultivariateNormalDiag(
        loc=tf.zeros([_LATENT_DIM], dtype), scale_diag=tf.ones([_LATENT_DIM],
                                                               dtype))

  def posterior_mean(self, images):
    projection = (self.weights @ self.posterior_covariance /
                  _NOISE_SCALE**2).astype(self.dtype)
    return tf.linalg.matmul(images - self.bias.astype(self.dtype), projection)

  def exact_posterior(self, images):
    return tfd.MultivariateNormalTriL(
        loc=self.posterior_mean(images),
        scale_tril=np.linalg.cholesky(self.posterior_covariance).astype(
            self.dtype))

  def exact_posterior_as_independent_normal(self, images):
    # Not a MultivariateNormalLinearOperator: takes the generic sample path.
    return tfd.Independent(
        tfd.Normal(self.posterior_mean(images),
                   np.sqrt(np.diag(self.posterior_covariance)).astype(
                       self.dtype)), 1)

  def worse_posterior(self, images):
    """Shifted mean, inflated diagonal scale: a poor proposal."""
    return tfd.MultivariateNormalDiag(
        loc=self.posterior_mean(images) + 0.5,
        scale_diag=1.5 * np.sqrt(np.diag(self.posterior_covariance)).astype(
            self.dtype))

  def decode(self, latents):
    loc = tf.linalg.matvec(self.weights.astype(self.dtype),
                           latents) + self.bias.astype(self.dtype)
    return tfd.Independent(tfd.Normal(loc, tf.constant(_NOISE_SCALE,
                                                       self.dtype)), 1)


def _inverse_softplus(values):
  return np.log(np.expm1(values))


def low_rank_exact_posterior(model, rank=_LATENT_DIM):
  """p(z|x) as a `LowRankGaussianPosterior` with R = D: diag(d) + V V^T.

  d is half the covariance's smallest eigenvalue, so the remainder
  `cov - diag(d)` is positive definite and V is its Cholesky factor.
  """
  covariance = model.posterior_covariance
  diag_variance = np.full(
      _LATENT_DIM, 0.5 * np.min(np.linalg.eigvalsh(covariance)))
  factor = np.linalg.cholesky(covariance - np.diag(diag_variance))[:, :rank]
  layer = dl.LowRankGaussianPosterior(_LATENT_DIM, rank, min_scale=0.0,
                                      factor_scale=1.0, dtype=model.dtype)

  def encode(images):
    loc = model.posterior_mean(images)  # [B, D]
    constant = np.concatenate([_inverse_softplus(np.sqrt(diag_variance)),
                               factor.reshape([-1])]).astype(model.dtype)
    return layer(tf.concat(
        [loc, tf.broadcast_to(constant, [tf.shape(loc)[0], constant.size])],
        axis=-1))
  return encode


def _assign_masked(weights, rng):
  """Random values, masked as MADE masks them (its kernels' constraints:
  TFP applies the masks at initialisation and after each optimizer update,
  not in the forward pass)."""
  for weight in weights:
    weight.assign(0.5 * rng.randn(*weight.shape))
    if weight.constraint is not None:
      weight.assign(weight.constraint(weight))


def iaf_posterior(model, flow_weights_seed=None):
  """A diagonal base at p(z|x)'s mean and marginal scales, through 2 IAF steps.

  With `flow_weights_seed=None` the networks output zero (a fresh layer), so
  q is that diagonal Gaussian; otherwise their weights are random.
  """
  layer = dl.InverseAutoregressiveFlowPosterior(
      _LATENT_DIM, flow_steps=2, flow_hidden_units=(8,), min_scale=0.0,
      dtype=model.dtype)
  if flow_weights_seed is not None:
    _assign_masked(layer.trainable_weights, np.random.RandomState(
        flow_weights_seed))
  raw_scale = _inverse_softplus(np.sqrt(np.diag(model.posterior_covariance)))

  def encode(images):
    loc = model.posterior_mean(images)  # [B, D]
    constant = np.concatenate([raw_scale, np.zeros(_LATENT_DIM)]).astype(
        model.dtype)  # The raw scale and a zero context h(x).
    return layer(tf.concat(
        [loc, tf.broadcast_to(constant, [tf.shape(loc)[0], constant.size])],
        axis=-1))
  return encode


def iaf_exact_posterior(model, seed=0):
  """p(z|x) of the general (non-diagonal) model as a one-step IAF.

  The MADE is linear (`activation='linear'`, random non-zero weights) and
  its log-scale outputs get no weight from the hidden units, so the step is
  affine in its input u ~ N(loc, diag(scale)^2):

  ```none
  z = (S + A) u + c,   S = diag(2 sigmoid(s)), A strictly lower triangular
  q = N((S + A) loc + c, M M^T),   M = (S + A) diag(scale)
  ```

  M is lower triangular with a positive diagonal, so it is p(z|x)'s
  Cholesky factor L exactly when scale_i = L_ii / S_ii and A = L's strict
  lower part / scale (set by rescaling the shift's output column); then
  loc = (S + A)^-1 (m(x) - c). Returns `(encode, A)`.
  """
  assert _LATENT_DIM == 2  # A has one free entry, A[1, 0].
  layer = dl.InverseAutoregressiveFlowPosterior(
      _LATENT_DIM, flow_steps=1, flow_hidden_units=(8,), min_scale=0.0,
      activation='linear', dtype=model.dtype)
  network = layer.autoregressive_networks[0]
  rng = np.random.RandomState(seed)
  _assign_masked(network.weights, rng)
  output_kernel = network.weights[-3]  # [H, 2 * D], column 2 * i + p:
  # parameter p (0: shift, 1: raw log-scale) of coordinate i.
  output_kernel.assign(output_kernel * np.tile([1.0, 0.0], _LATENT_DIM))
  no_context = np.zeros([1, _LATENT_DIM], model.dtype)

  def shift_and_scale(u):
    params = network(np.asarray([u], model.dtype),
                     conditional_input=no_context).numpy()[0]  # [D, 2]
    return params[:, 0], 2.0 * (1.0 / (1.0 + np.exp(-params[:, 1])))

  cholesky = np.linalg.cholesky(model.posterior_covariance)
  _, scale_factor = shift_and_scale([0.0, 0.0])
  base_scale = np.diag(cholesky) / scale_factor
  slope = shift_and_scale([1.0, 0.0])[0][1] - shift_and_scale([0.0, 0.0])[0][1]
  wanted = cholesky[1, 0] / base_scale[0]
  output_kernel.assign(output_kernel * np.where(
      np.arange(2 * _LATENT_DIM) == 2 * 1 + 0, wanted / slope, 1.0))
  shift, scale_factor_again = shift_and_scale([0.0, 0.0])
  np.testing.assert_allclose(scale_factor_again, scale_factor)
  linear_map = np.diag(scale_factor) + np.array([[0.0, 0.0], [wanted, 0.0]])
  np.testing.assert_allclose(linear_map @ np.diag(base_scale), cholesky,
                             rtol=1e-12)
  raw_scale = _inverse_softplus(base_scale)

  def encode(images):
    base_loc = tf.linalg.matmul(
        model.posterior_mean(images) - shift.astype(model.dtype),
        np.linalg.inv(linear_map).T.astype(model.dtype))  # [B, D]
    constant = np.concatenate([raw_scale, np.zeros(_LATENT_DIM)]).astype(
        model.dtype)  # The raw scale and a zero context h(x).
    return layer(tf.concat(
        [base_loc, tf.broadcast_to(constant, [tf.shape(base_loc)[0],
                                              constant.size])], axis=-1))
  return encode, linear_map - np.diag(scale_factor)


def _small_vae(**overrides):
  settings = dict(image_shape=(8, 8, 1), latent_dim=2, hidden_units=(16,))
  settings.update(overrides)
  keras.utils.set_random_seed(0)
  return VariationalAutoencoder(ModelConfig(**settings))


def _binary_images(num_examples, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.rand(num_examples, 8, 8, 1) > 0.5).astype(np.float32)


class ImportanceSampledLogLikelihoodTest(tf.test.TestCase,
                                         parameterized.TestCase):

  @parameterized.product(dtype=[np.float32, np.float64],
                         num_importance_samples=[1, 10, 1000])
  def test_exact_posterior_recovers_log_marginal(self, dtype,
                                                 num_importance_samples):
    # With q = p(z|x) every importance weight equals p(x) exactly.
    model = LinearGaussianModel(dtype)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, model.exact_posterior, model.decode, model.prior,
        num_importance_samples=num_importance_samples, batch_size=16, seed=1,
        jit_compile=False)
    self.assertEqual(estimate.shape, (40,))
    tolerance = 2e-4 if dtype == np.float32 else 1e-9
    self.assertAllClose(estimate, model.log_marginal, atol=tolerance, rtol=0)

  def test_exact_posterior_recovers_log_marginal_under_xla(self):
    model = LinearGaussianModel(np.float32)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, model.exact_posterior, model.decode, model.prior,
        num_importance_samples=1000, samples_per_chunk=128, batch_size=16,
        jit_compile=True)
    self.assertAllClose(estimate, model.log_marginal, atol=2e-4, rtol=0)

  @parameterized.parameters(True, False)
  def test_generic_posterior_path_is_exact_and_reproducible(self,
                                                            jit_compile):
    # Independent(Normal) is sampled with `q.sample`; W has orthogonal
    # columns, so the exact posterior is diagonal and still gives log p(x).
    model = LinearGaussianModel(np.float64, orthogonal=True)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, model.exact_posterior_as_independent_normal,
        model.decode, model.prior, num_importance_samples=50,
        samples_per_chunk=20, batch_size=16, jit_compile=jit_compile)
    self.assertAllClose(estimate, model.log_marginal, atol=1e-9, rtol=0)

  @parameterized.parameters(True, False)
  def test_low_rank_posterior_with_full_rank_recovers_log_marginal(
      self, jit_compile):
    # R = D: diag(d) + V V^T holds any covariance, the exact one included.
    model = LinearGaussianModel(np.float64)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, low_rank_exact_posterior(model), model.decode, model.prior,
        num_importance_samples=20, batch_size=16, seed=1,
        jit_compile=jit_compile)
    self.assertAllClose(estimate, model.log_marginal, atol=1e-8, rtol=0)

  @parameterized.parameters(True, False)
  def test_iaf_posterior_recovers_log_marginal_when_exact(self, jit_compile):
    # W with orthogonal columns: p(z|x) is diagonal, which the IAF family
    # holds (networks at zero); its log q comes from the forward pass.
    model = LinearGaussianModel(np.float64, orthogonal=True)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, iaf_posterior(model), model.decode, model.prior,
        num_importance_samples=20, batch_size=16, seed=1,
        jit_compile=jit_compile)
    self.assertAllClose(estimate, model.log_marginal, atol=1e-8, rtol=0)

  @parameterized.parameters(True, False)
  def test_iaf_with_non_zero_networks_recovers_log_marginal(self,
                                                            jit_compile):
    # A correlated p(z|x), held by a one-step IAF whose MADE is non-zero
    # (Kingma et al. 2016, App. A: a linear IAF step is a full-covariance
    # Gaussian); log q of each sample comes from the pass that drew it.
    model = LinearGaussianModel(np.float64)
    encode, strictly_lower = iaf_exact_posterior(model)
    self.assertGreater(abs(strictly_lower[1, 0]), 0.05)
    covariance = model.posterior_covariance
    self.assertGreater(  # Correlated: no diagonal q holds p(z|x).
        abs(covariance[0, 1]) / np.sqrt(covariance[0, 0] * covariance[1, 1]),
        0.1)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, encode, model.decode, model.prior,
        num_importance_samples=20, batch_size=16, seed=1,
        jit_compile=jit_compile)
    self.assertAllClose(estimate, model.log_marginal, atol=1e-8, rtol=0)
    # The same samples' log q equals the exact posterior's log density.
    approx_posterior = encode(model.data)
    latents = objectives.sample_latents(approx_posterior, 3, seed=[1, 2])
    self.assertAllClose(approx_posterior.log_prob(latents),
                        model.exact_posterior(model.data).log_prob(latents),
                        atol=1e-9, rtol=0)

  @parameterized.parameters('low_rank', 'iaf')
  def test_new_families_draw_per_example_noise(self, family):
    # Example i's noise comes from fold_in(seed, i) for these families too
    # (D + R numbers for the low-rank one), so batching changes nothing.
    model = LinearGaussianModel(np.float64)
    encode = (low_rank_exact_posterior(model, rank=1) if family == 'low_rank'
              else iaf_posterior(model, flow_weights_seed=3))
    kwargs = dict(images=model.data, encode=encode, decode=model.decode,
                  prior=model.prior, num_importance_samples=30, seed=5,
                  jit_compile=False)
    reference = evaluation.importance_sampled_log_likelihood(
        **kwargs, samples_per_chunk=30, batch_size=40)
    estimate = evaluation.importance_sampled_log_likelihood(
        **kwargs, samples_per_chunk=7, batch_size=3)
    self.assertAllClose(estimate, reference, atol=1e-10, rtol=0)
    # And the K = 1 estimate is IWAE_1 on `sample_latents_per_example`.
    one = evaluation.importance_sampled_log_likelihood(
        **{**kwargs, 'num_importance_samples': 1}, batch_size=7)
    approx_posterior = encode(model.data)
    latents = evaluation.sample_latents_per_example(
        approx_posterior, 1, seed=5, example_indices=np.arange(40))
    terms = objectives.iwae_bound(model.data, approx_posterior, model.prior,
                                  model.decode, latents)
    self.assertAllClose(one, terms.iwae, atol=1e-8, rtol=0)

  def test_worse_posterior_approaches_log_marginal_from_below(self):
    model = LinearGaussianModel(np.float64, num_examples=100)
    means = []
    for num_importance_samples in (1, 10, 1000):
      estimate = evaluation.importance_sampled_log_likelihood(
          model.data, model.worse_posterior, model.decode, model.prior,
          num_importance_samples=num_importance_samples, seed=2,
          jit_compile=False)
      means.append(np.mean(estimate))
    exact = np.mean(model.log_marginal)
    self.assertLess(means[0], means[1])
    self.assertLess(means[1], means[2])
    self.assertLessEqual(means[2], exact + 0.01)
    # A poor q with K = 1 is far below; with K = 1000 it is close.
    self.assertGreater(exact - means[0], 0.5)
    self.assertLess(exact - means[2], 0.1)

  @parameterized.parameters((None, None), (7, 3), (1000, 100), (64, 1),
                            (1, 40), (333, 17), (1000, 7))
  def test_chunking_and_batching_do_not_change_the_draw(self, samples_per_chunk,
                                                        batch_size):
    # Example i's samples come from fold_in(seed, i): the same numbers for any
    # batch size and chunk size, up to the order of floating-point sums.
    model = LinearGaussianModel(np.float64)
    kwargs = dict(images=model.data, encode=model.worse_posterior,
                  decode=model.decode, prior=model.prior,
                  num_importance_samples=1000, seed=5, jit_compile=False)
    reference = evaluation.importance_sampled_log_likelihood(
        **kwargs, samples_per_chunk=1000, batch_size=40)
    estimate = evaluation.importance_sampled_log_likelihood(
        **kwargs, samples_per_chunk=samples_per_chunk, batch_size=batch_size)
    self.assertAllClose(estimate, reference, atol=1e-10, rtol=0)

  def test_jit_and_no_jit_agree(self):
    model = LinearGaussianModel(np.float32)
    kwargs = dict(images=model.data, encode=model.worse_posterior,
                  decode=model.decode, prior=model.prior,
                  num_importance_samples=100, samples_per_chunk=30, seed=5)
    self.assertAllClose(
        evaluation.importance_sampled_log_likelihood(**kwargs,
                                                     jit_compile=True),
        evaluation.importance_sampled_log_likelihood(**kwargs,
                                                     jit_compile=False),
        atol=1e-4, rtol=0)

  def test_seed_controls_the_draw(self):
    model = LinearGaussianModel(np.float64)
    kwargs = dict(images=model.data, encode=model.worse_posterior,
                  decode=model.decode, prior=model.prior,
                  num_importance_samples=10, jit_compile=False)
    first = evaluation.importance_sampled_log_likelihood(**kwargs, seed=3)
    again = evaluation.importance_sampled_log_likelihood(**kwargs, seed=3)
    other = evaluation.importance_sampled_log_likelihood(**kwargs, seed=4)
    self.assertAllEqual(first, again)
    self.assertGreater(np.max(np.abs(first - other)), 1e-3)

  @parameterized.parameters(np.float32, np.float64)
  def test_one_sample_equals_iwae_bound_on_the_same_latents(self, dtype):
    # IWAE_1 = the single-sample ELBO with the Monte Carlo KL.
    model = LinearGaussianModel(dtype)
    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, model.worse_posterior, model.decode, model.prior,
        num_importance_samples=1, batch_size=7, seed=11, jit_compile=False)
    approx_posterior = model.worse_posterior(model.data)
    latents = evaluation.sample_latents_per_example(
        approx_posterior, 1, seed=11, example_indices=np.arange(40))
    terms = objectives.iwae_bound(model.data, approx_posterior, model.prior,
                                  model.decode, latents)
    self.assertAllClose(estimate, terms.iwae, atol=1e-4, rtol=1e-6)
    self.assertAllClose(estimate, terms.elbo, atol=1e-4, rtol=1e-6)

  def test_falls_back_without_jit_when_xla_cannot_compile(self):
    model = LinearGaussianModel(np.float64)

    def decode_with_numpy(latents):
      # tf.numpy_function cannot be compiled by XLA.
      loc = tf.numpy_function(lambda z: z, [latents], tf.float64)
      loc = tf.ensure_shape(loc, latents.shape)
      return model.decode(loc)

    estimate = evaluation.importance_sampled_log_likelihood(
        model.data, model.exact_posterior, decode_with_numpy, model.prior,
        num_importance_samples=5, jit_compile=True)
    self.assertAllClose(estimate, model.log_marginal, atol=1e-9, rtol=0)

  def test_is_at_least_the_elbo_for_a_random_vae(self):
    model = _small_vae()
    images = _binary_images(64)
    estimate = evaluation.importance_sampled_log_likelihood(
        images, model.encode, model.decode, model.prior_distribution(),
        num_importance_samples=200, seed=0, jit_compile=False)
    seed = tf.constant([0, 0], tf.int64)
    approx_posterior = model.encode(images)
    terms = objectives.elbo(
        images, approx_posterior, model.prior_distribution(), model.decode,
        objectives.sample_latents(approx_posterior, 1, seed))
    self.assertTrue(np.all(np.isfinite(estimate)))
    self.assertGreater(np.mean(estimate), np.mean(terms.elbo))

  def test_point_mass_posterior_is_refused(self):
    model = _small_vae(posterior='deterministic')
    with self.assertRaisesRegex(ValueError, 'point mass'):
      evaluation.importance_sampled_log_likelihood(
          _binary_images(4), model.encode, model.decode,
          model.prior_distribution(), num_importance_samples=10)

  @parameterized.parameters(
      dict(num_importance_samples=0), dict(num_importance_samples=2.5),
      dict(samples_per_chunk=0), dict(batch_size=-1), dict(seed=1.5))
  def test_bad_arguments_are_refused_by_name(self, **kwargs):
    model = LinearGaussianModel(np.float64)
    settings = dict(num_importance_samples=10)
    settings.update(kwargs)
    with self.assertRaisesRegex(ValueError, list(kwargs)[0]):
      evaluation.importance_sampled_log_likelihood(
          model.data, model.exact_posterior, model.decode, model.prior,
          **settings)


class SummaryStatisticsTest(tf.test.TestCase, parameterized.TestCase):

  def test_summarize_known_values(self):
    summary = evaluation.summarize([1.0, 2.0, 3.0, 4.0])
    self.assertEqual(summary['num_examples'], 4)
    self.assertAllClose(summary['mean'], 2.5)
    self.assertAllClose(summary['standard_error'],
                        np.std([1.0, 2.0, 3.0, 4.0], ddof=1) / 2.0)
    self.assertIsInstance(summary['mean'], float)

  def test_summarize_one_value_has_no_standard_error(self):
    self.assertEqual(evaluation.summarize([3.0]),
                     {'mean': 3.0, 'standard_error': None, 'num_examples': 1})
    with self.assertRaisesRegex(ValueError, 'at least one'):
      evaluation.summarize([])

  @parameterized.parameters((0.01, 2), (0.5, 1), (0.0001, 3), (2.0, 0))
  def test_active_units_known_values(self, threshold, expected):
    # +-1 alternating has variance exactly 1 (ddof=0); columns scaled to
    # variances 1, 0.02 and 0.001.
    pattern = np.tile([1.0, -1.0], 50)[:, np.newaxis]
    latent_means = 3.0 + pattern * np.sqrt([1.0, 0.02, 0.001])
    self.assertEqual(
        evaluation.active_units(latent_means, threshold=threshold), expected)

  def test_active_units_rejects_wrong_rank(self):
    with self.assertRaisesRegex(ValueError, 'latent_means'):
      evaluation.active_units(np.zeros([5]))


class PosteriorCorrelationStatsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(np.float32, np.float64)
  def test_known_correlation_matrix(self, dtype):
    correlation = np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2],
                            [-0.3, 0.2, 1.0]])
    scales = np.diag([1.0, 2.0, 0.5])
    covariance = scales @ correlation @ scales
    locs = np.random.RandomState(0).randn(4, 3)
    approx_posterior = tfd.MultivariateNormalTriL(
        loc=locs.astype(dtype),
        scale_tril=np.linalg.cholesky(covariance).astype(dtype))
    result = evaluation.posterior_correlation_stats(approx_posterior)
    self.assertAllClose(result['mean_abs_offdiag_correlation'],
                        (0.5 + 0.3 + 0.2) / 3, atol=1e-6)
    # Same means and variances: KL(q || q_diag) = -0.5 * log det(R).
    self.assertAllClose(result['kl_to_diagonal'],
                        -0.5 * np.linalg.slogdet(correlation)[1], atol=1e-5)

  @parameterized.parameters('diag', 'tril_with_diagonal_scale', 'one_dim')
  def test_diagonal_posterior_gives_zero(self, kind):
    rng = np.random.RandomState(1)
    scale = rng.rand(6, 3) + 0.5
    if kind == 'diag':
      approx_posterior = tfd.MultivariateNormalDiag(rng.randn(6, 3), scale)
    elif kind == 'tril_with_diagonal_scale':
      approx_posterior = tfd.MultivariateNormalTriL(
          rng.randn(6, 3), tf.linalg.diag(scale))
    else:
      approx_posterior = tfd.MultivariateNormalDiag(rng.randn(6, 1),
                                                    scale[:, :1])
    result = evaluation.posterior_correlation_stats(approx_posterior)
    self.assertAllClose(result['mean_abs_offdiag_correlation'], 0.0,
                        atol=1e-12)
    self.assertAllClose(result['kl_to_diagonal'], 0.0, atol=1e-10)

  def test_point_mass_is_refused(self):
    with self.assertRaisesRegex(ValueError, 'point mass'):
      evaluation.posterior_correlation_stats(
          tfd.VectorDeterministic(tf.zeros([2, 3])))

  def test_low_rank_posterior_gives_its_covariance_s_values(self):
    # The same covariance as diag(d) + V V^T (R = D = 3): the same numbers as
    # the full-covariance posterior, computed in closed form.
    correlation = np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2],
                            [-0.3, 0.2, 1.0]])
    scales = np.diag([1.0, 2.0, 0.5])
    covariance = scales @ correlation @ scales
    diag_variance = np.full(3, 0.5 * np.min(np.linalg.eigvalsh(covariance)))
    factor = np.linalg.cholesky(covariance - np.diag(diag_variance))
    approx_posterior = tfd.MultivariateNormalDiagPlusLowRankCovariance(
        loc=np.zeros([4, 3]), cov_diag_factor=diag_variance,
        cov_perturb_factor=factor)
    result = evaluation.posterior_correlation_stats(approx_posterior)
    self.assertAllClose(result['mean_abs_offdiag_correlation'],
                        (0.5 + 0.3 + 0.2) / 3, atol=1e-10)
    self.assertAllClose(result['kl_to_diagonal'],
                        -0.5 * np.linalg.slogdet(correlation)[1], atol=1e-10)

  def test_iaf_posterior_needs_samples_and_estimates_from_them(self):
    # A fresh IAF layer (networks at zero) is its diagonal base: the Monte
    # Carlo correlations and KL to the diagonal Gaussian are ~0, and the
    # moments are the samples' own.
    layer = dl.InverseAutoregressiveFlowPosterior(
        3, flow_steps=2, flow_hidden_units=(8,), dtype='float64')
    params = np.random.RandomState(0).randn(5, 9)
    approx_posterior = layer(params)
    with self.assertRaisesRegex(ValueError, 'latents'):
      evaluation.posterior_correlation_stats(approx_posterior)
    latents = objectives.sample_latents(
        approx_posterior, 4000, tf.constant([1, 2], tf.int64))  # [S, B, D]
    mean, covariance = evaluation.metrics.posterior_moments(
        approx_posterior, latents)
    self.assertAllClose(mean, np.mean(latents, axis=0), atol=1e-12)
    self.assertAllClose(covariance[0], np.cov(latents[:, 0, :].numpy().T),
                        atol=1e-10)
    result = evaluation.posterior_correlation_stats(approx_posterior, latents)
    # Sample correlations of independent coordinates: ~1/sqrt(S) = 0.016.
    self.assertLess(result['mean_abs_offdiag_correlation'], 0.05)
    self.assertLess(abs(result['kl_to_diagonal']), 0.01)


class EvaluateModelTest(tf.test.TestCase, parameterized.TestCase):

  _KEYS = ('log_likelihood', 'log_likelihood_stderr', 'elbo', 'elbo_stderr',
           'kl', 'kl_stderr', 'nll', 'nll_stderr', 'gap', 'gap_stderr',
           'active_units', 'mean_abs_offdiag_correlation', 'kl_to_diagonal',
           'num_examples', 'num_importance_samples', 'latent_dim',
           'posterior', 'effective_sample_size', 'gaps')
  _NUMBERS = _KEYS[:13]

  @parameterized.named_parameters(
      ('full_cov', dict(posterior='full_cov')),
      ('diag', dict(posterior='diag')),
      ('low_rank', dict(posterior='low_rank', posterior_rank=1)),
      ('iaf', dict(posterior='iaf', kl='mc', flow_hidden_units=(8,))),
      ('mixture_prior_mc_kl', dict(prior='mixture', kl='mc')),
      ('iwae_objective', dict(objective='iwae', num_samples=3)),
  )
  def test_returns_every_metric_as_json(self, overrides):
    model = _small_vae(**overrides)
    results = evaluation.evaluate_model(
        model, _binary_images(48), num_importance_samples=100, batch_size=20,
        seed=0, jit_compile=False)
    self.assertCountEqual(results, self._KEYS)
    json.dumps(results, allow_nan=False)
    self.assertEqual(results['num_examples'], 48)
    self.assertEqual(results['num_importance_samples'], 100)
    for name in self._NUMBERS:
      self.assertIsInstance(results[name], (float, int), name)
      self.assertTrue(np.isfinite(results[name]), name)
    self.assertAllClose(results['elbo'], -results['kl'] - results['nll'],
                        atol=1e-3)
    self.assertAllClose(results['gap'],
                        results['log_likelihood'] - results['elbo'],
                        atol=1e-3)
    self.assertGreater(results['gap'], -2 * results['gap_stderr'])
    self.assertBetween(results['active_units'], 0, 2)
    ess = results['effective_sample_size']
    self.assertEqual(ess['num_examples'], 48)
    self.assertEqual(ess['num_importance_samples'], 100)
    self.assertBetween(ess['min'], 1. - 1e-6, ess['median'] + 1e-9)
    self.assertBetween(ess['median'], ess['min'], 100. + 1e-6)
    self.assertEqual(ess['threshold'], 1.)  # 1% of K = 100.
    self.assertIsNone(results['gaps'])
    if overrides.get('posterior') == 'diag':
      self.assertAllClose(results['mean_abs_offdiag_correlation'], 0.0)
      self.assertAllClose(results['kl_to_diagonal'], 0.0, atol=1e-5)

  @parameterized.named_parameters(
      ('full_cov', dict()),
      # Its means and correlations are Monte Carlo: per-example noise too.
      ('iaf', dict(posterior='iaf', kl='mc', flow_hidden_units=(8,))))
  def test_batch_size_does_not_change_the_results(self, overrides):
    model = _small_vae(**overrides)
    images = _binary_images(30)
    first = evaluation.evaluate_model(model, images, num_importance_samples=50,
                                      batch_size=30, jit_compile=False)
    second = evaluation.evaluate_model(model, images, num_importance_samples=50,
                                       batch_size=7, jit_compile=False)
    for name, value in first.items():
      if isinstance(value, dict):
        self.assertAllClose(value, second[name], atol=1e-3, msg=name)
      elif isinstance(value, float):
        self.assertAllClose(value, second[name], atol=1e-4, msg=name)
      else:
        self.assertEqual(value, second[name], name)

  def test_zero_importance_samples_skips_the_estimate(self):
    results = evaluation.evaluate_model(_small_vae(), _binary_images(10),
                                        num_importance_samples=0,
                                        jit_compile=False)
    self.assertIsNone(results['log_likelihood'])
    self.assertIsNone(results['gap'])
    self.assertIsNone(results['num_importance_samples'])
    self.assertIsInstance(results['elbo'], float)

  def test_point_mass_model_reports_reconstruction_only(self):
    results = evaluation.evaluate_model(
        _small_vae(posterior='deterministic'), _binary_images(10),
        num_importance_samples=100, jit_compile=False)
    self.assertCountEqual(results, self._KEYS)
    json.dumps(results, allow_nan=False)
    self.assertIsNone(results['log_likelihood'])
    self.assertIsNone(results['elbo'])
    self.assertIsNone(results['gap'])
    self.assertIsInstance(results['nll'], float)
    self.assertGreater(results['nll'], 0.0)

  def test_ess_is_the_estimator_s(self):
    model = _small_vae()
    images = _binary_images(12)
    results = evaluation.evaluate_model(model, images,
                                        num_importance_samples=80, seed=4,
                                        jit_compile=False)
    statistics = evaluation.importance_sampling_statistics(
        images, model.encode, model.decode, model.prior_distribution(),
        num_importance_samples=80, seed=4, jit_compile=False)
    ess = statistics.effective_sample_size
    self.assertAllClose(results['effective_sample_size']['mean'],
                        np.mean(ess))
    self.assertAllClose(results['effective_sample_size']['min'], np.min(ess))
    self.assertAllClose(
        results['effective_sample_size']['fraction_below_threshold'],
        np.mean(ess < 0.8))
    self.assertAllClose(results['log_likelihood'],
                        np.mean(statistics.log_likelihood))

  def test_gap_examples_add_the_gap_report(self):
    results = evaluation.evaluate_model(
        _small_vae(posterior='full_cov'), _binary_images(20),
        num_importance_samples=60, seed=1, jit_compile=False,
        gap_examples=6, gap_max_steps=30, gap_samples=2)
    json.dumps(results, allow_nan=False)
    report = results['gaps']
    self.assertEqual(report['num_examples'], 6)
    self.assertEqual(report['settings']['num_importance_samples'], 60)
    self.assertEqual(report['settings']['max_steps'], 30)
    summary = report['summary']
    self.assertAllClose(summary['approximation_gap']['mean'] +
                        summary['amortization_gap']['mean'],
                        summary['inference_gap']['mean'], atol=1e-9)
    self.assertIn('amortization gap',
                  evaluation.format_gap_table(report))

  @parameterized.named_parameters(
      ('negative', dict(gap_examples=-1), 'gap_examples'),
      ('point_mass', dict(gap_examples=3, posterior='deterministic'),
       'deterministic'),
      ('without_estimate', dict(gap_examples=3, num_importance_samples=0),
       'num_importance_samples'))
  def test_bad_gap_settings_are_refused(self, kwargs, message):
    kwargs = dict(kwargs)
    model = _small_vae(posterior=kwargs.pop('posterior', 'diag'))
    with self.assertRaisesRegex(ValueError, message):
      evaluation.evaluate_model(model, _binary_images(4), **kwargs)

  def test_negative_importance_samples_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'num_importance_samples'):
      evaluation.evaluate_model(_small_vae(), _binary_images(4),
                                num_importance_samples=-1)


if __name__ == '__main__':
  tf.test.main()
