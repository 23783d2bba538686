"""The model, data, optimisation and running flags of `scripts/train.py`.

Shared by the scripts that train runs (`train.py`, `compare_posteriors.py`),
so that every such script takes the same flags with the same meaning and
defaults. A script calls `define_flags` once at import, leaving out the flags
it defines differently or does not use, adopts them as its own for `--help`
(`flags.adopt_module_key_flags(_flags)`), and after parsing builds its configs
with `configs_from_flags`.

Defaults come from `tfp_vae.config`, so a flag and its config field never
disagree.
"""

import dataclasses
import functools
import os
import sys

# tfp.layers runs on Keras 2 (tf_keras), the only Keras these scripts use.
# Set before any script imports TensorFlow, this also keeps
# `import tensorflow` from importing Keras 3, and matplotlib.pyplot with it
# (about 1 s of CPU at every start).
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

from absl import flags  # pylint: disable=wrong-import-position

# No TensorFlow op may run before --num_cpu_devices splits the CPU into
# logical devices, and no XLA compilation before --xla_cache_dir is applied;
# `compilation_cache`, `config`, `names` and `_checks` import no TensorFlow.
from tfp_vae import _checks
from tfp_vae import compilation_cache
from tfp_vae import config as config_lib
from tfp_vae import names

FLAGS = flags.FLAGS

_MODEL = config_lib.ModelConfig()
_TRAIN_FIELDS = {f.name: f.default
                 for f in dataclasses.fields(config_lib.TrainConfig)}
_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(config_lib.ModelConfig))
_INT_LIST_FLAGS = ('hidden_units', 'conv_filters', 'flow_hidden_units')

class _AutoBooleanParser(flags.BooleanParser):
  """A boolean flag's parser that also takes 'auto'."""

  def parse(self, argument):
    if isinstance(argument, str) and argument.lower() == 'auto':
      return 'auto'
    return super().parse(argument)

  def flag_type(self):
    return 'bool or auto'


def define_auto_bool(name, default, help):  # pylint: disable=redefined-builtin
  """A flag of true, false or 'auto'; --name and --noname work as for bools."""
  flags.DEFINE_flag(flags.Flag(_AutoBooleanParser(), flags.ArgumentSerializer(),
                               name, default, help, boolean=True))


# Defaults of flags that several scripts define for themselves (with help
# texts of their own), so that a concept has one default everywhere.
# K: Burda et al. (2016) use 5000; 1000 keeps an evaluation of the full test
# set at minutes on a CPU, with a standard error below the differences the
# comparisons look at.
NUM_IMPORTANCE_SAMPLES = 1000
BATCH_SIZE = _TRAIN_FIELDS['batch_size']

def define_gap_flags(examples_help):
  """--gaps, --gap_examples, --gap_max_steps and --gap_samples.

  The inference-gap analysis of `scripts/evaluate.py` and
  `scripts/compare_posteriors.py`, with one default each (`names.GAP_*`).

  Args:
    examples_help: what --gap_examples counts, in the script's words.
  """
  flags.DEFINE_bool(
      'gaps', False,
      'Also split the inference gap log p(x) - ELBO into approximation and '
      'amortization gaps (Cremer et al. 2018): fits q*_x per example, about '
      '--gap_max_steps x --gap_samples decoder passes per example at most, '
      'plus two K-sample estimates.')
  flags.DEFINE_integer('gap_examples', names.GAP_EXAMPLES,
                       f'With --gaps: {examples_help}; a positive integer.',
                       lower_bound=1)
  flags.DEFINE_integer(
      'gap_max_steps', names.GAP_MAX_STEPS,
      'With --gaps: cap on the Adam steps of the local fit of q*_x (each '
      'example stops earlier when its ELBO stops improving); a positive '
      'integer.', lower_bound=1)
  flags.DEFINE_integer(
      'gap_samples', names.GAP_SAMPLES,
      'With --gaps: latent samples per example and Adam step of the local '
      'fit; a positive integer.', lower_bound=1)


