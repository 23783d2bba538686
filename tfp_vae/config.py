"""Frozen, validated configurations: what a model is and how it is trained.

Field names are the names of `scripts/train.py`'s flags, so an error about a
field names the flag a user typed. Configs hold plain values only (str, int,
float, bool, tuples of those) and round-trip through JSON; loading one never
runs code.

`ModelConfig` says everything needed to rebuild a model's architecture (it is
what a `.keras` file and a model directory store); `TrainConfig` adds data,
optimisation and bookkeeping.
"""

import dataclasses
import json
from typing import Tuple, Union

from tfp_vae import _checks
# The allowed values of each setting; imported here so that `config.POSTERIORS`
# and the like keep working for callers.
from tfp_vae.names import ACTIVATIONS
from tfp_vae.names import ARCHITECTURES
from tfp_vae.names import BINARIZATIONS
from tfp_vae.names import DATASET_NAMES
from tfp_vae.names import KL_ESTIMATORS
from tfp_vae.names import LEARNING_RATE_SCHEDULES
from tfp_vae.names import LIKELIHOODS
from tfp_vae.names import NORMAL_SCALES
from tfp_vae.names import OBJECTIVES
from tfp_vae.names import POSTERIORS
from tfp_vae.names import PRIORS
from tfp_vae.names import STRATEGIES

__all__ = ['ModelConfig', 'TrainConfig', 'ConfigMismatchError',
           'resolve_run_settings']


class ConfigMismatchError(ValueError):
  """A saved configuration differs from the requested one."""


def _check_fields(config, checks):
  """Runs `(check, field, *args)` as `check(config.<field>, field, *args)`."""
  for check, field, *args in checks:
    check(getattr(config, field), field, *args)


