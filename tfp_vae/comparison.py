"""Comparing posterior families: runs that differ only in q(z|x), over seeds.

`run_comparison(config)` is the one call `scripts/compare_posteriors.py`
makes. For each seed s in `train.seed, train.seed + 1, ...` and each
posterior family it trains (or reuses) one run with `training.train`, all
with the same architecture, data, data order and noise seed s, so the runs of
one seed differ only in the posterior. (Initial weights are drawn from the
same seed, but the encoder's output layer has a different size per family,
so the draws differ.) Each run is evaluated on the same test images with
`evaluation.evaluate_model`, and `config.output_dir` receives:

  report.md                   the table of results, with the set-up stated
  results.json                every run's metrics, and the statistics below
  comparison_config.json      the `ComparisonConfig` (written by the script)
  learning_curves.png         validation ELBO, KL and distortion per epoch,
                              mean over seeds with a min-max band
  reconstructions_<q>.png     test images and their reconstructions
  prior_samples_<q>.png       decoder means at z ~ p(z)
  posterior_ellipses.png      latent_dim == 2 only: 1-sd ellipses of q(z|x)
                              of the same test images under each family
  latent_scatter_<q>.png      posterior means of test images (PCA for D > 2),
                              coloured by class when the data have labels

The runs live in `config.runs_dir` (default `<output_dir>/runs`), one
`training` model directory each, named `<posterior>-seed<s>`. A run that
already finished with this configuration is reused: its final model is
loaded, nothing is trained, and its test metrics are read back from
`comparison_evaluation.json` in its directory when they were computed with
the same evaluation settings. So rerunning the same command only rewrites
the report, and raising `--epochs` or `--seeds` trains only what is new.

Statistics (`summarize_over_seeds`, `paired_difference`): for each metric,
per family the mean, standard deviation, minimum and maximum over seeds;
and the difference of each family from the first one (`full_cov - diag` by
default), paired by seed, with a 95% t-interval over seeds. With one seed
there is no spread over seeds; the interval then comes from the standard
errors over test examples of the two estimates, and says so.
"""

import dataclasses
import functools
import json
import math
import os
import platform
import statistics
import tempfile
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import config as config_lib
from tfp_vae import data as data_lib
from tfp_vae import evaluation
from tfp_vae import plotting
from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

tfd = tfp.distributions

__all__ = ['ComparisonConfig', 'ComparisonResult', 'RunRecord',
           'run_comparison', 'run_configs', 'summarize_over_seeds',
           'paired_difference', 't_quantile', 'seconds_per_epoch',
           'format_report', 'METRICS']

CONFIG_FILE = 'comparison_config.json'
REPORT_FILE = 'report.md'
RESULTS_FILE = 'results.json'
# Written in each run's model directory: its test metrics and the settings
# they were computed with, so a rerun does not repeat the importance sampling.
EVALUATION_FILE = 'comparison_evaluation.json'

# (key, column title, decimals) of the main table, in order. Keys are
# `evaluation.evaluate_model`'s, plus 'seconds_per_epoch'.
METRICS = (
    ('log_likelihood', 'test log p(x) (IS)', 2),
    ('elbo', 'ELBO', 2),
    ('kl', 'KL(q(z|x) ‖ p(z))', 2),
    ('gap', 'gap log p(x) − ELBO', 2),
    ('active_units', 'active units', 1),
    ('seconds_per_epoch', 'seconds per epoch', 1),
)
# Further metrics in results.json and a second, smaller table.
_EXTRA_METRICS = (
    ('nll', '−E_q log p(x|z)', 2),
    ('kl_to_diagonal', 'KL(q ‖ diagonal q)', 3),
    ('mean_abs_offdiag_correlation', 'mean |corr| in q', 3),
)

_CONFIDENCE = 0.95

# Train settings that may differ between a finished run and the requested
# one for it to be reused as it is: where and how it runs, not what it
# computes. Unlike `training.RESUMABLE_SETTINGS`, `epochs` and
# `early_stopping_patience` must match: a run asked to go further is resumed
# by `training.train`.
_REUSABLE_SETTINGS = tuple(
    s for s in training.RESUMABLE_SETTINGS
    if s not in ('epochs', 'early_stopping_patience'))

