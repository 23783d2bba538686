"""Training a VAE with tf_keras `fit` under a `tf.distribute` strategy.

`train(model_config, train_config)` is the one call `scripts/train.py` makes.
It leaves in `train_config.model_dir`:

  config.json          the resolved ModelConfig and TrainConfig
  checkpoints/         tf.train checkpoints (model + optimizer), newest few
  history.json         per-epoch metrics, train and validation (nats/example)
  metrics.csv          the same as a table
  final_metrics.json   test-set metrics of the final model
  model.keras          the final model (tf_keras format, loads in safe mode)
  tensorboard/         scalars, and images of reconstructions/prior samples
  plots/               learning curves, reconstructions, prior samples, latents

Resuming: rerunning with the same model_dir restores the newest readable
checkpoint. The position in training is the optimizer's step counter alone:
epoch = step // steps_per_epoch, and the batch inside the epoch is
step % steps_per_epoch. The training data order of epoch e is a stateless
function of (seed, e), so a resumed run sees exactly the batches an
uninterrupted run would have seen, and with the stateless sampling noise of
`model.VariationalAutoencoder` it computes the same updates.

Why Keras `fit` and not a hand-written loop: with `jit_compile=True` and
`steps_per_execution` > 1 it runs several XLA-compiled steps per call, and
it gives callbacks (checkpoints, TensorBoard, early stopping) and
distribution strategies for free. See benchmarks/ for its measured speed.
"""

import json
import os
import tempfile
import time
from typing import Any, Dict, List, NamedTuple
import zipfile

from absl import logging
import numpy as np
import tensorflow as tf

from tfp_vae import data as data_lib
from tfp_vae import distribute
from tfp_vae._keras import keras
from tfp_vae.config import ConfigMismatchError
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.model import VariationalAutoencoder

__all__ = ['train', 'load_trained_model', 'read_configs',
           'NonFiniteLossError', 'TrainingResult', 'LoadedModel',
           'RESUMABLE_SETTINGS']

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
HISTORY_FILE = 'history.json'
METRICS_CSV_FILE = 'metrics.csv'
FINAL_METRICS_FILE = 'final_metrics.json'
MODEL_FILE = 'model.keras'
TENSORBOARD_DIR = 'tensorboard'
PLOTS_DIR = 'plots'

# TrainConfig settings that may differ when a run is resumed: they change how
# or how long it runs, not what it computes step by step.
RESUMABLE_SETTINGS = ('epochs', 'data_dir', 'model_dir', 'strategy',
                      'jit_compile', 'steps_per_execution',
                      'checkpoint_every_steps', 'keep_checkpoints',
                      'early_stopping_patience', 'num_importance_samples')


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite."""


class TrainingResult(NamedTuple):
  model: VariationalAutoencoder
  history: Dict[str, List[float]]   # per epoch, e.g. 'loss', 'val_elbo'
  test_metrics: Dict[str, Any]      # 'elbo', 'kl', 'nll', 'loss' (+ IS)
  model_dir: str
  epoch_seconds: List[float]


class LoadedModel(NamedTuple):
  model: VariationalAutoencoder
  model_config: ModelConfig
  train_config: TrainConfig
  checkpoint_path: str


################################################################################
# The model directory.
################################################################################


def _atomic_write(path, text):
  directory = os.path.dirname(path) or '.'
  with tempfile.NamedTemporaryFile('w', dir=directory, delete=False,
                                   prefix='.tmp-') as temp:
    temp.write(text)
    temp.flush()
    os.fsync(temp.fileno())
  # NamedTemporaryFile makes the file private (0600); give it the mode any
  # new file gets, so other workers and users (TensorBoard) can read it.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(temp.name, 0o666 & ~umask)
  os.replace(temp.name, path)


def read_configs(model_dir):
  """Returns `(ModelConfig, TrainConfig)` saved in `model_dir/config.json`.

  Raises:
    FileNotFoundError: if there is no config.json (the message names it).
    ValueError: if it is not valid JSON or holds unknown or non-plain values.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} does not exist: {model_dir!r} is not a tfp_vae model '
        f'directory (scripts/train.py writes config.json there).')
  with open(path) as f:
    try:
      saved = json.load(f)
    except json.JSONDecodeError as error:
      raise ValueError(f'{path} is not valid JSON: {error}') from None
  if not isinstance(saved, dict) or set(saved) != {'model', 'train'}:
    raise ValueError(f'{path} must hold {{"model": ..., "train": ...}}.')
  return (ModelConfig.from_dict(saved['model']),
          TrainConfig.from_dict(saved['train']))


