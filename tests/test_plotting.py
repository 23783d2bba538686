"""Tests for tfp_vae.plotting: valid PNGs, and the maths behind the pictures."""

import itertools
import math
import os
import tempfile

from absl.testing import parameterized
import matplotlib.image
import matplotlib.patches
import numpy as np
import tensorflow as tf

from tfp_vae import plotting
from tfp_vae.plotting import model_figures
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_IMAGE_SHAPE = (8, 8, 1)


def _tiny_model(posterior='full_cov', latent_dim=2, prior='normal', seed=0):
  kl = 'mc' if prior == 'mixture' or posterior == 'iaf' else 'analytic'
  return VariationalAutoencoder(ModelConfig(
      image_shape=_IMAGE_SHAPE, latent_dim=latent_dim, hidden_units=(16,),
      posterior=posterior, prior=prior, mixture_components=3, kl=kl,
      posterior_rank=1, flow_hidden_units=(8,), seed=seed))


def _images(num_images, seed=0):
  return np.random.default_rng(seed).uniform(
      size=(num_images,) + _IMAGE_SHAPE).astype(np.float32)


def _history(num_epochs, offset=0.0, validation=True):
  epochs = np.arange(num_epochs, dtype=np.float64)
  history = {'loss': list(100 / (1 + epochs) + offset),
             'kl': list(5 + epochs / 10 + offset),
             'nll': list(95 / (1 + epochs) + offset)}
  history['elbo'] = [-v for v in history['loss']]
  if validation:
    for key in list(history):
      history['val_' + key] = [v + 1 for v in history[key]]
  return history


def _rotation(angle_degrees):
  angle = math.radians(angle_degrees)
  return np.array([[math.cos(angle), -math.sin(angle)],
                   [math.sin(angle), math.cos(angle)]])


class PngTestCase(tf.test.TestCase):

  def new_directory(self):
    return tempfile.mkdtemp(dir=self.get_temp_dir())

  def png_path(self, name):
    return os.path.join(self.new_directory(), name + '.png')

  def assertValidPng(self, path, min_side=100, max_side=3000):
    with open(path, 'rb') as file:
      content = file.read()
    self.assertStartsWith(content, _PNG_SIGNATURE)
    self.assertLess(len(content), 5 * 2**20)
    pixels = matplotlib.image.imread(path)  # [height, width, RGBA]
    self.assertEqual(pixels.ndim, 3)
    self.assertBetween(pixels.shape[0], min_side, max_side)
    self.assertBetween(pixels.shape[1], min_side, max_side)
    # Not a blank canvas.
    self.assertGreater(np.std(pixels[..., :3]), 0.01)


class ImageSummaryGridTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters(
      dict(num_images=7, num_columns=3, padding=0),
      dict(num_images=7, num_columns=3, padding=2),
      dict(num_images=9, num_columns=None, padding=1),
      dict(num_images=1, num_columns=4, padding=1),
  )
  def test_image_i_is_at_its_tile(self, num_images, num_columns, padding):
    height, width, channels = 3, 4, 2
    # Image i is filled with the value i + 1 (0 is not a pad value here).
    images = (np.arange(1, num_images + 1, dtype=np.float32)[:, None, None,
                                                             None] *
              np.ones([num_images, height, width, channels], np.float32))
    grid = plotting.image_summary_grid(images, num_columns, padding=padding,
                                       pad_value=-1.0)
    columns = num_columns or math.ceil(math.sqrt(num_images))
    rows = math.ceil(num_images / columns)
    self.assertEqual(grid.shape, (1, rows * height + (rows - 1) * padding,
                                  columns * width + (columns - 1) * padding,
                                  channels))
    self.assertEqual(grid.dtype, np.float32)
    for row, column in itertools.product(range(rows), range(columns)):
      top, left = row * (height + padding), column * (width + padding)
      tile = grid[0, top:top + height, left:left + width]
      index = row * columns + column
      expected = index + 1 if index < num_images else -1.0
      self.assertAllEqual(tile, np.full_like(tile, expected))
    # Everything outside the tiles is padding.
    self.assertEqual(np.sum(grid == -1.0),
                     grid.size - num_images * height * width * channels)

  @parameterized.parameters(2, 3, 4, 6, 7, 8, 10, 12, 16, 18, 24, 64)
  def test_default_grid_has_no_empty_tile(self, num_images):
    grid = plotting.image_summary_grid(np.zeros([num_images, 2, 3, 1]),
                                       pad_value=-1.0)[0]
    self.assertEqual(np.sum(grid == -1.0), 0)
    rows, columns = grid.shape[0] // 2, grid.shape[1] // 3
    self.assertEqual(rows * columns, num_images)
    # Never taller than wide, and never a single column.
    self.assertGreaterEqual(columns, rows)

  def test_default_grid_of_a_prime_count_is_square_ish(self):
    # 13 has no divisor near sqrt(13): rows of 4, the last one short.
    grid = plotting.image_summary_grid(np.zeros([13, 2, 3, 1]))[0]
    self.assertEqual(grid.shape[:2], (4 * 2, 4 * 3))

  def test_grayscale_without_channel_axis_and_tensors(self):
    grid = plotting.image_summary_grid(tf.zeros([4, 5, 6]), num_columns=2)
    self.assertEqual(grid.shape, (1, 10, 12, 1))

  def test_is_an_image_summary_batch(self):
    # tf.summary.image takes [k, h, w, c] floats in [0, 1]; the same grid
    # encodes to a PNG of the tiled size.
    grid = plotting.image_summary_grid(_images(6), num_columns=3, padding=1)
    png = tf.io.encode_png(tf.image.convert_image_dtype(grid[0], tf.uint8))
    self.assertEqual(tf.io.decode_png(png).shape, (17, 26, 1))

  @parameterized.parameters(0, -1, 1.5, True)
  def test_rejects_bad_num_columns(self, num_columns):
    with self.assertRaisesRegex(ValueError, 'num_columns'):
      plotting.image_summary_grid(_images(2), num_columns=num_columns)

  def test_rejects_non_images(self):
    with self.assertRaisesRegex(ValueError, 'images'):
      plotting.image_summary_grid(np.zeros([4, 4]))


