"""Tests for tfp_vae.plotting.true_posterior: the grid posterior and its figure.

On a linear-Gaussian model with a 2-D latent the grid posterior has known
moments and normalizer:

```none
z ~ N(0, I_2),  x | z ~ N(A z + c, s^2 I)
p(z | x) = N(Lambda^-1 A^T (x - c) / s^2, Lambda^-1),  Lambda = I + A^T A / s^2
p(x)     = N(x; c, A A^T + s^2 I)
```

Tolerances: the grid spans +-7 posterior standard deviations with 201
points per axis (cells of 0.07 sd), so the Riemann sums of the moments and
of p(x) are exact to ~1e-6 relative (the midpoint-rule error of a smooth
density on a fine grid, and 7-sd tails of ~1e-11); 1e-4 leaves room.
"""

import os

import matplotlib.image
import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae.plotting import true_posterior
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class LinearGaussianModel:

  def __init__(self, num_examples=3):
    rng = np.random.RandomState(0)
    self.weights, self.bias = rng.randn(4, 2), rng.randn(4)
    self.weights[:, 1] += self.weights[:, 0]  # a correlated posterior
    self.data = (rng.randn(num_examples, 2) @ self.weights.T + self.bias +
                 0.5 * rng.randn(num_examples, 4))
    self.covariance = np.linalg.inv(np.eye(2) +
                                    self.weights.T @ self.weights / 0.25)
    self.mean = (self.data - self.bias) @ self.weights @ self.covariance / 0.25
    self.log_marginal = stats.multivariate_normal(
        self.bias, self.weights @ self.weights.T + 0.25 * np.eye(4)).logpdf(
            self.data)
    self.prior = tfd.MultivariateNormalDiag(loc=tf.zeros([2], tf.float64))

  def decode(self, latents):
    return tfd.Independent(tfd.Normal(
        tf.linalg.matvec(self.weights, latents) + self.bias,
        tf.constant(0.5, tf.float64)), 1)


class TruePosteriorGridTest(tf.test.TestCase):

  def test_grid_posterior_has_the_closed_form_moments(self):
    model = LinearGaussianModel()
    stddev = np.sqrt(np.diag(model.covariance))
    limits = np.stack([model.mean - 7 * stddev, model.mean + 7 * stddev],
                      axis=1)  # [B, 2, 2]
    grid = true_posterior.true_posterior_grid(
        model.data, model.decode, model.prior, limits, grid_points=201)
    self.assertEqual(grid.log_density.shape, (3, 201, 201))
    self.assertEqual(grid.axis_0.shape, (3, 201))
    mean, covariance = true_posterior.grid_moments(grid)
    self.assertAllClose(mean, model.mean, atol=1e-4 * np.max(stddev),
                        rtol=0)
    self.assertAllClose(covariance,
                        np.broadcast_to(model.covariance, [3, 2, 2]),
                        atol=1e-4 * np.max(model.covariance), rtol=0)
    self.assertAllClose(grid.log_normalizer, model.log_marginal, atol=1e-4)
    # Normalized on the grid.
    cell_area = ((grid.axis_0[:, 1] - grid.axis_0[:, 0]) *
                 (grid.axis_1[:, 1] - grid.axis_1[:, 0]))
    self.assertAllClose(np.exp(grid.log_density).sum(axis=(1, 2)) * cell_area,
                        [1.] * 3)

  def test_shared_window_and_row_layout(self):
    model = LinearGaussianModel(num_examples=1)
    grid = true_posterior.true_posterior_grid(
        model.data, model.decode, model.prior, [[-4., -3.], [4., 5.]],
        grid_points=41)
    self.assertAllClose(grid.axis_0, np.linspace(-4., 4., 41))
    self.assertAllClose(grid.axis_1, np.linspace(-3., 5., 41))
    # Row i, column j is z = (axis_0[j], axis_1[i]).
    i, j = 7, 30
    latent = np.array([[[grid.axis_0[j], grid.axis_1[i]]]])  # [1, 1, 2]
    log_joint = (model.decode(latent).log_prob(model.data) +
                 model.prior.log_prob(latent)).numpy()[0, 0]
    self.assertAllClose(grid.log_density[0, i, j],
                        log_joint - grid.log_normalizer[0])

  def test_bad_limits_and_grid_are_refused(self):
    model = LinearGaussianModel(num_examples=2)
    for limits in ([[1., 0.], [0., 1.]], np.zeros([3, 2, 2]), [0., 1.]):
      with self.assertRaisesRegex(ValueError, 'limits'):
        true_posterior.true_posterior_grid(model.data, model.decode,
                                              model.prior, limits)
    with self.assertRaisesRegex(ValueError, 'grid_points'):
      true_posterior.true_posterior_grid(
          model.data, model.decode, model.prior, [[0., 0.], [1., 1.]],
          grid_points=1)


def _tiny_model(posterior, latent_dim=2):
  keras.utils.set_random_seed(0)
  return VariationalAutoencoder(ModelConfig(
      image_shape=(8, 8, 1), latent_dim=latent_dim, hidden_units=(16,),
      posterior=posterior))


class PlotTruePosteriorsTest(tf.test.TestCase):

  def test_renders_one_column_per_model(self):
    models = {'diag': _tiny_model('diag'),
              'correlated': _tiny_model('full_cov')}
    images = (np.random.RandomState(0).rand(5, 8, 8, 1) > 0.5).astype(
        np.float32)
    figure = true_posterior._true_posteriors_figure(  # pylint: disable=protected-access
        models, images, num_images=2, grid_points=40,
        fit_kwargs=dict(max_steps=20))
    # 2 rows x (image + 2 models), each model panel with the grid posterior
    # and the two approximations' contours.
    self.assertLen(figure.axes, 2 * 3)
    # A column is titled by its name, and by its family when that differs.
    self.assertEqual(figure.axes[1].get_title(), 'diag')
    self.assertEqual(figure.axes[2].get_title(), 'correlated (full_cov)')
    self.assertLen(figure.axes[1].collections, 3)
    path = os.path.join(self.get_temp_dir(), 'sub', 'true_posteriors.png')
    self.assertEqual(true_posterior.plot_true_posteriors(
        models, images, path, num_images=2, grid_points=40, max_steps=20),
                     path)
    with open(path, 'rb') as file:
      self.assertStartsWith(file.read(), _PNG_SIGNATURE)
    pixels = matplotlib.image.imread(path)
    self.assertGreater(pixels.shape[1], pixels.shape[0] * 0.5)

  def test_models_it_cannot_draw_are_refused_by_name(self):
    images = np.zeros([2, 8, 8, 1], np.float32)
    with self.assertRaisesRegex(ValueError, "'wide'.*latent_dim=3"):
      true_posterior.plot_true_posteriors(
          {'wide': _tiny_model('diag', latent_dim=3)}, images, 'unused.png')
    with self.assertRaisesRegex(ValueError, "'ae'.*deterministic"):
      true_posterior.plot_true_posteriors(
          {'ae': _tiny_model('deterministic')}, images, 'unused.png')
    with self.assertRaisesRegex(ValueError, 'models_by_name'):
      true_posterior.plot_true_posteriors({}, images, 'unused.png')


if __name__ == '__main__':
  tf.test.main()