def _prepare_model_dir(model_config, train_config, write):
  """Creates `model_dir`, or checks that it belongs to this configuration.

  Returns:
    True if the directory already holds this run (a resume).

  Raises:
    ValueError: if the directory cannot be created or written (naming
      --model_dir), or holds a run of a different configuration
      (`ConfigMismatchError`, listing every setting that differs).
  """
  model_dir = train_config.model_dir
  try:
    # Only the writer creates it: other workers must leave it untouched.
    if write:
      os.makedirs(model_dir, exist_ok=True)
      with tempfile.TemporaryFile(dir=model_dir):
        pass
  except OSError as error:
    raise ValueError(f'--model_dir={model_dir!r} cannot be used: {error}'
                     ) from None
  path = os.path.join(model_dir, CONFIG_FILE)
  if os.path.exists(path):
    saved_model_config, saved_train_config = read_configs(model_dir)
    differences = (
        saved_model_config.differences(model_config) +
        saved_train_config.differences(train_config,
                                       ignore=RESUMABLE_SETTINGS))
    if differences:
      lines = '\n'.join(f'  --{name}: saved {saved!r}, requested {new!r}'
                        for name, saved, new in differences)
      raise ConfigMismatchError(
          f'--model_dir={model_dir!r} holds a run with a different '
          f'configuration; refusing to resume it:\n{lines}\nUse another '
          f'--model_dir, or the saved settings.')
    resuming = True
  else:
    resuming = False
  if write:
    _atomic_write(path, json.dumps(
        {'model': model_config.to_dict(), 'train': train_config.to_dict()},
        indent=2, sort_keys=True))
  return resuming


def _checkpoint_paths_newest_first(checkpoint_dir):
  """Checkpoint prefixes in `checkpoint_dir`, highest step first.

  The `checkpoint` state file lists the kept ones; the `ckpt-<step>.index`
  files on disk are added, so that a damaged or missing state file (or one
  naming another directory) never makes a resume silently start afresh.
  """
  try:
    state = tf.train.get_checkpoint_state(checkpoint_dir)
  except ValueError as error:  # E.g. an empty state file.
    logging.warning('Ignoring the damaged checkpoint state file in %s (%s); '
                    'looking for checkpoint files instead.', checkpoint_dir,
                    error)
    state = None
  paths = set()
  if state is not None:
    paths.update(os.path.join(checkpoint_dir, os.path.basename(p)) for p in
                 [*state.all_model_checkpoint_paths,
                  state.model_checkpoint_path])
  paths.update(p[:-len('.index')] for p in tf.io.gfile.glob(
      os.path.join(checkpoint_dir, 'ckpt-*.index')))

  def step(path):
    suffix = path.rsplit('-', 1)[-1]
    return int(suffix) if suffix.isdigit() else -1
  return sorted(paths, key=step, reverse=True)


def restore_newest_readable_checkpoint(checkpoint, checkpoint_dir):
  """Restores the newest checkpoint that reads back whole.

  A checkpoint whose files are missing, truncated or corrupt (a write cut
  short, a damaged disk) is skipped with a warning that names it, and the
  next older one is tried.

  Returns:
    The restored checkpoint's path, or None if there was none to restore.

  Raises:
    ValueError: if checkpoints exist but none of them can be read.
  """
  paths = _checkpoint_paths_newest_first(checkpoint_dir)
  failures = []
  for path in paths:
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    # A truncated .data file makes TensorFlow's C++ reader raise IndexError
    # (or RuntimeError), not an OpError.
    except (tf.errors.OpError, ValueError, AssertionError, IndexError,
            RuntimeError) as error:
      message = str(error).splitlines()[0][:200]
      logging.warning('Checkpoint %s cannot be read (%s); trying an older '
                      'one.', path, message)
      failures.append(f'{path}: {message}')
      continue
    if failures:
      logging.warning('Resumed from %s, the newest readable checkpoint.',
                      path)
    return path
  if failures:
    raise ValueError('No checkpoint in %s can be read:\n  %s' %
                     (checkpoint_dir, '\n  '.join(failures)))
  return None


################################################################################
# Callbacks.
################################################################################


