"""Tests for tfp_vae.training: data order, checkpoints and resume, metrics.

Training runs here use 8x8 synthetic images, a 32-unit MLP and a few steps;
the real-data, end-to-end run is in test_train_script.py and the one- versus
two-replica comparison in test_distribute.py.
"""

import collections
import csv
import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfp_vae import data
from tfp_vae import runs
from tfp_vae import training
from tfp_vae.config import ConfigMismatchError
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SHAPE = (8, 8, 1)
# 64 training images in batches of 8: 8 steps per epoch.
NUM_TRAIN, BATCH_SIZE = 64, 8
STEPS_PER_EPOCH = NUM_TRAIN // BATCH_SIZE


def synthetic_dataset(binarization='static', num_train=NUM_TRAIN,
                      num_eval=16, seed=0):
  """An `ImageDataset` of random 8x8 images (binary, or grey for 'dynamic').

  Each image's pixels are Bernoulli (or, for 'dynamic', intensities) around
  a per-image level, so the images differ from one another.
  """
  rng = np.random.default_rng(seed)

  def images(count):
    level = rng.uniform(0.1, 0.9, (count, 1, 1, 1))
    intensities = np.clip(level + rng.uniform(-0.1, 0.1, (count,) +
                                              IMAGE_SHAPE), 0, 1)
    if binarization == 'dynamic':
      return intensities.astype(np.float32)
    return (rng.random((count,) + IMAGE_SHAPE) < intensities).astype(
        np.float32)

  return data.ImageDataset(
      name='mnist' if binarization == 'dynamic' else 'binarized_mnist',
      train_images=images(num_train), validation_images=images(num_eval),
      test_images=images(num_eval), train_labels=None,
      validation_labels=None, test_labels=None, binarization=binarization,
      image_shape=IMAGE_SHAPE, source='synthetic')


def small_model_config(**overrides):
  values = dict(image_shape=IMAGE_SHAPE, hidden_units=(32,), latent_dim=3,
                seed=0)
  values.update(overrides)
  return ModelConfig(**values)


def small_train_config(model_dir, **overrides):
  values = dict(dataset='binarized_mnist', batch_size=BATCH_SIZE, epochs=2,
                model_dir=model_dir, jit_compile=False, steps_per_execution=1,
                seed=0)
  values.update(overrides)
  return TrainConfig(**values)


def new_directory(test):
  """An empty directory, removed when `test` ends."""
  directory = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
  return directory


def training_state(model):
  """Every trained number: the weights and the optimizer's variables."""
  return ([v.numpy() for v in model.trainable_variables] +
          [v.numpy() for v in model.optimizer.variables])


def checkpoint_steps(model_dir):
  """Steps of the checkpoints on disk, and of those the state file lists."""
  directory = os.path.join(model_dir, runs.CHECKPOINT_DIR)
  on_disk = sorted(int(re.search(r'ckpt-(\d+)\.index$', path).group(1))
                   for path in glob.glob(os.path.join(directory,
                                                      'ckpt-*.index')))
  state = tf.train.get_checkpoint_state(directory)
  listed = sorted(int(path.rsplit('-', 1)[1])
                  for path in state.all_model_checkpoint_paths)
  return on_disk, listed


def checkpoint_values(path):
  """{name: value} of the float tensors saved in a checkpoint."""
  reader = tf.train.load_checkpoint(path)
  values = {}
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
      values[name] = value
  return values


def event_scalars_and_tags(directory):
  """({tag: {step: value}} of scalar summaries, set of every tag) in a dir."""
  scalars, tags = {}, set()
  paths = glob.glob(os.path.join(directory, 'events.out.tfevents.*'))
  for path in paths:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.add(value.tag)
        array = tf.make_ndarray(value.tensor)
        if array.ndim == 0 and array.dtype.kind == 'f':
          scalars.setdefault(value.tag, {})[event.step] = float(array)
  return scalars, tags


