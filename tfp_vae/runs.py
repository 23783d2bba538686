"""The model directory of a training run: its files, and loading a trained run.

`training.train` writes a model directory; `evaluation`, `comparison` and
the scripts read it. Everything that knows what the directory holds lives
here, so that writer and readers cannot drift apart:

  config.json                   the resolved ModelConfig and TrainConfig
  checkpoints/                  tf.train checkpoints (model + optimizer),
                                restored by `tfp_vae.checkpoints`
  history.json                  per-epoch metrics, train and validation
  metrics.csv                   the same as a table
  final_metrics.json            test-set metrics of the final model
  model.keras                   the final model (tf_keras format)
  tensorboard/                  scalars, and images of reconstructions
  plots/                        learning curves, reconstructions, samples
  evaluation_<split>.json       `scripts/evaluate.py`'s metrics
  comparison_evaluation.json    a comparison's test metrics of this run

Every file is written atomically (to a temporary file in the same
directory, then renamed over the target) with one mode, `FILE_MODE`, so a
reader never sees half a file and every reader may open it.

Loading a trained run (`load_trained_model`) rebuilds the model from the
plain settings of config.json and restores its weights; it refuses a
`model.keras` that names any class but ours, and it leaves the caller's
global random state (Python, NumPy, TensorFlow) as it found it.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import NamedTuple
import warnings
import zipfile

import tensorflow as tf

from tfp_vae import _keras_internals
from tfp_vae import checkpoints
from tfp_vae import schedules
from tfp_vae._keras import keras
from tfp_vae.config import ConfigMismatchError
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.model import VariationalAutoencoder

__all__ = ['LoadedModel', 'load_trained_model', 'read_configs',
           'build_model', 'prepare_model_dir', 'write_history',
           'read_history', 'history_by_metric', 'write_text_atomically',
           'write_json_atomically', 'read_json_or_none',
           'save_model_atomically', 'evaluation_file', 'RESUMABLE_SETTINGS',
           'FILE_MODE']

# The names of a model directory's files, and the settings a resume may
# change, live in `names` (no TensorFlow) so that scripts read a run before
# importing TensorFlow.
from tfp_vae.names import CHECKPOINT_DIR  # pylint: disable=g-bad-import-order
from tfp_vae.names import CONFIG_FILE
from tfp_vae.names import FINAL_METRICS_FILE
from tfp_vae.names import HISTORY_FILE
from tfp_vae.names import METRICS_CSV_FILE
from tfp_vae.names import MODEL_FILE
from tfp_vae.names import PLOTS_DIR
from tfp_vae.names import RESUMABLE_SETTINGS
from tfp_vae.names import TENSORBOARD_DIR
COMPARISON_EVALUATION_FILE = 'comparison_evaluation.json'

# Readable by everyone (other workers, TensorBoard, a colleague's account),
# writable by the owner: the mode any file of a model directory gets,
# whatever wrote it.
FILE_MODE = 0o644

# ... except those a schedule computes from: a cosine schedule decays over
# the run's length, so changing it would change every later step's rate.
_SETTINGS_A_SCHEDULE_READS = {'cosine': ('epochs', 'max_steps')}


class LoadedModel(NamedTuple):
  model: VariationalAutoencoder
  model_config: ModelConfig
  train_config: TrainConfig
  checkpoint_path: str


def evaluation_file(split):
  """The file name `scripts/evaluate.py` writes for `split`."""
  return f'evaluation_{split}.json'


################################################################################
# Atomic writes.
################################################################################


def write_text_atomically(path, text):
  """Writes `text` to `path` atomically, with mode `FILE_MODE`.

  The text goes to a temporary file in the same directory, synced to disk
  and renamed over `path`: a reader (or a run resumed after a kill) sees the
  old file or the new one, never a part.
  """
  directory = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile('w', dir=directory, delete=False,
                                   prefix='.tmp-') as temp:
    temp.write(text)
    temp.flush()
    os.fsync(temp.fileno())
  # NamedTemporaryFile makes the file private (0600).
  os.chmod(temp.name, FILE_MODE)
  os.replace(temp.name, path)


def write_json_atomically(path, value, indent=2):
  """`write_text_atomically` of `value` as JSON (sorted keys, final newline)."""
  write_text_atomically(path, json.dumps(value, indent=indent,
                                         sort_keys=True) + '\n')


def read_json_or_none(path):
  """The JSON value in `path`, or None if it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


@contextlib.contextmanager
def _made_layer_configs_unannounced():
  """Drops tf_keras's warnings about the IAF's MADE layer configs.

  TFP's MADE masks its Dense layers with plain functions as initializer and
  constraint; tf_keras warns about them whenever it serializes a layer's
  config (saving and loading both do). The IAF layer rebuilds its networks
  from its own config, so nothing is lost. Other warnings pass.
  """
  with warnings.catch_warnings():
    warnings.filterwarnings(
        'ignore', category=UserWarning,
        message=r'The `keras\.(initializers|constraints)\.serialize\(\)` '
        'API should only be used')
    yield


def save_model_atomically(model, path):
  """`model.save(path)` (tf_keras format) through a temporary file."""
  temp_path = os.path.join(os.path.dirname(path),
                           '.tmp-' + os.path.basename(path))
  with _made_layer_configs_unannounced():
    model.save(temp_path)
  os.chmod(temp_path, FILE_MODE)
  os.replace(temp_path, path)


################################################################################
# Configs and history.
################################################################################


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