class _JsonConfig:
  """JSON round trip shared by the config dataclasses."""

  def to_dict(self):
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]}

  @classmethod
  def from_dict(cls, values):
    """Builds a config from plain values, refusing unknown keys."""
    if not isinstance(values, dict):
      raise ValueError(f'{cls.__name__} must be built from a dict; got '
                       f'{type(values).__name__}.')
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
      raise ValueError(f'Unknown {cls.__name__} settings: {unknown}.')
    kwargs = {}
    for key, value in values.items():
      if isinstance(value, list):
        value = tuple(value)
      if isinstance(value, dict) or callable(value):
        raise ValueError(f'{cls.__name__} setting {key!r} must be a plain '
                         f'value; got {type(value).__name__}.')
      kwargs[key] = value
    return cls(**kwargs)

  def to_json(self):
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    return cls.from_dict(json.loads(text))

  def differences(self, other, ignore=()):
    """Returns `[(field, self_value, other_value)]` for fields that differ."""
    return [(f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ignore and
            getattr(self, f.name) != getattr(other, f.name)]


def _values_before_later_settings(values):
  """Settings added after configs were first stored, where they matter.

  Maps each such setting to the value that reproduces what a stored config
  without it was trained with, for the configs whose model it changes. Where
  it changes nothing (the off-diagonal scale of a diag model), the current
  default applies, so resuming an old run with the same command still
  matches its stored config.
  """
  if values.get('posterior') == 'full_cov':
    return {'full_cov_off_diagonal_scale': 1.0}
  return {}


@dataclasses.dataclass(frozen=True)
class ModelConfig(_JsonConfig):
  """Everything that defines a VAE's architecture and objective.

  Attributes:
    image_shape: `(height, width, channels)` of the data.
    latent_dim: size D of the latent vector z.
    posterior: 'diag' (MultivariateNormalDiag), 'full_cov'
      (MultivariateNormalTriL), 'low_rank' (diagonal plus rank
      `posterior_rank` covariance), 'iaf' (a diagonal Gaussian through
      `flow_steps` inverse autoregressive flow steps; needs `kl='mc'`) or
      'deterministic' (point mass: an autoencoder; with
      `input_noise_stddev > 0` a denoising autoencoder).
    likelihood: 'bernoulli' (binary pixels) or 'normal' (mean squashed to
      [0, 1], learned scale).
    normal_scale: for 'normal': 'per_pixel' (a learned weight) or 'predicted'.
    prior: 'normal' (standard normal) or 'mixture' (learnable mixture).
    mixture_components: number of components of the mixture prior.
    architecture: 'mlp', 'gated_mlp' (hidden layers `networks.GatedDense`,
      Tomczak & Welling's MLP with `activation='linear'`) or 'conv'.
    hidden_units: MLP widths of the encoder; the decoder mirrors them.
    conv_filters: filters of the stride-2 convolutions of the encoder; the
      decoder mirrors them with stride-2 transposed convolutions.
    activation: hidden-layer activation ('linear': none; with 'gated_mlp'
      the gate is the nonlinearity).
    kl: 'analytic' (SGVB estimator B, `tfd.kl_divergence`) or 'mc' (estimator
      A: log q(z|x) - log p(z) on the same samples as the likelihood term).
    num_samples: latent samples per example (L for the ELBO, K for IWAE).
    objective: 'elbo' or 'iwae' (the importance-weighted bound).
    beta: weight of the KL term in the training objective (1 = the ELBO).
    kl_warmup_steps: the KL weight rises linearly from 0 to `beta` over this
      many steps (0: no warm-up).
    kl_warmup_epochs: the same warm-up in epochs (0: none); at most one of
      the two may be set. `resolve_run_settings` turns it into
      `kl_warmup_steps` once the steps per epoch are known, so a model is
      only ever built (and a run's config.json only ever holds) the steps.
    input_noise_stddev: Gaussian noise added to the encoder's input during
      training (denoising); the target stays the clean image.
    posterior_min_scale: floor added to the posterior's scale (diagonal or
      Cholesky diagonal).
    full_cov_off_diagonal_scale: for 'full_cov', the constant c multiplying
      the encoder's raw off-diagonal Cholesky entries (see
      `distribution_layers.FullCovarianceGaussianPosterior`); 1 is
      `tfb.FillScaleTriL`. The default 0.03 was chosen on binarized MNIST's
      validation set (32-d latent, 784-512-512 MLP: best validation ELBO
      -98.08 and -97.57 in two runs at c = 0.03, -98.74 at 0.1, -105.44 at
      1; diag -98.30; see BENCHMARKS.md). A stored full_cov config without
      it means 1, the only behaviour before it existed.
    posterior_rank: for 'low_rank', the rank R (1..latent_dim) of the
      covariance's low-rank part.
    flow_steps: for 'iaf', the number K of flow steps.
    flow_hidden_units: for 'iaf', the hidden widths of each step's MADE.
    seed: seeds initialisation and the sampling noise.
  """
  image_shape: Tuple[int, ...] = (28, 28, 1)
  latent_dim: int = 16
  posterior: str = 'full_cov'
  likelihood: str = 'bernoulli'
  normal_scale: str = 'per_pixel'
  prior: str = 'normal'
  mixture_components: int = 10
  architecture: str = 'mlp'
  hidden_units: Tuple[int, ...] = (512, 512)
  conv_filters: Tuple[int, ...] = (32, 64)
  activation: str = 'relu'
  kl: str = 'analytic'
  num_samples: int = 1
  objective: str = 'elbo'
  beta: float = 1.0
  kl_warmup_steps: int = 0
  kl_warmup_epochs: int = 0
  input_noise_stddev: float = 0.0
  posterior_min_scale: float = 1e-5
  full_cov_off_diagonal_scale: float = 0.03
  # Added later; stored configs without them load with these defaults, which
  # change nothing for the families that existed before them.
  posterior_rank: int = 2
  flow_steps: int = 2
  flow_hidden_units: Tuple[int, ...] = (64, 64)
  seed: int = 0

  def __post_init__(self):
    self.validate()

  @classmethod
  def from_dict(cls, values):
    """As `_JsonConfig.from_dict`; settings added later get their old value.

    A config stored before a setting existed was trained with the behaviour
    the setting's old value gives, which need not be its current default.
    """
    if isinstance(values, dict):
      values = {**_values_before_later_settings(values), **values}
    return super().from_dict(values)

  def validate(self):
    """Raises `ValueError` naming the flag for any impossible setting."""
    if (not isinstance(self.image_shape, tuple) or len(self.image_shape) != 3
        or any(not _checks.is_integer(v, allow_numpy=False) or v <= 0
               for v in self.image_shape)):
      _checks.fail_flag('image_shape', self.image_shape,
                        'be (height, width, channels) of positive integers')
    _check_fields(self, (
        (_checks.check_flag_positive_int, 'latent_dim'),
        (_checks.check_flag_choice, 'posterior', POSTERIORS),
        (_checks.check_flag_choice, 'likelihood', LIKELIHOODS),
        (_checks.check_flag_choice, 'normal_scale', NORMAL_SCALES),
        (_checks.check_flag_choice, 'prior', PRIORS),
        (_checks.check_flag_positive_int, 'mixture_components'),
        (_checks.check_flag_choice, 'architecture', ARCHITECTURES),
        (_checks.check_flag_positive_int_tuple, 'hidden_units'),
        (_checks.check_flag_positive_int_tuple, 'conv_filters'),
        (_checks.check_flag_choice, 'activation', ACTIVATIONS),
        (_checks.check_flag_choice, 'kl', KL_ESTIMATORS),
        (_checks.check_flag_positive_int, 'num_samples'),
        (_checks.check_flag_choice, 'objective', OBJECTIVES),
        (_checks.check_flag_non_negative_number, 'beta'),
        (_checks.check_flag_int_at_least, 'kl_warmup_steps', 0),
        (_checks.check_flag_int_at_least, 'kl_warmup_epochs', 0),
        (_checks.check_flag_non_negative_number, 'input_noise_stddev'),
        (_checks.check_flag_non_negative_number, 'posterior_min_scale'),
        (_checks.check_flag_number, 'full_cov_off_diagonal_scale'),
        (_checks.check_flag_positive_int, 'posterior_rank'),
        (_checks.check_flag_positive_int, 'flow_steps'),
        (_checks.check_flag_positive_int_tuple, 'flow_hidden_units'),
        (_checks.check_flag_integer, 'seed'),
    ))
    # Combinations.
    if self.kl_warmup_steps and self.kl_warmup_epochs:
      raise ValueError(
          f'--kl_warmup_steps={self.kl_warmup_steps} and --kl_warmup_epochs='
          f'{self.kl_warmup_epochs} both set the KL warm-up; pass only one.')
    if self.posterior == 'low_rank' and self.posterior_rank > self.latent_dim:
      raise ValueError(
          f'--posterior_rank={self.posterior_rank} is invalid with '
          f'--latent_dim={self.latent_dim}: the rank of the covariance\'s '
          f'low-rank part must be at most latent_dim.')
    if self.posterior == 'iaf' and self.kl == 'analytic':
      raise ValueError(
          '--kl=analytic cannot be used with --posterior=iaf: the KL '
          'divergence from an inverse autoregressive flow to the prior has no '
          'closed form. Use --kl=mc.')
    if self.posterior == 'iaf' and self.latent_dim < 2:
      raise ValueError(
          f'--posterior=iaf needs --latent_dim >= 2 (an autoregressive flow '
          f'over one coordinate has nothing to condition on); got '
          f'--latent_dim={self.latent_dim}.')
    if self.prior == 'mixture' and self.kl == 'analytic':
      raise ValueError(
          '--kl=analytic cannot be used with --prior=mixture: the KL '
          'divergence from a Gaussian posterior to a mixture of Gaussians has '
          'no closed form. Use --kl=mc.')
    if self.posterior == 'deterministic' and self.objective == 'iwae':
      raise ValueError(
          '--objective=iwae cannot be used with --posterior=deterministic: '
          'a point-mass posterior has no density, so importance weights are '
          'undefined. Use --objective=elbo (the autoencoder loss).')
    if self.architecture == 'conv':
      factor = 2 ** len(self.conv_filters)
      height, width, _ = self.image_shape
      if height % factor or width % factor:
        raise ValueError(
            f'--architecture=conv with --conv_filters='
            f'{",".join(map(str, self.conv_filters))} halves the image '
            f'{len(self.conv_filters)} times, so height and width must be '
            f'multiples of {factor}; the data has image shape '
            f'{self.image_shape}. Use fewer conv layers or --architecture=mlp.')

  @property
  def posterior_has_density(self):
    return self.posterior != 'deterministic'


@dataclasses.dataclass(frozen=True)
class TrainConfig(_JsonConfig):
  """How a model is trained: data, optimisation, distribution, bookkeeping.

  Attributes:
    dataset: 'binarized_mnist', 'mnist', 'fashion_mnist' or 'frey_face'.
    data_dir: directory holding the dataset files ('' to search the usual
      places).
    binarization: '' (the dataset's default), 'static', 'dynamic' or 'none'.
    max_train_examples: if > 0, train on a seeded random subset of this size
      (and validate/test on subsets of at most this size); 0 uses everything.
    batch_size: global batch size, split across replicas.
    epochs: number of passes over the training set.
    max_steps: if > 0, stop after this many optimizer steps, or after
      `epochs`, whichever comes first (0: `epochs` alone).
    learning_rate: Adam's step size (the initial one under a schedule).
    learning_rate_schedule: 'constant', 'burda', 'exponential', 'step',
      'cosine' or 'plateau'; see `schedules.learning_rate_schedule`.
    learning_rate_decay: factor in (0, 1): 'exponential' multiplies the rate
      by it every `learning_rate_decay_epochs` (continuously), 'step' at
      each multiple of them, 'plateau' at each plateau.
    learning_rate_decay_epochs: epochs per decay of 'exponential' and 'step'
      (which need it > 0).
    learning_rate_patience: for 'plateau', epochs without a better
      validation ELBO before the rate is lowered.
    min_learning_rate: the floor of 'cosine' and 'plateau'; below
      `learning_rate`.
    adam_epsilon: Adam's epsilon (Keras's default 1e-7; Burda et al. used
      1e-4).
    model_dir: where checkpoints, metrics, config and plots go.
    strategy: 'default', 'one_device', 'mirrored', 'multi_worker' or 'tpu'.
    jit_compile: compile the training step with XLA: True, False, or 'auto'
      (on where XLA can compile the step under the strategy, off where it
      cannot: replicas on CPUs). `training.train` saves the resolved value.
    steps_per_execution: training steps run per compiled call.
    checkpoint_every_steps: also checkpoint every this many steps (0: only at
      the end of each epoch).
    keep_checkpoints: how many of the newest checkpoints to keep.
    early_stopping_patience: stop after this many epochs without a better
      validation ELBO and keep the best weights (0: never stop early).
    num_importance_samples: K for the final test log-likelihood (0: skip).
    seed: seeds data order, splits and sampling (with ModelConfig.seed).
  """
  dataset: str = 'fashion_mnist'
  data_dir: str = ''
  binarization: str = ''
  max_train_examples: int = 0
  batch_size: int = 128
  epochs: int = 20
  max_steps: int = 0
  learning_rate: float = 1e-3
  learning_rate_schedule: str = 'constant'
  learning_rate_decay: float = 0.5
  learning_rate_decay_epochs: int = 0
  learning_rate_patience: int = 10
  min_learning_rate: float = 0.0
  adam_epsilon: float = 1e-7
  model_dir: str = '/tmp/tfp_vae'
  strategy: str = 'default'
  jit_compile: Union[bool, str] = 'auto'
  steps_per_execution: int = 50
  checkpoint_every_steps: int = 0
  keep_checkpoints: int = 3
  early_stopping_patience: int = 0
  num_importance_samples: int = 0
  seed: int = 0

  def __post_init__(self):
    self.validate()

  def validate(self):
    """Raises `ValueError` naming the flag for any impossible setting."""
    _check_fields(self, (
        (_checks.check_flag_choice, 'dataset', DATASET_NAMES),
        # '' is the dataset's default (`names.DATASET_BINARIZATIONS`).
        (_checks.check_flag_choice, 'binarization', ('',) + BINARIZATIONS),
        (_checks.check_flag_int_at_least, 'max_train_examples', 0),
        (_checks.check_flag_positive_int, 'batch_size'),
        (_checks.check_flag_positive_int, 'epochs'),
        (_checks.check_flag_number, 'learning_rate'),
        (_checks.check_flag_int_at_least, 'max_steps', 0),
        (_checks.check_flag_choice, 'learning_rate_schedule',
         LEARNING_RATE_SCHEDULES),
        (_checks.check_flag_number, 'learning_rate_decay'),
        (_checks.check_flag_int_at_least, 'learning_rate_decay_epochs', 0),
        (_checks.check_flag_positive_int, 'learning_rate_patience'),
        (_checks.check_flag_non_negative_number, 'min_learning_rate'),
        (_checks.check_flag_number, 'adam_epsilon'),
    ))
    self._validate_schedule()
    if not self.model_dir:
      _checks.fail_flag('model_dir', self.model_dir, 'be a directory path')
    _checks.check_flag_choice(self.strategy, 'strategy', STRATEGIES)
    if not (isinstance(self.jit_compile, bool) or self.jit_compile == 'auto'):
      _checks.fail_flag('jit_compile', self.jit_compile,
                        "be true, false or 'auto'")
    _check_fields(self, (
        (_checks.check_flag_positive_int, 'steps_per_execution'),
        (_checks.check_flag_int_at_least, 'checkpoint_every_steps', 0),
        (_checks.check_flag_positive_int, 'keep_checkpoints'),
        (_checks.check_flag_int_at_least, 'early_stopping_patience', 0),
        (_checks.check_flag_int_at_least, 'num_importance_samples', 0),
        (_checks.check_flag_integer, 'seed'),
    ))

  def _validate_schedule(self):
    """The learning-rate settings that only make sense together."""
    if self.learning_rate_decay >= 1:
      _checks.fail_flag('learning_rate_decay', self.learning_rate_decay,
                        'be a factor in (0, 1)')
    if self.min_learning_rate >= self.learning_rate:
      raise ValueError(
          f'--min_learning_rate={self.min_learning_rate!r} is invalid: it '
          f'must be below --learning_rate={self.learning_rate!r}.')
    if (self.learning_rate_schedule in ('exponential', 'step') and
        not self.learning_rate_decay_epochs):
      raise ValueError(
          f'--learning_rate_schedule={self.learning_rate_schedule} needs '
          '--learning_rate_decay_epochs > 0 (the epochs per decay by '
          '--learning_rate_decay); got 0.')


def resolve_run_settings(model_config, train_config, binarization,
                         steps_per_epoch):
  """The configs with every setting that is decided at run time made explicit.

  What a run stores in config.json and compares on resume, so that the file
  says what the run did rather than what it was asked ('' for "the
  dataset's default"):

    binarization      '' becomes the binarization of the data loaded;
    kl_warmup_epochs  becomes kl_warmup_steps (epochs * steps_per_epoch).

  Resolving resolved configs changes nothing.

  Args:
    model_config: `ModelConfig`.
    train_config: `TrainConfig`.
    binarization: Python `str`, the binarization of the data the run uses
      (`ImageDataset.binarization`).
    steps_per_epoch: Python `int` > 0, the run's optimizer steps per epoch.

  Returns:
    `(model_config, train_config)`, resolved.

  Raises:
    ValueError: if `train_config.binarization` names another binarization
      than the data's.
  """
  steps_per_epoch = _checks.check_positive_int(steps_per_epoch,
                                               'steps_per_epoch')
  if train_config.binarization not in ('', binarization):
    raise ValueError(
        f'--binarization={train_config.binarization} does not match the '
        f'data, which are binarized {binarization!r}.')
  train_config = dataclasses.replace(train_config, binarization=binarization)
  if model_config.kl_warmup_epochs:
    model_config = dataclasses.replace(
        model_config, kl_warmup_epochs=0,
        kl_warmup_steps=model_config.kl_warmup_epochs * steps_per_epoch)
  return model_config, train_config