class TrainOutputsTest(tf.test.TestCase, parameterized.TestCase):
  """What one run leaves in its model directory."""

  @parameterized.named_parameters(('beta_1', 1.0), ('beta_half', 0.5))
  def test_writes_metrics_checkpoints_summaries_and_final_metrics(self, beta):
    model_dir = new_directory(self)
    result = training.train(
        small_model_config(beta=beta),
        small_train_config(model_dir, steps_per_execution=2,
                           keep_checkpoints=1),
        dataset=synthetic_dataset(), verbose=0)

    # history.json: one row per epoch, train and validation metrics.
    with open(os.path.join(model_dir, runs.HISTORY_FILE)) as f:
      rows = json.load(f)
    self.assertEqual([r['epoch'] for r in rows], [1, 2])
    self.assertEqual([r['step'] for r in rows],
                     [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH])
    names = ('loss', 'elbo', 'kl', 'nll')
    for row in rows:
      for name in names + tuple('val_' + n for n in names):
        self.assertIn(name, row)
        self.assertTrue(np.isfinite(row[name]), name)
      # Each metric is a mean of per-example terms, so the identities hold
      # for the means; training weighs the KL by beta, evaluation does not.
      self.assertAllClose(row['elbo'], -(row['nll'] + row['kl']), rtol=1e-5)
      self.assertAllClose(row['loss'], row['nll'] + beta * row['kl'],
                          rtol=1e-5)
      self.assertAllClose(row['val_elbo'], -(row['val_nll'] + row['val_kl']),
                          rtol=1e-5)
      self.assertAllClose(row['val_loss'], row['val_nll'] + row['val_kl'],
                          rtol=1e-5)
      self.assertGreater(row['kl'], 0.0)
    # Each epoch's end (Unix time, for whole-run timings) follows the
    # previous one's by at least its duration.
    self.assertLessEqual(rows[0]['end_time'] + rows[1]['seconds'],
                         rows[1]['end_time'])
    self.assertEqual(result.history['loss'], [r['loss'] for r in rows])
    self.assertEqual(result.history['val_elbo'],
                     [r['val_elbo'] for r in rows])

    # metrics.csv: the same numbers, readable by the csv module.
    with open(os.path.join(model_dir, runs.METRICS_CSV_FILE),
              newline='') as f:
      csv_rows = list(csv.DictReader(f))
    self.assertLen(csv_rows, 2)
    for row, csv_row in zip(rows, csv_rows):
      self.assertCountEqual(csv_row, row)
      for name, value in row.items():
        self.assertAllClose(float(csv_row[name]), value, rtol=1e-6)

    # final_metrics.json: the test-set metrics; ELBO = -(NLL + KL), and the
    # evaluation loss is the unweighted negative ELBO.
    with open(os.path.join(model_dir, runs.FINAL_METRICS_FILE)) as f:
      final = json.load(f)
    self.assertEqual(final, result.test_metrics)
    self.assertAllClose(final['elbo'], -(final['nll'] + final['kl']),
                        rtol=1e-5)
    self.assertAllClose(final['loss'], -final['elbo'], rtol=1e-5)
    self.assertBetween(final['elbo'], -64 * np.log(2) - 20, 0.0)

    # Checkpoints: one per epoch, of which keep_checkpoints=1 is kept.
    self.assertEqual(checkpoint_steps(model_dir),
                     ([2 * STEPS_PER_EPOCH], [2 * STEPS_PER_EPOCH]))

    # TensorBoard: per-epoch scalars for train and validation, and images.
    board = os.path.join(model_dir, runs.TENSORBOARD_DIR)
    train_scalars, _ = event_scalars_and_tags(os.path.join(board, 'train'))
    validation_scalars, _ = event_scalars_and_tags(
        os.path.join(board, 'validation'))
    # Epochs are numbered from 1, as in history.json.
    for name in names:
      self.assertAllClose(
          [train_scalars['epoch_' + name][epoch] for epoch in (1, 2)],
          [r[name] for r in rows], rtol=1e-6)
      self.assertAllClose(
          [validation_scalars['epoch_' + name][epoch] for epoch in (1, 2)],
          [r['val_' + name] for r in rows], rtol=1e-6)
    _, image_tags = event_scalars_and_tags(os.path.join(board, 'images'))
    self.assertContainsSubset({'reconstructions', 'prior_samples'},
                              image_tags)

    # The final model and the plots.
    self.assertTrue(os.path.exists(os.path.join(model_dir,
                                                runs.MODEL_FILE)))
    for name in ('learning_curves', 'reconstructions', 'prior_samples',
                 'latent_scatter'):
      self.assertTrue(os.path.exists(os.path.join(
          model_dir, runs.PLOTS_DIR, name + '.png')), name)

  def test_checkpoints_every_n_steps_keep_the_newest(self):
    model_dir = new_directory(self)
    training.train(
        small_model_config(),
        small_train_config(model_dir, checkpoint_every_steps=3,
                           keep_checkpoints=3),
        dataset=synthetic_dataset(), verbose=0)
    # Saved at steps 3, 6, 8 (end of epoch 1), 9, 12, 15 and 16 (end of
    # epoch 2); the newest three are kept, on disk and in the state file.
    self.assertEqual(checkpoint_steps(model_dir), ([12, 15, 16],) * 2)
    loaded = runs.load_trained_model(model_dir, source='checkpoint')
    self.assertEqual(os.path.basename(loaded.checkpoint_path), 'ckpt-16')
    self.assertEqual(int(loaded.model.optimizer.iterations.numpy()), 16)

  def test_images_of_the_wrong_shape_are_refused(self):
    model_dir = os.path.join(new_directory(self), 'run')
    with self.assertRaisesRegex(ValueError, r'\(8, 8, 1\)'):
      training.train(small_model_config(image_shape=(28, 28, 1)),
                     small_train_config(model_dir),
                     dataset=synthetic_dataset(), verbose=0)
    self.assertFalse(os.path.exists(model_dir))

  def test_a_batch_larger_than_the_training_set_is_refused(self):
    model_dir = os.path.join(new_directory(self), 'run')
    with self.assertRaisesRegex(ValueError, '--batch_size=65'):
      training.train(small_model_config(),
                     small_train_config(model_dir, batch_size=65),
                     dataset=synthetic_dataset(), verbose=0)
    self.assertFalse(os.path.exists(model_dir))


