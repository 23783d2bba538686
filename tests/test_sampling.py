"""Tests of tfp_vae.sampling and scripts/sample.py on tiny trained runs."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import _test_data
from tfp_vae import data
from tfp_vae import names
from tfp_vae import runs
from tfp_vae import sampling
from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.data import datasets
from tfp_vae.model import VariationalAutoencoder
from tfp_vae.plotting import _canvas

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_REPO, 'scripts', 'sample.py')
# The test files' MNIST-format training file holds 400 images: carve 100,
# not the real 10000, for validation.
_VALIDATION_SIZE = 100


def _tiny_configs(dataset, model_dir):
  return (ModelConfig(hidden_units=(16,), latent_dim=3, posterior='diag'),
          TrainConfig(dataset=dataset, data_dir=_test_data.data_dir(dataset),
                      max_train_examples=300, epochs=1, batch_size=50,
                      model_dir=model_dir, jit_compile=False))


def _write_png(path, grey):
  """Writes grey levels `[H, W]` in [0, 1] as an 8-bit RGB(A) PNG."""
  # As RGB, not through a colour map, which would quantise them twice.
  matplotlib.image.imsave(path, np.repeat(grey[..., np.newaxis], 3, axis=-1))
  return path


def _temp_dir(test):
  directory = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
  return directory


class _Figures:
  """Records every figure saved, keeping the saving."""

  def __init__(self):
    self.saved = {}
    self._save = _canvas.save_figure

  def __call__(self, figure, path, **kwargs):
    self.saved[os.path.basename(path)] = figure
    return self._save(figure, path, **kwargs)

  def title(self, file_name):
    """The title (a figure text or the axes' title), lines joined."""
    figure = self.saved[file_name]
    texts = [text.get_text() for text in figure.texts]
    texts.append(figure.axes[0].get_title())
    return ' '.join(texts).replace('\n', ' ')

  def row_labels(self, file_name):
    return [t.get_text() for t in self.saved[file_name].axes[0].get_yticklabels()]


class LatentPathsTest(tf.test.TestCase):

  def test_interpolation_ends_at_both_points_on_a_line(self):
    start, end = np.array([1., -2., 0.5]), np.array([3., 2., -0.5])
    latents = sampling.interpolation_latents(start, end, 5)
    self.assertEqual(latents.shape, (5, 3))
    self.assertAllEqual(latents[0], start.astype(np.float32))
    self.assertAllEqual(latents[-1], end.astype(np.float32))
    self.assertAllClose(latents[2], (start + end) / 2)
    # Equal steps along one direction.
    self.assertAllClose(np.diff(latents, axis=0),
                        np.tile((end - start) / 4, [4, 1]))

  def test_interpolation_refuses_one_step(self):
    with self.assertRaisesRegex(ValueError, 'steps'):
      sampling.interpolation_latents(np.zeros(2), np.ones(2), 1)

  def test_traversal_varies_one_coordinate_per_row(self):
    base = np.array([0.1, 0.2, 0.3, 0.4])
    values = np.arange(12.).reshape(3, 4)  # [P=3, D=4]
    latents = sampling.traversal_latents(base, [2, 0], values)
    self.assertEqual(latents.shape, (2, 3, 4))
    for row, dimension in enumerate([2, 0]):
      others = [d for d in range(4) if d != dimension]
      self.assertAllClose(latents[row][:, others],
                          np.tile(base[others], [3, 1]))
      self.assertAllClose(latents[row][:, dimension], values[:, dimension])

  def test_traversal_refuses_a_coordinate_out_of_range(self):
    with self.assertRaisesRegex(ValueError, 'dimensions'):
      sampling.traversal_latents(np.zeros(2), [2], np.zeros([3, 2]))



class ModelFamiliesTest(parameterized.TestCase, tf.test.TestCase):
  """Interpolations and traversals of every posterior family and prior."""

  @parameterized.named_parameters(
      ('full_cov_normal', 'full_cov', 'normal', 'analytic'),
      ('deterministic_normal', 'deterministic', 'normal', 'analytic'),
      ('diag_mixture', 'diag', 'mixture', 'mc'),
  )
  def test_paths_decode_to_images(self, posterior, prior, kl):
    model = VariationalAutoencoder(ModelConfig(
        posterior=posterior, prior=prior, kl=kl, hidden_units=(8,),
        latent_dim=2, image_shape=(6, 5, 1)))
    images = np.random.default_rng(0).uniform(size=(2, 6, 5, 1)).astype(
        np.float32)
    decoded, latents = sampling.interpolate(model, images[0], images[1],
                                            steps=3)
    self.assertEqual(decoded.shape, (3, 6, 5, 1))
    self.assertAllClose(latents[[0, -1]], np.asarray(
        model.encode(images).mean()), atol=1e-6)
    decoded, latents, _ = sampling.traverse(model, images[0], [1], steps=4)
    self.assertEqual(decoded.shape, (1, 4, 6, 5, 1))
    # Quantiles at increasing probabilities increase.
    self.assertTrue(np.all(np.diff(latents[0, :, 1]) > 0))
    self.assertAllClose(latents[0, :, 0], np.full(4, latents[0, 0, 0]))


class SampleRequestTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('unknown_figure', dict(what=('prior', 'movie')), '--what'),
      ('zero_samples', dict(num_prior_samples=0), '--num_prior_samples'),
      ('one_step', dict(steps=1), '--steps'),
      ('negative_seed', dict(seed=-1), '--seed'),
      ('unknown_split', dict(split='holdout'), '--split'),
      ('negative_index', dict(indices=(3, -1)), '--indices'),
      ('indices_and_images', dict(indices=(1,), image_files=('a.png',)),
       '--indices'),
      ('interpolation_of_one_image',
       dict(what=('interpolation',), indices=(4,)), '--what=interpolation'),
      ('no_model_dir', dict(model_dir=''), '--model_dir'),
  )
  def test_bad_value_names_the_flag(self, fields, flag):
    fields.setdefault('model_dir', 'runs/x')
    with self.assertRaisesRegex(ValueError, flag):
      sampling.SampleRequest(**fields)

  def test_output_goes_to_the_samples_directory_by_default(self):
    self.assertEqual(sampling.SampleRequest('runs/x').samples_dir,
                     os.path.join('runs/x', 'samples'))
    self.assertEqual(sampling.SampleRequest(
        'runs/x', output_dir='/tmp/o').samples_dir, '/tmp/o')


