"""Training a VAE with tf_keras `fit` under a `tf.distribute` strategy.

`train(model_config, train_config)` is the one call `scripts/train.py` makes.
It leaves in `train_config.model_dir` (file names and formats: `runs`):

  config.json          the resolved ModelConfig and TrainConfig
  checkpoints/         tf.train checkpoints (model + optimizer), newest few
  history.json         per-epoch metrics, train and validation (nats/example),
                       and each epoch's seconds and end time (Unix time)
  metrics.csv          the same as a table
  final_metrics.json   test-set metrics of the final model
  model.keras          the final model (tf_keras format, loads in safe mode)
  tensorboard/         scalars, and images of reconstructions/prior samples
  plots/               learning curves, reconstructions, prior samples, latents

`runs.load_trained_model(model_dir)` loads the result.

Resuming: rerunning with the same model_dir restores the newest readable
checkpoint. The position in training is the optimizer's step counter alone:
epoch = step // steps_per_epoch, and the batch inside the epoch is
step % steps_per_epoch. The training data order of epoch e is a stateless
function of (seed, e), so a resumed run sees exactly the batches an
uninterrupted run would have seen, and with the stateless sampling noise of
`model.VariationalAutoencoder` it computes the same updates. The state of
the training protocol that depends on past validation metrics is in the
checkpoint too: the reduce-on-plateau learning rate (`schedules`) and the
early-stopping counters and best weights (`early_stopping`).

Length: a run trains `--epochs` epochs, or `--max_steps` steps if fewer, or
until early stopping; a rerun with a larger budget goes on from where it
stopped. A run stopped by `--max_steps` inside an epoch has a history row
for that epoch so far, replaced when a rerun completes the epoch.

Why Keras `fit` and not a hand-written loop: with `jit_compile=True` and
`steps_per_execution` > 1 it runs several XLA-compiled steps per call, and
it gives callbacks (checkpoints, TensorBoard, early stopping) and
distribution strategies for free. See benchmarks/ for its measured speed.
"""

import dataclasses
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf

from tfp_vae import _keras_internals
from tfp_vae import callbacks as callbacks_lib
from tfp_vae import checkpoints
from tfp_vae import config as config_lib
from tfp_vae import data as data_lib
from tfp_vae import distribute
from tfp_vae import early_stopping as early_stopping_lib
from tfp_vae import evaluation
from tfp_vae import names
from tfp_vae import objectives
from tfp_vae import plotting
from tfp_vae import runs
from tfp_vae import schedules
from tfp_vae._keras import keras
from tfp_vae.model import VariationalAutoencoder

__all__ = ['train', 'NonFiniteLossError', 'TrainingInterrupted',
           'TrainingResult']


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


class TrainingInterrupted(Exception):
  """SIGINT or SIGTERM stopped training after a checkpoint at `step`."""

  def __init__(self, step, signal_name):
    super().__init__(f'Interrupted at step {step}; rerun the same command to '
                     'resume.')
    self.step = step
    self.signal_name = signal_name


class TrainingResult(NamedTuple):
  model: VariationalAutoencoder
  history: Dict[str, List[float]]   # per epoch, e.g. 'loss', 'val_elbo'
  test_metrics: Dict[str, Any]      # 'elbo', 'kl', 'nll', 'loss' (+ IS)
  model_dir: str
  epoch_seconds: List[float]


################################################################################
# Callbacks.
################################################################################


