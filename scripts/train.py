r"""Trains a VAE and leaves everything a user needs in --model_dir.

  python scripts/train.py --posterior=full_cov
  python scripts/train.py --dataset=binarized_mnist --data_dir=DIR \
      --posterior=diag --latent_dim=2 --epochs=50
  python scripts/train.py --flagfile=my_run.flags

Rerunning the same command resumes from the newest checkpoint. See
`tfp_vae/training.py` for what the model directory holds.
"""

import dataclasses
import os
import sys

from absl import app
from absl import flags
from absl import logging

# No TensorFlow op may run before --num_cpu_devices splits the CPU into
# logical devices, so the modules that build data and models are imported in
# main(), after flag parsing.
from tfp_vae import config as config_lib

_MODEL = config_lib.ModelConfig()
_TRAIN_FIELDS = {f.name: f.default
                 for f in dataclasses.fields(config_lib.TrainConfig)}

# Model.
flags.DEFINE_enum('posterior', _MODEL.posterior, config_lib.POSTERIORS,
                  'Approximate posterior family: diag (diagonal Gaussian), '
                  'full_cov (full-covariance Gaussian, MultivariateNormalTriL) '
                  'or deterministic (a point mass: a plain autoencoder).')
flags.DEFINE_enum('likelihood', _MODEL.likelihood, config_lib.LIKELIHOODS,
                  'Decoder likelihood: bernoulli for binary pixels, normal for '
                  'continuous ones (mean squashed to [0, 1], learned scale).')
flags.DEFINE_enum('normal_scale', _MODEL.normal_scale, config_lib.NORMAL_SCALES,
                  'With --likelihood=normal: per_pixel learns one scale per '
                  'pixel; predicted lets the decoder output it.')
flags.DEFINE_enum('prior', _MODEL.prior, config_lib.PRIORS,
                  'Prior p(z): normal (standard normal) or mixture (a '
                  'learnable mixture of Gaussians; needs --kl=mc).')
flags.DEFINE_integer('mixture_components', _MODEL.mixture_components,
                     'Number of components of the mixture prior; a positive '
                     'integer.')
flags.DEFINE_enum('kl', _MODEL.kl, config_lib.KL_ESTIMATORS,
                  'KL estimator: analytic (closed form, SGVB estimator B) or '
                  'mc (Monte Carlo on the same samples, estimator A).')
flags.DEFINE_integer('num_samples', _MODEL.num_samples,
                     'Latent samples per example for the training objective '
                     '(L for the ELBO, K for IWAE); a positive integer.')
flags.DEFINE_enum('objective', _MODEL.objective, config_lib.OBJECTIVES,
                  'Training objective: elbo, or iwae (the importance-weighted '
                  'bound with --num_samples samples).')
flags.DEFINE_float('beta', _MODEL.beta,
                   'Weight of the KL term in the training objective; a '
                   'number >= 0 (1 is the ELBO).')
flags.DEFINE_integer('kl_warmup_steps', _MODEL.kl_warmup_steps,
                     'Raise the KL weight linearly from 0 to --beta over this '
                     'many steps; an integer >= 0 (0: no warm-up).')
flags.DEFINE_integer('latent_dim', _MODEL.latent_dim,
                     'Size of the latent vector z; a positive integer (2 also '
                     'draws the latent manifold).')
flags.DEFINE_enum('architecture', _MODEL.architecture, config_lib.ARCHITECTURES,
                  'Encoder/decoder networks: mlp, or conv (stride-2 '
                  'convolutions; height and width must be multiples of '
                  '2**len(--conv_filters)).')
flags.DEFINE_list('hidden_units', [str(u) for u in _MODEL.hidden_units],
                  'Comma-separated widths of the MLP encoder, e.g. 512,512; '
                  'the decoder mirrors them. Positive integers.')
flags.DEFINE_list('conv_filters', [str(u) for u in _MODEL.conv_filters],
                  'Comma-separated filters of the stride-2 convolutions of '
                  'the conv encoder, e.g. 32,64; positive integers.')
flags.DEFINE_enum('activation', _MODEL.activation, config_lib.ACTIVATIONS,
                  'Hidden-layer activation.')
flags.DEFINE_float('input_noise_stddev', _MODEL.input_noise_stddev,
                   'Standard deviation of Gaussian noise added to the '
                   "encoder's input in training (a denoising autoencoder "
                   'with --posterior=deterministic); a number >= 0.')
flags.DEFINE_float('posterior_min_scale', _MODEL.posterior_min_scale,
                   "Floor added to the posterior's scale; a number >= 0.")
# Data.
flags.DEFINE_enum('dataset', _TRAIN_FIELDS['dataset'],
                  ['binarized_mnist', 'mnist', 'fashion_mnist', 'frey_face'],
                  'Dataset to train on.')
flags.DEFINE_string('data_dir', _TRAIN_FIELDS['data_dir'],
                    'Directory holding the dataset files. Empty: look in the '
                    'system location, then the download cache, then download.')
flags.DEFINE_enum('binarization', _TRAIN_FIELDS['binarization'],
                  ['', 'static', 'dynamic', 'none'],
                  "Pixel binarization; empty for the dataset's default "
                  '(static for binarized_mnist, dynamic for mnist and '
                  'fashion_mnist, none for frey_face).')
flags.DEFINE_integer('max_train_examples', _TRAIN_FIELDS['max_train_examples'],
                     'If > 0, use a seeded random subset of at most this '
                     'many examples per split; 0 uses all data.')
# Optimisation.
flags.DEFINE_integer('batch_size', _TRAIN_FIELDS['batch_size'],
                     'Global batch size, split across replicas; a positive '
                     'integer no larger than the training set.')
