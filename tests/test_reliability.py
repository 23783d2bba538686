"""What happens when things go wrong: kills, damaged checkpoints, a
non-finite loss, bad input, tampered files.

Each test states what a user sees and what is kept. Training runs are tiny
(an MLP with 32 hidden units and a 2-d latent on a random subset of the
binarized MNIST) and a few dozen steps long. Multi-worker failures are in
test_multi_worker.py.
"""

import atexit
import contextlib
import functools
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import unittest.mock
import zipfile

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import callbacks as callbacks_lib
from tfp_vae import data as data_lib
from tfp_vae import evaluation
from tfp_vae import runs
from tfp_vae import training
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

import _test_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRAIN_SCRIPT = os.path.join(_REPO, 'scripts', 'train.py')
_CLI_DRIVER = os.path.join(_REPO, 'tests', '_train_cli.py')
# The test classes that train, or read `_reference_run`, load the session's
# small binarized MNIST files (tests/_test_data.py).
_NEEDS_DATA = pytest.mark.usefixtures('dataset_files')
# Generous (a TensorFlow import per process, maybe a busy machine); a process
# still running then is hung, and is killed.
_PROCESS_TIMEOUT_SECONDS = 400

# The run most tests start from: 200 training images in batches of 20, so
# 10 steps per epoch, 2 epochs; checkpoints every 3 steps and at each
# epoch's end, the newest 3 kept (steps 15, 18 and 20 at the end).
_STEPS_PER_EPOCH = 10
_EPOCHS = 2
_KEPT_STEPS = (15, 18, 20)


def _base_flags():
  return ('--dataset=binarized_mnist',
          f'--data_dir={_test_data.data_dir("binarized_mnist")}',
          '--max_train_examples=200', '--batch_size=20',
          f'--epochs={_EPOCHS}', '--hidden_units=32', '--latent_dim=2',
          '--posterior=diag', '--nojit_compile',
          '--steps_per_execution=1', '--checkpoint_every_steps=3',
          '--keep_checkpoints=3', '--seed=0')


def _base_configs(model_dir, **train_changes):
  """The configs `_base_flags` make (scripts/train.py with those flags)."""
  model_config = ModelConfig(image_shape=(28, 28, 1), hidden_units=(32,),
                             latent_dim=2, posterior='diag', seed=0)
  train_config = TrainConfig(
      dataset='binarized_mnist',
      data_dir=_test_data.data_dir('binarized_mnist'), max_train_examples=200,
      batch_size=20, epochs=_EPOCHS, model_dir=model_dir, jit_compile=False,
      steps_per_execution=1, checkpoint_every_steps=3, keep_checkpoints=3,
      seed=0)
  return model_config, TrainConfig(**{**train_config.to_dict(),
                                      **train_changes})


@functools.lru_cache(maxsize=None)
def _reference_run():
  """A finished run of `_base_configs`, trained once per test process."""
  root = tempfile.mkdtemp()
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  model_dir = os.path.join(root, 'reference')
  training.train(*_base_configs(model_dir), verbose=0)
  return model_dir


def _copy_of_reference(root):
  copy = os.path.join(root, 'run')
  shutil.copytree(_reference_run(), copy)
  return copy


def _snapshot(directory):
  """{relative path: sha256} of every file under `directory`."""
  digests = {}
  for parent, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(parent, name)
      with open(path, 'rb') as f:
        digests[os.path.relpath(path, directory)] = hashlib.sha256(
            f.read()).hexdigest()
  return digests


def _state(model):
  """Every variable a checkpoint restores: weights, metrics, optimizer."""
  return ([(v.name, v.numpy()) for v in model.weights] +
          [(v.name, v.numpy()) for v in model.optimizer.variables])


def _temp_dir(test):
  """A fresh directory, removed after `test` (absltest's create_tempdir
  needs absl's flags parsed, which pytest does not do)."""
  directory = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, directory, ignore_errors=True)
  return directory


def _environment(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **extra)


def _has_traceback(text):
  return 'Traceback (most recent call last)' in text


def _train_command(model_dir, *flags):
  return [sys.executable, _TRAIN_SCRIPT, *flags, f'--model_dir={model_dir}']


@contextlib.contextmanager
def _started(command, log_path):
  """Popen with stdout+stderr to `log_path`; killed on the way out."""
  with open(log_path, 'w') as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=_environment(), cwd=_REPO)
  try:
    yield process
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()


def _checkpoint_steps(checkpoint_dir):
  if not os.path.isdir(checkpoint_dir):
    return []
  return sorted(int(name[len('ckpt-'):-len('.index')])
                for name in os.listdir(checkpoint_dir)
                if re.fullmatch(r'ckpt-\d+\.index', name))


def _writes_in_flight(checkpoint_dir):
  """TensorFlow writes a checkpoint into `<prefix>_temp/`, then renames."""
  try:
    return [n for n in os.listdir(checkpoint_dir) if n.endswith('_temp')]
  except FileNotFoundError:
    return []


################################################################################
# Killed runs.
################################################################################


