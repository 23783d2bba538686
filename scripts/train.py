r"""Trains a VAE and leaves everything a user needs in --model_dir.

  python scripts/train.py --posterior=full_cov
  python scripts/train.py --dataset=binarized_mnist --data_dir=DIR \
      --posterior=diag --latent_dim=2 --epochs=50
  python scripts/train.py --flagfile=my_run.flags

Rerunning the same command resumes from the newest checkpoint, or says at
once that the run is finished (raise --epochs to train further; --overwrite
starts afresh, moving the old directory aside). Ctrl-C or SIGTERM writes a
checkpoint and exits with status 130; the same command resumes there. See
`tfp_vae/runs.py` for what the model directory holds; installed, this is
the command `tfp-vae-train`.
"""

import dataclasses
import datetime
import gc
import json
import os
import sys
import time

from absl import app
from absl import flags

# The flags are shared with scripts/compare_posteriors.py; they live in
# scripts/_flags.py, next to this file.
if __package__:  # Installed as the package tfp_vae_cli (console commands).
  from . import _console, _flags  # pylint: disable=g-import-not-at-top
else:  # Run as a file: python scripts/<name>.py.
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import _console  # pylint: disable=g-import-not-at-top
  import _flags  # pylint: disable=g-import-not-at-top

# TensorFlow-free: the default model directory and the closing summary.
# pylint: disable=g-import-not-at-top,wrong-import-position
from tfp_vae import names
from tfp_vae import run_summary
# pylint: enable=g-import-not-at-top,wrong-import-position

# No TensorFlow op may run before --num_cpu_devices splits the CPU into
# logical devices, so the modules that build data and models are imported in
# main(), after flag parsing.
_flags.define_flags()
flags.adopt_module_key_flags(_flags)

flags.DEFINE_bool('overwrite', False,
                  'Start afresh even if --model_dir holds a run: after the '
                  'new flags are checked, the old directory is moved aside '
                  'to <model_dir>.old-<date>-<time> (nothing is deleted). '
                  'Without it an existing run of the same settings is '
                  'resumed, or reported finished.')

FLAGS = flags.FLAGS

# The exit status of a run stopped by SIGINT or SIGTERM (128 + SIGINT), as a
# shell reports a process Ctrl-C stopped.
_EXIT_INTERRUPTED = 130


def _configs_from_flags():
  """Builds and validates both configs, before any data or model work.

  Without --model_dir the directory is `run_summary.default_model_dir`:
  named after the settings that define the model.
  """
  model_config, train_config = _flags.configs_from_flags(
      model_dir=FLAGS.model_dir or 'runs')
  if not FLAGS.model_dir:
    train_config = dataclasses.replace(
        train_config,
        model_dir=run_summary.default_model_dir(model_config, train_config))
  return model_config, train_config