class ResumeTest(tf.test.TestCase, parameterized.TestCase):
  """An interrupted run, rerun, ends exactly where an uninterrupted one does.

  The model has a KL warm-up longer than the run (the KL weight depends on
  the step), input noise and dynamically binarized data, so the step
  counter, the data position and every noise stream must all be restored.
  """

  MODEL_CONFIG = small_model_config(kl_warmup_steps=20,
                                    input_noise_stddev=0.1)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dataset = synthetic_dataset(binarization='dynamic')
    cls.reference_dir = tempfile.mkdtemp()
    cls.reference = training.train(
        cls.MODEL_CONFIG, cls.train_config(cls.reference_dir, epochs=2),
        dataset=cls.dataset, verbose=0)
    cls.reference_state = training_state(cls.reference.model)

  @staticmethod
  def train_config(model_dir, epochs):
    return small_train_config(model_dir, epochs=epochs,
                              checkpoint_every_steps=3, keep_checkpoints=5)

  def assert_same_training_state(self, model):
    self.assertEqual(int(model.optimizer.iterations.numpy()),
                     2 * STEPS_PER_EPOCH)
    state = training_state(model)
    self.assertLen(state, len(self.reference_state))
    for variable, value, expected in zip(
        model.trainable_variables + model.optimizer.variables, state,
        self.reference_state):
      # Exactly equal: same batches, same noise, same float operations.
      self.assertTrue(np.array_equal(value, expected), variable.name)

  def test_resuming_after_an_epoch_ends_as_an_uninterrupted_run(self):
    model_dir = new_directory(self)
    first = training.train(self.MODEL_CONFIG,
                           self.train_config(model_dir, epochs=1),
                           dataset=self.dataset, verbose=0)
    self.assertEqual(int(first.model.optimizer.iterations.numpy()),
                     STEPS_PER_EPOCH)
    with open(os.path.join(model_dir, runs.HISTORY_FILE)) as f:
      first_rows = json.load(f)
    resumed = training.train(self.MODEL_CONFIG,
                             self.train_config(model_dir, epochs=2),
                             dataset=self.dataset, verbose=0)
    self.assert_same_training_state(resumed.model)
    # The history goes on: epoch 1 as the first run wrote it, epoch 2 as the
    # uninterrupted run computed it.
    with open(os.path.join(model_dir, runs.HISTORY_FILE)) as f:
      rows = json.load(f)
    self.assertEqual(rows[0], first_rows[0])
    self.assertEqual([r['step'] for r in rows], [8, 16])
    for name in ('loss', 'elbo', 'kl', 'nll', 'val_loss', 'val_elbo'):
      self.assertEqual(resumed.history[name], self.reference.history[name],
                       name)
    self.assertEqual(resumed.test_metrics, self.reference.test_metrics)

  def test_resuming_mid_epoch_ends_as_an_uninterrupted_run(self):
    model_dir = new_directory(self)
    training.train(self.MODEL_CONFIG, self.train_config(model_dir, epochs=1),
                   dataset=self.dataset, verbose=0)
    # Make it a run that stopped after step 6 of 8: forget the checkpoint of
    # step 8, as if the process had been killed before writing it.
    checkpoint_dir = os.path.join(model_dir, runs.CHECKPOINT_DIR)
    self.assertEqual(checkpoint_steps(model_dir), ([3, 6, 8],) * 2)
    for path in glob.glob(os.path.join(checkpoint_dir, 'ckpt-8.*')):
      os.remove(path)
    # The state file as the CheckpointManager left it after saving step 6.
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    tf.compat.v1.train.update_checkpoint_state(
        checkpoint_dir, state.all_model_checkpoint_paths[1],
        all_model_checkpoint_paths=state.all_model_checkpoint_paths[:2],
        all_model_checkpoint_timestamps=(
            state.all_model_checkpoint_timestamps[:2]),
        last_preserved_timestamp=state.last_preserved_timestamp)

    resumed = training.train(self.MODEL_CONFIG,
                             self.train_config(model_dir, epochs=2),
                             dataset=self.dataset, verbose=0)
    self.assert_same_training_state(resumed.model)
    # Steps 3 and 6 before, 8, 9, 12, 15 and 16 after; the newest five kept.
    self.assertEqual(checkpoint_steps(model_dir), ([8, 9, 12, 15, 16],) * 2)
    # Epoch 2 and every validation metric are as uninterrupted. (The train
    # metrics of epoch 1 average only steps 7 and 8: Keras resets running
    # means when an epoch starts.)
    with open(os.path.join(model_dir, runs.HISTORY_FILE)) as f:
      rows = json.load(f)
    self.assertEqual([r['epoch'] for r in rows], [1, 2])
    for name in ('loss', 'elbo', 'kl', 'nll'):
      self.assertEqual(resumed.history[name][1],
                       self.reference.history[name][1], name)
      self.assertEqual(resumed.history['val_' + name],
                       self.reference.history['val_' + name], name)
    self.assertEqual(resumed.test_metrics, self.reference.test_metrics)

  def test_rerunning_a_finished_run_trains_no_further(self):
    model_dir = new_directory(self)
    config = self.train_config(model_dir, epochs=1)
    first = training.train(self.MODEL_CONFIG, config, dataset=self.dataset,
                           verbose=0)
    again = training.train(self.MODEL_CONFIG, config, dataset=self.dataset,
                           verbose=0)
    self.assertEqual(int(again.model.optimizer.iterations.numpy()),
                     STEPS_PER_EPOCH)
    for value, expected in zip(training_state(again.model),
                               training_state(first.model)):
      self.assertTrue(np.array_equal(value, expected))
    self.assertEqual(again.history, first.history)
    self.assertEqual(again.test_metrics, first.test_metrics)

  def test_a_different_configuration_is_not_resumed(self):
    with self.assertRaises(ConfigMismatchError) as raised:
      training.train(
          small_model_config(kl_warmup_steps=10, input_noise_stddev=0.1),
          small_train_config(self.reference_dir, learning_rate=0.01),
          dataset=self.dataset, verbose=0)
    # Every setting that differs is named, as its flag.
    self.assertIn('--learning_rate', str(raised.exception))
    self.assertIn('--kl_warmup_steps', str(raised.exception))
    # The run in the directory is untouched.
    model_config, train_config = runs.read_configs(self.reference_dir)
    self.assertEqual(model_config, self.MODEL_CONFIG)
    self.assertEqual(train_config.learning_rate, 1e-3)