@_NEEDS_DATA
class KillAndRerunTest(tf.test.TestCase):
  """SIGKILL `scripts/train.py` at random points; rerunning finishes it.

  With a fixed seed the final state equals an uninterrupted run's exactly:
  the data order of epoch e is a stateless function of (seed, e), the noise
  of step t one of (seed, t), and the position is the optimizer's step
  counter. Documented exception, tested here: history.json's *training*
  metrics of an epoch resumed mid-way average only the batches run after the
  resume (Keras resets its running means when an epoch starts); validation
  and test metrics, weights and optimizer state are exact.
  """

  # XLA on (the default), a checkpoint after every step: writes are frequent,
  # so kills land in them. The protocol's state that depends on past
  # validation metrics (plateau schedule, early stopping with its best
  # weights, which model.keras holds) must survive the kills too.
  def _flags(self):
    return ('--dataset=binarized_mnist',
            f'--data_dir={_test_data.data_dir("binarized_mnist")}',
            '--max_train_examples=200', '--batch_size=20', '--epochs=3',
            '--hidden_units=32', '--latent_dim=2', '--posterior=diag',
            '--checkpoint_every_steps=1', '--steps_per_execution=1',
            '--keep_checkpoints=3', '--seed=3',
            '--learning_rate_schedule=plateau', '--learning_rate_patience=1',
            '--early_stopping_patience=2')

  _TOTAL_STEPS = 3 * _STEPS_PER_EPOCH

  def _kill(self, process, checkpoint_dir, wait_for, rng, deadline):
    """Waits as `wait_for` says, then SIGKILLs; returns what was seen."""
    steps_before = max(_checkpoint_steps(checkpoint_dir), default=0)
    in_flight = []
    while process.poll() is None and time.time() < deadline:
      steps = max(_checkpoint_steps(checkpoint_dir), default=0)
      if wait_for == 'a checkpoint write':
        in_flight = _writes_in_flight(checkpoint_dir)
        if in_flight:
          break
        time.sleep(0.001)
      else:  # 'progress': a new checkpoint, then a seeded random delay.
        if steps > steps_before:
          time.sleep(rng.uniform(0.0, 1.0))
          break
        time.sleep(0.01)
    was_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return {'wait_for': wait_for, 'was_running': was_running,
            'write_in_flight': in_flight,
            'left_behind': _writes_in_flight(checkpoint_dir),
            'steps_after': _checkpoint_steps(checkpoint_dir)}

  def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(
      self):
    root = _temp_dir(self)
    reference_dir = os.path.join(root, 'reference')
    run_dir = os.path.join(root, 'run')
    checkpoint_dir = os.path.join(run_dir, runs.CHECKPOINT_DIR)
    rng = random.Random(1234)
    deadline = time.time() + _PROCESS_TIMEOUT_SECONDS
    kills, logs = [], []
    with _started(_train_command(reference_dir, *self._flags()),
                  os.path.join(root, 'reference.log')) as reference:
      # Killed while a checkpoint is being written, then twice at random.
      for attempt, wait_for in enumerate(
          ['a checkpoint write', 'progress', 'progress']):
        log_path = os.path.join(root, f'attempt{attempt}.log')
        with _started(_train_command(run_dir, *self._flags()),
                      log_path) as process:
          kills.append(self._kill(process, checkpoint_dir, wait_for, rng,
                                  deadline))
        with open(log_path) as f:
          logs.append(f.read())
      final = subprocess.run(
          _train_command(run_dir, *self._flags()), capture_output=True,
          text=True, env=_environment(), cwd=_REPO,
          timeout=_PROCESS_TIMEOUT_SECONDS)
      # The resume line is on stdout (a progress line); errors on stderr.
      logs.append(final.stdout + final.stderr)
      self.assertEqual(reference.wait(timeout=_PROCESS_TIMEOUT_SECONDS), 0)
    self.assertEqual(final.returncode, 0, final.stderr[-3000:])

    # The kills interrupted training (the first one while a checkpoint was
    # being written), and the reruns resumed.
    self.assertTrue(kills[0]['was_running'])
    self.assertLess(max(kills[0]['steps_after'], default=0),
                    self._TOTAL_STEPS)
    resumes = [tuple(int(n) for n in match) for log in logs
               for match in re.findall(
                   r'Resuming from \S+: epoch (\d+), step (\d+) of', log)]
    self.assertNotEmpty(resumes, 'no rerun resumed from a checkpoint')
    what_happened = f'kills: {kills}\nresumes: {resumes}'

    # Final state: bitwise equal, from the checkpoint and from model.keras.
    for source in ('checkpoint', 'final'):
      reference_model = runs.load_trained_model(reference_dir, source)
      resumed_model = runs.load_trained_model(run_dir, source)
      for (name, want), (_, got) in zip(_state(reference_model.model),
                                        _state(resumed_model.model)):
        self.assertTrue(np.array_equal(want, got),
                        f'{source}: {name}; {what_happened}')
    self.assertEndsWith(resumed_model.checkpoint_path, '.keras')

    # Test metrics: equal to within 1e-6 relative (bitwise in practice: the
    # weights are, and evaluation noise is stateless).
    def read_json(directory, name):
      with open(os.path.join(directory, name)) as f:
        return json.load(f)
    # With the default --num_importance_samples the metrics also name the
    # posterior family (a string): numbers are compared to 1e-6, the rest
    # exactly.
    resumed_metrics = read_json(run_dir, runs.FINAL_METRICS_FILE)
    reference_metrics = read_json(reference_dir, runs.FINAL_METRICS_FILE)
    self.assertCountEqual(resumed_metrics, reference_metrics)
    for name, want in reference_metrics.items():
      if isinstance(want, (int, float)):
        self.assertAllClose(resumed_metrics[name], want, rtol=1e-6, msg=name)
      else:
        self.assertEqual(resumed_metrics[name], want, name)
    reference_rows = read_json(reference_dir, runs.HISTORY_FILE)
    resumed_rows = read_json(run_dir, runs.HISTORY_FILE)
    self.assertEqual([r['epoch'] for r in resumed_rows], [1, 2, 3])
    resumed_mid_epoch = {epoch for epoch, step in resumes if step > 0}
    for want, got in zip(reference_rows, resumed_rows):
      for name in want:
        if name.startswith('val_') or (
            name in ('loss', 'elbo', 'kl', 'nll') and
            got['epoch'] not in resumed_mid_epoch):
          self.assertAllClose(got[name], want[name], rtol=1e-6,
                              msg=f'epoch {got["epoch"]} {name}')


################################################################################
# Damaged checkpoints.
################################################################################