# (flag name, definition), in the order `--help` lists them by topic.
_DEFINITIONS = []


def _flag(define, name, default, help_text, *args, **kwargs):
  _DEFINITIONS.append((name, functools.partial(
      define, name, default, *args, help=help_text, **kwargs)))


def _enum(name, default, choices, help_text):
  _flag(flags.DEFINE_enum, name, default, help_text, enum_values=choices)


# Model.
_enum('posterior', _MODEL.posterior, names.POSTERIORS,
      'Approximate posterior family: diag (diagonal Gaussian), '
      'full_cov (full-covariance Gaussian, MultivariateNormalTriL), '
      'low_rank (diagonal plus rank --posterior_rank covariance), '
      'iaf (a diagonal Gaussian through --flow_steps inverse '
      'autoregressive flow steps; needs --kl=mc) or deterministic '
      '(a point mass: a plain autoencoder).')
_flag(flags.DEFINE_integer, 'posterior_rank', _MODEL.posterior_rank,
      'With --posterior=low_rank: rank R of the low-rank part of '
      "the posterior's covariance; an integer in [1, --latent_dim].")
_flag(flags.DEFINE_integer, 'flow_steps', _MODEL.flow_steps,
      'With --posterior=iaf: number of inverse autoregressive '
      'flow steps; a positive integer.')
_flag(flags.DEFINE_list, 'flow_hidden_units',
      [str(u) for u in _MODEL.flow_hidden_units],
      'With --posterior=iaf: comma-separated hidden widths of '
      "each flow step's autoregressive network (MADE), e.g. "
      '64,64. Positive integers.')
_enum('likelihood', _MODEL.likelihood, names.LIKELIHOODS,
      'Decoder likelihood: bernoulli for binary pixels, normal for '
      'continuous ones (mean squashed to [0, 1], learned scale).')
_enum('normal_scale', _MODEL.normal_scale, names.NORMAL_SCALES,
      'With --likelihood=normal: per_pixel learns one scale per '
      'pixel; predicted lets the decoder output it.')
_enum('prior', _MODEL.prior, names.PRIORS,
      'Prior p(z): normal (standard normal) or mixture (a '
      'learnable mixture of Gaussians; needs --kl=mc).')
_flag(flags.DEFINE_integer, 'mixture_components', _MODEL.mixture_components,
      'Number of components of the mixture prior; a positive '
      'integer.')
_enum('kl', _MODEL.kl, names.KL_ESTIMATORS,
      'KL estimator: analytic (closed form, SGVB estimator B) or '
      'mc (Monte Carlo on the same samples, estimator A).')
_flag(flags.DEFINE_integer, 'num_samples', _MODEL.num_samples,
      'Latent samples per example for the training objective '
      '(L for the ELBO, K for IWAE); a positive integer.')
_enum('objective', _MODEL.objective, names.OBJECTIVES,
      'Training objective: elbo, or iwae (the importance-weighted '
      'bound with --num_samples samples).')
_flag(flags.DEFINE_float, 'beta', _MODEL.beta,
      'Weight of the KL term in the training objective; a '
      'number >= 0 (1 is the ELBO).')
_flag(flags.DEFINE_integer, 'kl_warmup_steps', _MODEL.kl_warmup_steps,
      'Raise the KL weight linearly from 0 to --beta over this '
      'many steps; an integer >= 0 (0: no warm-up).')
_flag(flags.DEFINE_integer, 'kl_warmup_epochs', _MODEL.kl_warmup_epochs,
      'The same warm-up in epochs (converted to steps with the '
      "data's steps per epoch); an integer >= 0. Not with "
      '--kl_warmup_steps.')
_flag(flags.DEFINE_integer, 'latent_dim', _MODEL.latent_dim,
      'Size of the latent vector z; a positive integer (2 also '
      'draws the latent manifold).')