# Pictures: how many test images, and how many encodings in a scatter plot.
_NUM_RECONSTRUCTIONS = 10
_NUM_ELLIPSE_IMAGES = 8
_NUM_PRIOR_SAMPLES = 64
_MAX_SCATTER_POINTS = 2000


################################################################################
# Configuration.
################################################################################


def _fail(field, value, must):
  raise ValueError(f'--{field}={value!r} is invalid: {field} must {must}.')


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
  """What to compare: a model and training set-up, and the families to vary.

  Field names are `scripts/compare_posteriors.py`'s flag names, so an error
  names the flag a user typed.

  Attributes:
    model: `ModelConfig` shared by every run; its `posterior` and `seed` are
      replaced per run, and its `image_shape` must be the data's.
    train: `TrainConfig` shared by every run; its `seed` is the first seed,
      and its `model_dir` and `seed` are replaced per run.
    posteriors: the families to compare, e.g. `('diag', 'full_cov')`; the
      first is the baseline that the others are subtracted from.
    seeds: how many seeds: runs use `train.seed + i` for i < seeds.
    num_importance_samples: K for the test log-likelihood estimate.
    max_eval_examples: evaluate on a seeded random subset of this many test
      images (0: the whole test split).
    output_dir: where the report goes.
    runs_dir: where the runs' model directories go ('' for
      `<output_dir>/runs`).
  """
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  posteriors: Tuple[str, ...] = ('diag', 'full_cov')
  seeds: int = 3
  num_importance_samples: int = 1000
  max_eval_examples: int = 0
  output_dir: str = 'comparison'
  runs_dir: str = ''

  def __post_init__(self):
    self.validate()

  def validate(self):
    """Raises `ValueError` naming the flag for any impossible setting."""
    if not isinstance(self.model, ModelConfig):
      raise ValueError(f'model must be a ModelConfig; got '
                       f'{type(self.model).__name__}.')
    if not isinstance(self.train, TrainConfig):
      raise ValueError(f'train must be a TrainConfig; got '
                       f'{type(self.train).__name__}.')
    posteriors = self.posteriors
    if (not isinstance(posteriors, tuple) or
        any(p not in config_lib.POSTERIORS for p in posteriors)):
      _fail('posteriors', ','.join(map(str, posteriors)) if isinstance(
          posteriors, tuple) else posteriors,
            f'be a comma-separated list of {", ".join(config_lib.POSTERIORS)}')
    if len(set(posteriors)) != len(posteriors) or len(posteriors) < 2:
      _fail('posteriors', ','.join(posteriors),
            'name at least two different posterior families')
    for name in ('seeds', 'num_importance_samples'):
      value = getattr(self, name)
      if not _is_int(value) or value <= 0:
        _fail(name, value, 'be a positive integer')
    if not _is_int(self.max_eval_examples) or self.max_eval_examples < 0:
      _fail('max_eval_examples', self.max_eval_examples, 'be an integer >= 0')
    if not isinstance(self.output_dir, str) or not self.output_dir:
      _fail('output_dir', self.output_dir, 'be a directory path')
    if not isinstance(self.runs_dir, str):
      _fail('runs_dir', self.runs_dir, 'be a directory path or empty')
    # Each run's model config must be valid too (e.g. --objective=iwae
    # refuses --posteriors=deterministic); its error names the flag.
    for posterior in posteriors:
      dataclasses.replace(self.model, posterior=posterior)

  @property
  def resolved_runs_dir(self):
    return self.runs_dir or os.path.join(self.output_dir, 'runs')

  @property
  def seed_values(self):
    return [self.train.seed + i for i in range(self.seeds)]

  def to_dict(self):
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    values.update(model=self.model.to_dict(), train=self.train.to_dict(),
                  posteriors=list(self.posteriors))
    return values

  @classmethod
  def from_dict(cls, values):
    values = dict(values)
    values['model'] = ModelConfig.from_dict(values['model'])
    values['train'] = TrainConfig.from_dict(values['train'])
    values['posteriors'] = tuple(values['posteriors'])
    return cls(**values)

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    return cls.from_dict(json.loads(text))


