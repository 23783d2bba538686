"""Running a comparison: train or reuse each run, evaluate it, report.

`run_comparison(config)` is the one call `scripts/compare_posteriors.py`
makes; the package docstring lists what it writes.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, NamedTuple, Optional

from absl import logging
from tfp_vae import config as config_lib
from tfp_vae import data as data_lib
from tfp_vae import evaluation
from tfp_vae import runs
from tfp_vae import training
from tfp_vae.comparison import config as comparison_config
from tfp_vae.comparison import pictures
from tfp_vae.comparison import report as report_lib
from tfp_vae.comparison import statistics

__all__ = ['run_comparison', 'ComparisonResult', 'RunRecord', 'CONFIG_FILE',
           'REPORT_FILE', 'RESULTS_FILE', 'EVALUATION_FILE']


CONFIG_FILE = 'comparison_config.json'


REPORT_FILE = 'report.md'


RESULTS_FILE = 'results.json'


# Written in each run's model directory: its test metrics and the settings
# they were computed with, so a rerun does not repeat the importance sampling.
EVALUATION_FILE = runs.COMPARISON_EVALUATION_FILE


# Train settings that may differ between a finished run and the requested
# one for it to be reused as it is: where and how it runs, not what it
# computes. Unlike `runs.RESUMABLE_SETTINGS`, `epochs`, `max_steps` and
# `early_stopping_patience` must match: a run asked to go further is resumed
# by `training.train`.
_REUSABLE_SETTINGS = tuple(
    s for s in runs.RESUMABLE_SETTINGS
    if s not in ('epochs', 'max_steps', 'early_stopping_patience'))


# Runs: train or reuse, then evaluate or reuse.


def _finished_history(spec, dataset, require_model=True):
  """The history rows of `spec`'s run if it finished with this config.

  A run has finished when its directory holds the final model (written at
  the end of `training.train`, removed when training goes on) and a saved
  configuration that matches the requested one, `epochs` and early stopping
  included. Otherwise None, and `training.train` is called: it starts the
  run, resumes it, or refuses a directory of another configuration. With
  `require_model=False` the final model may be missing (a run kept as its
  small files only; `_kept_results` decides whether that is enough).
  """
  model_dir = spec.train_config.model_dir
  needed = (runs.CONFIG_FILE, runs.HISTORY_FILE) + (
      (runs.MODEL_FILE,) if require_model else ())
  if not all(os.path.exists(os.path.join(model_dir, name))
             for name in needed):
    return None
  try:
    saved_model_config, saved_train_config = runs.read_configs(model_dir)
    # config.json holds the settings as the run resolved them.
    model_config, train_config = config_lib.resolve_run_settings(
        spec.model_config, spec.train_config, dataset.binarization,
        len(dataset.train_images) // spec.train_config.batch_size)
  except ValueError:  # `training.train` says what is wrong.
    return None
  if saved_train_config.binarization == '':  # Written before it was resolved.
    saved_train_config = dataclasses.replace(
        saved_train_config, binarization=train_config.binarization)
  if (saved_model_config.differences(model_config) or
      saved_train_config.differences(train_config,
                                     ignore=_REUSABLE_SETTINGS)):
    return None
  rows = runs.read_json_or_none(os.path.join(model_dir, runs.HISTORY_FILE))
  return rows or None


class RunRecord(NamedTuple):
  """One trained run of a comparison, and its test metrics."""
  posterior: str
  seed: int
  model_dir: str
  reused: bool                 # nothing was trained in this call
  epochs_trained: int
  epoch_seconds: List[float]   # every epoch of the run, from history.json
  seconds_per_epoch: Optional[float]
  train_seconds: float         # wall time of training or loading it here
  evaluation_reused: bool
  evaluation_seconds: float
  metrics: Dict[str, Any]      # `evaluation.evaluate_model`'s dict
  history: Dict[str, List[float]]
  run_identity: Optional[Dict[str, Any]] = None  # `run_identity(rows)`
  model_kept: bool = True      # False: reused from its small files only

  def to_dict(self):
    values = self._asdict()
    del values['history']
    return values


def _train_or_reuse(spec, dataset, verbose):
  """Returns `(model, history_rows, reused)` for one run."""
  rows = _finished_history(spec, dataset)
  if rows is not None:
    logging.info('Reusing the finished run in %s.', spec.train_config.model_dir)
    loaded = runs.load_trained_model(spec.train_config.model_dir,
                                     source='final')
    return loaded.model, rows, True
  logging.info('Training %s.', spec.train_config.model_dir)
  result = training.train(spec.model_config, spec.train_config,
                          dataset=dataset, verbose=verbose)
  rows = runs.read_json_or_none(os.path.join(
      spec.train_config.model_dir, runs.HISTORY_FILE)) or []
  return result.model, rows, not result.epoch_seconds


def run_identity(rows):
  """What tells one training of a run from another: its last history row.

  `{'epoch', 'step', 'end_time'}` of the last epoch. Training further, or
  afresh, adds rows with new end times; finishing a run again without
  training (a rerun that only rewrites the final model) keeps it. Unlike a
  file's modification time it survives a copy or a git checkout, so the
  evaluation of a run kept as its small files stays recognisable.
  """
  if not rows:
    return None
  last = max(rows, key=lambda r: r['epoch'])
  return {'epoch': int(last['epoch']), 'step': int(last['step']),
          'end_time': last.get('end_time')}


def _evaluation_settings(spec, images, config, rows, has_density):
  """The settings a saved evaluation must have been computed with."""
  settings = {
      'split': 'test',
      'num_importance_samples': config.num_importance_samples,
      'max_eval_examples': config.max_eval_examples,
      'num_examples': int(len(images)),
      'seed': spec.seed,
      'run': run_identity(rows),
  }
  # Only families with a density have gaps to split.
  if config.gap_examples and has_density:
    # Added only when asked for, so evaluations saved without the gap
    # analysis stay reusable by comparisons that do not ask for it.
    settings.update(gap_examples=config.gap_examples,
                    gap_max_steps=config.gap_max_steps,
                    gap_samples=config.gap_samples)
  return settings


def _saved_metrics(spec, settings):
  """The metrics saved in the run's directory with `settings`, or None."""
  saved = runs.read_json_or_none(
      os.path.join(spec.train_config.model_dir, EVALUATION_FILE))
  if isinstance(saved, dict) and saved.get('settings') == settings:
    return saved['metrics']
  return None