def _move_aside(model_dir):
  """Moves an existing `model_dir` to a new name; returns that name."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  moved = f'{model_dir.rstrip(os.sep)}.old-{stamp}'
  os.rename(model_dir, moved)
  return moved


def _finished_and_same(model_config, train_config):
  """The finished run in model_dir if this command is the one that made it.

  The same command: every setting as saved but --epochs, which may be
  lower (and --jit_compile=auto and an empty --binarization, which
  config.json records resolved; a KL warm-up in epochs, recorded in steps,
  goes to training, which resumes the finished run and says so).
  Anything else goes to training, which resumes, refuses or checks it.
  """
  finished = run_summary.read_finished_run(train_config.model_dir)
  if finished is None or train_config.epochs > finished.epochs:
    return None
  with open(os.path.join(train_config.model_dir, names.CONFIG_FILE)) as f:
    saved = json.load(f)
  ignored = {'epochs', 'model_dir'}
  if train_config.jit_compile == 'auto':
    ignored.add('jit_compile')
  requested = json.loads(json.dumps({'model': model_config.to_dict(),
                                     'train': train_config.to_dict()}))
  requested['model']['image_shape'] = saved['model'].get('image_shape')
  # config.json records what the run resolved: an empty --binarization is
  # the dataset's default (the first of names.DATASET_BINARIZATIONS).
  if not requested['train'].get('binarization'):
    requested['train']['binarization'] = names.DATASET_BINARIZATIONS.get(
        train_config.dataset, ('',))[0]
  same = saved['model'] == requested['model'] and all(
      saved['train'].get(k) == v for k, v in requested['train'].items()
      if k not in ignored)
  return finished if same else None


def _print_summary(model_dir, history, test_metrics, train_config,
                   wall_seconds=None):
  # Installed (tfp-vae-train), suggest the installed commands.
  next_commands = (('tfp-vae-evaluate', 'tfp-vae-sample') if __package__
                   else run_summary.NEXT_COMMANDS)
  print('\n'.join(run_summary.summary_lines(
      model_dir, history, test_metrics, wall_seconds, next_commands,
      early_stopping_patience=train_config.early_stopping_patience)),
        flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  _console.quiet_tensorflow()
  _flags.enable_xla_cache()
  start = time.perf_counter()
  try:
    model_config, train_config = _configs_from_flags()
  except ValueError as error:
    sys.exit(f'error: {error}')
  model_dir = train_config.model_dir
  if FLAGS.overwrite and train_config.strategy == 'multi_worker':
    # Every worker runs this command: each would move the directory.
    sys.exit('error: --overwrite cannot be used with --strategy=multi_worker;'
             f' move --model_dir={model_dir} aside first.')
  if FLAGS.overwrite and os.path.exists(model_dir):
    print(f'--overwrite: moved the earlier {model_dir} to '
          f'{_move_aside(model_dir)}.')
  elif not FLAGS.overwrite:
    finished = _finished_and_same(model_config, train_config)
    if finished:
      print(f'{model_dir} already holds this run, finished after '
            f'--epochs={finished.epochs}; nothing to do. Raise --epochs to '
            'train further, or pass --overwrite to start afresh.')
      _print_summary(model_dir, finished.history, finished.test_metrics,
                     train_config)
      return
  print(run_summary.config_summary(model_config, train_config), flush=True)
  try:
    with _console.quiet_imports():
      _flags.split_cpu_devices()
      from tfp_vae import data  # pylint: disable=g-import-not-at-top
      from tfp_vae import training  # pylint: disable=g-import-not-at-top
    try:
      dataset = data.load_data(train_config)
      model_config = dataclasses.replace(
          model_config, image_shape=tuple(dataset.image_shape))
      result = training.train(model_config, train_config, dataset=dataset,
                              verbose='auto')
    except (data.DataError, ValueError, FileNotFoundError,
            training.NonFiniteLossError) as error:
      sys.exit(f'error: {error}')
    except training.TrainingInterrupted as interrupted:
      print(f'\n{interrupted}', file=sys.stderr, flush=True)
      sys.exit(_EXIT_INTERRUPTED)
  except KeyboardInterrupt:
    # Outside `fit` (loading, compiling, evaluating, saving): the newest
    # checkpoint is where a rerun resumes.
    print('\nInterrupted; rerun the same command to resume from the newest '
          'checkpoint.', file=sys.stderr, flush=True)
    sys.exit(_EXIT_INTERRUPTED)
  print()
  _print_summary(result.model_dir, _history_rows(result.model_dir),
                 result.test_metrics, train_config,
                 time.perf_counter() - start)
  # Python's last garbage collection, at exit, walks every object the run
  # made, TensorFlow's traced graphs included: seconds of the post-fit phase
  # spent on a process about to end. Frozen objects are left out of it
  # (BENCHMARKS.md, "Whole runs").
  gc.freeze()


def _history_rows(model_dir):
  """history.json's rows (the summary's best and final validation ELBO)."""
  path = os.path.join(model_dir, names.HISTORY_FILE)
  if not os.path.exists(path):  # A worker other than the chief.
    return []
  with open(path) as f:
    return json.load(f)


def run():
  """The console command (setup.cfg's entry point)."""
  app.run(main, flags_parser=_flags.flags_parser(__doc__, __name__))


if __name__ == '__main__':
  run()