class CovarianceEllipseTest(parameterized.TestCase, tf.test.TestCase):

  def test_diagonal(self):
    self.assertAllClose(plotting.covariance_ellipse(np.diag([4.0, 1.0])),
                        (4.0, 2.0, 0.0))
    self.assertAllClose(plotting.covariance_ellipse(np.diag([1.0, 4.0])),
                        (4.0, 2.0, 90.0))
    self.assertAllClose(
        plotting.covariance_ellipse(np.diag([4.0, 1.0]), num_std=2),
        (8.0, 4.0, 0.0))

  @parameterized.parameters(45.0, 30.0, 135.0, 170.0)
  def test_rotated(self, angle_degrees):
    rotation = _rotation(angle_degrees)
    covariance = rotation @ np.diag([9.0, 0.25]) @ rotation.T
    self.assertAllClose(plotting.covariance_ellipse(covariance),
                        (6.0, 1.0, angle_degrees))

  def test_45_degrees_by_hand(self):
    # Variances 2.5, correlation 0.6: eigenvalues 4 along (1, 1), 1 along
    # (1, -1).
    self.assertAllClose(
        plotting.covariance_ellipse([[2.5, 1.5], [1.5, 2.5]]),
        (4.0, 2.0, 45.0))

  def test_boundary_is_num_std_mahalanobis_distance(self):
    # Points on the matplotlib Ellipse drawn from the returned values lie at
    # Mahalanobis distance num_std, for random covariances.
    rng = np.random.default_rng(0)
    for num_std in (1.0, 2.0):
      for _ in range(5):
        factor = rng.normal(size=(2, 2))
        covariance = factor @ factor.T + 0.1 * np.eye(2)
        width, height, angle = plotting.covariance_ellipse(covariance,
                                                           num_std)
        self.assertGreaterEqual(width, height)
        ellipse = matplotlib.patches.Ellipse((0.0, 0.0), width, height,
                                             angle=angle)
        # The patch transform maps the unit circle onto the drawn ellipse.
        turns = np.linspace(0.0, 2 * np.pi, 17)
        unit_circle = np.stack([np.cos(turns), np.sin(turns)], axis=-1)
        boundary = ellipse.get_patch_transform().transform(
            unit_circle)  # [P, 2]
        distances = np.einsum('pi,ij,pj->p', boundary,
                              np.linalg.inv(covariance), boundary)
        self.assertAllClose(distances, np.full_like(distances, num_std**2),
                            rtol=1e-6)

  def test_singular_covariance(self):
    width, height, _ = plotting.covariance_ellipse([[1.0, 1.0], [1.0, 1.0]])
    self.assertAllClose((width, height), (2 * math.sqrt(2.0), 0.0), atol=1e-7)

  def test_rejects_wrong_shape(self):
    with self.assertRaisesRegex(ValueError, 'covariance'):
      plotting.covariance_ellipse(np.eye(3))