class _ResumePosition:
  """Tells `fit` the (epoch, step) to start from, as BackupAndRestore does.

  tf_keras asks `model._training_state` for the initial counters; this
  object answers from the restored step counter.
  """

  def __init__(self, epoch, step):
    self._counters = (epoch, step)

  def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch,
                                            initial_epoch, mode=None):
    del steps_per_epoch, initial_epoch, mode
    return self._counters


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
    self._checkpoint = checkpoint
    self._checkpoint_every_steps = checkpoint_every_steps
    self._model_dir = model_dir
    self._history_rows = history
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
    self.model._training_state = self._resume_position  # pylint: disable=protected-access
    self._last_checked_step = self._step()

  def on_train_end(self, logs=None):
    self.model._training_state = None  # pylint: disable=protected-access
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

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.perf_counter() - self._epoch_start
    self.epoch_seconds.append(seconds)
    row = {'epoch': epoch + 1, 'step': self._step(), 'seconds': seconds}
    row.update({k: float(v) for k, v in (logs or {}).items()})
    self._history_rows[:] = [r for r in self._history_rows
                             if r['epoch'] != epoch + 1] + [row]
    if self._is_chief:
      _write_history(self._model_dir, self._history_rows)
    self.save()


class _ImageSummaries(keras.callbacks.Callback):
  """Writes reconstructions and prior samples to TensorBoard each epoch."""

  def __init__(self, log_dir, images, seed):
    super().__init__()
    self._writer = tf.summary.create_file_writer(log_dir)
    self._images = images
    self._seed = seed

  def on_epoch_end(self, epoch, logs=None):
    from tfp_vae import plotting  # pylint: disable=g-import-not-at-top
    reconstructions = self.model.reconstruct(self._images).numpy()
    samples = self.model.sample(len(self._images), seed=self._seed).numpy()
    with self._writer.as_default(step=epoch + 1):
      tf.summary.image('reconstructions', plotting.image_summary_grid(
          np.concatenate([self._images, reconstructions])))
      tf.summary.image('prior_samples', plotting.image_summary_grid(samples))
    self._writer.flush()


def _write_history(model_dir, rows):
  rows = sorted(rows, key=lambda r: r['epoch'])
  _atomic_write(os.path.join(model_dir, HISTORY_FILE),
                json.dumps(rows, indent=1))
  columns = sorted({k for r in rows for k in r},
                   key=lambda k: (k not in ('epoch', 'step', 'seconds'), k))
  lines = [','.join(columns)] + [
      ','.join(repr(r.get(c, '')) if c in r else '' for c in columns)
      for r in rows]
  _atomic_write(os.path.join(model_dir, METRICS_CSV_FILE),
                '\n'.join(lines) + '\n')


def _read_history(model_dir):
  path = os.path.join(model_dir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def history_by_metric(rows):
  """Per-epoch rows -> `{metric: [value per epoch]}` (Keras History style)."""
  rows = sorted(rows, key=lambda r: r['epoch'])
  names = sorted({k for r in rows for k in r})
  return {n: [r.get(n, float('nan')) for r in rows] for n in names}


################################################################################
# Building, training, loading.
################################################################################


def _build_model(model_config, train_config):
  """The model, compiled, with its optimizer's variables created."""
  keras.utils.set_random_seed(model_config.seed)
  model = VariationalAutoencoder(model_config)
  optimizer = keras.optimizers.Adam(train_config.learning_rate)
  optimizer.build(model.trainable_variables)
  model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile,
                steps_per_execution=train_config.steps_per_execution)
  return model