class ConfigFromBeforeALaterSettingTest(tf.test.TestCase,
                                        parameterized.TestCase):
  """A run stored before `full_cov_off_diagonal_scale` existed (c was 1)."""

  def old_run_dir(self, model_config):
    model_dir = new_directory(self)
    train_config = small_train_config(model_dir)
    stored = {'model': model_config.to_dict(), 'train': train_config.to_dict()}
    del stored['model']['full_cov_off_diagonal_scale']
    with open(os.path.join(model_dir, runs.CONFIG_FILE), 'w') as f:
      json.dump(stored, f)
    return train_config

  @parameterized.parameters('diag', 'deterministic')
  def test_the_same_command_resumes_where_the_setting_changes_nothing(
      self, posterior):
    model_config = small_model_config(posterior=posterior)
    train_config = self.old_run_dir(model_config)
    self.assertTrue(runs.prepare_model_dir(
        model_config, train_config, write=False))

  def test_full_cov_resumes_with_the_old_value_and_not_the_new_default(self):
    model_config = small_model_config(posterior='full_cov')
    train_config = self.old_run_dir(model_config)
    with self.assertRaisesRegex(
        ConfigMismatchError,
        r'--full_cov_off_diagonal_scale: saved 1\.0, requested 0\.03'):
      runs.prepare_model_dir(
          model_config, train_config, write=False)
    old_model_config = small_model_config(posterior='full_cov',
                                          full_cov_off_diagonal_scale=1.0)
    self.assertTrue(runs.prepare_model_dir(
        old_model_config, train_config, write=False))


class NonFiniteLossTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('one_step_per_call', 1),
                                  ('two_steps_per_call', 2))
  def test_stops_with_the_step_and_keeps_the_last_good_checkpoint(
      self, steps_per_execution):
    model_dir = new_directory(self)
    # Adam moves every weight by about the learning rate per step: 1e5
    # overflows float32 in the third or fourth step, after a good one.
    with self.assertRaisesRegex(training.NonFiniteLossError,
                                r'step \d+') as raised:
      training.train(
          small_model_config(posterior='full_cov'),
          small_train_config(model_dir, epochs=3, learning_rate=1e5,
                             checkpoint_every_steps=1, keep_checkpoints=100,
                             steps_per_execution=steps_per_execution),
          dataset=synthetic_dataset(), verbose=0)
    message = str(raised.exception)
    self.assertIn(os.path.join(model_dir, runs.CHECKPOINT_DIR), message)
    failed_step = int(re.findall(r'\d+', message.split('step', 1)[1])[0])

    on_disk, listed = checkpoint_steps(model_dir)
    self.assertEqual(on_disk, listed)
    self.assertNotEmpty(on_disk, 'no good checkpoint was kept')
    self.assertLessEqual(max(on_disk), failed_step)
    # Every kept checkpoint, the newest included, holds finite numbers.
    checkpoint_dir = os.path.join(model_dir, runs.CHECKPOINT_DIR)
    for step in on_disk:
      for name, value in checkpoint_values(
          os.path.join(checkpoint_dir, f'ckpt-{step}')).items():
        self.assertTrue(np.all(np.isfinite(value)), f'ckpt-{step}: {name}')
    loaded = runs.load_trained_model(model_dir, source='checkpoint')
    self.assertEqual(os.path.basename(loaded.checkpoint_path),
                     f'ckpt-{max(on_disk)}')
    for value in training_state(loaded.model):
      self.assertTrue(np.all(np.isfinite(value)))
    # No final model or metrics of a failed run.
    self.assertFalse(os.path.exists(os.path.join(model_dir,
                                                 runs.MODEL_FILE)))
    self.assertFalse(os.path.exists(os.path.join(
        model_dir, runs.FINAL_METRICS_FILE)))


class JitCompileTest(tf.test.TestCase, parameterized.TestCase):

  def train_both(self, **model_overrides):
    results = {}
    for jit_compile in (False, True):
      results[jit_compile] = training.train(
          small_model_config(**model_overrides),
          small_train_config(new_directory(self), epochs=1,
                             jit_compile=jit_compile, steps_per_execution=2),
          dataset=synthetic_dataset(), verbose=0)
    return results[False], results[True]

  def test_xla_computes_the_same_training_without_sampling_noise(self):
    # A point-mass posterior draws no noise: XLA must compute the same steps
    # as TensorFlow's kernels, up to float rounding.
    eager, xla = self.train_both(posterior='deterministic')
    for name in ('loss', 'val_loss'):
      self.assertAllClose(xla.history[name], eager.history[name], rtol=1e-5)
    self.assertAllClose(xla.test_metrics, eager.test_metrics, rtol=1e-5)
    for value, expected in zip(training_state(xla.model),
                               training_state(eager.model)):
      self.assertAllClose(value, expected, rtol=1e-4, atol=1e-5)

  def test_xla_trains_a_gaussian_posterior_to_close_losses(self):
    eager, xla = self.train_both(posterior='full_cov')
    for name in ('loss', 'nll', 'kl', 'val_loss'):
      self.assertTrue(np.all(np.isfinite(xla.history[name])), name)
    # Not to float precision: under XLA `tf.random.stateless_normal` turns
    # the same random bits into other normal draws than TensorFlow's
    # kernels do (for every `alg`), so the two runs sample different latents
    # from one seed, in training and in evaluation. Their losses agree to
    # Monte Carlo precision: single-sample ELBOs of 16 images differ by
    # about 1 nat in 45 here.
    for name in ('loss', 'val_loss'):
      self.assertAllClose(xla.history[name], eager.history[name], rtol=0.05)
    self.assertAllClose(xla.test_metrics['elbo'], eager.test_metrics['elbo'],
                        rtol=0.05)


