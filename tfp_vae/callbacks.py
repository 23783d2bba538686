"""Pieces of `training.train`'s `fit` that concern what a user sees.

  EpochAlignedTensorBoard  TensorBoard with epochs counted from 1, as in
                           history.json
  upscaled                 nearest-neighbour upscaling of summary images
  StopOnSignal             SIGINT / SIGTERM recorded for a clean stop
  ProgressLogger           a progress bar with steps/s and ETA, or a line
                           per epoch, metrics to 2 decimals
  EpochEndProtocol         the validation ELBO fed to the plateau schedule
                           and to early stopping
  StepBudget               a stop after exactly --max_steps steps
  ImageSummaries           reconstructions and prior samples in TensorBoard

The bookkeeping callback (checkpoints, metric files) stays in `training`,
which owns the order of its steps.
"""

import signal
import sys
import threading
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfp_vae import _keras_internals
from tfp_vae import plotting
from tfp_vae import schedules
from tfp_vae._keras import keras

__all__ = ['EpochAlignedTensorBoard', 'upscaled', 'StopOnSignal',
           'ProgressLogger', 'EpochEndProtocol', 'StepBudget',
           'ImageSummaries']


class EpochAlignedTensorBoard(keras.callbacks.TensorBoard):
  """Keras's TensorBoard callback with epochs numbered from 1.

  Keras logs the epoch scalars at the 0-based epoch index; history.json,
  metrics.csv, the image summaries and the progress lines count epochs
  from 1. Shifting here makes TensorBoard's epoch axis read the same.
  """

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch + 1, logs)


# Nearest-neighbour upscaling of TensorBoard images: 28 x 28 tiles are too
# small to read at TensorBoard's default zoom, and interpolation would blur
# binary pixels.
SUMMARY_IMAGE_UPSCALE = 4


def upscaled(grid, factor=SUMMARY_IMAGE_UPSCALE):
  """Repeats each pixel of a `[1, H, W, C]` grid into a factor x factor block.

  Returns:
    Array `[1, H * factor, W * factor, C]` of `grid`'s dtype.
  """
  return np.repeat(np.repeat(grid, factor, axis=1), factor, axis=2)


class StopOnSignal:
  """Records SIGINT and SIGTERM in `stopper.interrupted_by` while active.

  A context manager around `fit`. The handler only records the signal's
  name: `stopper` (training's bookkeeping callback) saves a checkpoint and
  stops at the next batch end, an execution boundary. A second signal while
  that is pending raises `KeyboardInterrupt` at once, as Python's default
  would. Installed only in the main thread, where Python delivers signals;
  the previous handlers come back on exit.
  """

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self, stopper):
    self._stopper = stopper
    self._previous = {}

  def _handle(self, signum, frame):
    del frame  # Unused.
    if self._stopper.interrupted_by:
      raise KeyboardInterrupt
    self._stopper.interrupted_by = signal.Signals(signum).name

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self._SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False


def _duration(seconds):
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return (f'{hours}:{minutes:02d}:{seconds:02d}' if hours else
          f'{minutes}:{seconds:02d}')


def _metrics_text(logs):
  # Two decimals for every metric (nats per example), signs as they are:
  # tf_keras's own progress line switches negative values to exponent
  # notation (-1.2275e+02 beside 122.7451). The learning rate, which two
  # decimals would print as 0.00, gets three significant digits.
  return ', '.join(
      f'{name} {value:.3g}' if name == 'learning_rate' else
      f'{name} {value:.2f}' for name, value in logs.items()
      if isinstance(value, (int, float, np.floating)))


class ProgressLogger(keras.callbacks.Callback):
  """Progress of `fit`: a bar within each epoch, or one line per epoch.

  Replaces tf_keras's ProgbarLogger (`fit(verbose=0)` with this callback).
  With `bar=True` (a terminal) the line of the current epoch is rewritten
  at each batch end (every `steps_per_execution` steps): steps done,
  steps/s, the ETA of the epoch and the running loss. Every epoch ends with
  one line: its time, steps/s and its metrics, to 2 decimals.

  Args:
    bar: Python `bool`, whether to draw the in-epoch bar (needs a terminal:
      it rewrites its line with a carriage return).
    stream: file to write to; default `sys.stdout`.
  """

  _BAR_WIDTH = 24

  def __init__(self, bar, stream=None):
    super().__init__()
    self._bar = bar
    self._stream = stream
    self._epoch = 0
    self._epoch_start = None
    self._first_iteration = None  # The optimizer's step count at epoch start.
    self._steps_done = 0

  def _write(self, text):
    stream = self._stream or sys.stdout
    stream.write(text)
    stream.flush()

  def _iterations(self):
    return int(self.model.optimizer.iterations.numpy())

  def _steps_per_second(self):
    # Steps this process ran in the epoch (a resumed epoch starts part-way;
    # one batch end can follow several steps: --steps_per_execution).
    elapsed = time.perf_counter() - self._epoch_start
    ran = self._iterations() - self._first_iteration
    return ran / elapsed if elapsed > 0 else 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch + 1
    self._epoch_start = time.perf_counter()
    self._first_iteration = self._iterations()
    self._steps_done = 0

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the index in the epoch of the last step run.
    self._steps_done = batch + 1
    if not self._bar:
      return
    total = self.params.get('steps') or self._steps_done
    rate = self._steps_per_second()
    eta = (total - self._steps_done) / rate if rate > 0 else 0.0
    filled = int(self._BAR_WIDTH * self._steps_done / total)
    loss = (logs or {}).get('loss')
    self._write(
        f'\rEpoch {self._epoch}/{self.params.get("epochs")} '
        f'[{"=" * filled}{"." * (self._BAR_WIDTH - filled)}] '
        f'{self._steps_done}/{total} {rate:.1f} steps/s ETA {_duration(eta)}'
        + ('' if loss is None else f' loss {float(loss):.2f}') + '   ')

  def on_epoch_end(self, epoch, logs=None):
    elapsed = time.perf_counter() - self._epoch_start
    rate = self._steps_per_second()
    self._write(('\r' if self._bar else '') +
                f'Epoch {epoch + 1}/{self.params.get("epochs")}: '
                f'{_duration(elapsed)}, {rate:.1f} steps/s; '
                f'{_metrics_text(logs or {})}\n')