class _FitBookkeeping(keras.callbacks.Callback):
  """Checkpoints, metric files, the non-finite-loss stop and epoch timings.

  One callback so that the order of these steps is explicit at every event:
  at a batch end, check the loss before any checkpoint could save a broken
  model; at an epoch end, write the metrics before the checkpoint, so a kill
  between the two only repeats an epoch whose row is then replaced.
  """

  def __init__(self, checkpoint, checkpoint_dir, keep_checkpoints,
               checkpoint_every_steps, model_dir, history, resume_position,
               is_chief, restored_checkpoint=None):
    super().__init__()
    self._checkpoint_every_steps = checkpoint_every_steps
    self._model_dir = model_dir
    self.history_rows = history
    self._resume_position = resume_position
    self._is_chief = is_chief
    # Every worker saves (saving can involve collective ops); only the chief
    # writes to the model directory, the others to a scratch directory.
    self._scratch_dir = None if is_chief else tempfile.mkdtemp()
    self._manager = tf.train.CheckpointManager(
        checkpoint, checkpoint_dir if is_chief else self._scratch_dir,
        max_to_keep=keep_checkpoints, checkpoint_name='ckpt')
    self._last_checked_step = None
    # Kept here, not read from the manager: its newest entry may be a
    # damaged checkpoint that the resume skipped, which must be rewritten.
    self._last_saved_step = None
    self._last_good_checkpoint = restored_checkpoint
    self._checkpoint_dir = checkpoint_dir
    self._epoch_start = None
    self.epoch_seconds = []
    # The name of the signal (SIGINT, SIGTERM) that asked training to stop.
    self.interrupted_by = None

  def _step(self):
    return int(self.model.optimizer.iterations.numpy())

  def _what_is_kept(self):
    if self._last_good_checkpoint:
      return (f'The last good checkpoint, {self._last_good_checkpoint}, is '
              'kept.')
    return ('No checkpoint had been written yet (--checkpoint_every_steps '
            'also saves within an epoch).')

  def save(self):
    step = self._step()
    if step == self._last_saved_step:
      return
    # A step's loss is computed before its update, so a finite loss does not
    # mean finite weights: an update can overflow. Never save such a state
    # over the last good one.
    variables = self.model.trainable_variables + self.model.optimizer.variables
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables
               if v.dtype.is_floating):
      self.model.stop_training = True
      raise NonFiniteLossError(
          f'The weights or optimizer state became NaN or infinite at step '
          f'{step}, not saved. {self._what_is_kept()} Try a lower '
          '--learning_rate.')
    path = self._manager.save(checkpoint_number=step)
    self._last_saved_step = step
    # As the chief names it (the other workers save to a scratch directory).
    self._last_good_checkpoint = os.path.join(self._checkpoint_dir,
                                              os.path.basename(path))

  def on_train_begin(self, logs=None):
    _keras_internals.set_initial_position(self.model, *self._resume_position)
    self._last_checked_step = self._step()

  def on_train_end(self, logs=None):
    _keras_internals.clear_initial_position(self.model)
    if self._scratch_dir:
      tf.io.gfile.rmtree(self._scratch_dir)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    step = self._step()
    loss = (logs or {}).get('loss')
    if loss is not None and not np.isfinite(loss):
      self.model.stop_training = True
      first = self._last_checked_step + 1
      where = f'step {step}' if first >= step else (
          f'a step between {first} and {step} (steps run '
          f'{step - first + 1} at a time: --steps_per_execution)')
      raise NonFiniteLossError(
          f'The training loss became {loss} at {where}. '
          f'{self._what_is_kept()} Try a lower --learning_rate.')
    every = self._checkpoint_every_steps
    # An epoch's last step is saved by on_epoch_end, after the epoch's
    # metrics row: saved here, a kill before that row is written would
    # resume after the epoch and lose its row for good.
    epoch_ends = step % self.params['steps'] == 0
    if every and step // every > self._last_checked_step // every and (
        not epoch_ends):
      self.save()
    self._last_checked_step = step
    if self.interrupted_by and not epoch_ends:
      self._stop_for_interrupt()

  def _stop_for_interrupt(self):
    # Called at an execution boundary: with --steps_per_execution > 1 the
    # fused call of several steps is never cut, so the checkpoint is at the
    # step the last call ended at.
    self.model.stop_training = True
    self.save()
    raise TrainingInterrupted(self._step(), self.interrupted_by)

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.perf_counter() - self._epoch_start
    self.epoch_seconds.append(seconds)
    # end_time (Unix seconds, after validation) places the epoch in the
    # whole run, for benchmarks/whole_run.py: start-up = first epoch's
    # end_time - seconds - process start.
    row = {'epoch': epoch + 1, 'step': self._step(), 'seconds': seconds,
           'end_time': time.time()}
    row.update({k: float(v) for k, v in (logs or {}).items()})
    self.history_rows[:] = [r for r in self.history_rows
                             if r['epoch'] != epoch + 1] + [row]
    if self._is_chief:
      runs.write_history(self._model_dir, self.history_rows)
    self.save()
    if self.interrupted_by:
      self._stop_for_interrupt()


