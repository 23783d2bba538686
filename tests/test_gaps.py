"""Tests for tfp_vae.evaluation.gaps and local_fit: the gap decomposition against closed forms.

The model is linear-Gaussian, so every quantity is known:

```none
z ~ N(0, I_D),  x | z ~ N(A z + c, s^2 I)
p(x)     = N(x; c, A A^T + s^2 I)
p(z | x) = N(z; Lambda^-1 A^T (x - c) / s^2, Lambda^-1),
           Lambda = I + A^T A / s^2
```

* full_cov: p(z|x) is in the family, so the approximation gap is 0.
* diag: the best diagonal Gaussian has precisions Lambda_ii (and the exact
  mean), and KL(q* || p(z|x)) = 0.5 * (sum_i log Lambda_ii - log det Lambda),
  the same for every x: that is the approximation gap.
* The "encoder" gives a diagonal q(z|x) with the exact mean shifted by half
  a marginal standard deviation in z[0] and 1.5 times the marginal scales, so KL(q || p(z|x))
  is known per example, and the amortization gap is
  KL(q || p(z|x)) - KL(q* || p(z|x)).

Tolerances: each fitted gap is a mean over 30 examples of a difference of
K=2000-sample estimates; with the fitted q* nearly exact the estimates'
Monte Carlo error is below 0.005 nats, and the fit stops within ~0.01 nats
of its optimum (the convergence tolerance), so 0.03 nats leaves room for
both and still fails for a wrong family (the diag gap here is 0.55 nats).
"""

import json

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers
from tfp_vae.evaluation import gaps
from tfp_vae.evaluation import local_fit
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

_LATENT_DIM = 2
_DATA_DIM = 5
_NOISE_SCALE = 0.5
_NUM_EXAMPLES = 30
_NUM_IMPORTANCE_SAMPLES = 2000
_ENCODER_SHIFT = np.array([0.5, 0.])
_ENCODER_SCALE_FACTOR = 1.5
_TOLERANCE = 0.03


class LinearGaussianModel:
  """z ~ N(0, I_2), x | z ~ N(A z + c, s^2 I_5), float64, with A's columns
  correlated so that the exact posterior is strongly correlated."""

  def __init__(self, num_examples=_NUM_EXAMPLES, seed=0):
    rng = np.random.RandomState(seed)
    first = rng.randn(_DATA_DIM)
    # Correlated columns: the exact posterior correlation is about -0.8.
    weights = np.stack([first, first + 1.5 * rng.randn(_DATA_DIM)], axis=1)
    bias = rng.randn(_DATA_DIM)
    latents = rng.randn(num_examples, _LATENT_DIM)
    self.weights, self.bias = weights, bias
    self.data = (latents @ weights.T + bias +
                 _NOISE_SCALE * rng.randn(num_examples, _DATA_DIM))
    self.precision = (np.eye(_LATENT_DIM) +
                      weights.T @ weights / _NOISE_SCALE**2)
    self.posterior_covariance = np.linalg.inv(self.precision)
    self.log_marginal = stats.multivariate_normal(
        bias, weights @ weights.T + _NOISE_SCALE**2 * np.eye(_DATA_DIM)
    ).logpdf(self.data)
    self.diag_approximation_gap = 0.5 * (
        np.sum(np.log(np.diag(self.precision))) -
        np.linalg.slogdet(self.precision)[1])
    self.prior = tfd.MultivariateNormalDiag(
        loc=tf.zeros([_LATENT_DIM], tf.float64),
        scale_diag=tf.ones([_LATENT_DIM], tf.float64))

  def posterior_mean(self, images):
    projection = self.weights @ self.posterior_covariance / _NOISE_SCALE**2
    return tf.linalg.matmul(images - self.bias, projection)

  def exact_posterior(self, images):
    return tfd.MultivariateNormalTriL(
        loc=self.posterior_mean(images),
        scale_tril=np.linalg.cholesky(self.posterior_covariance))

  def decode(self, latents):
    loc = tf.linalg.matvec(self.weights, latents) + self.bias
    return tfd.Independent(
        tfd.Normal(loc, tf.constant(_NOISE_SCALE, tf.float64)), 1)

  def encoder_for(self, layer):
    """An imperfect encoder of a layer's raw parameters.

    Its q(z|x) is diagonal, with the exact posterior's mean shifted by
    `_ENCODER_SHIFT` marginal standard deviations and scales
    `_ENCODER_SCALE_FACTOR` times the marginal standard deviations.
    """
    stddev = np.sqrt(np.diag(self.posterior_covariance))
    # softplus^-1 (the layers' default transform, min_scale 0).
    raw_scale = np.log(np.expm1(_ENCODER_SCALE_FACTOR * stddev))
    if isinstance(layer, distribution_layers.DiagonalGaussianPosterior):
      raw_scale_params = raw_scale
    else:
      raw_scale_params = tfp.bijectors.FillTriangular().inverse(
          np.diag(raw_scale)).numpy()

    def encode_params(images):
      mean = self.posterior_mean(images) + _ENCODER_SHIFT * stddev
      return tf.concat(
          [mean, tf.broadcast_to(raw_scale_params,
                                 [tf.shape(images)[0],
                                  raw_scale_params.shape[0]])], axis=-1)
    return encode_params