flags.DEFINE_integer('epochs', _TRAIN_FIELDS['epochs'],
                     'Number of passes over the training set; a positive '
                     'integer. Raise it and rerun to train a finished run '
                     'further.')
flags.DEFINE_float('learning_rate', _TRAIN_FIELDS['learning_rate'],
                   "Adam's learning rate; a number > 0.")
flags.DEFINE_integer('early_stopping_patience',
                     _TRAIN_FIELDS['early_stopping_patience'],
                     'Stop after this many epochs without a better validation '
                     'ELBO and keep the best weights; 0 never stops early.')
flags.DEFINE_integer('seed', _TRAIN_FIELDS['seed'],
                     'Seeds initialisation, data order and sampling noise.')
# Running.
flags.DEFINE_string('model_dir', '',
                    'Directory for checkpoints, metrics, config and plots. '
                    'Empty: runs/<dataset>-<posterior>. An existing one is '
                    'resumed if its configuration matches.')
flags.DEFINE_enum('strategy', _TRAIN_FIELDS['strategy'], config_lib.STRATEGIES,
                  'tf.distribute strategy: default, one_device, mirrored, '
                  'multi_worker (cluster from TF_CONFIG) or tpu.')
flags.DEFINE_integer('num_cpu_devices', 0,
                     'Split the CPU into this many logical devices (for '
                     '--strategy=mirrored without GPUs); 0 leaves it whole.')
flags.DEFINE_bool('jit_compile', _TRAIN_FIELDS['jit_compile'],
                  'Compile the training step with XLA.')
flags.DEFINE_integer('steps_per_execution',
                     _TRAIN_FIELDS['steps_per_execution'],
                     'Training steps per compiled call; a positive integer. '
                     'Larger amortises call overhead; a non-finite loss is '
                     'then located to within this many steps.')
flags.DEFINE_integer('checkpoint_every_steps',
                     _TRAIN_FIELDS['checkpoint_every_steps'],
                     'Also checkpoint every this many steps; 0 checkpoints at '
                     'the end of each epoch only.')
flags.DEFINE_integer('keep_checkpoints', _TRAIN_FIELDS['keep_checkpoints'],
                     'Number of newest checkpoints to keep; a positive integer.')
flags.DEFINE_integer('num_importance_samples',
                     _TRAIN_FIELDS['num_importance_samples'],
                     'If > 0, also estimate the test log-likelihood by '
                     'importance sampling with this many samples per image.')

FLAGS = flags.FLAGS


def _int_list(flag_name):
  values = getattr(FLAGS, flag_name)
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f'--{flag_name}={",".join(values)} is invalid: it must '
                     f'be comma-separated positive integers.') from None


def _configs_from_flags():
  """Builds and validates both configs, before any data or model work."""
  model_config = config_lib.ModelConfig(
      latent_dim=FLAGS.latent_dim, posterior=FLAGS.posterior,
      likelihood=FLAGS.likelihood, normal_scale=FLAGS.normal_scale,
      prior=FLAGS.prior, mixture_components=FLAGS.mixture_components,
      architecture=FLAGS.architecture,
      hidden_units=_int_list('hidden_units'),
      conv_filters=_int_list('conv_filters'), activation=FLAGS.activation,
      kl=FLAGS.kl, num_samples=FLAGS.num_samples, objective=FLAGS.objective,
      beta=FLAGS.beta, kl_warmup_steps=FLAGS.kl_warmup_steps,
      input_noise_stddev=FLAGS.input_noise_stddev,
      posterior_min_scale=FLAGS.posterior_min_scale, seed=FLAGS.seed)
  model_dir = FLAGS.model_dir or os.path.join(
      'runs', f'{FLAGS.dataset}-{FLAGS.posterior}')
  train_config = config_lib.TrainConfig(
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
      binarization=FLAGS.binarization,
      max_train_examples=FLAGS.max_train_examples,
      batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
      learning_rate=FLAGS.learning_rate, model_dir=model_dir,
      strategy=FLAGS.strategy, jit_compile=FLAGS.jit_compile,
      steps_per_execution=FLAGS.steps_per_execution,
      checkpoint_every_steps=FLAGS.checkpoint_every_steps,
      keep_checkpoints=FLAGS.keep_checkpoints,
      early_stopping_patience=FLAGS.early_stopping_patience,
      num_importance_samples=FLAGS.num_importance_samples, seed=FLAGS.seed)
  return model_config, train_config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    model_config, train_config = _configs_from_flags()
  except ValueError as error:
    sys.exit(f'error: {error}')
  if FLAGS.num_cpu_devices < 0:
    sys.exit(f'error: --num_cpu_devices={FLAGS.num_cpu_devices} is invalid: '
             'it must be an integer >= 0.')

  from tfp_vae import data  # pylint: disable=g-import-not-at-top
  from tfp_vae import distribute  # pylint: disable=g-import-not-at-top
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  if FLAGS.num_cpu_devices:
    distribute.split_cpu_into_logical_devices(FLAGS.num_cpu_devices)
  try:
    dataset = training.load_data(train_config)
    model_config = dataclasses.replace(model_config,
                                       image_shape=tuple(dataset.image_shape))
    logging.info('Model config:\n%s', model_config.to_json())
    logging.info('Train config:\n%s', train_config.to_json())
    result = training.train(model_config, train_config, dataset=dataset)
  except (data.DataError, ValueError, FileNotFoundError,
          training.NonFiniteLossError) as error:
    sys.exit(f'error: {error}')
  print(f'\nTrained model in {result.model_dir}')
  print('Test metrics (nats per example):')
  for name, value in sorted(result.test_metrics.items()):
    print(f'  {name:>32s}  {value}')


if __name__ == '__main__':
  app.run(main)
