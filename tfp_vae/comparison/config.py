"""What a comparison runs: `ComparisonConfig`, and one `RunSpec` per run.

Run (posterior q, seed s) gets `model_dir = <runs_dir>/<q>-seed<s>` and
differs from the other runs of seed s only in q.
"""

import dataclasses
import json
import os
from typing import NamedTuple, Tuple

from tfp_vae import _checks
from tfp_vae import names
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.names import POSTERIORS

__all__ = ['ComparisonConfig', 'RunSpec', 'run_configs']


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
    gap_examples: the inference-gap analysis (`evaluation.gap_analysis`)
      of each run with a density on this many of the evaluated test images
      (the same subset for every run of a seed); 0 (default) leaves it out.
    gap_max_steps, gap_samples: the local fit's cap on Adam steps and its
      latent samples per step.
    train_missing: train the runs that are not finished (default); False
      assembles the report from the finished (or kept) runs alone and lists
      the others as missing, for a study whose runs come from several
      sessions.
  """
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  posteriors: Tuple[str, ...] = ('diag', 'full_cov')
  seeds: int = 3
  num_importance_samples: int = 1000
  max_eval_examples: int = 0
  output_dir: str = 'comparison'
  runs_dir: str = ''
  gap_examples: int = 0
  gap_max_steps: int = names.GAP_MAX_STEPS
  gap_samples: int = names.GAP_SAMPLES
  train_missing: bool = True

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
        any(p not in POSTERIORS for p in posteriors)):
      _checks.fail_flag(
          'posteriors', ','.join(map(str, posteriors)) if isinstance(
              posteriors, tuple) else posteriors,
          f'be a comma-separated list of {", ".join(POSTERIORS)}')
    if len(set(posteriors)) != len(posteriors) or len(posteriors) < 2:
      _checks.fail_flag('posteriors', ','.join(posteriors),
                        'name at least two different posterior families')
    _checks.check_flag_positive_int(self.seeds, 'seeds')
    _checks.check_flag_positive_int(self.num_importance_samples,
                                    'num_importance_samples')
    _checks.check_flag_int_at_least(self.max_eval_examples,
                                    'max_eval_examples', 0)
    _checks.check_flag_int_at_least(self.gap_examples, 'gap_examples', 0)
    _checks.check_flag_positive_int(self.gap_max_steps, 'gap_max_steps')
    _checks.check_flag_positive_int(self.gap_samples, 'gap_samples')
    if not isinstance(self.output_dir, str) or not self.output_dir:
      _checks.fail_flag('output_dir', self.output_dir, 'be a directory path')
    if not isinstance(self.train_missing, bool):
      _checks.fail_flag('train_missing', self.train_missing, 'be true or false')
    if not isinstance(self.runs_dir, str):
      _checks.fail_flag('runs_dir', self.runs_dir,
                        'be a directory path or empty')
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