class RunSpec(NamedTuple):
  posterior: str
  seed: int
  model_config: ModelConfig
  train_config: TrainConfig


def run_configs(config, image_shape=None):
  """The runs of a comparison, seed-major: `[RunSpec]`.

  Run (posterior q, seed s) gets `model_dir = <runs_dir>/<q>-seed<s>`, seed s
  for both configs, and `num_importance_samples=0` for `training.train`:
  the comparison estimates log p(x) itself, on its evaluation subset.
  """
  model = config.model
  if image_shape is not None:
    model = dataclasses.replace(model, image_shape=tuple(image_shape))
  specs = []
  for seed in config.seed_values:
    for posterior in config.posteriors:
      specs.append(RunSpec(
          posterior, seed,
          dataclasses.replace(model, posterior=posterior, seed=seed),
          dataclasses.replace(
              config.train, seed=seed, num_importance_samples=0,
              model_dir=os.path.join(config.resolved_runs_dir,
                                     f'{posterior}-seed{seed}'))))
  return specs


################################################################################
# Statistics.
################################################################################


@functools.lru_cache(maxsize=None)
def t_quantile(probability, df):
  """Quantile of Student's t distribution with `df` degrees of freedom.

  Computed by `tfd.StudentT(df, 0, 1).quantile` in float64 (an inverse
  regularised incomplete beta function), exact to ~1e-12; no scipy needed.

  Args:
    probability: Python `float` in (0, 1), e.g. 0.975.
    df: Python number > 0.

  Returns:
    Python `float`.

  Raises:
    ValueError: for `probability` outside (0, 1) or `df <= 0`.
  """
  if not 0 < probability < 1:
    raise ValueError(f'probability must be in (0, 1); got {probability!r}.')
  if not df > 0:
    raise ValueError(f'df must be > 0; got {df!r}.')
  student_t = tfd.StudentT(df=np.float64(df), loc=np.float64(0),
                           scale=np.float64(1))
  return float(student_t.quantile(np.float64(probability)))


def _as_values(values):
  """Floats, or None if any value is missing (a metric a family lacks)."""
  values = list(values)
  if not values or any(v is None for v in values):
    return None
  return np.asarray(values, np.float64)


def summarize_over_seeds(values):
  """Mean and spread of one metric over seeds.

  Args:
    values: sequence of per-seed numbers (None where a run lacks the metric).

  Returns:
    dict: 'mean', 'std' (sample standard deviation, ddof=1; None for one
    seed), 'min', 'max', 'num_seeds'; the values are None if any seed lacks
    the metric.
  """
  array = _as_values(values)
  count = len(list(values))
  if array is None:
    return {'mean': None, 'std': None, 'min': None, 'max': None,
            'num_seeds': count}
  return {'mean': float(array.mean()),
          'std': float(array.std(ddof=1)) if array.size > 1 else None,
          'min': float(array.min()), 'max': float(array.max()),
          'num_seeds': int(array.size)}