def _kept_results(spec, dataset, images, config):
  """`(rows, metrics)` of a finished run kept without its model, or None.

  A study that spans sessions keeps each run's small files (config, history,
  evaluation) and not its checkpoints or model. Such a run is not trained
  again when its configuration matches and its saved evaluation was made
  with the requested settings for this very training (`run_identity`).
  """
  if os.path.exists(os.path.join(spec.train_config.model_dir,
                                 runs.MODEL_FILE)):
    return None  # The usual path: load the model.
  rows = _finished_history(spec, dataset, require_model=False)
  if not rows or not all('end_time' in r for r in rows):
    return None
  metrics = _saved_metrics(spec, _evaluation_settings(
      spec, images, config, rows, spec.model_config.posterior_has_density))
  return None if metrics is None else (rows, metrics)


def _evaluate_or_reuse(model, spec, images, config, rows):
  """Returns `(metrics, reused, seconds)`: `evaluate_model` on `images`."""
  settings = _evaluation_settings(spec, images, config, rows,
                                  model.model_config.posterior_has_density)
  path = os.path.join(spec.train_config.model_dir, EVALUATION_FILE)
  saved = _saved_metrics(spec, settings)
  if saved is not None:
    logging.info('Reusing the test metrics in %s.', path)
    return saved, True, 0.0
  gap_examples = settings.get('gap_examples', 0)
  start = time.perf_counter()
  metrics = evaluation.evaluate_model(
      model, images, num_importance_samples=config.num_importance_samples,
      seed=spec.seed, jit_compile=spec.train_config.jit_compile is not False,
      gap_examples=gap_examples, gap_max_steps=config.gap_max_steps,
      gap_samples=config.gap_samples)
  seconds = time.perf_counter() - start
  runs.write_json_atomically(path, {'settings': settings,
                                    'metrics': metrics})
  return metrics, False, seconds


class ComparisonResult(NamedTuple):
  records: List[RunRecord]
  summary: Dict[str, Dict[str, Dict[str, Any]]]      # [posterior][metric]
  differences: Dict[str, Dict[str, Dict[str, Any]]]  # ['q - baseline'][metric]
  report: str                                        # report.md's text
  output_dir: str