def prepare_model_dir(model_config, train_config, write):
  """Creates `model_dir`, or checks that it belongs to this configuration.

  Args:
    model_config, train_config: the run's configs.
    write: whether this process writes the directory (the chief); the
      others only check it.

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
    if saved_train_config.binarization == '':
      # Written before config.json held resolved values: '' was the
      # dataset's default, which the same dataset resolves to again.
      saved_train_config = dataclasses.replace(
          saved_train_config, binarization=train_config.binarization)
    fixed = _SETTINGS_A_SCHEDULE_READS.get(
        saved_train_config.learning_rate_schedule, ())
    differences = (
        saved_model_config.differences(model_config) +
        saved_train_config.differences(
            train_config,
            ignore=[s for s in RESUMABLE_SETTINGS if s not in fixed]))
    if differences:
      lines = '\n'.join(f'  --{name}: saved {saved!r}, requested {new!r}'
                        for name, saved, new in differences)
      why = ''
      if any(name in fixed for name, _, _ in differences):
        why = (f'\n(--learning_rate_schedule='
               f'{saved_train_config.learning_rate_schedule} decays over the '
               f'run\'s length, so {" and ".join("--" + f for f in fixed)} '
               'cannot change when it is resumed.)')
      raise ConfigMismatchError(
          f'--model_dir={model_dir!r} holds a run with a different '
          f'configuration; refusing to resume it:\n{lines}{why}\nUse another '
          f'--model_dir, or the saved settings.')
    resuming = True
  else:
    resuming = False
  if write:
    write_json_atomically(path, {'model': model_config.to_dict(),
                                 'train': train_config.to_dict()})
  return resuming


def write_history(model_dir, rows):
  """Writes per-epoch rows to history.json and metrics.csv, by epoch."""
  rows = sorted(rows, key=lambda r: r['epoch'])
  write_json_atomically(os.path.join(model_dir, HISTORY_FILE), rows,
                        indent=1)
  columns = sorted({k for r in rows for k in r},
                   key=lambda k: (k not in ('epoch', 'step', 'seconds',
                                            'end_time'), k))
  lines = [','.join(columns)] + [
      ','.join(repr(r.get(c, '')) if c in r else '' for c in columns)
      for r in rows]
  write_text_atomically(os.path.join(model_dir, METRICS_CSV_FILE),
                        '\n'.join(lines) + '\n')


def read_history(model_dir):
  """The per-epoch rows of history.json (a list of dicts; [] if none)."""
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
# The model of a run.
################################################################################


def build_model(model_config, train_config, steps_per_epoch=None):
  """The model a run's configs describe, compiled, optimizer variables built.

  Seeds Python, NumPy and TensorFlow with `model_config.seed` first, so the
  initial weights are a function of the config (a training run relies on
  this; `load_trained_model` undoes the seeding for its caller).

  Args:
    model_config, train_config: the run's configs.
    steps_per_epoch: the run's steps per epoch, for a model to train: its
      optimizer then follows `--learning_rate_schedule`. None (a model to
      use) gives the optimizer the constant `--learning_rate`, since a
      schedule's steps depend on the data.
  """
  keras.utils.set_random_seed(model_config.seed)
  model = VariationalAutoencoder(model_config)
  learning_rate = (train_config.learning_rate if steps_per_epoch is None else
                   schedules.learning_rate_schedule(train_config,
                                                    steps_per_epoch))
  optimizer = keras.optimizers.Adam(learning_rate,
                                    epsilon=train_config.adam_epsilon)
  optimizer.build(model.trainable_variables)
  # weighted_metrics=[]: the model's own metrics take the evaluation
  # batches' padding weights (`data.make_evaluation_dataset`); this tells
  # Keras that no compiled metric wants them, instead of a warning per
  # evaluate.
  model.compile(optimizer=optimizer, jit_compile=train_config.jit_compile,
                steps_per_execution=train_config.steps_per_execution,
                weighted_metrics=[])
  return model


@contextlib.contextmanager
def _global_random_state_kept():
  """Restores Python's, NumPy's and TensorFlow's global random state on exit."""
  saved = _keras_internals.get_global_random_state()
  try:
    yield
  finally:
    _keras_internals.set_global_random_state(saved)


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
  whatever strategy trained it. The global random state of Python, NumPy
  and TensorFlow is the same after the call as before it.

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

  Example:

  ```python
  run = tfp_vae.load_trained_model('runs/binarized_mnist-full_cov')
  images = run.model.sample(16, seed=0)  # [16, 28, 28, 1]
  ```
  """
  model_config, train_config = read_configs(model_dir)
  with _global_random_state_kept():
    model = build_model(model_config, train_config)
    final_path = os.path.join(model_dir, MODEL_FILE)
    if source == 'final' or (source == 'auto' and os.path.exists(final_path)):
      _check_saved_model_file(final_path)
      with _made_layer_configs_unannounced():
        final_model = keras.models.load_model(final_path, safe_mode=True,
                                              compile=False)
      model.set_weights(final_model.get_weights())
      return LoadedModel(model, model_config, train_config, final_path)
    # The optimizer's step counter and moments are restored; its learning
    # rate is the constant one `build_model` gives a model to use, whatever
    # the run's schedule (`training.train` resumes a run with it).
    path = checkpoints.restore_newest_readable_checkpoint(
        tf.train.Checkpoint(model=model),
        os.path.join(model_dir, CHECKPOINT_DIR),
        optional={'optimizer': model.optimizer})
  if path is None:
    raise ValueError(f'{model_dir} holds no checkpoint yet.')
  return LoadedModel(model, model_config, train_config, path)