def paired_difference(values, baseline_values, standard_errors=None,
                      baseline_standard_errors=None, confidence=_CONFIDENCE):
  """Mean of `values - baseline_values`, paired by seed, with an interval.

  Args:
    values, baseline_values: equal-length sequences of per-seed numbers
      (seed i of one pairs with seed i of the other).
    standard_errors, baseline_standard_errors: optional per-seed standard
      errors of the numbers (e.g. over test examples); used only with one
      seed.
    confidence: Python `float` in (0, 1), default 0.95.

  Returns:
    dict: 'mean', 'ci_low', 'ci_high', 'half_width', 'std' (of the per-seed
    differences), 'per_seed' (the differences), 'num_seeds' and 'method':
      't over seeds': n >= 2 seeds; a t-interval with n - 1 degrees of
        freedom, which assumes the per-seed differences are roughly normal;
      'normal from standard errors': one seed, with standard errors; a
        normal interval of half-width z * sqrt(se^2 + se_baseline^2). The two
        estimates share their test images, so their errors are positively
        correlated and this interval is conservative; it says nothing about
        the variation from one training seed to another;
      'none': one seed and no standard errors (the interval is None).
    All numbers are None if a value is missing.

  Raises:
    ValueError: if the sequences differ in length or are empty.

  ```none
  d_i = values[i] - baseline_values[i],  i = 1..n
  mean +- t_{(1 + confidence) / 2, n - 1} * std(d, ddof=1) / sqrt(n)
  ```
  """
  values, baseline_values = list(values), list(baseline_values)
  if len(values) != len(baseline_values) or not values:
    raise ValueError(f'paired_difference needs two non-empty sequences of '
                     f'the same length; got {len(values)} and '
                     f'{len(baseline_values)}.')
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1); got {confidence!r}.')
  result = {'mean': None, 'ci_low': None, 'ci_high': None,
            'half_width': None, 'std': None, 'per_seed': None,
            'num_seeds': len(values), 'method': 'none',
            'confidence': confidence}
  first, second = _as_values(values), _as_values(baseline_values)
  if first is None or second is None:
    return result
  differences = first - second
  count = differences.size
  result.update(mean=float(differences.mean()),
                per_seed=[float(d) for d in differences])
  half_width = None
  if count >= 2:
    result['std'] = float(differences.std(ddof=1))
    half_width = t_quantile((1 + confidence) / 2, count - 1) * (
        result['std'] / math.sqrt(count))
    result['method'] = 't over seeds'
  else:
    errors = _as_values(standard_errors or [None])
    baseline_errors = _as_values(baseline_standard_errors or [None])
    if errors is not None and baseline_errors is not None:
      z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
      half_width = z * math.sqrt(float(errors[0])**2 +
                                 float(baseline_errors[0])**2)
      result['method'] = 'normal from standard errors'
  if half_width is not None:
    result.update(half_width=float(half_width),
                  ci_low=float(result['mean'] - half_width),
                  ci_high=float(result['mean'] + half_width))
  return result


def seconds_per_epoch(epoch_seconds):
  """Mean wall time of an epoch, leaving out the first when there are more.

  The first epoch of a process also traces and compiles the training and
  validation steps, so with more than one epoch it is left out.

  Args:
    epoch_seconds: sequence of per-epoch wall times (training and the
      validation pass).

  Returns:
    Python `float`, or None for an empty sequence.
  """
  epoch_seconds = [float(s) for s in epoch_seconds]
  if not epoch_seconds:
    return None
  timed = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
  return float(np.mean(timed))


################################################################################
# Runs: train or reuse, then evaluate or reuse.
################################################################################


def _atomic_write(path, text):
  directory = os.path.dirname(path) or '.'
  with tempfile.NamedTemporaryFile('w', dir=directory, delete=False,
                                   prefix='.tmp-') as temp:
    temp.write(text)
  # NamedTemporaryFile creates the file private (0600); the report is for
  # whoever may read the directory.
  os.chmod(temp.name, 0o644)
  os.replace(temp.name, path)


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _finished_history(spec):
  """The history rows of `spec`'s run if it finished with this config.

  A run has finished when its directory holds the final model (written at
  the end of `training.train`, removed when training goes on) and a saved
  configuration that matches the requested one, `epochs` and early stopping
  included. Otherwise None, and `training.train` is called: it starts the
  run, resumes it, or refuses a directory of another configuration.
  """
  model_dir = spec.train_config.model_dir
  if not all(os.path.exists(os.path.join(model_dir, name)) for name in (
      training.MODEL_FILE, training.CONFIG_FILE, training.HISTORY_FILE)):
    return None
  try:
    saved_model_config, saved_train_config = training.read_configs(model_dir)
  except ValueError:
    return None
  if (saved_model_config.differences(spec.model_config) or
      saved_train_config.differences(spec.train_config,
                                     ignore=_REUSABLE_SETTINGS)):
    return None
  rows = _read_json(os.path.join(model_dir, training.HISTORY_FILE))
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

  def to_dict(self):
    values = self._asdict()
    del values['history']
    return values