def train(model_config, train_config, dataset=None, strategy=None,
          verbose=2):
  """Trains (or resumes training of) a VAE; see the module docstring.

  Args:
    model_config: `ModelConfig`; its `image_shape` must match the data.
    train_config: `TrainConfig`.
    dataset: optional `data.ImageDataset`, to skip `data.load_data`.
    strategy: optional `tf.distribute.Strategy` (default: by
      `train_config.strategy`).
    verbose: Keras progress verbosity (0 silent, 2 a line per epoch).

  Returns:
    `TrainingResult`.

  Raises:
    ValueError: for a model_dir that cannot be written, a model_dir holding
      another configuration (`ConfigMismatchError`), data that do not fit
      the model, a batch size larger than the training set, or
      `jit_compile` with replicas on logical CPUs (XLA cannot run those).
    NonFiniteLossError: if the loss becomes NaN or infinite; the newest
      checkpoint is then the last good one.
  """
  strategy = strategy or distribute.make_strategy(train_config.strategy)
  if train_config.jit_compile and not distribute.supports_jit_compile(strategy):
    raise ValueError(
        f'--jit_compile cannot be used with --strategy={train_config.strategy}'
        f' over {strategy.num_replicas_in_sync} CPU replicas: XLA cannot '
        'compile a step replicated over CPUs. Pass --nojit_compile.')
  is_chief = distribute.is_chief(strategy)
  # The data are checked before the model directory is touched.
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
  resuming = _prepare_model_dir(model_config, train_config, write=is_chief)
  model_dir = train_config.model_dir
  checkpoint_dir = os.path.join(model_dir, CHECKPOINT_DIR)

  with strategy.scope():
    model = _build_model(model_config, train_config)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  restored = restore_newest_readable_checkpoint(checkpoint, checkpoint_dir)
  step = int(model.optimizer.iterations.numpy())
  start_epoch, start_step = divmod(step, steps_per_epoch)
  if restored:
    logging.info('Resuming from %s: epoch %d, step %d of %d.', restored,
                 start_epoch + 1, start_step, steps_per_epoch)
  elif resuming:
    logging.info('%s has a config but no checkpoint; starting afresh.',
                 model_dir)
  history_rows = [r for r in _read_history(model_dir)
                  if r['epoch'] <= start_epoch] if restored else []

  bookkeeping = _FitBookkeeping(
      checkpoint, checkpoint_dir, train_config.keep_checkpoints,
      train_config.checkpoint_every_steps, model_dir, history_rows,
      _ResumePosition(start_epoch, start_step), is_chief,
      restored_checkpoint=restored)
  callbacks = [bookkeeping]
  if is_chief:
    callbacks.append(keras.callbacks.TensorBoard(
        os.path.join(model_dir, TENSORBOARD_DIR), profile_batch=0))
    sample_index = np.random.default_rng(train_config.seed).permutation(
        len(dataset.validation_images))[:8]
    callbacks.append(_ImageSummaries(
        os.path.join(model_dir, TENSORBOARD_DIR, 'images'),
        dataset.validation_images[sample_index], model_config.seed))
  if train_config.early_stopping_patience:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor='val_elbo', mode='max', restore_best_weights=True,
        patience=train_config.early_stopping_patience))

  if start_epoch < train_config.epochs:
    if is_chief:
      # The final model and metrics of an earlier, shorter run go stale now.
      for name in (MODEL_FILE, FINAL_METRICS_FILE):
        if os.path.exists(os.path.join(model_dir, name)):
          os.remove(os.path.join(model_dir, name))
    train_batches = data_lib.make_training_dataset(
        dataset.train_images, train_config.batch_size, train_config.seed,
        start_epoch, start_step,
        dynamic_binarization=dataset.binarization == 'dynamic')
    model.fit(
        train_batches, epochs=train_config.epochs,
        steps_per_epoch=steps_per_epoch, initial_epoch=start_epoch,
        validation_data=data_lib.make_evaluation_dataset(
            dataset.validation_images, train_config.batch_size),
        callbacks=callbacks, verbose=verbose)

  test_metrics = model.evaluate(
      data_lib.make_evaluation_dataset(dataset.test_images,
                                       train_config.batch_size),
      return_dict=True, verbose=0)
  test_metrics = {k: float(v) for k, v in test_metrics.items()}
  if train_config.num_importance_samples and model_config.posterior_has_density:
    from tfp_vae import evaluation  # pylint: disable=g-import-not-at-top
    evaluated = evaluation.evaluate_model(
        model, dataset.test_images,
        num_importance_samples=train_config.num_importance_samples,
        seed=train_config.seed)
    # Keep Keras's test ELBO/KL/NLL (the training objective's estimator);
    # add the importance-sampled log-likelihood, gap, active units, ...
    for name, value in evaluated.items():
      test_metrics.setdefault(name, value)
  history = history_by_metric(bookkeeping._history_rows)  # pylint: disable=protected-access
  if is_chief:
    _atomic_write(os.path.join(model_dir, FINAL_METRICS_FILE),
                  json.dumps(test_metrics, indent=2, sort_keys=True))
    _save_model_atomically(model, os.path.join(model_dir, MODEL_FILE))
  else:
    # Saving reads the metrics' sync-on-read variables, a collective op that
    # every worker must join, or the chief's save fails (or hangs).
    scratch_dir = tempfile.mkdtemp()
    _save_model_atomically(model, os.path.join(scratch_dir, MODEL_FILE))
    tf.io.gfile.rmtree(scratch_dir)
  if is_chief:
    _write_plots(model, dataset, history, os.path.join(model_dir, PLOTS_DIR),
                 train_config.seed)
  return TrainingResult(model=model, history=history,
                        test_metrics=test_metrics, model_dir=model_dir,
                        epoch_seconds=bookkeeping.epoch_seconds)