@pytest.mark.usefixtures('dataset_files')
class FashionMnistRunTest(tf.test.TestCase):
  """A tiny dynamically binarized Fashion-MNIST run: grey levels, classes."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.validation_patch = mock.patch.object(
        datasets, '_MNIST_VALIDATION_SIZE', _VALIDATION_SIZE)
    cls.validation_patch.start()
    cls.root = tempfile.mkdtemp()
    cls.model_dir = os.path.join(cls.root, 'fashion')
    training.train(*_tiny_configs('fashion_mnist', cls.model_dir), verbose=0)
    cls.loaded = runs.load_trained_model(cls.model_dir)
    cls.dataset = data.load_data(cls.loaded.train_config)

  @classmethod
  def tearDownClass(cls):
    cls.validation_patch.stop()
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _write(self, **fields):
    figures = _Figures()
    with mock.patch.object(_canvas, 'save_figure', figures):
      paths = sampling.write_samples(sampling.SampleRequest(
          self.model_dir, output_dir=_temp_dir(self),
          **fields))
    return paths, figures

  def test_default_request_writes_every_figure_with_a_title(self):
    paths, figures = self._write(num_prior_samples=6, steps=3)
    self.assertEqual(list(paths), list(sampling.FIGURES))
    for figure, path in paths.items():
      self.assertEqual(os.path.basename(path), sampling.FIGURE_FILES[figure])
      png = matplotlib.image.imread(path)
      self.assertEqual(png.ndim, 3, figure)
    prior_title = figures.title('prior_samples.png')
    self.assertIn('decoder means', prior_title)
    self.assertIn('Bernoulli', prior_title)
    self.assertIn('6 samples, seed 0', prior_title)
    self.assertIn('interpolation from test image', figures.title(
        'interpolation.png'))
    self.assertIn('latent traversals', figures.title('traversals.png'))
    # The default images are labelled with their Fashion-MNIST classes.
    reconstructions_title = figures.title('reconstructions.png')
    self.assertTrue(any(f'({name})' in reconstructions_title
                        for name in names.DATASET_CLASS_NAMES[
                            'fashion_mnist']), reconstructions_title)
    # Grey original, the binarized input and the reconstruction, labelled.
    self.assertEqual(
        figures.row_labels('reconstructions.png'),
        ['original (grey levels)', 'binarized input (what the model saw)',
         'reconstruction (decoder mean)'])

  def test_grey_originals_are_what_the_binarized_inputs_were_drawn_from(self):
    images = sampling._split_images(  # pylint: disable=protected-access
        self.loaded, sampling.SampleRequest(self.model_dir,
                                            indices=(0, 5, 9)),
        self.loaded.train_config, self.dataset)
    self.assertAllEqual(images.inputs, self.dataset.test_images[[0, 5, 9]])
    grey_dataset = data.load_dataset(
        'fashion_mnist', data_dir=_test_data.data_dir('fashion_mnist'),
        binarization='none', validation_size=_VALIDATION_SIZE)
    self.assertAllEqual(images.grey, grey_dataset.test_images[[0, 5, 9]])
    # A pixel of grey level 0 (1) is never (always) on after binarization.
    self.assertAllEqual(images.inputs[images.grey == 0.0], np.zeros(
        np.sum(images.grey == 0.0)))
    self.assertAllEqual(images.inputs[images.grey == 1.0], np.ones(
        np.sum(images.grey == 1.0)))
    self.assertGreater(np.sum((images.grey > 0) & (images.grey < 1)), 0)

  def test_interpolation_ends_decode_the_two_posterior_means(self):
    model = self.loaded.model
    pair = self.dataset.test_images[[1, 2]]
    decoded, latents = sampling.interpolate(model, pair[0], pair[1], steps=4)
    self.assertEqual(decoded.shape, (4, 28, 28, 1))
    posterior_means = model.encode(pair).mean().numpy()  # [2, D]
    self.assertAllClose(latents[[0, -1]], posterior_means, atol=1e-6)
    self.assertAllClose(decoded[[0, -1]],
                        model.decode(posterior_means).mean().numpy(),
                        atol=1e-6)

  def test_traversal_varies_only_its_coordinate_through_prior_quantiles(self):
    model = self.loaded.model
    image = self.dataset.test_images[3]
    decoded, latents, probabilities = sampling.traverse(model, image, [1, 2],
                                                        steps=5)
    self.assertEqual(decoded.shape, (2, 5, 28, 28, 1))
    self.assertAllClose(probabilities, np.linspace(0.05, 0.95, 5))
    base = model.encode(image[np.newaxis]).mean().numpy()[0]
    # The standard normal prior's quantiles.
    normal_quantiles = [statistics.NormalDist().inv_cdf(p)
                        for p in probabilities]
    for row, dimension in enumerate([1, 2]):
      others = [d for d in range(3) if d != dimension]
      self.assertAllClose(latents[row][:, others], np.tile(base[others],
                                                           [5, 1]), atol=1e-6)
      self.assertAllClose(latents[row][:, dimension], normal_quantiles,
                          atol=1e-3)
    self.assertAllClose(decoded, model.decode(latents).mean().numpy(),
                        atol=1e-6)

  def test_traversal_rows_are_the_traversed_coordinates(self):
    _, figures = self._write(what=('traversals',), indices=(7,), steps=3)
    labels = figures.row_labels('traversals.png')
    self.assertNotEmpty(labels)
    for label in labels:
      self.assertRegex(label, r'^z\[[0-2]\]$')
    self.assertLen(set(labels), len(labels))

  def test_index_out_of_range_names_the_flag_and_the_split(self):
    with self.assertRaisesRegex(ValueError, r'--indices=2,5000: 5000 out of '
                                r'range for the \d+ test images'):
      self._write(what=('reconstructions',), indices=(2, 5000))

  def test_image_files_are_shown_grey_and_binarized(self):
    directory = _temp_dir(self)
    files = tuple(_write_png(os.path.join(directory, f'{name}.png'), grey)
                  for name, grey in (('dark', np.full([28, 28], 0.2)),
                                     ('light', np.full([28, 28], 0.8))))
    paths, figures = self._write(what=('reconstructions', 'interpolation'),
                                 image_files=files, steps=3)
    self.assertEqual(list(paths), ['reconstructions', 'interpolation'])
    self.assertEqual(figures.row_labels('reconstructions.png')[:2],
                     ['original (grey levels)',
                      'binarized input (what the model saw)'])
    self.assertIn('from dark.png to light.png',
                  figures.title('interpolation.png'))

  def test_bad_image_file_names_it(self):
    directory = _temp_dir(self)
    path = _write_png(os.path.join(directory, 'tall.png'),
                      np.zeros([40, 20]))
    with self.assertRaisesRegex(ValueError, r'tall\.png is 40x20 pixels'):
      self._write(what=('reconstructions',), image_files=(path,))


def _run_script(*args):
  environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
                     PYTHONPATH=os.pathsep.join(
                         [_REPO, os.environ.get('PYTHONPATH', '')]))
  return subprocess.run([sys.executable, _SCRIPT, *args], capture_output=True,
                        text=True, env=environment, cwd=_REPO, timeout=300)


@pytest.mark.usefixtures('dataset_files')
class SampleScriptTest(tf.test.TestCase):
  """scripts/sample.py end to end, on a tiny binarized MNIST run."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.model_dir = os.path.join(cls.root, 'run')
    training.train(*_tiny_configs('binarized_mnist', cls.model_dir),
                   verbose=0)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_writes_every_figure(self):
    result = _run_script(f'--model_dir={self.model_dir}', '--indices=3,17,42',
                         '--num_prior_samples=6', '--steps=3')
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    for figure, file_name in sampling.FIGURE_FILES.items():
      path = os.path.join(self.model_dir, 'samples', file_name)
      self.assertIn(path, result.stdout)
      self.assertTrue(os.path.isfile(path), figure)

  def test_bad_values_stop_with_one_error_line(self):
    for args, message in (
        (['--indices=3,x'], 'error: --indices=3,x is invalid'),
        (['--indices=5000', '--what=reconstructions'],
         'error: --indices=5000: 5000 out of range'),
        (['--images=/nonexistent/a.png'],
         'error: --images: /nonexistent/a.png does not exist'),
        (['--what=prior,movie'], 'error: --what=prior,movie is invalid')):
      result = _run_script(f'--model_dir={self.model_dir}', *args)
      self.assertEqual(result.returncode, 1, args)
      self.assertIn(message, result.stderr)
      self.assertNotIn('Traceback', result.stderr)


if __name__ == '__main__':
  tf.test.main()