def _train_or_reuse(spec, dataset, verbose):
  """Returns `(model, history_rows, reused)` for one run."""
  rows = _finished_history(spec)
  if rows is not None:
    logging.info('Reusing the finished run in %s.', spec.train_config.model_dir)
    loaded = training.load_trained_model(spec.train_config.model_dir,
                                         source='final')
    return loaded.model, rows, True
  logging.info('Training %s.', spec.train_config.model_dir)
  result = training.train(spec.model_config, spec.train_config,
                          dataset=dataset, verbose=verbose)
  rows = _read_json(os.path.join(spec.train_config.model_dir,
                                 training.HISTORY_FILE)) or []
  return result.model, rows, not result.epoch_seconds


def _evaluation_subset(num_examples, max_examples, seed):
  """Rows of the test split to evaluate: as `scripts/evaluate.py` picks them.

  A seeded random subset (never the first rows: data files can be sorted by
  class), in file order; the same rule and seed as
  `evaluation.evaluate_model_dir(max_examples=..., seed=...)`, so
  `scripts/evaluate.py --model_dir=<run> --max_examples=M --seed=<s>` gives
  the same numbers for a run of seed s.
  """
  if max_examples and max_examples < num_examples:
    return np.sort(np.random.default_rng(seed).choice(
        num_examples, size=max_examples, replace=False))
  return np.arange(num_examples)


def _evaluate_or_reuse(model, spec, images, config, trained_step):
  """Returns `(metrics, reused, seconds)`: `evaluate_model` on `images`."""
  model_dir = spec.train_config.model_dir
  path = os.path.join(model_dir, EVALUATION_FILE)
  settings = {
      'split': 'test',
      'num_importance_samples': config.num_importance_samples,
      'max_eval_examples': config.max_eval_examples,
      'num_examples': int(len(images)),
      'seed': spec.seed,
      'trained_step': trained_step,
      # Rewritten whenever training.train finishes, so a retrained or
      # re-finished run is evaluated afresh.
      'model_file_mtime_ns': os.stat(os.path.join(
          model_dir, training.MODEL_FILE)).st_mtime_ns,
  }
  saved = _read_json(path)
  if isinstance(saved, dict) and saved.get('settings') == settings:
    logging.info('Reusing the test metrics in %s.', path)
    return saved['metrics'], True, 0.0
  start = time.perf_counter()
  metrics = evaluation.evaluate_model(
      model, images, num_importance_samples=config.num_importance_samples,
      seed=spec.seed, jit_compile=spec.train_config.jit_compile)
  seconds = time.perf_counter() - start
  _atomic_write(path, json.dumps({'settings': settings, 'metrics': metrics},
                                 indent=2, sort_keys=True))
  return metrics, False, seconds


################################################################################
# The report.
################################################################################


def _machine():
  cpu_model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu_model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {'cpu_count': os.cpu_count(), 'usable_cpus': usable,
          'cpu_model': cpu_model, 'platform': platform.platform(),
          'python': platform.python_version(),
          'tensorflow': tf.__version__, 'tensorflow_probability':
              tfp.__version__,
          'gpus': len(tf.config.list_physical_devices('GPU'))}


def _metric_values(records, posterior, key, stderr=False):
  """Per-seed values of one metric for one family, in seed order."""
  name = key + '_stderr' if stderr else key
  return [r.seconds_per_epoch if key == 'seconds_per_epoch' and not stderr
          else r.metrics.get(name)
          for r in sorted(records, key=lambda r: r.seed)
          if r.posterior == posterior]


def _statistics(records, posteriors):
  """(summary, differences) over seeds; see `summarize_over_seeds`."""
  keys = [k for k, _, _ in METRICS + _EXTRA_METRICS]
  summary = {p: {k: summarize_over_seeds(_metric_values(records, p, k))
                 for k in keys} for p in posteriors}
  baseline = posteriors[0]
  differences = {}
  for posterior in posteriors[1:]:
    differences[f'{posterior} - {baseline}'] = {
        k: paired_difference(
            _metric_values(records, posterior, k),
            _metric_values(records, baseline, k),
            _metric_values(records, posterior, k, stderr=True),
            _metric_values(records, baseline, k, stderr=True))
        for k in keys}
  return summary, differences


def _number(value, decimals, signed=False):
  if value is None:
    return 'n/a'
  return f'{value:{"+" if signed else ""}.{decimals}f}'