_enum('architecture', _MODEL.architecture, names.ARCHITECTURES,
      'Encoder/decoder networks: mlp; gated_mlp (hidden layers '
      'activation(x W + b) * sigmoid(x V + c), with --activation=linear '
      "Tomczak & Welling's MLP); or conv (stride-2 "
      'convolutions; height and width must be multiples of '
      '2**len(--conv_filters)).')
_flag(flags.DEFINE_list, 'hidden_units', [str(u) for u in _MODEL.hidden_units],
      'Comma-separated widths of the MLP encoder, e.g. 512,512; '
      'the decoder mirrors them. Positive integers.')
_flag(flags.DEFINE_list, 'conv_filters', [str(u) for u in _MODEL.conv_filters],
      'Comma-separated filters of the stride-2 convolutions of '
      'the conv encoder, e.g. 32,64; positive integers.')
_enum('activation', _MODEL.activation, names.ACTIVATIONS,
      'Hidden-layer activation (linear: none).')
_flag(flags.DEFINE_float, 'input_noise_stddev', _MODEL.input_noise_stddev,
      'Standard deviation of Gaussian noise added to the '
      "encoder's input in training (a denoising autoencoder "
      'with --posterior=deterministic); a number >= 0.')
_flag(flags.DEFINE_float, 'posterior_min_scale', _MODEL.posterior_min_scale,
      "Floor added to the posterior's scale; a number >= 0.")
_flag(flags.DEFINE_float, 'full_cov_off_diagonal_scale',
      _MODEL.full_cov_off_diagonal_scale,
      'With --posterior=full_cov: constant multiplying the '
      "encoder's raw off-diagonal Cholesky entries (1 is "
      "TFP's FillScaleTriL; smaller values slow their drift "
      'under Adam); a number > 0.')
# Data.
_enum('dataset', _TRAIN_FIELDS['dataset'], names.DATASET_NAMES,
      'Dataset to train on.')
_flag(flags.DEFINE_string, 'data_dir', _TRAIN_FIELDS['data_dir'],
      'Directory holding the dataset files. Empty: look in the '
      'system location, then the download cache, then download.')
_enum('binarization', _TRAIN_FIELDS['binarization'],
      ('',) + names.BINARIZATIONS,
      "Pixel binarization; empty for the dataset's default "
      '(static for binarized_mnist, dynamic for mnist and '
      'fashion_mnist, none for frey_face).')
_flag(flags.DEFINE_integer, 'max_train_examples',
      _TRAIN_FIELDS['max_train_examples'],
      'If > 0, use a seeded random subset of at most this '
      'many examples per split; 0 uses all data.')
# Optimisation.
_flag(flags.DEFINE_integer, 'batch_size', _TRAIN_FIELDS['batch_size'],
      'Global batch size, split across replicas; a positive '
      'integer no larger than the training set.')
_flag(flags.DEFINE_integer, 'epochs', _TRAIN_FIELDS['epochs'],
      'Number of passes over the training set; a positive '
      'integer. Raise it and rerun to train a finished run '
      'further.')
_flag(flags.DEFINE_float, 'learning_rate', _TRAIN_FIELDS['learning_rate'],
      "Adam's learning rate; a number > 0.")
_flag(flags.DEFINE_integer, 'max_steps', _TRAIN_FIELDS['max_steps'],
      'If > 0, stop after this many optimizer steps, or after '
      '--epochs, whichever comes first. Raise it and rerun to '
      'train further.')
_enum('learning_rate_schedule', _TRAIN_FIELDS['learning_rate_schedule'],
      names.LEARNING_RATE_SCHEDULES,
      'constant; burda (3^i epochs at --learning_rate * '
      '10^(-i/7), i = 0..7: 3280 epochs); exponential (times '
      '--learning_rate_decay per --learning_rate_decay_epochs); '
      'step (the same in steps); cosine (to --min_learning_rate '
      'over --epochs or --max_steps); plateau (times '
      '--learning_rate_decay after --learning_rate_patience '
      'epochs without a better validation ELBO).')
