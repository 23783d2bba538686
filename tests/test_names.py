"""Tests for tfp_vae.names: the tables agree with the code that uses them."""

import os
import subprocess
import sys

from absl.testing import parameterized
import tensorflow as tf

from tfp_vae import config
from tfp_vae import names

_PACKAGE_DIR = os.path.dirname(os.path.abspath(names.__file__))


class NamesTest(tf.test.TestCase, parameterized.TestCase):

  def test_every_dataset_has_an_image_shape_and_binarizations(self):
    self.assertEqual(tuple(names.DATASET_IMAGE_SHAPES), names.DATASET_NAMES)
    self.assertEqual(tuple(names.DATASET_BINARIZATIONS), names.DATASET_NAMES)
    for name in names.DATASET_NAMES:
      height, width, channels = names.DATASET_IMAGE_SHAPES[name]
      self.assertGreater(height * width, 0)
      self.assertEqual(channels, 1)
      allowed = names.DATASET_BINARIZATIONS[name]
      self.assertNotEmpty(allowed)
      self.assertContainsSubset(allowed, names.BINARIZATIONS)

  def test_evaluation_splits_are_the_splits(self):
    self.assertCountEqual(names.EVALUATION_SPLITS, names.SPLITS)
    self.assertEqual(names.EVALUATION_SPLITS[0], 'test')  # The default.

  def test_no_table_repeats_a_name(self):
    for table in (names.DATASET_NAMES, names.BINARIZATIONS, names.SPLITS,
                  names.POSTERIORS, names.LIKELIHOODS, names.NORMAL_SCALES,
                  names.PRIORS, names.KL_ESTIMATORS, names.OBJECTIVES,
                  names.ARCHITECTURES, names.ACTIVATIONS, names.STRATEGIES):
      self.assertLen(set(table), len(table), table)

  @parameterized.parameters(
      ('posterior', names.POSTERIORS), ('likelihood', names.LIKELIHOODS),
      ('normal_scale', names.NORMAL_SCALES), ('prior', names.PRIORS),
      ('kl', names.KL_ESTIMATORS), ('objective', names.OBJECTIVES),
      ('architecture', names.ARCHITECTURES),
      ('activation', names.ACTIVATIONS))
  def test_model_config_accepts_exactly_the_names(self, field, table):
    compatible = dict(kl='mc', objective='elbo', conv_filters=(4,))
    for value in table:
      settings = {**compatible, field: value}
      self.assertEqual(getattr(config.ModelConfig(**settings), field), value)
    with self.assertRaisesRegex(ValueError, f'--{field}=.*must be one of '
                                f'{", ".join(table)}'):
      config.ModelConfig(**{**compatible, field: 'no_such_name'})

  @parameterized.parameters(
      ('dataset', names.DATASET_NAMES), ('strategy', names.STRATEGIES),
      ('binarization', ('',) + names.BINARIZATIONS))
  def test_train_config_accepts_exactly_the_names(self, field, table):
    for value in table:
      self.assertEqual(getattr(config.TrainConfig(**{field: value}), field),
                       value)
    with self.assertRaisesRegex(ValueError, f'--{field}='):
      config.TrainConfig(**{field: 'no_such_name'})

  @parameterized.parameters('names.py', '_checks.py')
  def test_module_imports_no_tensorflow(self, file_name):
    # Loaded on its own, without the package (whose __init__ imports
    # TensorFlow), in a fresh interpreter.
    path = os.path.join(_PACKAGE_DIR, file_name)
    program = (
        'import importlib.util, sys\n'
        f'spec = importlib.util.spec_from_file_location("m", {path!r})\n'
        'spec.loader.exec_module(importlib.util.module_from_spec(spec))\n'
        'assert "tensorflow" not in sys.modules, "tensorflow was imported"\n')
    result = subprocess.run([sys.executable, '-c', program],
                            capture_output=True, text=True, timeout=60)
    self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == '__main__':
  tf.test.main()