def _summary_cell(stats, decimals):
  if stats['mean'] is None:
    return 'n/a'
  if stats['std'] is None:
    return _number(stats['mean'], decimals)
  return (f'{_number(stats["mean"], decimals)} ± '
          f'{_number(stats["std"], decimals)} '
          f'[{_number(stats["min"], decimals)}, '
          f'{_number(stats["max"], decimals)}]')


def _difference_cell(stats, decimals):
  if stats['mean'] is None:
    return 'n/a'
  text = _number(stats['mean'], decimals, signed=True)
  if stats['half_width'] is not None:
    text += (f' [{_number(stats["ci_low"], decimals, signed=True)}, '
             f'{_number(stats["ci_high"], decimals, signed=True)}]')
  return text


def _table(columns, summary, differences, posteriors):
  # A '|' inside a cell would end it: escaped, it renders as '|'.
  header = '| posterior | ' + ' | '.join(
      t.replace('|', '\\|') for _, t, _ in columns) + ' |'
  lines = [header, '|' + '---|' * (len(columns) + 1)]
  for posterior in posteriors:
    lines.append(f'| {posterior} | ' + ' | '.join(
        _summary_cell(summary[posterior][k], d) for k, _, d in columns) + ' |')
  for name, stats in differences.items():
    lines.append(f'| **{name.replace(" - ", " − ")}** | ' + ' | '.join(
        _difference_cell(stats[k], d) for k, _, d in columns) + ' |')
  return lines


def _architecture(model_config):
  if model_config.architecture == 'mlp':
    layers = f'hidden units {",".join(map(str, model_config.hidden_units))}'
  else:
    layers = f'conv filters {",".join(map(str, model_config.conv_filters))}'
  return (f'{model_config.architecture} ({layers}, {model_config.activation}),'
          f' {model_config.likelihood} likelihood, {model_config.prior} '
          f'prior, {model_config.objective} objective with {model_config.kl} '
          f'KL')