class PrincipalComponentsTest(tf.test.TestCase):

  def _pairwise_distances(self, points):
    return np.linalg.norm(points[:, None] - points[None], axis=-1)

  def test_recovers_a_plane_in_5d(self):
    rng = np.random.default_rng(0)
    plane_points = rng.normal(size=(50, 2)) * [3.0, 1.0]  # [N, 2]
    basis, _ = np.linalg.qr(rng.normal(size=(5, 2)))  # [5, 2], orthonormal
    points = plane_points @ basis.T + rng.normal(size=5)  # [N, 5]
    projected, explained = plotting.principal_components(points, 2)
    self.assertEqual(projected.shape, (50, 2))
    self.assertAllClose(self._pairwise_distances(projected),
                        self._pairwise_distances(plane_points), atol=1e-9)
    self.assertAllClose(np.sum(explained), 1.0)
    self.assertGreater(explained[0], explained[1])
    self.assertAllClose(projected.mean(axis=0), [0.0, 0.0], atol=1e-9)

  def test_components_are_ordered_and_deterministic(self):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(200, 3)) * [0.1, 5.0, 1.0]
    projected, explained = plotting.principal_components(points, 2)
    # The first component is the widest axis (coordinate 1).
    self.assertGreater(np.var(projected[:, 0]), np.var(projected[:, 1]))
    self.assertAllClose(np.var(projected[:, 0]), np.var(points[:, 1]),
                        rtol=0.05)
    again, _ = plotting.principal_components(points.copy(), 2)
    self.assertAllEqual(projected, again)
    self.assertAllClose(explained.sum() + np.var(points[:, 0]) /
                        np.var(points, axis=0).sum(), 1.0, atol=0.01)

  def test_rejects_too_many_components(self):
    with self.assertRaisesRegex(ValueError, 'num_components'):
      plotting.principal_components(np.zeros([4, 2]), 3)


class LearningCurvesTest(PngTestCase):

  def test_train_and_validation(self):
    path = plotting.plot_learning_curves(_history(5), self.png_path('curves'))
    self.assertValidPng(path)

  def test_train_only_and_missing_metrics_skipped(self):
    path = plotting.plot_learning_curves(
        _history(3, validation=False), self.png_path('curves'),
        metrics=('loss', 'iwae', 'elbo'))
    self.assertValidPng(path)

  def test_keras_history_object(self):

    class History:  # what model.fit returns: the dict is `.history`.
      history = _history(2)

    self.assertValidPng(plotting.plot_learning_curves(
        History(), self.png_path('curves'), metrics='elbo'))

  def test_no_requested_metric_names_what_is_there(self):
    with self.assertRaisesRegex(ValueError, "'kl'"):
      plotting.plot_learning_curves({'kl': [1.0]}, self.png_path('x'),
                                    metrics=('iwae',))

  def test_comparison_over_seeds(self):
    histories = {
        'diag': [_history(6, offset=s) for s in range(3)],
        # Early-stopped seed: shorter history.
        'full_cov': [_history(6, offset=-2), _history(4, offset=-1)],
        'single': _history(5, offset=1),
    }
    path = plotting.plot_learning_curves_comparison(
        histories, self.png_path('comparison'))
    self.assertValidPng(path)
    path = plotting.plot_learning_curves_comparison(
        histories, self.png_path('comparison_2'),
        metric=['val_elbo', 'val_kl', 'not_there'])
    self.assertValidPng(path)

  def test_comparison_without_metric(self):
    with self.assertRaisesRegex(ValueError, 'val_iwae'):
      plotting.plot_learning_curves_comparison(
          {'a': _history(2)}, self.png_path('x'), metric='val_iwae')