_flag(flags.DEFINE_float, 'learning_rate_decay',
      _TRAIN_FIELDS['learning_rate_decay'],
      'Decay factor of the exponential, step and plateau '
      'schedules; a number in (0, 1).')
_flag(flags.DEFINE_integer, 'learning_rate_decay_epochs',
      _TRAIN_FIELDS['learning_rate_decay_epochs'],
      'Epochs per decay of the exponential and step schedules '
      '(which need it > 0).')
_flag(flags.DEFINE_integer, 'learning_rate_patience',
      _TRAIN_FIELDS['learning_rate_patience'],
      'Plateau schedule: epochs without a better validation ELBO '
      'before the rate is lowered; a positive integer.')
_flag(flags.DEFINE_float, 'min_learning_rate',
      _TRAIN_FIELDS['min_learning_rate'],
      'Floor of the cosine and plateau schedules; a number >= 0 '
      'below --learning_rate.')
_flag(flags.DEFINE_float, 'adam_epsilon', _TRAIN_FIELDS['adam_epsilon'],
      "Adam's epsilon; a number > 0 (Burda et al. used 1e-4).")
_flag(flags.DEFINE_integer, 'early_stopping_patience',
      _TRAIN_FIELDS['early_stopping_patience'],
      'Stop after this many epochs without a better validation '
      'ELBO and keep the best weights; 0 never stops early.')
_flag(flags.DEFINE_integer, 'seed', _TRAIN_FIELDS['seed'],
      'Seeds initialisation, data order and sampling noise.')
# Running.
_flag(flags.DEFINE_string, 'model_dir', '',
      'Directory for checkpoints, metrics, config and plots. '
      'Empty: runs/<dataset>-<posterior>-z<latent_dim>-<hash>, '
      'the hash of the settings that define the model, so a '
      'changed setting never collides with an earlier run. An '
      'existing one is resumed if its configuration matches.')
_enum('strategy', _TRAIN_FIELDS['strategy'], names.STRATEGIES,
      'tf.distribute strategy: default, one_device, mirrored, '
      'multi_worker (cluster from TF_CONFIG) or tpu.')
_flag(flags.DEFINE_integer, 'num_cpu_devices', 0,
      'Split the CPU into this many logical devices (for '
      '--strategy=mirrored without GPUs); 0 leaves it whole.')
_flag(define_auto_bool, 'jit_compile', _TRAIN_FIELDS['jit_compile'],
      'Compile the training step with XLA: true (--jit_compile), false '
      "(--nojit_compile) or auto: on where XLA can compile the step, "
      'off (with a note) where it cannot (replicas on CPUs, e.g. '
      '--strategy=multi_worker on CPU hosts).')
_flag(flags.DEFINE_integer, 'steps_per_execution',
      _TRAIN_FIELDS['steps_per_execution'],
      'Training steps per compiled call; a positive integer. '
      'Larger amortises call overhead; a non-finite loss is '
      'then located to within this many steps.')
_flag(flags.DEFINE_integer, 'checkpoint_every_steps',
      _TRAIN_FIELDS['checkpoint_every_steps'],
      'Also checkpoint every this many steps; 0 checkpoints at '
      'the end of each epoch only.')
_flag(flags.DEFINE_integer, 'keep_checkpoints', _TRAIN_FIELDS['keep_checkpoints'],
      'Number of newest checkpoints to keep; a positive integer.')

_XLA_CACHE_DIR_HELP = (
    'Directory of the persistent cache of compiled XLA executables, shared '
    'by runs: a later run of the same model (any seed) skips the seconds its '
    'first epoch spends compiling (tfp_vae/compilation_cache.py). Default: '
    f'${compilation_cache.ROOT_ENVIRONMENT_VARIABLE}, else '
    "~/.cache/tfp_vae/xla; '' turns the cache off.")