def format_report(config, records, summary, differences, dataset_info,
                  machine, plots, wall_seconds):
  """The markdown report: set-up, tables, notes and pictures."""
  posteriors = config.posteriors
  seeds = config.seed_values
  one_seed = len(seeds) == 1
  epochs_trained = sorted({r.epochs_trained for r in records})
  lines = [
      f'# Posterior comparison: {", ".join(posteriors)} on '
      f'{dataset_info["name"]}',
      '',
      'Runs that differ only in the approximate posterior q(z|x): the same '
      'architecture, data, data order and seeds. Made with '
      '`scripts/compare_posteriors.py`.',
      '',
      '| setting | value |',
      '|---|---|',
      f'| dataset | {dataset_info["name"]} ({dataset_info["binarization"]} '
      f'binarization): {dataset_info["num_train"]} training images, '
      f'{dataset_info["num_evaluated"]} of {dataset_info["num_test"]} test '
      'images evaluated |',
      f'| epochs | {config.train.epochs} (trained: '
      f'{", ".join(map(str, epochs_trained))}), batch size '
      f'{config.train.batch_size}, Adam learning rate '
      f'{config.train.learning_rate:g} |',
      f'| seeds | {len(seeds)}: {", ".join(map(str, seeds))} |',
      f'| architecture | {_architecture(config.model)} |',
      f'| latent size | {config.model.latent_dim} |',
      f'| importance samples K | {config.num_importance_samples} |',
      f'| machine | {machine["cpu_count"]} CPUs ({machine["usable_cpus"]} '
      f'usable; {machine["cpu_model"]}), {machine["gpus"]} GPUs, '
      f'TensorFlow {machine["tensorflow"]}, TFP '
      f'{machine["tensorflow_probability"]} |',
      f'| wall time of this command | {wall_seconds / 60:.1f} min |',
      '',
      '## Test metrics',
      '',
      'Nats per example. Per posterior: ' + (
          'the single seed\'s value.' if one_seed else
          'mean ± standard deviation over seeds [min, max].') +
      f' Difference rows: mean of the per-seed differences from '
      f'{posteriors[0]} with a 95% confidence interval' + (
          ' from the standard errors over the test examples (one seed: '
          'normal, sqrt(se1² + se2²); conservative, as both estimates use '
          'the same images; it does not cover seed-to-seed variation).'
          if one_seed else
          f' (t-interval over the {len(seeds)} seeds, '
          f'{len(seeds) - 1} degree{"s" if len(seeds) > 2 else ""} of '
          'freedom).'),
      '',
  ]
  lines += _table(METRICS, summary, differences, posteriors)
  lines += [
      '',
      f'- test log p(x): importance-sampled estimate with K = '
      f'{config.num_importance_samples} (Burda et al. 2016); higher is '
      'better. ELBO and KL: one latent sample per image. Gap: log p(x) − '
      'ELBO per image, the inference gap plus what K samples miss.',
      '- active units: latent dimensions whose posterior mean varies over '
      'the test images (variance > 0.01).',
      '- seconds per epoch: wall time of a training epoch and its '
      'validation pass, ' + (
          'leaving out the first epoch (it includes tracing and XLA '
          'compilation)' if config.train.epochs > 1 else
          'of the single epoch, which includes tracing and XLA compilation')
      + '. The machine may be shared, so timings are indicative.',
      '',
      '### Posterior shape',
      '',
  ]
  lines += _table(_EXTRA_METRICS, summary, differences, posteriors)
  lines += [
      '',
      'KL(q ‖ diagonal q): nats of information in the posterior\'s '
      'correlations (0 for a diagonal posterior); mean |corr|: the mean '
      'absolute off-diagonal correlation of q(z|x).',
      '',
      '## Runs',
      '',
      '| posterior | seed | log p(x) ± se | ELBO | KL | active units | '
      'epochs | s / epoch | trained here | run directory |',
      '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in sorted(records, key=lambda r: (r.seed, posteriors.index(
      r.posterior))):
    m = r.metrics
    log_px = _number(m.get('log_likelihood'), 2)
    if m.get('log_likelihood_stderr') is not None:
      log_px += f' ± {m["log_likelihood_stderr"]:.2f}'
    lines.append(
        f'| {r.posterior} | {r.seed} | {log_px} | {_number(m.get("elbo"), 2)}'
        f' | {_number(m.get("kl"), 2)} | {m.get("active_units", "n/a")} | '
        f'{r.epochs_trained} | {_number(r.seconds_per_epoch, 1)} | '
        f'{"no (reused)" if r.reused else "yes"} | `{r.model_dir}` |')
  lines += ['', '## Pictures', '']
  for title, name in plots:
    lines += [f'### {title}', '', f'![{title}]({name})', '']
  return '\n'.join(lines).rstrip() + '\n'


################################################################################
# Pictures.
################################################################################


def _encoded_means(model, images, batch_size=500):
  return np.concatenate([
      np.asarray(model.encode(images[start:start + batch_size]).mean())
      for start in range(0, len(images), batch_size)])


def _write_plots(config, records, models, images, labels):
  """Writes the pictures; returns `[(title, file name)]`."""
  output_dir = config.output_dir
  rng = np.random.default_rng(config.train.seed)
  shown = np.sort(rng.permutation(len(images))[:_NUM_RECONSTRUCTIONS])
  plots = []

  histories = {p: [r.history for r in records if r.posterior == p]
               for p in config.posteriors}
  plotting.plot_learning_curves_comparison(
      histories, os.path.join(output_dir, 'learning_curves.png'),
      metric=['val_elbo', 'val_kl', 'val_nll'])
  plots.append(('Learning curves (validation)', 'learning_curves.png'))

  if config.model.latent_dim == 2:
    ellipse_images = images[np.sort(
        rng.permutation(len(images))[:_NUM_ELLIPSE_IMAGES])]
    plotting.plot_posterior_ellipses(
        models, ellipse_images,
        os.path.join(output_dir, 'posterior_ellipses.png'),
        num_images=_NUM_ELLIPSE_IMAGES)
    plots.append(('Posterior ellipses (1 sd) of the same test images over '
                  'the prior', 'posterior_ellipses.png'))

  scatter = np.sort(rng.permutation(len(images))[:_MAX_SCATTER_POINTS])
  for posterior, model in models.items():
    name = f'reconstructions_{posterior}.png'
    plotting.plot_reconstructions(
        images[shown], np.asarray(model.reconstruct(images[shown])),
        os.path.join(output_dir, name),
        title=f'{posterior}: test images (upper row) and reconstructions '
        '(lower row)')
    plots.append((f'Reconstructions, {posterior}', name))
    name = f'prior_samples_{posterior}.png'
    plotting.plot_prior_samples(model, os.path.join(output_dir, name),
                                num_samples=_NUM_PRIOR_SAMPLES,
                                seed=config.train.seed)
    plots.append((f'Prior samples, {posterior}', name))
    name = f'latent_scatter_{posterior}.png'
    plotting.plot_latent_scatter(
        _encoded_means(model, images[scatter]), os.path.join(output_dir, name),
        labels=None if labels is None else labels[scatter])
    plots.append((f'Test encodings, {posterior}' + (
        ' (PCA)' if config.model.latent_dim > 2 else ''), name))
  return plots