def _posterior_layer(family):
  if family == 'diag':
    return distribution_layers.DiagonalGaussianPosterior(
        _LATENT_DIM, min_scale=0., dtype='float64')
  return distribution_layers.FullCovarianceGaussianPosterior(
      _LATENT_DIM, min_scale=0., dtype='float64')


_REPORTS = {}


def _linear_gaussian_report(family):
  """One analysis per family, shared by the tests (each costs ~10 s)."""
  if family not in _REPORTS:
    model = LinearGaussianModel()
    layer = _posterior_layer(family)
    encode_params = model.encoder_for(layer)
    report = gaps.inference_gaps(
        model.data, encode_params, layer, model.decode, model.prior,
        num_importance_samples=_NUM_IMPORTANCE_SAMPLES, seed=1)
    _REPORTS[family] = (model, layer, encode_params, report)
  return _REPORTS[family]


class InferenceGapsLinearGaussianTest(tf.test.TestCase,
                                      parameterized.TestCase):

  @parameterized.parameters('diag', 'full_cov')
  def test_log_likelihood_matches_closed_form(self, family):
    model, _, _, report = _linear_gaussian_report(family)
    self.assertEqual(report.log_likelihood.shape, (_NUM_EXAMPLES,))
    self.assertAllClose(np.mean(report.log_likelihood),
                        np.mean(model.log_marginal), atol=0.01, rtol=0)
    # Per example the estimate is noisier: the diagonal q* under-covers the
    # correlated p(z|x), a heavy-tailed proposal, and the broad diagonal
    # q(z|x) wastes samples; both were off by up to ~0.08 nats at K=2000.
    self.assertAllClose(report.log_likelihood, model.log_marginal,
                        atol=0.15, rtol=0)

  def test_full_cov_approximation_gap_is_zero(self):
    _, _, _, report = _linear_gaussian_report('full_cov')
    self.assertAllClose(np.mean(report.approximation_gap), 0.,
                        atol=_TOLERANCE)

  def test_diag_approximation_gap_is_known(self):
    model, _, _, report = _linear_gaussian_report('diag')
    # The test is only meaningful when the gap is far above the tolerance.
    self.assertGreater(model.diag_approximation_gap, 10 * _TOLERANCE)
    self.assertAllClose(np.mean(report.approximation_gap),
                        model.diag_approximation_gap, atol=_TOLERANCE)

  @parameterized.parameters('diag', 'full_cov')
  def test_amortization_gap_is_known(self, family):
    model, layer, encode_params, report = _linear_gaussian_report(family)
    amortized = layer(encode_params(model.data))
    inference_gap = tfd.kl_divergence(
        amortized, model.exact_posterior(model.data)).numpy()  # [N]
    best_gap = model.diag_approximation_gap if family == 'diag' else 0.
    self.assertAllClose(np.mean(report.amortization_gap),
                        np.mean(inference_gap) - best_gap, atol=_TOLERANCE)
    # And per example, within 5 Monte Carlo standard errors of ELBO[q]
    # (std(log w) / sqrt(K), estimated from fresh samples of q), plus the
    # fit's tolerance: q is broad here, so its log-weights are spread.
    latents = amortized.sample(4000, seed=(7, 7))  # [4000, N, D]
    log_weights = (model.decode(latents).log_prob(model.data) +
                   model.prior.log_prob(latents) -
                   amortized.log_prob(latents))  # [4000, N]
    monte_carlo_error = (np.std(log_weights, axis=0) /
                         np.sqrt(_NUM_IMPORTANCE_SAMPLES))  # [N]
    error = np.abs(report.amortization_gap - (inference_gap - best_gap))
    self.assertAllLessEqual(error - (5 * monte_carlo_error + _TOLERANCE), 0.)

  @parameterized.parameters('diag', 'full_cov')
  def test_gaps_add_up_to_the_inference_gap(self, family):
    _, _, _, report = _linear_gaussian_report(family)
    self.assertAllClose(report.approximation_gap + report.amortization_gap,
                        report.log_likelihood - report.elbo_amortized,
                        atol=1e-10, rtol=0)
    self.assertAllClose(report.inference_gap,
                        report.log_likelihood - report.elbo_amortized,
                        atol=1e-10, rtol=0)

  @parameterized.parameters('diag', 'full_cov')
  def test_gaps_are_non_negative_up_to_monte_carlo_error(self, family):
    _, _, _, report = _linear_gaussian_report(family)
    summary = report.summary()
    for name in ('approximation_gap', 'amortization_gap'):
      entry = summary[name]
      self.assertGreater(entry['mean'],
                         -3 * entry['standard_error'] - 0.01, msg=name)
    self.assertAllGreater(report.amortization_gap, 0.)

  def test_full_cov_fit_finds_the_exact_posterior(self):
    model, layer, _, report = _linear_gaussian_report('full_cov')
    # Refit with the report's settings to get the parameters themselves.
    fit = local_fit.fit_local_posteriors(
        model.data, model.encoder_for(layer)(model.data).numpy(), layer,
        model.decode, model.prior, seed=1)
    fitted = layer(fit.params)
    self.assertAllClose(fitted.mean(), model.posterior_mean(model.data),
                        atol=0.02, rtol=0)
    self.assertAllClose(
        fitted.covariance(),
        np.broadcast_to(model.posterior_covariance,
                        [_NUM_EXAMPLES, _LATENT_DIM, _LATENT_DIM]),
        atol=0.02 * np.max(model.posterior_covariance), rtol=0)
    self.assertTrue(np.all(fit.converged))
    self.assertAllEqual(fit.num_steps, report.fit_num_steps)

  def test_exact_fit_gives_equal_importance_weights(self):
    _, _, _, report = _linear_gaussian_report('full_cov')
    # q* = p(z|x): every weight is p(x), so ESS = K; q(z|x) is worse.
    self.assertAllGreater(report.effective_sample_size_optimized,
                          0.95 * _NUM_IMPORTANCE_SAMPLES)
    self.assertLess(np.mean(report.effective_sample_size_amortized),
                    0.5 * _NUM_IMPORTANCE_SAMPLES)
    self.assertEqual(report.settings['tighter_proposal'], 'optimized')

  def test_report_dict_is_json_and_table_names_the_gaps(self):
    _, _, _, report = _linear_gaussian_report('diag')
    as_dict = json.loads(json.dumps(report.to_dict(per_example=True)))
    self.assertEqual(as_dict['num_examples'], _NUM_EXAMPLES)
    self.assertLen(as_dict['per_example']['approximation_gap'],
                   _NUM_EXAMPLES)
    self.assertAllClose(as_dict['summary']['approximation_gap']['mean'],
                        np.mean(report.approximation_gap))
    self.assertIn('effective_sample_size_optimized', as_dict['summary'])
    self.assertEqual(as_dict['settings']['num_importance_samples'],
                     _NUM_IMPORTANCE_SAMPLES)
    table = report.format_table(title='diag')
    for phrase in ('approximation gap', 'amortization gap', 'ESS of q*_x',
                   'local fit'):
      self.assertIn(phrase, table)
    self.assertIn(f'{np.mean(report.approximation_gap):.2f}', table)