def _say(verbose, text):
  """A progress line, on stdout beside Keras's progress output."""
  if verbose:
    print(text, flush=True)


def _resolve_jit_compile(train_config, strategy, verbose):
  """`train_config` with `jit_compile` True or False for `strategy`."""
  supported = distribute.supports_jit_compile(strategy)
  if train_config.jit_compile == 'auto':
    if not supported:
      _say(verbose, f'Note: --jit_compile=auto is off: XLA cannot compile a '
           f'step replicated over {strategy.num_replicas_in_sync} CPU '
           'replicas.')
    return dataclasses.replace(train_config, jit_compile=supported)
  if train_config.jit_compile and not supported:
    raise ValueError(
        f'--jit_compile cannot be used with --strategy={train_config.strategy}'
        f' over {strategy.num_replicas_in_sync} CPU replicas: XLA cannot '
        'compile a step replicated over CPUs. Pass --nojit_compile (or '
        '--jit_compile=auto).')
  return train_config


################################################################################
# Training.
################################################################################


def train(model_config, train_config, dataset=None, strategy=None,
          verbose=2):
  """Trains (or resumes training of) a VAE; see the module docstring.

  Args:
    model_config: `ModelConfig`; its `image_shape` must match the data.
    train_config: `TrainConfig`.
    dataset: optional `data.ImageDataset`, to skip `data.load_data`.
    strategy: optional `tf.distribute.Strategy` (default: by
      `train_config.strategy`).
    verbose: progress output: 0 silent, 1 a progress bar within each epoch
      (steps, steps/s, ETA; for a terminal), 2 a line per epoch; 1 and
      2 also print a line per phase (compiling, test evaluation, plots,
      saving). 'auto': 1 if stdout is a terminal, else 2.

  Returns:
    `TrainingResult`.

  Raises:
    ValueError: for a model_dir that cannot be written, a model_dir holding
      another configuration (`ConfigMismatchError`), data that do not fit
      the model or are binarized otherwise than `--binarization` says, a
      batch size larger than the training set, or
      `jit_compile` with replicas on logical CPUs (XLA cannot run those).
    NonFiniteLossError: if the loss becomes NaN or infinite; the newest
      checkpoint is then the last good one.
    TrainingInterrupted: on SIGINT or SIGTERM during `fit`, after a
      checkpoint at the step the current execution ended at; rerunning the
      same configuration resumes there exactly.
  """
  if verbose == 'auto':
    verbose = 1 if sys.stdout.isatty() else 2
  strategy = strategy or distribute.make_strategy(train_config.strategy)
  train_config = _resolve_jit_compile(train_config, strategy, verbose)
  is_chief = distribute.is_chief(strategy)
  # The data are checked before the model directory is touched.
  data_from_files = dataset is None
  if dataset is None:
    dataset = data_lib.load_data(train_config, model_config)
  elif tuple(dataset.image_shape) != tuple(model_config.image_shape):
    raise ValueError(f'The data have images of shape {dataset.image_shape}; '
                     f'the model expects {model_config.image_shape}.')
  data_lib.check_pixels(dataset, train_config)
  num_train = len(dataset.train_images)
  if train_config.batch_size > num_train:
    raise ValueError(
        f'--batch_size={train_config.batch_size} is larger than the '
        f'{num_train} training images of --dataset={train_config.dataset}.')
  steps_per_epoch = num_train // train_config.batch_size
  model_config, train_config = config_lib.resolve_run_settings(
      model_config, train_config, dataset.binarization, steps_per_epoch)
  resuming = runs.prepare_model_dir(model_config, train_config, write=is_chief)
  model_dir = train_config.model_dir
  checkpoint_dir = os.path.join(model_dir, runs.CHECKPOINT_DIR)

  patience = train_config.early_stopping_patience
  with strategy.scope():
    model = runs.build_model(model_config, train_config, steps_per_epoch)
    # Saved only by runs that stop early; older checkpoints lack it.
    protocol_state = ({'early_stopping': early_stopping_lib.EarlyStoppingState(
        model.weights)} if patience else {})
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     **protocol_state)
  restored = checkpoints.restore_newest_readable_checkpoint(
      tf.train.Checkpoint(model=model, optimizer=model.optimizer),
      checkpoint_dir, optional=protocol_state)
  early_stopping = protocol_state.get('early_stopping')
  step = int(model.optimizer.iterations.numpy())
  start_epoch, start_step = divmod(step, steps_per_epoch)
  if restored:
    resume_line = (f'Resuming from {restored}: epoch {start_epoch + 1}, '
                   f'step {start_step} of {steps_per_epoch}.')
    # Printed in a default run, where absl's info lines are silenced.
    if verbose:
      _say(verbose, resume_line)
    else:
      logging.info(resume_line)
  elif resuming:
    logging.info('%s has a config but no checkpoint; starting afresh.',
                 model_dir)
  history_rows = [r for r in runs.read_history(model_dir)
                  if r['epoch'] <= start_epoch] if restored else []

  bookkeeping = _FitBookkeeping(
      checkpoint, checkpoint_dir, train_config.keep_checkpoints,
      train_config.checkpoint_every_steps, model_dir, history_rows,
      (start_epoch, start_step), is_chief,
      restored_checkpoint=restored)
  callbacks = [callbacks_lib.EpochEndProtocol(early_stopping, patience),
               bookkeeping]
  if train_config.max_steps:
    callbacks.append(
        callbacks_lib.StepBudget(train_config.max_steps, bookkeeping))
  if is_chief:
    callbacks.append(callbacks_lib.EpochAlignedTensorBoard(
        os.path.join(model_dir, runs.TENSORBOARD_DIR), profile_batch=0))
    sample_index = np.random.default_rng(train_config.seed).permutation(
        len(dataset.validation_images))[:8]
    callbacks.append(callbacks_lib.ImageSummaries(
        os.path.join(model_dir, runs.TENSORBOARD_DIR, 'images'),
        dataset.validation_images[sample_index], model_config.seed))

  stopped_early = early_stopping is not None and early_stopping.stopped(
      patience)
  if stopped_early:
    logging.info('%s stopped early (no better validation ELBO for %d '
                 'epochs); raise --early_stopping_patience to train on.',
                 model_dir, patience)
  if step < schedules.run_steps(train_config,
                                steps_per_epoch) and not stopped_early:
    if is_chief:
      # The final model and metrics of an earlier, shorter run go stale now.
      for name in (runs.MODEL_FILE, runs.FINAL_METRICS_FILE):
        if os.path.exists(os.path.join(model_dir, name)):
          os.remove(os.path.join(model_dir, name))
    train_batches = data_lib.make_training_dataset(
        dataset.train_images, train_config.batch_size, train_config.seed,
        start_epoch, start_step,
        dynamic_binarization=dataset.binarization == 'dynamic')
    with callbacks_lib.StopOnSignal(bookkeeping):
      # Said once the signal handlers are in place: a signal sent on seeing
      # this line is a clean stop at the next batch end.
      _say(verbose, f'Epoch {start_epoch + 1} starts by compiling the '
           'training step' + (' with XLA' if train_config.jit_compile else '')
           + f'; {steps_per_epoch} steps per epoch, {train_config.epochs} '
           'epochs.')
      model.fit(
          train_batches, epochs=train_config.epochs,
          steps_per_epoch=steps_per_epoch, initial_epoch=start_epoch,
          validation_data=data_lib.make_evaluation_dataset(
              dataset.validation_images, train_config.batch_size),
          callbacks=callbacks + ([callbacks_lib.ProgressLogger(
              bar=verbose == 1)] if verbose else []), verbose=0)

  if early_stopping is not None and early_stopping.has_best_weights():
    # The final model is the best epoch's; checkpoints keep the last
    # epoch's weights, from which a rerun with more patience goes on.
    model.set_weights(early_stopping.best_weight_values())

  importance_sampled = (train_config.num_importance_samples and
                        model_config.posterior_has_density)
  _say(verbose, 'Evaluating on the test set' + (
      f' (log p(x) with K={train_config.num_importance_samples} importance '
      'samples)' if importance_sampled else '') + '...')

  test_metrics = model.evaluate(
      data_lib.make_evaluation_dataset(dataset.test_images,
                                       train_config.batch_size),
      return_dict=True, verbose=0)
  test_metrics = {k: float(v) for k, v in test_metrics.items()}
  if importance_sampled:
    evaluated = evaluation.evaluate_model(
        model, dataset.test_images,
        num_importance_samples=train_config.num_importance_samples,
        seed=train_config.seed)
    # Keep Keras's test ELBO/KL/NLL (the training objective's estimator);
    # add the importance-sampled log-likelihood, gap, active units, ...
    for name, value in evaluated.items():
      test_metrics.setdefault(name, value)
  history = runs.history_by_metric(bookkeeping.history_rows)
  if is_chief:
    _say(verbose, 'Saving the model to '
         f'{os.path.join(model_dir, runs.MODEL_FILE)}...')
    runs.write_json_atomically(
        os.path.join(model_dir, runs.FINAL_METRICS_FILE), test_metrics)
    runs.save_model_atomically(model, os.path.join(model_dir,
                                                   runs.MODEL_FILE))
  else:
    # Saving reads the metrics' sync-on-read variables, a collective op that
    # every worker must join, or the chief's save fails (or hangs).
    scratch_dir = tempfile.mkdtemp()
    runs.save_model_atomically(model, os.path.join(scratch_dir,
                                                   runs.MODEL_FILE))
    tf.io.gfile.rmtree(scratch_dir)
  if is_chief:
    # The grey levels the binarized test images were drawn from, for the
    # reconstructions plot; a dataset passed in has no files to reread.
    grey_test_images = None
    if data_from_files and dataset.binarization == 'dynamic':
      grey_test_images = data_lib.load_grey_images(train_config, model_config)
    _say(verbose, 'Writing plots to '
         f'{os.path.join(model_dir, runs.PLOTS_DIR)}...')
    _write_plots(model, dataset, history,
                 os.path.join(model_dir, runs.PLOTS_DIR), train_config.seed,
                 grey_test_images)
  return TrainingResult(model=model, history=history,
                        test_metrics=test_metrics, model_dir=model_dir,
                        epoch_seconds=bookkeeping.epoch_seconds)