def _save_model_atomically(model, path):
  temp_path = os.path.join(os.path.dirname(path), '.tmp-' +
                           os.path.basename(path))
  model.save(temp_path)
  os.replace(temp_path, path)


def _write_plots(model, dataset, history, plots_dir, seed):
  from tfp_vae import plotting  # pylint: disable=g-import-not-at-top
  os.makedirs(plots_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  test_images = dataset.test_images
  shown = rng.permutation(len(test_images))[:16]
  plotting.plot_learning_curves(
      history, os.path.join(plots_dir, 'learning_curves.png'))
  plotting.plot_reconstructions(
      test_images[shown], model.reconstruct(test_images[shown]).numpy(),
      os.path.join(plots_dir, 'reconstructions.png'))
  plotting.plot_prior_samples(model, os.path.join(plots_dir,
                                                  'prior_samples.png'),
                              seed=seed)
  scatter = rng.permutation(len(test_images))[:2000]
  latent_means = np.concatenate([
      model.encode(batch).mean().numpy()
      for batch in np.array_split(test_images[scatter],
                                  max(1, len(scatter) // 500))])
  labels = (None if dataset.test_labels is None
            else dataset.test_labels[scatter])
  plotting.plot_latent_scatter(latent_means, os.path.join(
      plots_dir, 'latent_scatter.png'), labels=labels)
  if model.model_config.latent_dim == 2:
    plotting.plot_latent_manifold(model, os.path.join(
        plots_dir, 'latent_manifold.png'))


def _check_saved_model_file(path):
  """Refuses a `.keras` file whose top-level object is not our model.

  tf_keras's `load_model`, even in safe mode, imports whatever module a
  file's config names and calls that class's `from_config`: a tampered file
  could run code that way. Ours holds a `VariationalAutoencoder`, whose
  `from_config` accepts only a plain-value `ModelConfig`; nothing else is
  let through to `load_model` (compile=False drops the optimizer config).
  """
  try:
    with zipfile.ZipFile(path) as archive:
      saved = json.loads(archive.read('config.json'))
  except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
    raise ValueError(f'{path} is not a readable .keras file: {error}'
                     ) from None
  expected = keras.saving.get_registered_name(VariationalAutoencoder)
  if not isinstance(saved, dict) or saved.get('registered_name') != expected:
    found = (f'{saved.get("module")}.{saved.get("class_name")}'
             if isinstance(saved, dict) else type(saved).__name__)
    raise ValueError(f'{path} does not hold a saved {expected} (it names '
                     f'{found}); refusing to load it.')


def load_trained_model(model_dir, source='auto'):
  """Restores a trained model from its model directory.

  Rebuilds the model from `config.json` (plain values; no code is loaded)
  and restores its weights: from `model.keras`, the final model of a run
  that finished (with early stopping, its best weights), or from the newest
  readable checkpoint (falling back to older ones when the newest is
  damaged), the state of a run that stopped early or is still going. Works
  whatever strategy trained it.

  Args:
    model_dir: the run's directory.
    source: 'auto' (model.keras if present, else checkpoints), 'final' or
      'checkpoint'.

  Returns:
    `LoadedModel`.

  Raises:
    FileNotFoundError: if `model_dir` has no config.json.
    ValueError: if no checkpoint can be read, or config.json or model.keras
      holds anything but plain settings and our model class.
  """
  model_config, train_config = read_configs(model_dir)
  model = _build_model(model_config, train_config)
  final_path = os.path.join(model_dir, MODEL_FILE)
  if source == 'final' or (source == 'auto' and os.path.exists(final_path)):
    _check_saved_model_file(final_path)
    final_model = keras.models.load_model(final_path, safe_mode=True,
                                          compile=False)
    model.set_weights(final_model.get_weights())
    return LoadedModel(model, model_config, train_config, final_path)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  path = restore_newest_readable_checkpoint(
      checkpoint, os.path.join(model_dir, CHECKPOINT_DIR))
  if path is None:
    raise ValueError(f'{model_dir} holds no checkpoint yet.')
  return LoadedModel(model, model_config, train_config, path)