def define_xla_cache_flag():
  """--xla_cache_dir, for the scripts that do not call `define_flags`."""
  flags.DEFINE_string('xla_cache_dir', None, _XLA_CACHE_DIR_HELP)


_DEFINITIONS.append(('xla_cache_dir', define_xla_cache_flag))
_flag(flags.DEFINE_integer, 'num_importance_samples', NUM_IMPORTANCE_SAMPLES,
      'Importance samples K per test image for the final estimate '
      'of the test log-likelihood (scripts/evaluate.py computes it '
      'again with its own K); 0 skips it.')

FLAG_NAMES = tuple(name for name, _ in _DEFINITIONS)

# The names `define_flags` defined in this process.
_defined = []


def define_flags(skip=()):
  """Defines train.py's flags in absl's global `FLAGS`, except `skip`.

  Args:
    skip: names of flags not to define, because the calling script defines
      them with another meaning or has no use for them.

  Raises:
    ValueError: if `skip` names a flag that does not exist here.
  """
  unknown = sorted(set(skip) - set(FLAG_NAMES))
  if unknown:
    raise ValueError(f'Unknown flags to skip: {unknown}.')
  for name, define in _DEFINITIONS:
    if name not in skip and name not in _defined:
      define()
      _defined.append(name)


def _int_list(flag_name, values):
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f'--{flag_name}={",".join(values)} is invalid: it must '
                     f'be comma-separated positive integers.') from None


def configs_from_flags(**overrides):
  """Builds and validates `(ModelConfig, TrainConfig)` from the parsed flags.

  Every config field takes the value of the flag of its name, if
  `define_flags` defined it; `overrides` (by field name) take precedence,
  and fields with neither keep the config's default. `image_shape` is not a
  flag: it is the --dataset's usual shape until callers set the loaded
  data's.

  Raises:
    ValueError: naming the flag, for a value the configs refuse.
  """
  values = {name: getattr(FLAGS, name) for name in _defined}
  for name in _INT_LIST_FLAGS:
    if name in values:
      values[name] = _int_list(name, values[name])
  # The dataset's usual image shape, so that the flags are checked against
  # it (say, how often --architecture=conv can halve it) before any data are
  # loaded.
  if values.get('dataset') in names.DATASET_IMAGE_SHAPES:
    values['image_shape'] = names.DATASET_IMAGE_SHAPES[values['dataset']]
  values.update(overrides)
  train_fields = set(_TRAIN_FIELDS)
  model_config = config_lib.ModelConfig(
      **{k: v for k, v in values.items() if k in _MODEL_FIELDS})
  train_config = config_lib.TrainConfig(
      **{k: v for k, v in values.items() if k in train_fields})
  return model_config, train_config


def split_cpu_devices():
  """Applies --num_cpu_devices; call before any TensorFlow op runs.

  Exits with an error naming the flag for a negative value.
  """
  num_devices = flags.FLAGS.num_cpu_devices
  try:
    _checks.check_flag_int_at_least(num_devices, 'num_cpu_devices', 0)
  except ValueError as error:
    sys.exit(f'error: {error}')
  if num_devices:
    from tfp_vae import distribute  # pylint: disable=g-import-not-at-top
    distribute.split_cpu_into_logical_devices(num_devices)


def enable_xla_cache():
  """Applies --xla_cache_dir; call before TensorFlow compiles anything.

  A directory given by the flag that cannot be used is an error naming the
  flag; the default one only earns a warning (a read-only home directory
  must not stop a run), and the run goes on without the cache.
  """
  try:
    compilation_cache.enable(flags.FLAGS.xla_cache_dir)
  except OSError as error:
    if flags.FLAGS['xla_cache_dir'].present:
      sys.exit(f'error: --xla_cache_dir: {error}')
    print(f'warning: {error}', file=sys.stderr, flush=True)


