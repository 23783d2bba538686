"""Tests for tfp_vae/runs.py: the model directory and loading a trained run."""

import dataclasses
import json
import os
import random
import re
import shutil
import stat
import tempfile
import warnings

import numpy as np
import pytest
import tensorflow as tf

import _test_data
import tfp_vae
from tfp_vae import runs
from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

_README = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'README.md')
# The run path the README's snippet names; the test puts its own run there.
_README_RUN = 'runs/binarized_mnist-full_cov'


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


class AtomicWriteTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)

  def test_text_is_written_with_the_one_file_mode_whatever_the_umask(self):
    path = os.path.join(self.directory, 'a.txt')
    for umask in (0o077, 0o022, 0o002):
      old_umask = os.umask(umask)
      try:
        runs.write_text_atomically(path, f'umask {umask:o}\n')
      finally:
        os.umask(old_umask)
      self.assertEqual(_mode(path), runs.FILE_MODE)
      with open(path) as f:
        self.assertEqual(f.read(), f'umask {umask:o}\n')
    self.assertEqual(runs.FILE_MODE, 0o644)

  def test_json_round_trips_and_no_temporary_file_is_left(self):
    path = os.path.join(self.directory, 'evaluation_test.json')
    value = {'log_likelihood': -86.25, 'split': 'test', 'seed': None}
    runs.write_json_atomically(path, value)
    runs.write_json_atomically(path, value)  # Over an existing file.
    with open(path) as f:
      self.assertEqual(json.load(f), value)
    self.assertEqual(os.listdir(self.directory), ['evaluation_test.json'])
    self.assertEqual(_mode(path), 0o644)

  def test_read_json_or_none(self):
    path = os.path.join(self.directory, 'broken.json')
    self.assertIsNone(runs.read_json_or_none(path))
    with open(path, 'w') as f:
      f.write('{"cut short')
    self.assertIsNone(runs.read_json_or_none(path))

  def test_evaluation_file_names_its_split(self):
    self.assertEqual(runs.evaluation_file('validation'),
                     'evaluation_validation.json')


@pytest.mark.usefixtures('dataset_files')
class FlowRunSaveLoadTest(tf.test.TestCase):
  """Saving and loading an IAF run print nothing (daily use, issue 16).

  What you see: no tf_keras "serialize() API should only be used" warning
  per MADE layer. What is kept: the trained weights, and every other
  warning.
  """

  def test_an_iaf_run_saves_and_loads_without_warnings(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    model_dir = os.path.join(root, 'run')
    model_config = ModelConfig(image_shape=(28, 28, 1), hidden_units=(16,),
                               latent_dim=2, posterior='iaf', kl='mc',
                               flow_hidden_units=(4,), seed=0)
    train_config = TrainConfig(
        dataset='binarized_mnist',
        data_dir=_test_data.data_dir('binarized_mnist'),
        batch_size=32, epochs=1, max_train_examples=64,
        num_importance_samples=0, model_dir=model_dir, jit_compile=False,
        steps_per_execution=1, seed=0)
    trained = training.train(model_config, train_config, verbose=0).model
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      loaded = runs.load_trained_model(model_dir)
      runs.save_model_atomically(loaded.model, os.path.join(root, 'x.keras'))
      warnings.warn('another warning', UserWarning)
    self.assertEqual([str(w.message) for w in caught], ['another warning'])
    for want, got in zip(trained.get_weights(), loaded.model.get_weights()):
      self.assertAllEqual(want, got)


@pytest.mark.usefixtures('dataset_files')
class TrainedRunTest(tf.test.TestCase):
  """One small run of `training.train`, shared by the tests below."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.model_dir = os.path.join(cls.root, 'run')
    model_config = ModelConfig(image_shape=(28, 28, 1), hidden_units=(16,),
                               latent_dim=2, posterior='full_cov', seed=0)
    cls.train_config = TrainConfig(
        dataset='binarized_mnist',
        data_dir=_test_data.data_dir('binarized_mnist'),
        batch_size=32, epochs=1, max_train_examples=64,
        num_importance_samples=0, model_dir=cls.model_dir, jit_compile=False,
        steps_per_execution=1, seed=0)
    cls.result = training.train(model_config, cls.train_config, verbose=0)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_every_file_of_the_model_directory_has_the_one_mode(self):
    names = [runs.CONFIG_FILE, runs.HISTORY_FILE, runs.METRICS_CSV_FILE,
             runs.FINAL_METRICS_FILE, runs.MODEL_FILE]
    for name in names:
      self.assertEqual(_mode(os.path.join(self.model_dir, name)), 0o644,
                       msg=name)

  def test_loading_leaves_the_global_random_state_as_it_was(self):
    for source in ('final', 'checkpoint'):

      def draws(load):
        random.seed(5)
        np.random.seed(5)
        tf.random.set_seed(5)
        first = (random.random(), np.random.rand(), tf.random.uniform([2]))
        if load:
          runs.load_trained_model(self.model_dir, source)
        second = (random.random(), np.random.rand(), tf.random.uniform([2]),
                  tf.random.normal([3]))
        return first, second

      expected = draws(load=False)
      actual = draws(load=True)
      for want, got in zip(tf.nest.flatten(expected), tf.nest.flatten(actual)):
        self.assertAllEqual(want, got, msg=f'source={source}')

  def test_loaded_weights_are_the_trained_ones(self):
    loaded = runs.load_trained_model(self.model_dir)
    self.assertEqual(loaded.checkpoint_path,
                     os.path.join(self.model_dir, runs.MODEL_FILE))
    for want, got in zip(self.result.model.get_weights(),
                         loaded.model.get_weights()):
      self.assertAllEqual(want, got)
    # config.json holds the binarization the dataset resolved to.
    self.assertEqual(self.train_config.binarization, '')
    self.assertEqual(loaded.train_config, dataclasses.replace(
        self.train_config, binarization='static'))

  def test_history_reads_back_by_metric(self):
    rows = runs.read_history(self.model_dir)
    self.assertLen(rows, 1)
    by_metric = runs.history_by_metric(rows)
    self.assertEqual(by_metric['epoch'], [1])
    self.assertEqual(by_metric['step'], [2])  # 64 examples, batches of 32.

  def test_readme_snippet_runs_on_a_trained_run(self):
    with open(_README) as f:
      readme = f.read()
    section = readme[readme.index('## Using a trained run'):]
    snippet = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    self.assertIn(repr(_README_RUN), snippet)
    namespace = {}
    exec(snippet.replace(repr(_README_RUN), repr(self.model_dir)),  # pylint: disable=exec-used
         namespace)
    self.assertIs(namespace['tfp_vae'], tfp_vae)
    self.assertEqual(namespace['images'].shape, (16, 28, 28, 1))
    self.assertEqual(namespace['codes'].shape, (4, 2))
    log_px = namespace['log_px']
    self.assertEqual(log_px.shape, (4,))
    self.assertTrue(np.all(np.isfinite(log_px)))
    # log p(x) of binary images is a log-probability: at most 0.
    self.assertTrue(np.all(log_px <= 0.0))


if __name__ == '__main__':
  tf.test.main()