class EpochEndProtocol(keras.callbacks.Callback):
  """Feeds each epoch's validation ELBO to the plateau schedule and early stopping.

  Listed before `training._FitBookkeeping`, so that the checkpoint written at an
  epoch's end holds the state after the epoch. An epoch cut short by
  `--max_steps` is not counted: the run that later completes it counts it
  once, as an uninterrupted run does. Also logs the learning rate of the
  epoch's last step as 'learning_rate'.
  """

  def __init__(self, early_stopping=None, patience=0):
    super().__init__()
    self._early_stopping = early_stopping
    self._patience = patience

  def on_epoch_end(self, epoch, logs=None):
    logs = logs if logs is not None else {}
    optimizer = self.model.optimizer
    logs['learning_rate'] = float(optimizer.learning_rate.numpy())
    if int(optimizer.iterations.numpy()) % self.params['steps']:
      return
    value = logs.get('val_elbo', float('nan'))
    schedule = _keras_internals.learning_rate_schedule(optimizer)
    if isinstance(schedule, schedules.ReduceLearningRateOnPlateau):
      if schedule.update(value):
        logging.info('Epoch %d: validation ELBO has not improved for %d '
                     'epochs; learning rate lowered to %g.', epoch + 1,
                     schedule.patience, float(schedule.learning_rate.numpy()))
    if self._early_stopping is not None:
      self._early_stopping.update(epoch + 1, value, self.model.weights)
      if self._early_stopping.stopped(self._patience):
        logging.info('Epoch %d: early stopping, no better validation ELBO '
                     'for %d epochs (best at epoch %d).', epoch + 1,
                     self._patience,
                     int(self._early_stopping.best_epoch.numpy()))
        self.model.stop_training = True


class StepBudget(keras.callbacks.Callback):
  """Stops training after exactly `max_steps` optimizer steps.

  With `steps_per_execution` > 1 the last execution is cut to the steps
  left, as Keras cuts one at an epoch's end. A stop inside an epoch is
  checkpointed here (an epoch's last step is saved by `training._FitBookkeeping`).
  """

  def __init__(self, max_steps, bookkeeping):
    super().__init__()
    self._max_steps = max_steps
    self._bookkeeping = bookkeeping
    self._cut_from = None

  def _step(self):
    return int(self.model.optimizer.iterations.numpy())

  def on_train_batch_begin(self, batch, logs=None):
    variable = _keras_internals.steps_per_execution_variable(self.model)
    left = self._max_steps - self._step()
    if variable is not None and left < int(variable.numpy()):
      self._cut_from = int(variable.numpy())
      variable.assign(left)

  def on_train_batch_end(self, batch, logs=None):
    if self._cut_from is not None:
      _keras_internals.steps_per_execution_variable(self.model).assign(
          self._cut_from)
      self._cut_from = None
    step = self._step()
    if step >= self._max_steps:
      self.model.stop_training = True
      if step % self.params['steps']:
        self._bookkeeping.save()


class ImageSummaries(keras.callbacks.Callback):
  """Writes reconstructions and prior samples to TensorBoard each epoch."""

  def __init__(self, log_dir, images, seed):
    super().__init__()
    self._writer = tf.summary.create_file_writer(log_dir)
    self._images = images
    self._seed = seed

  def on_epoch_end(self, epoch, logs=None):
    reconstructions = self.model.reconstruct(self._images).numpy()
    samples = self.model.sample(len(self._images), seed=self._seed).numpy()
    with self._writer.as_default(step=epoch + 1):
      tf.summary.image('reconstructions', upscaled(
          plotting.image_summary_grid(
              np.concatenate([self._images, reconstructions]))))
      tf.summary.image('prior_samples', upscaled(
          plotting.image_summary_grid(samples)))
    self._writer.flush()