class FitLocalPosteriorsTest(tf.test.TestCase, parameterized.TestCase):

  def _fit(self, **kwargs):
    model = LinearGaussianModel(num_examples=6)
    layer = _posterior_layer('diag')
    initial_params = model.encoder_for(layer)(model.data).numpy()
    return initial_params, local_fit.fit_local_posteriors(
        model.data, initial_params, layer, model.decode, model.prior,
        **kwargs)

  def test_step_cap_stops_every_example(self):
    initial_params, fit = self._fit(max_steps=7, batch_size=4)
    self.assertAllEqual(fit.num_steps, [7] * 6)
    self.assertFalse(np.any(fit.converged))
    self.assertEqual(fit.params.shape, initial_params.shape)
    self.assertEqual(fit.params.dtype, np.float64)
    self.assertGreater(np.max(np.abs(fit.params - initial_params)), 0.)

  def test_same_seed_same_fit(self):
    _, first = self._fit(max_steps=20, seed=3)
    _, again = self._fit(max_steps=20, seed=3)
    _, other = self._fit(max_steps=20, seed=4)
    self.assertAllEqual(first.params, again.params)
    self.assertGreater(np.max(np.abs(first.params - other.params)), 0.)

  def test_convergence_rule_stops_before_the_cap(self):
    _, fit = self._fit(max_steps=5000, check_every=20, patience=2)
    self.assertTrue(np.all(fit.converged))
    self.assertAllLess(fit.num_steps, 5000)
    # Steps are counted in whole windows of check_every.
    self.assertAllEqual(fit.num_steps % 20, np.zeros(6))

  @parameterized.parameters(
      dict(max_steps=0), dict(num_samples=1.5), dict(learning_rate=-1.),
      dict(check_every=0), dict(patience=0), dict(tolerance=-0.1),
      dict(batch_size=0), dict(seed='a'))
  def test_bad_arguments_are_refused_by_name(self, **kwargs):
    with self.assertRaisesRegex(ValueError, list(kwargs)[0]):
      self._fit(**kwargs)

  def test_point_mass_family_is_refused(self):
    model = LinearGaussianModel(num_examples=3)
    layer = distribution_layers.PointMassPosterior(_LATENT_DIM,
                                                   dtype='float64')
    with self.assertRaisesRegex(ValueError, 'point mass'):
      local_fit.fit_local_posteriors(
          model.data, model.posterior_mean(model.data), layer, model.decode,
          model.prior)