class ImagePlotsTest(parameterized.TestCase, PngTestCase):

  def test_image_grid(self):
    self.assertValidPng(plotting.plot_image_grid(
        _images(10), self.png_path('grid'), title='ten images',
        num_columns=5))

  def test_image_grid_creates_directories(self):
    path = os.path.join(self.new_directory(), 'a', 'b', 'g.png')
    self.assertValidPng(plotting.plot_image_grid(_images(4), path))

  def test_reconstructions(self):
    originals = _images(13)
    path = plotting.plot_reconstructions(originals, 1 - originals,
                                         self.png_path('reconstructions'),
                                         num_columns=5)
    self.assertValidPng(path)

  def test_reconstructions_with_grey_originals(self):
    originals = _images(6)
    self.assertValidPng(plotting.plot_reconstructions(
        np.round(originals), 1 - originals, self.png_path('grey'),
        grey_originals=originals, input_label='binarized input'))

  def test_reconstructions_grey_originals_shape_mismatch(self):
    with self.assertRaisesRegex(ValueError, 'grey_originals'):
      plotting.plot_reconstructions(_images(3), _images(3), self.png_path('x'),
                                    grey_originals=_images(4))

  def test_image_rows(self):
    self.assertValidPng(plotting.plot_image_rows(
        [_images(5), _images(5, 1)], ['z[0]', 'z[3]'], self.png_path('rows'),
        title='two rows', column_labels=['a', 'b', 'c', 'd', 'e'],
        xlabel='t'))

  def test_image_rows_need_a_label_per_row(self):
    with self.assertRaisesRegex(ValueError, 'row_labels'):
      plotting.plot_image_rows([_images(2)] * 2, ['only one'],
                               self.png_path('x'))

  def test_reconstructions_shape_mismatch(self):
    with self.assertRaisesRegex(ValueError, 'reconstructions'):
      plotting.plot_reconstructions(_images(3), _images(4), self.png_path('x'))

  def test_prior_samples_forwards_count_and_seed(self):

    class SamplingModel:

      def sample(self, num_examples, seed=0):
        self.arguments = (num_examples, seed)
        return _images(num_examples, seed)

    model = SamplingModel()
    self.assertValidPng(plotting.plot_prior_samples(
        model, self.png_path('samples'), num_samples=9, seed=5))
    self.assertEqual(model.arguments, (9, 5))

  @parameterized.parameters('normal', 'mixture')
  def test_prior_samples(self, prior):
    model = _tiny_model(prior=prior)
    self.assertValidPng(plotting.plot_prior_samples(
        model, self.png_path('samples'), num_samples=16, seed=3))


class LatentPlotsTest(parameterized.TestCase, PngTestCase):

  @parameterized.parameters('normal', 'mixture')
  def test_latent_manifold(self, prior):
    model = _tiny_model(prior=prior)
    self.assertValidPng(plotting.plot_latent_manifold(
        model, self.png_path('manifold'), grid_size=6))

  def test_latent_manifold_needs_2d_latent(self):
    with self.assertRaisesRegex(ValueError, 'latent_dim=3'):
      plotting.plot_latent_manifold(_tiny_model(latent_dim=3),
                                    self.png_path('x'))

  def test_standard_normal_quantiles(self):
    model = _tiny_model()
    quantiles = model_figures.prior_marginal_quantiles(
        model.prior_distribution(), [0.05, 0.5, 0.975])
    self.assertAllClose(quantiles, [[-1.644854] * 2, [0.0] * 2,
                                    [1.959964] * 2], atol=1e-5)

  @parameterized.parameters(
      dict(latent_dim=2, labels='classes', method='auto'),
      dict(latent_dim=5, labels='classes', method='auto'),
      dict(latent_dim=5, labels=None, method='pca'),
      dict(latent_dim=3, labels='continuous', method='auto'),
      dict(latent_dim=2, labels='many_classes', method='direct'),
  )
  def test_latent_scatter(self, latent_dim, labels, method):
    rng = np.random.default_rng(0)
    latent_means = rng.normal(size=(300, latent_dim))
    labels = {None: None,
              'classes': rng.integers(0, 10, size=300),
              'continuous': rng.uniform(size=300),
              'many_classes': rng.integers(0, 50, size=300)}[labels]
    self.assertValidPng(plotting.plot_latent_scatter(
        latent_means, self.png_path('scatter'), labels=labels, method=method))

  def test_latent_scatter_class_names(self):
    self.assertValidPng(plotting.plot_latent_scatter(
        np.random.default_rng(0).normal(size=(20, 2)),
        self.png_path('scatter'), labels=np.arange(20) % 2,
        class_names=['even', 'odd']))

  def test_latent_scatter_direct_needs_2d(self):
    with self.assertRaisesRegex(ValueError, 'latent_dim=4'):
      plotting.plot_latent_scatter(np.zeros([5, 4]), self.png_path('x'),
                                   method='direct')


def _randomize_posterior_params(model, seed):
  """Gives the encoder's last layer random weights, as training might.

  A fresh full_cov model starts with a diagonal posterior (its off-diagonal
  weights are zero), whose ellipses cannot tilt. The weights behind the
  off-diagonal entries are divided by the posterior's off-diagonal scale c,
  so the Cholesky factor's entries are all of order 1.
  """
  output_layer = model.encoder.layers[-1]  # Dense -> posterior params.
  kernel = np.random.default_rng(seed).normal(size=output_layer.kernel.shape)
  config = model.model_config
  if config.posterior == 'full_cov':
    off_diagonal = model.posterior_layer.off_diagonal_params_mask(
        config.latent_dim)
    kernel[:, off_diagonal] /= config.full_cov_off_diagonal_scale
  output_layer.kernel.assign(kernel.astype(np.float32))
  return model


