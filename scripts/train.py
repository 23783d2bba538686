r"""Trains a VAE and leaves everything a user needs in --model_dir.

  python scripts/train.py --posterior=full_cov
  python scripts/train.py --dataset=binarized_mnist --data_dir=DIR \
      --posterior=diag --latent_dim=2 --epochs=50
  python scripts/train.py --flagfile=my_run.flags

Rerunning the same command resumes from the newest checkpoint. See
`tfp_vae/runs.py` for what the model directory holds.
"""

import dataclasses
import gc
import os
import sys

from absl import app
from absl import flags
from absl import logging

# The flags are shared with scripts/compare_posteriors.py; they live in
# scripts/_flags.py, next to this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _flags  # pylint: disable=g-import-not-at-top,wrong-import-position

# No TensorFlow op may run before --num_cpu_devices splits the CPU into
# logical devices, so the modules that build data and models are imported in
# main(), after flag parsing.
_flags.define_flags()
flags.adopt_module_key_flags(_flags)

FLAGS = flags.FLAGS


def _configs_from_flags():
  """Builds and validates both configs, before any data or model work."""
  model_dir = FLAGS.model_dir or os.path.join(
      'runs', f'{FLAGS.dataset}-{FLAGS.posterior}')
  return _flags.configs_from_flags(model_dir=model_dir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    model_config, train_config = _configs_from_flags()
  except ValueError as error:
    sys.exit(f'error: {error}')
  _flags.split_cpu_devices()

  from tfp_vae import data  # pylint: disable=g-import-not-at-top
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  try:
    dataset = data.load_data(train_config)
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
  # Python's last garbage collection, at exit, walks every object the run
  # made, TensorFlow's traced graphs included: seconds of the post-fit phase
  # spent on a process about to end. Frozen objects are left out of it
  # (BENCHMARKS.md, "Whole runs").
  gc.freeze()


if __name__ == '__main__':
  app.run(main)