################################################################################
# The comparison.
################################################################################


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
  records, models = [], {}
  first_seed = config.train.seed
  dataset_info = None
  for seed in config.seed_values:
    if seed != first_seed or dataset is None:
      dataset = data_lib.load_data(dataclasses.replace(config.train,
                                                       seed=seed))
    test_index = _evaluation_subset(len(dataset.test_images),
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
    specs = [s for s in run_configs(config, dataset.image_shape)
             if s.seed == seed]
    for spec in specs:
      run_start = time.perf_counter()
      model, rows, reused = _train_or_reuse(spec, dataset, verbose)
      train_seconds = time.perf_counter() - run_start
      rows = sorted(rows, key=lambda r: r['epoch'])
      trained_step = rows[-1]['step'] if rows else 0
      metrics, evaluation_reused, evaluation_seconds = _evaluate_or_reuse(
          model, spec, images, config, trained_step)
      epoch_seconds = [float(r['seconds']) for r in rows]
      record = RunRecord(
          posterior=spec.posterior, seed=seed,
          model_dir=spec.train_config.model_dir, reused=reused,
          epochs_trained=int(rows[-1]['epoch']) if rows else 0,
          epoch_seconds=epoch_seconds,
          seconds_per_epoch=seconds_per_epoch(epoch_seconds),
          train_seconds=train_seconds, evaluation_reused=evaluation_reused,
          evaluation_seconds=evaluation_seconds, metrics=metrics,
          history=training.history_by_metric(rows))
      records.append(record)
      logging.info(
          '%s seed %d: log p(x) %s, ELBO %s (%s, %.0f s; evaluation %s, '
          '%.0f s).', spec.posterior, seed, metrics.get('log_likelihood'),
          metrics.get('elbo'), 'reused' if reused else 'trained',
          train_seconds, 'reused' if evaluation_reused else 'computed',
          evaluation_seconds)
      if seed == first_seed:
        models[spec.posterior] = model

  summary, differences = _statistics(records, config.posteriors)
  plots = _write_plots(config, records, models, first_images, first_labels)
  machine = _machine()
  wall_seconds = time.perf_counter() - start
  report = format_report(config, records, summary, differences, dataset_info,
                         machine, plots, wall_seconds)
  _atomic_write(os.path.join(config.output_dir, REPORT_FILE), report)
  _atomic_write(os.path.join(config.output_dir, RESULTS_FILE), json.dumps({
      'config': config.to_dict(), 'dataset': dataset_info,
      'machine': machine, 'wall_seconds': wall_seconds,
      'runs': [r.to_dict() for r in records], 'summary': summary,
      'differences': differences,
      'notes': {
          'seconds_per_epoch': 'mean wall time per epoch (training and '
                               'validation), first epoch left out when '
                               'there are more',
          'differences': 'per-seed differences from the first posterior; '
                         '95% t-interval over seeds, or with one seed a '
                         'normal interval from the standard errors over '
                         'test examples',
      }}, indent=2, sort_keys=True))
  return ComparisonResult(records, summary, differences, report,
                          config.output_dir)