def _small_vae(posterior):
  keras.utils.set_random_seed(0)
  return VariationalAutoencoder(ModelConfig(
      image_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,),
      posterior=posterior))


class GapAnalysisTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('diag', 'full_cov')
  def test_vae_report(self, posterior):
    model = _small_vae(posterior)
    images = (np.random.RandomState(0).rand(20, 8, 8, 1) > 0.5).astype(
        np.float32)
    report = gaps.gap_analysis(model, images, num_examples=12, max_steps=100,
                               num_samples=4, num_importance_samples=200,
                               seed=2)
    self.assertEqual(report.num_examples, 12)
    self.assertEqual(report.settings['posterior'], posterior)
    indices = report.settings['example_indices']
    self.assertLen(indices, 12)
    self.assertAllEqual(indices, np.sort(indices))
    for name in ('log_likelihood', 'elbo_amortized', 'elbo_optimized',
                 'approximation_gap', 'amortization_gap'):
      self.assertTrue(np.all(np.isfinite(getattr(report, name))), msg=name)
    self.assertAllClose(report.approximation_gap + report.amortization_gap,
                        report.inference_gap, atol=1e-10, rtol=0)
    # The fit climbs from the encoder's q: ELBO[q*] >= ELBO[q] on average.
    self.assertGreater(np.mean(report.amortization_gap), 0.)
    self.assertAllInRange(report.effective_sample_size_amortized, 0.99, 200.01)
    json.dumps(report.to_dict())

  def test_point_mass_model_is_refused(self):
    with self.assertRaisesRegex(ValueError, 'deterministic'):
      gaps.gap_analysis(_small_vae('deterministic'),
                        np.zeros([2, 8, 8, 1], np.float32))

  def test_bad_num_examples_is_refused_by_name(self):
    with self.assertRaisesRegex(ValueError, 'num_examples'):
      gaps.gap_analysis(_small_vae('diag'), np.zeros([2, 8, 8, 1],
                                                     np.float32),
                        num_examples=0)


if __name__ == '__main__':
  tf.test.main()