def _write_plots(model, dataset, history, plots_dir, seed,
                 grey_test_images=None):
  os.makedirs(plots_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  test_images = dataset.test_images
  shown = rng.permutation(len(test_images))[:16]
  plotting.plot_learning_curves(
      history, os.path.join(plots_dir, 'learning_curves.png'))
  plotting.plot_reconstructions(
      test_images[shown], model.reconstruct(test_images[shown]).numpy(),
      os.path.join(plots_dir, 'reconstructions.png'),
      grey_originals=(None if grey_test_images is None
                      else grey_test_images[shown]),
      input_label=plotting.INPUT_ROW_LABELS[dataset.binarization],
      reconstruction_label='reconstruction (decoder mean)')
  plotting.plot_prior_samples(model, os.path.join(plots_dir,
                                                  'prior_samples.png'),
                              seed=seed)
  scatter = rng.permutation(len(test_images))[:2000]
  latent_means = np.concatenate([
      objectives.posterior_location(model.encode(batch)).numpy()
      for batch in np.array_split(test_images[scatter],
                                  max(1, len(scatter) // 500))])
  labels = (None if dataset.test_labels is None
            else dataset.test_labels[scatter])
  plotting.plot_latent_scatter(
      latent_means, os.path.join(plots_dir, 'latent_scatter.png'),
      labels=labels, class_names=names.DATASET_CLASS_NAMES.get(dataset.name))
  if model.model_config.latent_dim == 2:
    plotting.plot_latent_manifold(model, os.path.join(
        plots_dir, 'latent_manifold.png'))
