r"""Runs in a process of its own for test_distribute.py: two CPU replicas.

The CPU can be split into logical devices only before TensorFlow runs its
first op, so this runs apart from the test process. It splits the CPU in
two, does what MODE asks and writes what it saw, as JSON, to OUTPUT:

  python tests/_replica_equivalence_main.py strategies OUTPUT
      the strategies `distribute.make_strategy` builds on two logical CPUs.
  python tests/_replica_equivalence_main.py training OUTPUT
      trains the same models with the default strategy (one replica) and
      with `MirroredStrategy` over the two CPUs (each replica gets half the
      global batch), and reports both runs' weights, optimizer state and
      metrics side by side.
"""

import contextlib
import io
import json
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from tfp_vae import distribute

distribute.split_cpu_into_logical_devices(2)

import numpy as np
import tensorflow as tf

from tfp_vae import data
from tfp_vae import training
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
# pylint: enable=g-import-not-at-top,wrong-import-position

IMAGE_SHAPE = (8, 8, 1)

# Each case: the model, the global batch size and the sizes of the splits.
# 15 and 13 do not divide by two replicas: tf.distribute splits such a batch
# 8 + 7 (or 7 + 6), as it does the last, smaller batch of an evaluation.
CASES = {
    'even_batches': dict(
        model=dict(posterior='full_cov', num_samples=2,
                   input_noise_stddev=0.1, kl_warmup_steps=5),
        batch_size=16, num_train=64, num_eval=15, epochs=2),
    'uneven_batches_iwae_mixture_prior': dict(
        model=dict(posterior='diag', prior='mixture', kl='mc',
                   objective='iwae', num_samples=3),
        batch_size=15, num_train=64, num_eval=13, epochs=1),
    # The families whose noise is not D numbers (low_rank: D + R) or whose
    # sample goes through networks of the posterior layer (iaf).
    'uneven_batches_low_rank': dict(
        model=dict(posterior='low_rank', posterior_rank=2),
        batch_size=15, num_train=64, num_eval=13, epochs=1),
    'even_batches_iaf': dict(
        model=dict(posterior='iaf', kl='mc', flow_steps=2,
                   flow_hidden_units=(8,)),
        batch_size=16, num_train=64, num_eval=15, epochs=1),
}


def synthetic_dataset(num_train, num_eval, seed=0):
  rng = np.random.default_rng(seed)

  def images(count):
    level = rng.uniform(0.1, 0.9, (count, 1, 1, 1))
    return (rng.random((count,) + IMAGE_SHAPE) < level).astype(np.float32)

  return data.ImageDataset(
      name='binarized_mnist', train_images=images(num_train),
      validation_images=images(num_eval), test_images=images(num_eval),
      train_labels=None, validation_labels=None, test_labels=None,
      binarization='static', image_shape=IMAGE_SHAPE, source='synthetic')


def model_config(**overrides):
  return ModelConfig(image_shape=IMAGE_SHAPE, hidden_units=(32,),
                     latent_dim=3, seed=1, **overrides)


def train_config(strategy, **overrides):
  values = dict(dataset='binarized_mnist', model_dir=tempfile.mkdtemp(),
                strategy=strategy, jit_compile=False, steps_per_execution=2,
                seed=2)
  values.update(overrides)
  return TrainConfig(**values)


def describe_strategies():
  mirrored = distribute.make_strategy('mirrored')
  report = {
      name: {'num_replicas': strategy.num_replicas_in_sync,
             'supports_jit_compile': distribute.supports_jit_compile(strategy),
             'is_chief': distribute.is_chief(strategy)}
      for name, strategy in [('default', distribute.make_strategy('default')),
                             ('one_device',
                              distribute.make_strategy('one_device')),
                             ('mirrored', mirrored)]}
  report['mirrored']['devices'] = list(mirrored.extended.worker_devices)
  report['logical_cpus'] = len(tf.config.list_logical_devices('CPU'))

  # Splitting again as before is harmless; otherwise it is too late.
  distribute.split_cpu_into_logical_devices(2)
  try:
    distribute.split_cpu_into_logical_devices(3)
    report['split_again_error'] = None
  except RuntimeError as error:
    report['split_again_error'] = str(error)

  # XLA cannot run replicas on logical CPUs: refused before any work.
  config = train_config('mirrored', batch_size=16, epochs=1, jit_compile=True)
  model_dir = os.path.join(config.model_dir, 'run')
  config = TrainConfig(**{**config.to_dict(), 'model_dir': model_dir})
  try:
    training.train(model_config(), config, dataset=synthetic_dataset(32, 8),
                   strategy=mirrored, verbose=0)
    report['jit_compile_error'] = None
  except ValueError as error:
    report['jit_compile_error'] = str(error)
  report['jit_compile_model_dir_made'] = os.path.exists(model_dir)

  # --jit_compile=auto (the default) turns XLA off there, with a note, and
  # trains; config.json records what ran.
  config = TrainConfig(**{**config.to_dict(), 'jit_compile': 'auto',
                          'model_dir': model_dir + '_auto'})
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    training.train(model_config(), config, dataset=synthetic_dataset(32, 8),
                   strategy=mirrored, verbose=2)
  with open(os.path.join(config.model_dir, 'config.json')) as f:
    report['jit_auto_saved'] = json.load(f)['train']['jit_compile']
  report['jit_auto_notes'] = [line for line in printed.getvalue().splitlines()
                              if line.startswith('Note: --jit_compile=auto')]
  return report


def compare_training():
  report = {}
  for case_name, case in CASES.items():
    dataset = synthetic_dataset(case['num_train'], case['num_eval'])
    runs = {}
    for strategy_name in ('default', 'mirrored'):
      strategy = distribute.make_strategy(strategy_name)
      result = training.train(
          model_config(**case['model']),
          train_config(strategy_name, batch_size=case['batch_size'],
                       epochs=case['epochs']),
          dataset=dataset, strategy=strategy, verbose=0)
      model = result.model
      runs[strategy_name] = dict(
          num_replicas=strategy.num_replicas_in_sync,
          iterations=int(model.optimizer.iterations.numpy()),
          # In order: Keras numbers the layer names of the second model on.
          variables=[(v.name, v.numpy()) for v in
                     model.trainable_variables + model.optimizer.variables],
          history={k: v for k, v in result.history.items()
                   if k not in ('seconds', 'end_time')},
          test_metrics=result.test_metrics)
    one, two = runs['default'], runs['mirrored']
    # Per variable: the largest difference and the variable's scale.
    differences = {}
    for (name, value), (_, other) in zip(one['variables'], two['variables']):
      differences[name] = dict(
          max_abs_difference=float(np.max(np.abs(
              value.astype(np.float64) - other.astype(np.float64)))),
          max_abs_value=float(np.max(np.abs(value))))
    report[case_name] = dict(
        learning_rate=TrainConfig().learning_rate,
        num_replicas=[one['num_replicas'], two['num_replicas']],
        iterations=[one['iterations'], two['iterations']],
        num_variables=[len(one['variables']), len(two['variables'])],
        same_shapes=[v.shape for _, v in one['variables']] ==
        [v.shape for _, v in two['variables']],
        differences=differences,
        history=[one['history'], two['history']],
        test_metrics=[one['test_metrics'], two['test_metrics']])
  return report


def main(mode, output):
  report = {'strategies': describe_strategies,
            'training': compare_training}[mode]()
  with open(output, 'w') as f:
    json.dump(report, f, indent=1)


if __name__ == '__main__':
  main(*sys.argv[1:])