def _damage(checkpoint_dir, step, how):
  prefix = os.path.join(checkpoint_dir, f'ckpt-{step}')
  data_path = prefix + '.data-00000-of-00001'
  index_path = prefix + '.index'
  if how == 'truncated_data':  # A write cut short.
    with open(data_path, 'r+b') as f:
      f.truncate(os.path.getsize(data_path) // 2)
  elif how == 'flipped_data_byte':  # A damaged disk: caught by the CRC.
    with open(data_path, 'r+b') as f:
      f.seek(os.path.getsize(data_path) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0xFF]))
  elif how == 'truncated_index':
    with open(index_path, 'r+b') as f:
      f.truncate(os.path.getsize(index_path) // 3)
  elif how == 'garbage_index':
    with open(index_path, 'wb') as f:
      f.write(b'\x00garbage' * 64)
  elif how == 'deleted':
    os.remove(data_path)
    os.remove(index_path)
  else:
    raise ValueError(how)


@_NEEDS_DATA
class InterruptTest(tf.test.TestCase, parameterized.TestCase):
  """Ctrl-C (SIGINT) or SIGTERM mid-run: a checkpoint, a message, exit 130.

  The signal is recorded and acted on at the next batch end, an execution
  boundary (here --steps_per_execution=1, so the next step); the rerun of
  the same command resumes there and ends as an uninterrupted run does.
  """

  _EPOCHS = 5  # 50 steps: the signal lands well before the end.

  @parameterized.parameters('SIGINT', 'SIGTERM')
  def test_interrupted_run_checkpoints_and_the_same_command_resumes_exactly(
      self, signal_name):
    root = _temp_dir(self)
    run_dir = os.path.join(root, 'run')
    reference_dir = os.path.join(root, 'reference')
    command = _train_command(run_dir, *_base_flags(),
                             f'--epochs={self._EPOCHS}')
    log_path = os.path.join(root, 'interrupted.log')
    deadline = time.time() + _PROCESS_TIMEOUT_SECONDS
    with _started(command, log_path) as process:
      # Signalled once training starts: while the step compiles or runs.
      while process.poll() is None and time.time() < deadline:
        with open(log_path) as f:
          if 'compiling the training step' in f.read():
            break
        time.sleep(0.01)
      process.send_signal(getattr(signal, signal_name))
      exit_status = process.wait(timeout=_PROCESS_TIMEOUT_SECONDS)
    with open(log_path) as f:
      log = f.read()
    self.assertEqual(exit_status, 130, log[-3000:])
    self.assertFalse(_has_traceback(log), log[-3000:])
    match = re.search(r'Interrupted at step (\d+); rerun the same command to '
                      r'resume', log)
    self.assertIsNotNone(match, log[-3000:])
    step = int(match.group(1))
    self.assertLess(step, self._EPOCHS * _STEPS_PER_EPOCH)
    self.assertIn(step, _checkpoint_steps(os.path.join(run_dir,
                                                       runs.CHECKPOINT_DIR)))

    rerun = subprocess.run(command, capture_output=True, text=True,
                           env=_environment(), cwd=_REPO,
                           timeout=_PROCESS_TIMEOUT_SECONDS)
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    self.assertRegex(rerun.stdout, r'Resuming from \S+ckpt-%d: epoch' % step)
    training.train(*_base_configs(reference_dir, epochs=self._EPOCHS),
                   verbose=0)
    reference = runs.load_trained_model(reference_dir, 'final').model
    resumed = runs.load_trained_model(run_dir, 'final').model
    for (name, want), (_, got) in zip(_state(reference), _state(resumed)):
      self.assertTrue(np.array_equal(want, got), name)


  def test_the_line_the_signal_waits_for_comes_after_the_handlers(self):
    # The test above signals on seeing the 'compiling' line. Printed before
    # the handlers were in place, a SIGTERM sent at once killed the run with
    # no checkpoint (its default action): a CI run met that race.
    handlers = []

    def say(verbose, text):
      del verbose  # Unused.
      if 'starts by compiling' in text:
        handlers.append(signal.getsignal(signal.SIGTERM))
    with unittest.mock.patch.object(training, '_say', say):
      training.train(*_base_configs(os.path.join(_temp_dir(self), 'run'),
                                    epochs=1), verbose=2)
    self.assertLen(handlers, 1)
    self.assertIsInstance(getattr(handlers[0], '__self__', None),
                          callbacks_lib.StopOnSignal)


@_NEEDS_DATA
class DamagedCheckpointTest(tf.test.TestCase, parameterized.TestCase):
  """A damaged newest checkpoint is skipped, with a warning naming it."""

  def setUp(self):
    super().setUp()
    self.model_dir = _copy_of_reference(_temp_dir(self))
    self.checkpoint_dir = os.path.join(self.model_dir,
                                       runs.CHECKPOINT_DIR)
    self.assertEqual(_checkpoint_steps(self.checkpoint_dir), list(_KEPT_STEPS))

  @parameterized.parameters('truncated_data', 'flipped_data_byte',
                            'truncated_index', 'garbage_index', 'deleted')
  def test_loading_falls_back_to_the_previous_checkpoint(self, how):
    _damage(self.checkpoint_dir, 20, how)
    with self.assertLogs('absl', 'WARNING') as logs:
      loaded = runs.load_trained_model(self.model_dir, 'checkpoint')
    self.assertEndsWith(loaded.checkpoint_path, 'ckpt-18')
    self.assertEqual(int(loaded.model.optimizer.iterations.numpy()), 18)
    warnings = '\n'.join(logs.output)
    self.assertIn(os.path.join(self.checkpoint_dir, 'ckpt-20'), warnings)
    self.assertIn('cannot be read', warnings)
    self.assertIn('Resumed from', warnings)

  def test_a_resumed_run_falls_back_and_ends_as_an_uninterrupted_one(self):
    # Killed while ckpt-20 was half written: the rerun resumes from ckpt-18,
    # says so, retrains steps 19-20 and writes ckpt-20 afresh.
    _damage(self.checkpoint_dir, 20, 'truncated_data')
    os.remove(os.path.join(self.model_dir, runs.MODEL_FILE))
    with self.assertLogs('absl', 'WARNING') as logs:
      result = training.train(*_base_configs(self.model_dir), verbose=0)
    warnings = '\n'.join(logs.output)
    self.assertIn(f'{os.path.join(self.checkpoint_dir, "ckpt-20")} cannot be '
                  'read', warnings)
    resumed_from = os.path.join(self.checkpoint_dir, 'ckpt-18')
    self.assertIn(f'Resumed from {resumed_from}', warnings)
    self.assertEqual(result.history['epoch'], [1, 2])
    reference = runs.load_trained_model(_reference_run(), 'checkpoint')
    rewritten = runs.load_trained_model(self.model_dir, 'checkpoint')
    self.assertEndsWith(rewritten.checkpoint_path, 'ckpt-20')
    for (name, want), (_, got) in zip(_state(reference.model),
                                      _state(rewritten.model)):
      self.assertTrue(np.array_equal(want, got), name)

  @parameterized.parameters('garbage', 'empty', 'deleted', 'elsewhere')
  def test_a_damaged_state_file_does_not_restart_training(self, how):
    # The `checkpoint` state file lists the kept checkpoints. Without it,
    # a resume must still find them on disk, not silently start afresh.
    state_path = os.path.join(self.checkpoint_dir, 'checkpoint')
    if how == 'deleted':
      os.remove(state_path)
    else:
      with open(state_path, 'w') as f:
        f.write({'garbage': '\x00{{not a checkpoint state',
                 'empty': '',
                 'elsewhere': 'model_checkpoint_path: "/gone/ckpt-20"\n'
                              'all_model_checkpoint_paths: "/gone/ckpt-20"\n'
                 }[how])
    loaded = runs.load_trained_model(self.model_dir, 'checkpoint')
    self.assertEndsWith(loaded.checkpoint_path, 'ckpt-20')
    self.assertEqual(int(loaded.model.optimizer.iterations.numpy()), 20)

  def test_a_half_written_checkpoint_is_never_chosen(self):
    # A kill inside TensorFlow's write leaves `ckpt-21_temp/` and maybe a
    # partial ckpt-21; the state file still names ckpt-20.
    os.makedirs(os.path.join(self.checkpoint_dir, 'ckpt-21_temp'))
    with open(os.path.join(self.checkpoint_dir, 'ckpt-21.index'), 'wb') as f:
      f.write(b'\x08partial')
    with self.assertLogs('absl', 'WARNING') as logs:
      loaded = runs.load_trained_model(self.model_dir, 'checkpoint')
    self.assertEndsWith(loaded.checkpoint_path, 'ckpt-20')
    self.assertIn('ckpt-21 cannot be read', '\n'.join(logs.output))

  def _only_a_torn_first_checkpoint(self, staging_dir_left):
    """The run as a kill inside its first checkpoint's index write leaves it.

    TensorFlow renames the data file into place, writes the index in place,
    then deletes `ckpt-15_temp/`; the state file comes after. So: config.json,
    ckpt-15's data, a torn ckpt-15.index and (if `staging_dir_left`) the
    staging directory; no state file, history or model.keras.
    """
    for name in os.listdir(self.model_dir):
      if name not in (runs.CONFIG_FILE, runs.CHECKPOINT_DIR):
        path = os.path.join(self.model_dir, name)
        (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
    for name in os.listdir(self.checkpoint_dir):
      if not name.startswith('ckpt-15.'):
        os.remove(os.path.join(self.checkpoint_dir, name))
    index = os.path.join(self.checkpoint_dir, 'ckpt-15.index')
    with open(index, 'rb') as f:
      head = f.read(20)
    with open(index, 'wb') as f:
      f.write(head)
    if staging_dir_left:
      os.makedirs(os.path.join(self.checkpoint_dir, 'ckpt-15_temp'))

  def test_a_first_checkpoint_cut_short_means_starting_afresh(self):
    # What a CI run met: SIGKILL while ckpt-1.index was being written.
    self._only_a_torn_first_checkpoint(staging_dir_left=True)
    with self.assertLogs('absl', 'WARNING') as logs:
      with self.assertRaisesRegex(ValueError, 'holds no checkpoint yet'):
        runs.load_trained_model(self.model_dir, 'checkpoint')
    warnings = '\n'.join(logs.output)
    self.assertIn('ckpt-15 cannot be read', warnings)
    self.assertIn('ckpt-15_temp is left', warnings)
    self.assertIn('nothing to resume from', warnings)
    # Training starts afresh and ends as an uninterrupted run, bit for bit.
    result = training.train(*_base_configs(self.model_dir), verbose=0)
    self.assertEqual(result.history['epoch'], [1, 2])
    reference = runs.load_trained_model(_reference_run(), 'checkpoint')
    rerun = runs.load_trained_model(self.model_dir, 'checkpoint')
    self.assertEndsWith(rerun.checkpoint_path, 'ckpt-20')
    for (name, want), (_, got) in zip(_state(reference.model),
                                      _state(rerun.model)):
      self.assertTrue(np.array_equal(want, got), name)

  def test_a_torn_checkpoint_without_its_staging_dir_is_damage(self):
    # The same files but no ckpt-15_temp/: not a write in progress (TF
    # deletes the directory only after the index is whole), so an error.
    self._only_a_torn_first_checkpoint(staging_dir_left=False)
    before = _snapshot(self.model_dir)
    with self.assertRaisesRegex(ValueError, 'No checkpoint in .* can be read'):
      training.train(*_base_configs(self.model_dir), verbose=0)
    after = _snapshot(self.model_dir)
    # config.json is rewritten (its model_dir was the reference's).
    before.pop(runs.CONFIG_FILE)
    after.pop(runs.CONFIG_FILE)
    self.assertEqual(after, before)

  def test_all_checkpoints_unreadable_is_an_error_and_deletes_nothing(self):
    for step in _KEPT_STEPS:
      _damage(self.checkpoint_dir, step, 'garbage_index')
    before = _snapshot(self.model_dir)
    with self.assertRaisesRegex(ValueError, 'No checkpoint in .* can be read'
                                ) as raised:
      runs.load_trained_model(self.model_dir, 'checkpoint')
    for step in _KEPT_STEPS:
      self.assertIn(f'ckpt-{step}', str(raised.exception))
    # train() refuses too, before training anything (epochs raised, so there
    # would be work to do).
    with self.assertRaisesRegex(ValueError, 'No checkpoint in .* can be read'):
      training.train(*_base_configs(self.model_dir, epochs=_EPOCHS + 1),
                     verbose=0)
    after = _snapshot(self.model_dir)
    # config.json is rewritten (epochs); everything else is as it was.
    before.pop(runs.CONFIG_FILE)
    after.pop(runs.CONFIG_FILE)
    self.assertEqual(after, before)


################################################################################
# A non-finite loss.
################################################################################


@_NEEDS_DATA
class NonFiniteLossTest(tf.test.TestCase):
  """A huge learning rate: stop naming the step; the last good state stays."""

  def test_stops_naming_the_step_and_the_model_dir_still_evaluates(self):
    model_dir = os.path.join(_temp_dir(self), 'run')
    configs = _base_configs(model_dir, learning_rate=1e6,
                            checkpoint_every_steps=1)
    with self.assertRaises(training.NonFiniteLossError) as raised:
      training.train(*configs, verbose=0)
    message = str(raised.exception)
    bad_step = int(re.search(r'at step (\d+)', message).group(1))
    self.assertIn('--learning_rate', message)
    loaded = runs.load_trained_model(model_dir)
    self.assertIn(f'The last good checkpoint, {loaded.checkpoint_path}, is '
                  'kept', message)
    good_step = int(loaded.model.optimizer.iterations.numpy())
    self.assertLess(good_step, bad_step)
    self.assertFalse(os.path.exists(os.path.join(model_dir,
                                                 runs.MODEL_FILE)))
    for _, value in _state(loaded.model):
      self.assertTrue(np.all(np.isfinite(value)))
    dataset = data_lib.load_data(loaded.train_config, loaded.model_config)
    metrics = loaded.model.evaluate(
        data_lib.make_evaluation_dataset(dataset.test_images, 50),
        return_dict=True, verbose=0)
    self.assertTrue(all(np.isfinite(v) for v in metrics.values()), metrics)
    results = evaluation.evaluate_model_dir(
        model_dir, num_importance_samples=4, max_examples=20)
    self.assertEqual(results['checkpoint_path'], loaded.checkpoint_path)
    self.assertTrue(np.isfinite(results['elbo']))

  def test_before_any_checkpoint_says_there_is_none(self):
    model_dir = os.path.join(_temp_dir(self), 'run')
    configs = _base_configs(model_dir, learning_rate=1e6,
                            checkpoint_every_steps=0)
    with self.assertRaisesRegex(training.NonFiniteLossError,
                                r'at step \d+.*No checkpoint had been '
                                'written yet'):
      training.train(*configs, verbose=0)
    with self.assertRaisesRegex(ValueError, 'holds no checkpoint yet'):
      runs.load_trained_model(model_dir)


################################################################################
# Bad input, through scripts/train.py.
################################################################################


def _write_amat(path, rows):
  text = ''.join(' '.join(str(v) for v in row) + '\n' for row in rows)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wt') as f:
    f.write(text)


def _binarized_mnist_dir(root, name, train_rows=None, compress=False):
  """A binarized_mnist directory of small random files (train replaceable)."""
  directory = os.path.join(root, name)
  os.makedirs(directory)
  rng = np.random.default_rng(0)
  suffix = '.gz' if compress else ''
  for split, size in (('train', 40), ('valid', 10), ('test', 10)):
    rows = rng.integers(0, 2, size=(size, 784)).tolist()
    if split == 'train' and train_rows is not None:
      rows = train_rows(rows)
    _write_amat(os.path.join(directory,
                             f'binarized_mnist_{split}.amat{suffix}'), rows)
  return directory


def _idx_bytes(array):
  array = np.asarray(array, np.uint8)
  return bytes([0, 0, 0x08, array.ndim]) + np.array(
      array.shape, '>u4').tobytes() + array.tobytes()


def _mnist_dir_with_truncated_images(root):
  directory = os.path.join(root, 'mnist_truncated')
  os.makedirs(directory)
  rng = np.random.default_rng(0)
  files = {'train-images-idx3-ubyte': rng.integers(0, 256, (30, 28, 28)),
           'train-labels-idx1-ubyte': np.arange(30) % 10,
           't10k-images-idx3-ubyte': rng.integers(0, 256, (10, 28, 28)),
           't10k-labels-idx1-ubyte': np.arange(10) % 10}
  for name, array in files.items():
    contents = _idx_bytes(array)
    if name == 'train-images-idx3-ubyte':
      contents = contents[:len(contents) // 2]
    with open(os.path.join(directory, name), 'wb') as f:
      f.write(contents)
  return directory


def _frey_face_dir(root, name, contents=None):
  """A frey_face directory: random 28x20 faces, or the bytes given."""
  directory = os.path.join(root, name)
  os.makedirs(directory)
  path = os.path.join(directory, 'frey_rawface.mat')
  if contents is None:
    import scipy.io  # pylint: disable=g-import-not-at-top
    faces = np.random.default_rng(0).integers(0, 256, (560, 60), np.uint8)
    scipy.io.savemat(path, {'ff': faces})
  else:
    with open(path, 'wb') as f:
      f.write(contents)
  return directory


def _run_cli_cases(root, cases):
  """Runs `scripts/train.py ARGS` for each case via tests/_train_cli.py."""
  cases_path = os.path.join(root, 'cases.json')
  results_path = os.path.join(root, 'results.json')
  with open(cases_path, 'w') as f:
    json.dump(cases, f)
  completed = subprocess.run(
      [sys.executable, _CLI_DRIVER, cases_path, results_path],
      capture_output=True, text=True, env=_environment(), cwd=_REPO,
      timeout=_PROCESS_TIMEOUT_SECONDS)
  if completed.returncode:
    raise AssertionError(f'tests/_train_cli.py failed:\n'
                         f'{completed.stderr[-5000:]}')
  with open(results_path) as f:
    return json.load(f)


@_NEEDS_DATA
class BadInputThroughTheScriptTest(tf.test.TestCase):
  """Each bad input: exit status 1, `error: ...` naming the flag, file or
  value, no traceback, and an existing model directory left untouched."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.model_dir = _copy_of_reference(cls.root)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _cases(self):
    """(description, args replacing/adding to _base_flags(), must appear)."""
    root = self.root
    garbage_dir = os.path.join(root, 'corrupt_checkpoints')
    regular_file = os.path.join(root, 'a_file')
    with open(regular_file, 'w') as f:
      f.write('not a directory')
    truncated_gz_dir = _binarized_mnist_dir(root, 'truncated_gz',
                                            compress=True)
    train_gz = os.path.join(truncated_gz_dir, 'binarized_mnist_train.amat.gz')
    with open(train_gz, 'r+b') as f:
      f.truncate(os.path.getsize(train_gz) // 2)

    def one_bad_value(value):
      def edit(rows):
        rows[7][300] = value
        return rows
      return edit

    def data_dir(name, edit_train_rows):
      return f'--data_dir={_binarized_mnist_dir(root, name, edit_train_rows)}'

    def short_row(rows):
      rows[3] = rows[3][:783]
      return rows

    empty_dir = os.path.join(root, 'empty')
    os.makedirs(empty_dir)
    frey_dir = _frey_face_dir(root, 'frey_face')
    corrupt_mat_dir = _frey_face_dir(root, 'frey_face_corrupt',
                                     contents=b'MATLAB 5.0' + b'\x01' * 40)
    mnist_dir = _mnist_dir_with_truncated_images(root)
    shutil.copytree(self.model_dir, garbage_dir)
    for step in _KEPT_STEPS:
      _damage(os.path.join(garbage_dir, runs.CHECKPOINT_DIR), step,
              'garbage_index')
    cases = [
        # Flags.
        ('zero latent size', ['--latent_dim=0'], ['--latent_dim=0']),
        ('negative latent size', ['--latent_dim=-3'], ['--latent_dim=-3']),
        ('zero batch size', ['--batch_size=0'], ['--batch_size=0']),
        ('zero samples', ['--num_samples=0'], ['--num_samples=0']),
        ('negative importance samples', ['--num_importance_samples=-1'],
         ['--num_importance_samples=-1']),
        ('zero mixture components', ['--mixture_components=0'],
         ['--mixture_components=0']),
        ('zero epochs', ['--epochs=0'], ['--epochs=0']),
        ('zero learning rate', ['--learning_rate=0'], ['--learning_rate=0']),
        ('negative learning rate', ['--learning_rate=-0.001'],
         ['--learning_rate=-0.001']),
        ('non-integer hidden units', ['--hidden_units=32,abc'],
         ['--hidden_units=32,abc']),
        ('unknown posterior', ['--posterior=gaussian_process'],
         ['--posterior=gaussian_process']),
        ('unknown likelihood', ['--likelihood=poisson'],
         ['--likelihood=poisson']),
        ('unknown prior', ['--prior=vampprior'], ['--prior=vampprior']),
        ('unknown dataset', ['--dataset=cifar10'], ['--dataset=cifar10']),
        ('unknown strategy', ['--strategy=horovod'], ['--strategy=horovod']),
        ('analytic KL with a mixture prior',
         ['--prior=mixture', '--kl=analytic'],
         ['--kl=analytic', '--prior=mixture']),
        ('multi_worker without TF_CONFIG', ['--strategy=multi_worker'],
         ['--strategy=multi_worker', 'TF_CONFIG']),
        ('conv too deep for 28x28', ['--architecture=conv',
                                     '--conv_filters=4,4,4'],
         ['--architecture=conv', '--conv_filters=4,4,4', '(28, 28, 1)']),
        ('conv too deep for frey_face 28x20',
         ['--dataset=frey_face', f'--data_dir={frey_dir}',
          '--architecture=conv', '--conv_filters=4,4,4'],
         ['--architecture=conv', '(28, 20, 1)']),
        ('batch larger than the data', ['--max_train_examples=10'],
         ['--batch_size=20', '10 training images']),
        # Data.
        ('missing data directory',
         [f'--data_dir={os.path.join(root, "no_such_dir")}'],
         [os.path.join(root, 'no_such_dir')]),
        ('data directory without the files', [f'--data_dir={empty_dir}'],
         [empty_dir, 'binarized_mnist_train.amat']),
        ('truncated .gz', [f'--data_dir={truncated_gz_dir}'],
         [train_gz, 'gzip']),
        ('corrupt .amat (a short row)', [data_dir('short', short_row)],
         ['binarized_mnist_train.amat', 'line 4', '784']),
        ('NaN pixel', [data_dir('nan', one_bad_value('nan'))],
         ['binarized_mnist_train.amat', 'non-finite']),
        ('infinite pixel', [data_dir('inf', one_bad_value('inf'))],
         ['binarized_mnist_train.amat', 'non-finite']),
        ('pixel outside [0, 1]', [data_dir('two', one_bad_value(2))],
         ['binarized_mnist_train.amat', 'outside [0, 1]']),
        ('non-binary pixel for static binarization',
         [data_dir('half', one_bad_value(0.5))],
         ['binarized_mnist_train.amat', '0.5']),
        ('empty dataset', [data_dir('no_rows', lambda rows: [])],
         ['binarized_mnist_train.amat', 'no images']),
        ('truncated IDX', ['--dataset=mnist', f'--data_dir={mnist_dir}'],
         [os.path.join(mnist_dir, 'train-images-idx3-ubyte'), 'truncated']),
        ('corrupt .mat', ['--dataset=frey_face',
                          f'--data_dir={corrupt_mat_dir}'],
         [os.path.join(corrupt_mat_dir, 'frey_rawface.mat')]),
        # Model directories.
        ('a model directory of another configuration', ['--latent_dim=3'],
         ['--latent_dim: saved 2, requested 3', 'refusing to resume']),
        ('a model directory under a regular file',
         [f'--model_dir={regular_file}/run'],
         [f'--model_dir={regular_file + "/run"!r}', 'Not a directory']),
        ('all checkpoints unreadable', [f'--model_dir={garbage_dir}'],
         ['No checkpoint in', 'ckpt-15', 'ckpt-18', 'ckpt-20']),
        # A non-finite loss (a fresh directory: the learning rate differs).
        ('non-finite loss', ['--learning_rate=1e6',
                             '--checkpoint_every_steps=1',
                             f'--model_dir={os.path.join(root, "nan_run")}'],
         ['at step', '--learning_rate']),
    ]
    return cases, garbage_dir

  _LISTING_CASES = ('a model directory of another configuration',
                    'all checkpoints unreadable')

  def _command_line(self, args):
    """`_base_flags()` with `args` replacing the flags they name."""
    names = {a.split('=')[0] for a in args}
    base = [f for f in _base_flags() if f.split('=')[0] not in names]
    if '--model_dir' not in names:
      base.append(f'--model_dir={self.model_dir}')
    return base + args

  def test_each_bad_input_fails_cleanly_and_keeps_the_model_dir(self):
    cases, garbage_dir = self._cases()
    before = _snapshot(self.model_dir)
    garbage_before = _snapshot(garbage_dir)
    results = _run_cli_cases(self.root, [self._command_line(args)
                                         for _, args, _ in cases])
    for (description, args, expected), result in zip(cases, results):
      with self.subTest(description):
        self.assertEqual(result['exit_status'], 1, (args, result))
        self.assertIsNone(result['traceback'], result['traceback'])
        message = result['message']
        self.assertFalse(_has_traceback(message), message)
        if message.startswith('FATAL Flags parsing error'):
          # absl's own message for a value outside an enum flag's choices.
          self.assertLen(message.strip().splitlines(), 2, message)
        else:
          self.assertStartsWith(message, 'error: ')
          # One line, but for the lists: one line per differing setting or
          # per unreadable checkpoint.
          if description not in self._LISTING_CASES:
            self.assertLen(message.strip().splitlines(), 1, message)
        for text in expected:
          self.assertIn(text, message)
    # Only the one setting that differs is listed.
    mismatch = results[[c[0] for c in cases].index(
        'a model directory of another configuration')]['message']
    self.assertLen(re.findall(r'^  --', mismatch, re.MULTILINE), 1, mismatch)
    # Nothing in the existing model directory (checkpoints, config, metrics,
    # final model) changed; nor in the one with unreadable checkpoints but
    # config.json, rewritten with its new --model_dir (a setting that may
    # change on a resume).
    self.assertEqual(_snapshot(self.model_dir), before)
    garbage_after = _snapshot(garbage_dir)
    garbage_before.pop(runs.CONFIG_FILE)
    garbage_after.pop(runs.CONFIG_FILE)
    self.assertEqual(garbage_after, garbage_before)
    self.assertFalse(os.path.exists(os.path.join(self.root, 'a_file', 'run')))

  def test_the_real_script_prints_one_line_and_no_traceback(self):
    """The same, as real processes: exit status and all of stderr."""
    cases = [(['--latent_dim=0'], 'error: --latent_dim=0 is invalid'),
             (['--posterior=gaussian_process'],
              'FATAL Flags parsing error: flag --posterior=gaussian_process'),
             (['--latent_dim=3'], 'error: --model_dir=')]
    before = _snapshot(self.model_dir)
    processes = [subprocess.Popen(
        [sys.executable, _TRAIN_SCRIPT, *self._command_line(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_environment(), cwd=_REPO) for args, _ in cases]
    try:
      for process, (args, expected) in zip(processes, cases):
        _, stderr = process.communicate(timeout=_PROCESS_TIMEOUT_SECONDS)
        with self.subTest(args=args):
          self.assertEqual(process.returncode, 1, stderr)
          self.assertFalse(_has_traceback(stderr), stderr)
          ours = [line for line in stderr.splitlines()
                  if line.startswith(('error:', 'FATAL'))]
          self.assertLen(ours, 1, stderr)
          self.assertStartsWith(ours[0], expected)
    finally:
      for process in processes:
        if process.poll() is None:
          process.kill()
          process.wait()
    self.assertEqual(_snapshot(self.model_dir), before)

  @unittest.skipIf(os.geteuid() == 0,
                   'root writes into a read-only (0o555) directory anyway')
  def test_a_read_only_model_dir_is_refused(self):
    read_only = os.path.join(_temp_dir(self), 'read_only')
    os.makedirs(read_only)
    os.chmod(read_only, 0o555)
    self.addCleanup(os.chmod, read_only, 0o755)
    with self.assertRaisesRegex(ValueError,
                                f'--model_dir={read_only!r} cannot be used'):
      training.train(*_base_configs(read_only), verbose=0)


################################################################################
# Bad input, through training.train.
################################################################################


def _tiny_dataset(num_train=40, image_shape=(8, 8, 1)):
  rng = np.random.default_rng(0)
  def images(n):
    return (rng.random((n, *image_shape)) < 0.5).astype(np.float32)
  return data_lib.ImageDataset(
      name='binarized_mnist', binarization='static', image_shape=image_shape,
      source='test', train_images=images(num_train),
      validation_images=images(10), test_images=images(10),
      train_labels=None, validation_labels=None, test_labels=None)


class BadDataThroughTrainTest(tf.test.TestCase, parameterized.TestCase):
  """`training.train` with an `ImageDataset` built in code: checked before
  the model directory is created or anything is trained."""

  def _train(self, dataset, batch_size=20, image_shape=(8, 8, 1)):
    self.model_dir = os.path.join(_temp_dir(self), 'run')
    model_config = ModelConfig(image_shape=image_shape, hidden_units=(32,),
                               latent_dim=2)
    train_config = TrainConfig(dataset='binarized_mnist', batch_size=batch_size,
                               epochs=1, model_dir=self.model_dir,
                               jit_compile=False)
    return training.train(model_config, train_config, dataset=dataset,
                          verbose=0)

  def _with(self, split, index, value):
    dataset = _tiny_dataset()
    images = getattr(dataset, f'{split}_images')
    images[index] = value
    return dataset

  @parameterized.parameters(
      ('train', (3, 2, 2, 0), np.nan, 'The train images .* non-finite'),
      ('validation', (0, 0, 0, 0), np.inf, 'The validation images .* '
       'non-finite'),
      ('test', (1, 4, 4, 0), 1.5, r'The test images .* outside \[0, 1\]'),
      ('train', (0, 0, 0, 0), -0.25, r'The train images .* outside \[0, 1\]'))
  def test_bad_pixels_are_refused(self, split, index, value, pattern):
    with self.assertRaisesRegex(ValueError, pattern):
      self._train(self._with(split, index, value))
    self.assertFalse(os.path.exists(self.model_dir))

  def test_an_empty_dataset_is_refused(self):
    with self.assertRaisesRegex(ValueError, 'The train images .* are empty'):
      self._train(_tiny_dataset(num_train=0))
    self.assertFalse(os.path.exists(self.model_dir))

  def test_a_batch_larger_than_the_dataset_is_refused(self):
    with self.assertRaisesRegex(ValueError, '--batch_size=50 is larger than '
                                'the 40 training images'):
      self._train(_tiny_dataset(), batch_size=50)
    self.assertFalse(os.path.exists(self.model_dir))

  def test_images_of_another_size_are_refused(self):
    with self.assertRaisesRegex(ValueError, r'\(8, 8, 1\).*\(28, 28, 1\)'):
      self._train(_tiny_dataset(), image_shape=(28, 28, 1))
    self.assertFalse(os.path.exists(self.model_dir))

  def test_a_conv_net_that_cannot_halve_the_image_is_refused(self):
    with self.assertRaisesRegex(ValueError, r'--architecture=conv.*'
                                r'multiples of 8.*\(28, 20, 1\)'):
      ModelConfig(image_shape=(28, 20, 1), architecture='conv',
                  conv_filters=(8, 8, 8))

  def test_a_model_dir_under_a_regular_file_is_refused(self):
    regular_file = os.path.join(_temp_dir(self), 'a_file')
    with open(regular_file, 'w') as f:
      f.write('not a directory')
    model_config = ModelConfig(image_shape=(8, 8, 1), hidden_units=(32,),
                               latent_dim=2)
    train_config = TrainConfig(dataset='binarized_mnist', batch_size=20,
                               epochs=1, model_dir=f'{regular_file}/run',
                               jit_compile=False)
    with self.assertRaisesRegex(ValueError, '--model_dir=.* cannot be used: '
                                '.*Not a directory'):
      training.train(model_config, train_config, dataset=_tiny_dataset(),
                     verbose=0)


################################################################################
# Safety: loading never runs code from a file.
################################################################################


_MARKER_ENVIRONMENT_VARIABLE = 'TFP_VAE_TEST_MARKER'


def _marker_module_source():
  # A module whose import, or whose class's from_config, leaves a marker
  # file: stands for any code a tampered file could make a loader run.
  return (
      'import os\n'
      f'open(os.environ[{_MARKER_ENVIRONMENT_VARIABLE!r}], "a").write('
      '"imported\\n")\n'
      'class Payload:\n'
      '  @classmethod\n'
      '  def from_config(cls, config):\n'
      f'    open(os.environ[{_MARKER_ENVIRONMENT_VARIABLE!r}], "a").write('
      '"called\\n")\n'
      '    return cls()\n')


def _rewrite_keras_config(source, destination, edit):
  """Copies a .keras zip, passing its config.json through `edit`."""
  with zipfile.ZipFile(source) as archive_in, zipfile.ZipFile(
      destination, 'w') as archive_out:
    for name in archive_in.namelist():
      contents = archive_in.read(name)
      if name == 'config.json':
        contents = json.dumps(edit(json.loads(contents))).encode()
      archive_out.writestr(name, contents)


@_NEEDS_DATA
class SafetyTest(tf.test.TestCase, parameterized.TestCase):
  """Tampered config.json and model.keras files are refused, and nothing in
  them runs."""

  def setUp(self):
    super().setUp()
    self.root = _temp_dir(self)
    self.model_dir = _copy_of_reference(self.root)
    self.marker = os.path.join(self.root, 'marker')
    module_dir = os.path.join(self.root, 'modules')
    os.makedirs(module_dir)
    self.module_name = f'tfp_vae_test_payload_{os.getpid()}_{id(self)}'
    with open(os.path.join(module_dir, self.module_name + '.py'), 'w') as f:
      f.write(_marker_module_source())
    sys.path.insert(0, module_dir)
    self.addCleanup(sys.path.remove, module_dir)
    os.environ[_MARKER_ENVIRONMENT_VARIABLE] = self.marker
    self.addCleanup(os.environ.pop, _MARKER_ENVIRONMENT_VARIABLE, None)

  def _marker_text(self):
    if not os.path.exists(self.marker):
      return None
    with open(self.marker) as f:
      return f.read()

  # config.json ################################################################

  def _tamper_config(self, edit):
    path = os.path.join(self.model_dir, runs.CONFIG_FILE)
    with open(path) as f:
      saved = json.load(f)
    edit(saved)
    with open(path, 'w') as f:
      json.dump(saved, f)

  @parameterized.named_parameters(
      ('keras_function_object', lambda c: c['model'].update(
          activation={'class_name': 'function', 'config': 'system',
                      'module': 'os'})),
      ('callable_name', lambda c: c['model'].update(posterior='os.system')),
      ('python_expression', lambda c: c['model'].update(
          latent_dim="__import__('os').system('touch marker')")),
      ('lambda_source', lambda c: c['model'].update(
          activation='lambda x: __import__("os").system("touch marker")')),
      ('class_reference', lambda c: c.update(
          model={'class_name': 'Payload', 'module': 'payload',
                 'config': {}})),
      ('dict_for_a_path', lambda c: c['train'].update(
          data_dir={'class_name': 'function', 'config': 'getcwd',
                    'module': 'os'})),
      ('extra_key', lambda c: c['model'].update(__reduce__='os.system')),
      ('extra_section', lambda c: c.update(callbacks=['os.system'])),
  )
  def test_a_tampered_config_is_refused(self, edit):
    self._tamper_config(edit)
    with self.assertRaises(ValueError):
      runs.read_configs(self.model_dir)
    for source in ('final', 'checkpoint'):
      with self.assertRaises(ValueError):
        runs.load_trained_model(self.model_dir, source)
    self.assertIsNone(self._marker_text())

  def test_resuming_with_a_tampered_config_is_refused(self):
    self._tamper_config(lambda c: c['model'].update(activation='os.system'))
    before = _snapshot(self.model_dir)
    with self.assertRaisesRegex(ValueError, 'activation'):
      training.train(*_base_configs(self.model_dir), verbose=0)
    after = _snapshot(self.model_dir)
    # config.json is rewritten (its model_dir was the reference's).
    before.pop(runs.CONFIG_FILE)
    after.pop(runs.CONFIG_FILE)
    self.assertEqual(after, before)

  # model.keras ###############################################################

  def _tamper_model_file(self, edit):
    path = os.path.join(self.model_dir, runs.MODEL_FILE)
    original = path + '.original'
    os.replace(path, original)
    _rewrite_keras_config(original, path, edit)
    return path

  def _lambda_model_config(self):
    """The config.json of a saved model with a Lambda that leaves a marker."""
    marker = self.marker
    layer = keras.layers.Lambda(
        lambda x: x + 0 * open(marker, 'a').write('lambda ran\n'))
    model = keras.Sequential([keras.Input(shape=(2,)), layer])
    path = os.path.join(self.root, 'lambda.keras')
    model.save(path)  # Building it ran the lambda once, here.
    os.remove(marker)
    with zipfile.ZipFile(path) as archive:
      return json.loads(archive.read('config.json'))

  def test_a_lambda_layer_is_refused_in_safe_mode(self):
    lambda_config = self._lambda_model_config()
    path = self._tamper_model_file(lambda _: lambda_config)
    with self.assertRaisesRegex(ValueError, 'safe_mode'):
      keras.models.load_model(path, safe_mode=True, compile=False)
    with self.assertRaisesRegex(ValueError, 'refusing to load'):
      runs.load_trained_model(self.model_dir, 'final')
    self.assertIsNone(self._marker_text())

  def test_a_module_and_class_of_the_files_choice_are_refused(self):
    # tf_keras's load_model, even in safe mode, imports the module a config
    # names and calls its class's from_config; load_trained_model checks the
    # file names our model class first.
    path = self._tamper_model_file(lambda _: {
        'module': self.module_name, 'class_name': 'Payload', 'config': {},
        'registered_name': None})
    with self.assertRaisesRegex(ValueError, f'{self.module_name}.Payload.*'
                                'refusing to load'):
      runs.load_trained_model(self.model_dir, 'final')
    self.assertIsNone(self._marker_text())
    self.assertNotIn(self.module_name, sys.modules)
    self.assertTrue(os.path.exists(path))  # Still there, untouched.

  @parameterized.named_parameters(
      ('function_as_model', lambda c: {'module': 'os', 'class_name': 'system',
                                       'config': 'touch marker',
                                       'registered_name': None}),
      ('function_object', lambda c: {'module': 'os', 'class_name': 'function',
                                     'config': 'system',
                                     'registered_name': 'system'}),
  )
  def test_an_arbitrary_function_is_refused(self, edit):
    path = self._tamper_model_file(edit)
    with self.assertRaisesRegex(ValueError, 'refusing to load'):
      runs.load_trained_model(self.model_dir, 'final')
    # tf_keras itself: never calls it (and never returns a model).
    try:
      loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    except (TypeError, ValueError):
      loaded = None
    self.assertNotIsInstance(loaded, keras.Model)
    self.assertIsNone(self._marker_text())

  @parameterized.named_parameters(
      ('function_setting', 'activation',
       {'class_name': 'function', 'config': 'system', 'module': 'os'}),
      ('serialized_lambda', 'posterior',
       {'class_name': '__lambda__', 'config': {'code': 'YQ==',
                                               'defaults': None,
                                               'closure': None}}),
      ('callable_name', 'likelihood', 'os.system'),
  )
  def test_a_tampered_model_setting_is_refused(self, field, value):
    def edit(saved):
      saved['config']['config'][field] = value
      return saved
    path = self._tamper_model_file(edit)
    with self.assertRaises(ValueError):
      keras.models.load_model(path, safe_mode=True, compile=False)
    self.assertIsNone(self._marker_text())

  def test_a_distribution_layers_convert_to_tensor_fn_must_be_a_name(self):
    from tfp_vae import distribution_layers  # pylint: disable=g-import-not-at-top
    model = keras.Sequential([
        keras.Input(shape=(3,)), keras.layers.Dense(4),
        distribution_layers.DiagonalGaussianPosterior(
            2, convert_to_tensor_fn='mean')])
    path = os.path.join(self.root, 'posterior.keras')
    model.save(path)
    lambda_config = self._lambda_model_config()
    marshalled = lambda_config['config']['layers'][-1]['config']['function']
    for value in (marshalled,
                  {'class_name': '__lambda__', 'config': {'code': 'YQ=='}},
                  {'class_name': 'function', 'config': 'system',
                   'module': 'os'}):
      def edit(saved, value=value):
        saved['config']['layers'][-1]['config']['convert_to_tensor_fn'] = value
        return saved
      tampered = os.path.join(self.root, 'tampered_posterior.keras')
      _rewrite_keras_config(path, tampered, edit)
      with self.subTest(value=str(value)[:40]):
        with self.assertRaises((ValueError, TypeError)):
          keras.models.load_model(tampered, safe_mode=True, compile=False)
        self.assertIsNone(self._marker_text())
    self.assertIsInstance(
        keras.models.load_model(path, safe_mode=True, compile=False),
        keras.Sequential)

  def test_the_untampered_model_loads(self):
    loaded = runs.load_trained_model(self.model_dir, 'final')
    reference = runs.load_trained_model(self.model_dir, 'checkpoint')
    for (name, want), (_, got) in zip(_state(reference.model)[:8],
                                      _state(loaded.model)[:8]):
      self.assertTrue(np.array_equal(want, got), name)


class NoPickleTest(tf.test.TestCase):
  """Nothing in the package or scripts can unpickle or unmarshal code."""

  _FORBIDDEN = re.compile(
      r'^\s*(import|from)\s+(pickle|cPickle|_pickle|cloudpickle|dill|marshal|'
      r'shelve|joblib)\b|'
      r'\b(pickle|cloudpickle|dill|marshal)\.(loads?|dumps?)\b|'
      r'allow_pickle\s*=\s*True|'
      r'safe_mode\s*=\s*False|'
      r'enable_unsafe_deserialization|'
      r'(?<![\w.])(eval|exec)\(', re.MULTILINE)

  def test_no_pickle_marshal_eval_or_unsafe_mode(self):
    offending = []
    for folder in ('tfp_vae', 'scripts'):
      for parent, _, files in os.walk(os.path.join(_REPO, folder)):
        for name in files:
          if not name.endswith('.py'):
            continue
          path = os.path.join(parent, name)
          with open(path) as f:
            for number, line in enumerate(f, start=1):
              code = line.split('#', 1)[0]
              if self._FORBIDDEN.search(code):
                offending.append(f'{path}:{number}: {line.strip()}')
    self.assertEmpty(offending)

  def test_loading_uses_safe_mode(self):
    with open(os.path.join(_REPO, 'tfp_vae', 'runs.py')) as f:
      source = f.read()
    calls = re.findall(r'load_model\(([^)]*)\)', source)
    self.assertNotEmpty(calls)
    for arguments in calls:
      self.assertIn('safe_mode=True', arguments)


if __name__ == '__main__':
  tf.test.main()