class PosteriorEllipsesTest(PngTestCase):

  def setUp(self):
    super().setUp()
    self.models = {
        'diag': _tiny_model('diag', seed=1),
        'full_cov': _randomize_posterior_params(_tiny_model('full_cov', seed=2),
                                                seed=2)}
    self.images = _images(5)

  def test_writes_png(self):
    models = dict(self.models, autoencoder=_tiny_model('deterministic'))
    self.assertValidPng(plotting.plot_posterior_ellipses(
        models, self.images, self.png_path('ellipses'), num_images=4))

  def test_plotted_ellipses_match_posterior_covariances(self):
    figure = model_figures._posterior_ellipses_figure(self.models, self.images,
                                                 num_images=4)
    model_axes = figure.subfigs[0].axes
    self.assertLen(model_axes, 2)
    colors_by_model = []
    for axes, model in zip(model_axes, self.models.values()):
      approx_posterior = model.encode(self.images[:4])
      means = approx_posterior.mean().numpy()
      covariances = approx_posterior.covariance().numpy()  # [4, 2, 2]
      ellipses = [p for p in axes.patches
                  if isinstance(p, matplotlib.patches.Ellipse)]
      self.assertLen(ellipses, 4)
      for ellipse, mean, covariance in zip(ellipses, means, covariances):
        eigenvalues = np.linalg.eigvalsh(covariance.astype(np.float64))
        # Full axis lengths are 2 * sqrt(eigenvalue): the 1-sd ellipse.
        self.assertAllClose(
            sorted([ellipse.width, ellipse.height]),
            2 * np.sqrt(eigenvalues), rtol=1e-4)
        self.assertAllClose(ellipse.center, mean, rtol=1e-5)
      colors_by_model.append([e.get_edgecolor() for e in ellipses])
      angles = np.array([e.angle for e in ellipses])
      if model.model_config.posterior == 'diag':
        # Axis-aligned: 0 or 90 degrees.
        self.assertAllClose(np.minimum(angles % 90, 90 - angles % 90),
                            np.zeros(4), atol=1e-6)
    # The same image has the same colour in every subplot, distinct images
    # distinct colours.
    self.assertEqual(colors_by_model[0], colors_by_model[1])
    self.assertLen(set(colors_by_model[0]), 4)

  def test_low_rank_ellipses_match_its_covariances(self):
    model = _tiny_model('low_rank', seed=3)
    figure = model_figures._posterior_ellipses_figure({'low_rank': model},
                                                      self.images,
                                                      num_images=3)
    ellipses = figure.subfigs[0].axes[0].patches
    covariances = model.encode(self.images[:3]).covariance().numpy()
    self.assertLen(ellipses, 3)
    for ellipse, covariance in zip(ellipses, covariances):
      self.assertAllClose(
          sorted([ellipse.width, ellipse.height]),
          2 * np.sqrt(np.linalg.eigvalsh(covariance.astype(np.float64))),
          rtol=1e-4)

  def test_flow_posterior_is_drawn_as_its_samples(self):
    # An IAF has no ellipse: each image gets a cloud of samples in its
    # colour, around the flow of its base mean.
    model = _tiny_model('iaf', seed=4)
    figure = model_figures._posterior_ellipses_figure({'iaf': model},
                                                      self.images,
                                                      num_images=3)
    axes = figure.subfigs[0].axes[0]
    self.assertEmpty(axes.patches)
    clouds = axes.collections[-3:]
    self.assertLen(clouds, 3)
    for cloud in clouds:
      self.assertEqual(cloud.get_offsets().shape,
                       (model_figures._FLOW_SAMPLES_PER_IMAGE, 2))
    self.assertValidPng(plotting.plot_posterior_ellipses(
        {'iaf': model, 'diag': self.models['diag']}, self.images,
        self.png_path('iaf_ellipses'), num_images=3))

  def test_full_covariance_ellipses_can_tilt(self):
    figure = model_figures._posterior_ellipses_figure(
        {'full_cov': self.models['full_cov']}, self.images)
    angles = np.array([p.angle for p in figure.subfigs[0].axes[0].patches])
    self.assertTrue(np.any(np.minimum(angles % 90, 90 - angles % 90) > 1.0))

  def test_needs_2d_latent_and_names_the_model(self):
    with self.assertRaisesRegex(ValueError, "'big'.*latent_dim=3"):
      plotting.plot_posterior_ellipses(
          {'small': self.models['diag'], 'big': _tiny_model(latent_dim=3)},
          self.images, self.png_path('x'))


if __name__ == '__main__':
  tf.test.main()
