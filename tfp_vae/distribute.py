"""Choosing a `tf.distribute` strategy by name, and what each worker may write.

  default       the default (no-op) strategy: one device, no replication
  one_device    `OneDeviceStrategy` on the first GPU, else the CPU
  mirrored      `MirroredStrategy` over all local GPUs; without GPUs, over all
                logical CPU devices (see `split_cpu_into_logical_devices`)
  multi_worker  `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`
  tpu           `TPUStrategy`, TPU found by `TPUClusterResolver`

Everything that holds state (model, optimizer, metrics) must be created inside
`strategy.scope()`; `training.train` does so.
"""

import json
import os

import tensorflow as tf

from tfp_vae.names import STRATEGIES

__all__ = ['make_strategy', 'split_cpu_into_logical_devices', 'is_chief',
           'supports_jit_compile', 'STRATEGY_NAMES']

STRATEGY_NAMES = STRATEGIES  # The names `make_strategy` knows.

_MIRRORED_STRATEGIES = {}  # device names -> the process's MirroredStrategy


def split_cpu_into_logical_devices(num_devices):
  """Splits the physical CPU into `num_devices` logical devices.

  Lets `MirroredStrategy` run N replicas on one CPU (for tests, and to check
  that N replicas compute what one does). Must run before TensorFlow
  initialises its devices (before any op runs).

  Raises:
    ValueError: if `num_devices` < 1.
    RuntimeError: if the devices were already initialised differently.
  """
  if num_devices < 1:
    raise ValueError(f'num_devices must be >= 1; got {num_devices}.')
  cpus = tf.config.list_physical_devices('CPU')
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current is not None and len(current) == num_devices:
    return
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name):
  """Returns the `tf.distribute.Strategy` called `name` (see module doc).

  Raises:
    ValueError: for an unknown name, 'multi_worker' without a valid
      `TF_CONFIG`, or 'tpu' where no TPU can be found; the message names the
      `--strategy` flag.
  """
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'one_device':
    gpus = tf.config.list_logical_devices('GPU')
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else '/cpu:0')
  if name == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus or tf.config.list_logical_devices('CPU')]
    # One per process: two MirroredStrategy objects number their collective
    # ops alike, so a second model trained in the same process (as
    # scripts/compare_posteriors.py does) had its gradient all-reduce mixed
    # up with the first model's ("Shape mismatch in the collective").
    if tuple(devices) not in _MIRRORED_STRATEGIES:
      _MIRRORED_STRATEGIES[tuple(devices)] = tf.distribute.MirroredStrategy(
          devices)
    return _MIRRORED_STRATEGIES[tuple(devices)]
  if name == 'multi_worker':
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
      raise ValueError(f'--strategy=tpu: no TPU could be found ({error}).'
                       ) from None
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'--strategy={name!r} is unknown; use one of '
                   f'{", ".join(STRATEGY_NAMES)}.')


def _check_tf_config():
  raw = os.environ.get('TF_CONFIG')
  if not raw:
    raise ValueError(
        '--strategy=multi_worker needs the TF_CONFIG environment variable, '
        'e.g. {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},'
        ' "task": {"type": "worker", "index": 0}}.')
  try:
    tf_config = json.loads(raw)
    workers = tf_config['cluster']['worker']
    index = tf_config['task']['index']
  except (ValueError, KeyError, TypeError) as error:
    raise ValueError(f'--strategy=multi_worker: TF_CONFIG is not valid '
                     f'({error!r}): {raw}') from None
  # An index of "0" (a string) would otherwise fail as a TypeError.
  if (isinstance(index, bool) or not isinstance(index, int) or
      not 0 <= index < len(workers)):
    raise ValueError(f'--strategy=multi_worker: TF_CONFIG task index '
                     f'{index!r} is outside the {len(workers)} workers.')


def supports_jit_compile(strategy):
  """False where XLA cannot compile the replica step.

  That is several replicas on logical CPU devices of one machine (a
  `MirroredStrategy` after `split_cpu_into_logical_devices`): XLA runs the
  compiled step on CPU:0, which cannot read the variables of the replica on
  CPU:1 (XLA's known issue "tf.Variable on a different device"); and a
  `MultiWorkerMirroredStrategy` over CPU workers, one CPU each: XLA has no
  collective ops on CPU ("Collectives are not yet implemented for CPU
  devices when compiling with XLA"). GPUs and TPUs are fine.
  """
  if strategy.num_replicas_in_sync < 2:
    return True
  return not any(tf.DeviceSpec.from_string(d).device_type == 'CPU'
                 for d in strategy.extended.worker_devices)


def is_chief(strategy):
  """True on the worker that writes shared files (checkpoints, metrics).

  Single-machine strategies have one worker. Under `MultiWorkerMirroredStrategy`
  it is worker 0 (or the task of type 'chief').
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return resolver.task_type == 'worker' and resolver.task_id == 0 and (
      not has_chief)