def newest_checkpoint_tensors(model_dir):
  """{name: value} of every tensor of the newest checkpoint, but its counter."""
  path = tf.train.latest_checkpoint(os.path.join(model_dir,
                                                 runs.CHECKPOINT_DIR))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if not name.startswith(('save_counter', '_CHECKPOINTABLE'))}


class ProtocolResumeTest(tf.test.TestCase, parameterized.TestCase):
  """The stateful pieces of a training protocol resume exactly.

  The reference run lowers its learning rate on plateaus (patience 1) and
  stops early with patience 2; its learning rate is high enough (0.1) for
  the validation ELBO of the synthetic data to fall in epochs 4 and 6, so
  the plateau schedule lowers the rate after epochs 4 and 6, and early
  stopping's counter is 1 at the end, with the best weights those of epoch
  5. The KL warm-up is set in epochs and each execution runs 3 steps.
  """

  MODEL_CONFIG = small_model_config(kl_warmup_epochs=1)
  EPOCHS = 6

  @classmethod
  def train_config(cls, model_dir, **overrides):
    values = dict(epochs=cls.EPOCHS, learning_rate=0.1,
                  learning_rate_schedule='plateau', learning_rate_patience=1,
                  early_stopping_patience=2, steps_per_execution=3,
                  checkpoint_every_steps=3, keep_checkpoints=20)
    values.update(overrides)
    return small_train_config(model_dir, **values)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dataset = synthetic_dataset(binarization='dynamic')
    cls.reference_dir = tempfile.mkdtemp()
    cls.reference = training.train(
        cls.MODEL_CONFIG, cls.train_config(cls.reference_dir),
        dataset=cls.dataset, verbose=0)
    cls.reference_tensors = newest_checkpoint_tensors(cls.reference_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.reference_dir, ignore_errors=True)
    super().tearDownClass()

  def test_the_reference_exercises_every_piece_of_state(self):
    history = self.reference.history
    self.assertEqual(history['step'], [8, 16, 24, 32, 40, 48])
    # Lowered after epochs 4 and 6: epoch 5 runs at half the rate.
    self.assertAllClose(history['learning_rate'],
                        [0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    tensors = self.reference_tensors
    plateau = 'optimizer/_learning_rate/{}/.ATTRIBUTES/VARIABLE_VALUE'
    self.assertAllClose(tensors[plateau.format('learning_rate')], 0.025)
    self.assertEqual(tensors[plateau.format('best')],
                     max(history['val_elbo']))
    stopping = 'early_stopping/{}/.ATTRIBUTES/VARIABLE_VALUE'
    self.assertEqual(tensors[stopping.format('wait')], 1)
    self.assertEqual(tensors[stopping.format('best_epoch')],
                     1 + int(np.argmax(history['val_elbo'])))
    self.assertEqual(tensors[stopping.format('best_epoch')], 5)
    # The final model holds the best epoch's weights, the checkpoint the
    # last epoch's.
    kernel = [v for v in self.reference.model.weights
              if 'kernel' in v.name][0]
    index = [w.name for w in self.reference.model.weights].index(kernel.name)
    best = tensors[stopping.format(f'best_weights/{index}')]
    self.assertTrue(np.array_equal(kernel.numpy(), best))
    self.assertFalse(any(
        np.array_equal(value, best) for name, value in tensors.items()
        if name.startswith('model/') and value.shape == best.shape))

  def test_config_json_holds_the_resolved_settings(self):
    model_config, train_config = runs.read_configs(self.reference_dir)
    self.assertEqual(model_config.kl_warmup_steps, STEPS_PER_EPOCH)
    self.assertEqual(model_config.kl_warmup_epochs, 0)
    self.assertEqual(train_config.binarization, 'dynamic')
    # The same request resumes it.
    self.assertTrue(runs.prepare_model_dir(
        *training.config_lib.resolve_run_settings(
            self.MODEL_CONFIG, self.train_config(self.reference_dir),
            'dynamic', STEPS_PER_EPOCH), write=False))

  def assert_ends_as_the_reference(self, model_dir, result):
    tensors = newest_checkpoint_tensors(model_dir)
    self.assertCountEqual(tensors, self.reference_tensors)
    for name, expected in self.reference_tensors.items():
      # Weights, Adam's moments, the step, the plateau schedule's and early
      # stopping's state: all exactly equal.
      self.assertTrue(np.array_equal(tensors[name], expected), name)
    for value, expected in zip(result.model.get_weights(),
                               self.reference.model.get_weights()):
      self.assertTrue(np.array_equal(value, expected))
    for name in ('val_elbo', 'val_loss', 'learning_rate', 'step'):
      self.assertEqual(result.history[name], self.reference.history[name],
                       name)
    self.assertEqual(result.test_metrics, self.reference.test_metrics)

  @parameterized.named_parameters(
      ('stopped_by_epochs', dict(epochs=4), None),
      # Inside epoch 4, and not at a multiple of the 3 steps per execution.
      ('stopped_by_max_steps', dict(max_steps=29), None),
      # Killed after the checkpoint of step 30, before that of step 32.
      ('killed', dict(epochs=4), 32),
  )
  def test_a_resumed_run_ends_as_an_uninterrupted_one(self, first_leg,
                                                       lost_step):
    model_dir = new_directory(self)
    first = training.train(self.MODEL_CONFIG,
                           self.train_config(model_dir, **first_leg),
                           dataset=self.dataset, verbose=0)
    if 'max_steps' in first_leg:
      self.assertEqual(int(first.model.optimizer.iterations.numpy()), 29)
      # The epoch so far has a row, replaced when a rerun completes it.
      self.assertEqual(first.history['step'], [8, 16, 24, 29])
    if lost_step:
      for path in glob.glob(os.path.join(model_dir, runs.CHECKPOINT_DIR,
                                         f'ckpt-{lost_step}.*')):
        os.remove(path)
    resumed = training.train(self.MODEL_CONFIG, self.train_config(model_dir),
                             dataset=self.dataset, verbose=0)
    self.assert_ends_as_the_reference(model_dir, resumed)

  def test_a_run_stopped_early_stays_stopped_until_given_more_patience(self):
    model_dir = new_directory(self)
    # With patience 1 the run stops after epoch 4, whose ELBO is no better.
    impatient = self.train_config(model_dir, early_stopping_patience=1)
    first = training.train(self.MODEL_CONFIG, impatient,
                           dataset=self.dataset, verbose=0)
    self.assertEqual(first.history['step'], [8, 16, 24, 32])
    best_epoch = 1 + int(np.argmax(first.history['val_elbo']))
    self.assertEqual(best_epoch, 3)
    # The same command trains no further and ends with the best weights.
    again = training.train(self.MODEL_CONFIG, impatient,
                           dataset=self.dataset, verbose=0)
    self.assertEqual(int(again.model.optimizer.iterations.numpy()), 32)
    for value, expected in zip(again.model.get_weights(),
                               first.model.get_weights()):
      self.assertTrue(np.array_equal(value, expected))
    self.assertEqual(again.test_metrics, first.test_metrics)
    # More patience goes on from the last epoch's weights and counters,
    # exactly as a run with that patience from the start.
    resumed = training.train(self.MODEL_CONFIG, self.train_config(model_dir),
                             dataset=self.dataset, verbose=0)
    self.assert_ends_as_the_reference(model_dir, resumed)

  def test_a_checkpoint_without_early_stopping_state_resumes(self):
    model_dir = new_directory(self)
    training.train(self.MODEL_CONFIG,
                   self.train_config(model_dir, epochs=1,
                                     early_stopping_patience=0),
                   dataset=self.dataset, verbose=0)
    with self.assertLogs(level='WARNING') as logs:
      resumed = training.train(self.MODEL_CONFIG,
                               self.train_config(model_dir, epochs=2),
                               dataset=self.dataset, verbose=0)
    self.assertIn('holds no early_stopping state', '\n'.join(logs.output))
    self.assertEqual(resumed.history['step'], [8, 16])
    tensors = newest_checkpoint_tensors(model_dir)
    # Counted from epoch 2, the first it saw.
    self.assertEqual(
        tensors['early_stopping/best_epoch/.ATTRIBUTES/VARIABLE_VALUE'], 2)


class StepBudgetTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('one_step_per_call', 1),
                                  ('four_steps_per_call', 4))
  def test_stops_at_exactly_max_steps_and_a_larger_budget_goes_on(
      self, steps_per_execution):
    model_dir = new_directory(self)
    config = small_train_config(model_dir, epochs=3, max_steps=10,
                                steps_per_execution=steps_per_execution)
    first = training.train(small_model_config(), config,
                           dataset=synthetic_dataset(), verbose=0)
    self.assertEqual(int(first.model.optimizer.iterations.numpy()), 10)
    self.assertEqual(checkpoint_steps(model_dir)[0], [8, 10])
    self.assertTrue(os.path.exists(os.path.join(model_dir, runs.MODEL_FILE)))
    # max_steps may change on resume; epochs then bound the run.
    more = training.train(
        small_model_config(),
        small_train_config(model_dir, epochs=3, max_steps=100,
                           steps_per_execution=steps_per_execution),
        dataset=synthetic_dataset(), verbose=0)
    self.assertEqual(int(more.model.optimizer.iterations.numpy()),
                     3 * STEPS_PER_EPOCH)
    self.assertEqual(more.history['step'], [8, 16, 24])


class ScheduleResumeSettingsTest(tf.test.TestCase):

  def test_a_cosine_run_refuses_a_new_length_naming_the_schedule(self):
    model_dir = new_directory(self)
    config = small_train_config(model_dir, epochs=1,
                                learning_rate_schedule='cosine')
    training.train(small_model_config(), config,
                   dataset=synthetic_dataset(), verbose=0)
    with self.assertRaises(ConfigMismatchError) as raised:
      runs.prepare_model_dir(
          small_model_config(),
          small_train_config(model_dir, epochs=2, binarization='static',
                             learning_rate_schedule='cosine'), write=False)
    message = str(raised.exception)
    self.assertIn('--epochs: saved 1, requested 2', message)
    self.assertIn('--learning_rate_schedule=cosine', message)

  def test_an_old_config_json_without_resolved_binarization_resumes(self):
    model_dir = new_directory(self)
    train_config = small_train_config(model_dir)
    stored = {'model': small_model_config().to_dict(),
              'train': train_config.to_dict()}
    self.assertEqual(stored['train']['binarization'], '')
    for name in ('max_steps', 'learning_rate_schedule', 'adam_epsilon'):
      del stored['train'][name]
    del stored['model']['kl_warmup_epochs']
    with open(os.path.join(model_dir, runs.CONFIG_FILE), 'w') as f:
      json.dump(stored, f)
    resolved = dataclasses.replace(train_config, binarization='static')
    self.assertTrue(runs.prepare_model_dir(small_model_config(), resolved,
                                           write=True))
    # And config.json now says what the run resolved.
    self.assertEqual(runs.read_configs(model_dir)[1].binarization, 'static')


class XlaCompilationsTest(tf.test.TestCase):
  """Each XLA-compiled step compiles once per run (counted, not timed)."""

  def test_training_and_evaluation_steps_compile_once(self):
    # Epochs of 7 steps run 3 at a time end with a 1-step execution, and 20
    # evaluation images in batches of 8 end with a batch of 4: neither may
    # compile its step a second time (on binarized MNIST each compilation
    # of a full_cov step costs seconds, the fused training loop's tens).
    root = new_directory(self)
    dump_dir = os.path.join(root, 'xla_dump')
    env = dict(os.environ, XLA_FLAGS=f'--xla_dump_to={dump_dir}',
               TF_CPP_MIN_LOG_LEVEL='2', MPLCONFIGDIR=root,
               PYTHONPATH=os.pathsep.join(
                   [_REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    process = subprocess.run(
        [sys.executable, os.path.join(_REPO, 'tests',
                                      '_xla_compilations_main.py'),
         os.path.join(root, 'run'), 'full_cov'],
        env=env, cwd=root, capture_output=True, text=True, timeout=600)
    self.assertEqual(process.returncode, 0, process.stderr[-3000:])
    # XLA writes one <module>.before_optimizations.txt per compilation,
    # named after the compiled function: run_steps is the fused training
    # loop (model.make_train_function), run_step Keras's evaluation step.
    compiled = collections.Counter(
        re.search(r'a_inference_(\w+?)_\d+__', name).group(1)
        for name in os.listdir(dump_dir)
        if name.endswith('.before_optimizations.txt'))
    self.assertEqual(compiled, {'run_steps': 1, 'run_step': 1})


if __name__ == '__main__':
  tf.test.main()