def run_comparison(config, dataset=None, verbose=2):
  """Trains or reuses every run, evaluates them and writes the report.

  Args:
    config: `ComparisonConfig`.
    dataset: optional `data.ImageDataset`, the data of the first seed
      (`data.load_data` with `train.seed`), to skip loading it again.
      Other seeds load their own (their subsets and validation splits may
      differ).
    verbose: Keras progress verbosity while training (0 silent, 2 a line per
      epoch).

  Returns:
    `ComparisonResult`.

  Raises:
    ValueError: for data that do not fit the model, or a run directory that
      holds another configuration (`config.ConfigMismatchError`).
    data.DataError: if the data cannot be read.
    training.NonFiniteLossError: if a run's loss becomes NaN or infinite.
  """
  start = time.perf_counter()
  os.makedirs(config.output_dir, exist_ok=True)
  records, models, missing = [], {}, []
  first_seed = config.train.seed
  dataset_info = None
  for seed in config.seed_values:
    if seed != first_seed or dataset is None:
      dataset = data_lib.load_data(dataclasses.replace(config.train,
                                                       seed=seed))
    # The rows `scripts/evaluate.py --max_examples=M --seed=<s>` scores, so
    # it gives the same numbers for a run of seed s.
    test_index = evaluation.evaluation_subset(len(dataset.test_images),
                                              config.max_eval_examples, seed)
    images = dataset.test_images[test_index]
    if seed == first_seed:
      first_images = images
      first_labels = (None if dataset.test_labels is None
                      else dataset.test_labels[test_index])
      dataset_info = {
          'name': dataset.name, 'binarization': dataset.binarization,
          'num_train': len(dataset.train_images),
          'num_test': len(dataset.test_images),
          'num_evaluated': len(images)}
    specs = [s for s in comparison_config.run_configs(config,
                                                      dataset.image_shape)
             if s.seed == seed]
    for spec in specs:
      run_start = time.perf_counter()
      kept = _kept_results(spec, dataset, images, config)
      if (kept is None and not config.train_missing and
          _finished_history(spec, dataset) is None):
        logging.info('Leaving out %s: not finished (--notrain_missing).',
                     spec.train_config.model_dir)
        missing.append((spec.posterior, seed))
        continue
      if kept is not None:
        logging.info('Reusing the results kept in %s (its model is not '
                     'there: pictures of it are not redrawn).',
                     spec.train_config.model_dir)
        (rows, metrics), model, reused = kept, None, True
        evaluation_reused, evaluation_seconds = True, 0.0
      else:
        model, rows, reused = _train_or_reuse(spec, dataset, verbose)
      train_seconds = time.perf_counter() - run_start
      rows = sorted(rows, key=lambda r: r['epoch'])
      if kept is None:
        metrics, evaluation_reused, evaluation_seconds = _evaluate_or_reuse(
            model, spec, images, config, rows)
      metrics = dict(metrics, **report_lib.gap_metrics(metrics))
      epoch_seconds = [float(r['seconds']) for r in rows]
      record = RunRecord(
          posterior=spec.posterior, seed=seed,
          model_dir=spec.train_config.model_dir, reused=reused,
          epochs_trained=int(rows[-1]['epoch']) if rows else 0,
          epoch_seconds=epoch_seconds,
          seconds_per_epoch=statistics.seconds_per_epoch(epoch_seconds),
          train_seconds=train_seconds, evaluation_reused=evaluation_reused,
          evaluation_seconds=evaluation_seconds, metrics=metrics,
          history=runs.history_by_metric(rows),
          run_identity=run_identity(rows), model_kept=model is not None)
      records.append(record)
      logging.info(
          '%s seed %d: log p(x) %s, ELBO %s (%s, %.0f s; evaluation %s, '
          '%.0f s).', spec.posterior, seed, metrics.get('log_likelihood'),
          metrics.get('elbo'), 'reused' if reused else 'trained',
          train_seconds, 'reused' if evaluation_reused else 'computed',
          evaluation_seconds)
      if seed == first_seed and model is not None:
        models[spec.posterior] = model

  if not records:
    raise ValueError(
        f'No finished run of this comparison in {config.resolved_runs_dir} '
        'to report (--notrain_missing trains none); run it without '
        '--notrain_missing, or train its runs with scripts/train.py.')
  summary, differences = report_lib.summary_and_differences(
      records, config.posteriors)
  plots = pictures.write_pictures(config, records, models, first_images,
                                  first_labels)
  plots = pictures.in_report_order(
      plots + pictures.kept_pictures(
          os.path.join(config.output_dir, RESULTS_FILE), plots, records,
          first_seed), config.posteriors)
  machine = report_lib.describe_machine()
  wall_seconds = time.perf_counter() - start
  report = report_lib.format_report(config, records, summary, differences,
                                    dataset_info, machine, plots,
                                    wall_seconds, missing=missing)
  runs.write_text_atomically(os.path.join(config.output_dir, REPORT_FILE),
                             report)
  runs.write_json_atomically(os.path.join(config.output_dir, RESULTS_FILE), {
      'config': config.to_dict(), 'dataset': dataset_info,
      'machine': machine, 'wall_seconds': wall_seconds,
      'runs': [r.to_dict() for r in records], 'summary': summary,
      'differences': differences,
      'pictures': [p.to_dict() for p in plots],
      'missing_runs': [{'posterior': p, 'seed': s} for p, s in missing],
      'notes': {
          'seconds_per_epoch': 'mean wall time per epoch (training and '
                               'validation), first epoch left out when '
                               'there are more',
          'differences': 'per-seed differences from the first posterior; '
                         '95% t-interval over seeds, or with one seed a '
                         'normal interval from the standard errors over '
                         'test examples',
      }})
  return ComparisonResult(records, summary, differences, report,
                          config.output_dir)