# The purpose of every flag, in the order --help lists the groups; flags of a
# script that no group names are listed last, under "other".
FLAG_GROUPS = (
    ('model', ('posterior', 'posterior_rank', 'flow_steps',
               'flow_hidden_units', 'likelihood', 'normal_scale', 'prior',
               'mixture_components', 'latent_dim', 'architecture',
               'hidden_units', 'conv_filters', 'activation',
               'input_noise_stddev', 'posterior_min_scale',
               'full_cov_off_diagonal_scale', 'posteriors')),
    ('objective', ('objective', 'kl', 'num_samples', 'beta',
                   'kl_warmup_steps', 'kl_warmup_epochs')),
    ('data', ('dataset', 'data_dir', 'binarization', 'max_train_examples',
              'split', 'max_examples', 'max_eval_examples', 'indices',
              'images')),
    ('training', ('batch_size', 'epochs', 'max_steps', 'learning_rate',
                  'learning_rate_schedule', 'learning_rate_decay',
                  'learning_rate_decay_epochs', 'learning_rate_patience',
                  'min_learning_rate', 'adam_epsilon',
                  'early_stopping_patience', 'seed', 'seeds',
                  'train_missing')),
    ('evaluation', ('num_importance_samples', 'samples_per_chunk', 'gaps',
                    'gap_examples', 'gap_max_steps', 'gap_samples')),
    ('output', ('model_dir', 'overwrite', 'output', 'output_dir', 'runs_dir',
                'what', 'num_prior_samples', 'steps')),
    ('infrastructure', ('strategy', 'num_cpu_devices', 'jit_compile',
                        'steps_per_execution', 'checkpoint_every_steps',
                        'keep_checkpoints', 'xla_cache_dir', 'flagfile',
                        'undefok')),
)

# What asks for help: absl's spellings of --help and --helpshort.
_HELP_ARGUMENTS = ('--help', '-help', '-h', '-?', '--helpshort',
                   '-helpshort', '--help=true', '--helpshort=true')


def script_flags(module_name):
  """{name: absl Flag} of a script's own and adopted flags.

  Args:
    module_name: the script module's `__name__`; absl files the flags of a
      module run as a file ('__main__') under `sys.argv[0]`.
  """
  if module_name == '__main__':
    module_name = sys.argv[0]
  return {flag.name: flag
          for flag in FLAGS.get_key_flags_for_module(module_name)}


def _flag_help(flag):
  name = f'--[no]{flag.name}' if flag.boolean else f'--{flag.name}'
  text = f'{name}: {flag.help}'
  if flag.default_as_str is not None:
    text += f' (default: {flag.default_as_str})'
  return flags.text_wrap(text, length=80, indent='      ',
                         firstline_indent='  ')


def grouped_help(doc, module_name):
  """The script's docstring and its flags, grouped by purpose."""
  own = script_flags(module_name)
  lines = [(doc or '').strip(), '',
           'Flags, by purpose (--helpfull lists absl\'s own as well):']
  listed = set()
  for group, names in FLAG_GROUPS + (('other', tuple(sorted(own))),):
    shown = [n for n in names if n in own and n not in listed]
    if shown:
      lines += ['', f'{group}:']
      lines += [_flag_help(own[n]) for n in shown]
      listed.update(shown)
  return '\n'.join(lines)


def flags_parser(doc, module_name):
  """absl's flag parser, except that --help prints `grouped_help`.

  For `app.run(main, flags_parser=...)`. --help exits with status 0
  without importing TensorFlow; every other argument list goes to absl.
  """
  from absl import app  # pylint: disable=g-import-not-at-top

  def parse(argv):
    if any(argument in _HELP_ARGUMENTS for argument in argv[1:]):
      print(grouped_help(doc, module_name))
      sys.exit(0)
    return app.parse_flags_with_usage(argv)

  return parse
