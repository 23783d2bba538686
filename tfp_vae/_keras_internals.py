"""Every touch of tf_keras (and TensorFlow) private state, behind named hooks.

tf_keras gives no public way to start `fit` mid-epoch, to read the variables
behind `steps_per_execution` and the train-step counter inside a compiled
function, or to save and restore the global random state it seeds. The
package needs all of these; each is one small function here, and
tests/test_keras_internals.py has one test per hook that fails loudly (naming
the hook) when a tf_keras or TensorFlow upgrade changes what it relies on.
Nothing else in tfp_vae reads or writes a private attribute of a Keras
object.
"""

import random

import numpy as np
from tensorflow.python.eager import context as _context  # pylint: disable=g-direct-tensorflow-import
# tf_keras's own seed generator lives in its source tree; the public
# `keras.backend` does not expose it.
from tf_keras.src import backend as _keras_backend  # pylint: disable=g-direct-third-party-import

__all__ = ['set_initial_position', 'clear_initial_position',
           'steps_per_execution_variable', 'train_counter',
           'cluster_coordinator', 'learning_rate_schedule',
           'get_global_random_state',
           'set_global_random_state']


################################################################################
# `fit`'s starting position (read by `Model._maybe_load_initial_counters_...`).
################################################################################


class _InitialPosition:
  """Answers `fit`'s question for its initial (epoch, step).

  `Model.fit` asks `model._training_state`, when set, for the counters to
  start from (as `BackupAndRestore` does for a multi-worker restart); this
  object answers with a fixed position.
  """

  def __init__(self, epoch, step):
    self._counters = (epoch, step)

  def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch,
                                            initial_epoch, mode=None):
    del steps_per_epoch, initial_epoch, mode
    return self._counters


def set_initial_position(model, epoch, step):
  """Makes the next `model.fit` start at batch `step` of epoch `epoch`."""
  model._training_state = _InitialPosition(epoch, step)  # pylint: disable=protected-access


def clear_initial_position(model):
  """Undoes `set_initial_position`: `fit` starts at its `initial_epoch` again."""
  model._training_state = None  # pylint: disable=protected-access


################################################################################
# Variables of a compiled model.
################################################################################


def steps_per_execution_variable(model):
  """The int64 variable behind `compile(steps_per_execution=...)`, or None.

  Read inside a compiled train function, it gives the value of the current
  execution (`Model.steps_per_execution` is the same object).
  """
  return model._steps_per_execution  # pylint: disable=protected-access


def train_counter(model):
  """The int64 variable counting train steps (`fit`'s step callbacks read it).

  A train function that runs several steps in one call adds their number.
  """
  return model._train_counter  # pylint: disable=protected-access


def cluster_coordinator(model):
  """The parameter-server coordinator `fit` schedules steps on, or None."""
  return model._cluster_coordinator  # pylint: disable=protected-access


def learning_rate_schedule(optimizer):
  """What an optimizer was built with as `learning_rate`: a schedule object.

  For a float, the variable holding it. (The public `learning_rate` gives,
  under a schedule, the rate of the last step instead.)
  """
  return optimizer._learning_rate  # pylint: disable=protected-access


################################################################################
# The global random state `keras.utils.set_random_seed` changes.
################################################################################


def get_global_random_state():
  """A snapshot of every global random state `set_random_seed` writes.

  Python's `random`, NumPy's legacy global generator, TensorFlow's global
  seed with its generator of op seeds, and tf_keras's own seed generator.
  """
  eager = _context.context()
  tf_rng = getattr(eager, '_rng', None)
  keras_generator = getattr(_keras_backend._SEED_GENERATOR, 'generator', None)  # pylint: disable=protected-access
  return {
      'python': random.getstate(),
      'numpy': np.random.get_state(),
      'tf_seed': eager._seed,  # pylint: disable=protected-access
      'tf_op_seeds': None if tf_rng is None else tf_rng.getstate(),
      'keras': (None if keras_generator is None
                else keras_generator.getstate()),
  }


def set_global_random_state(state):
  """Restores a `get_global_random_state` snapshot.

  TensorFlow's cache of stateful random kernels is not part of the
  snapshot: ops with an explicit op seed run before the snapshot restart
  their sequence afterwards (as after `tf.random.set_seed`); ops that take
  their op seed from the global seed continue exactly where they were.
  """
  random.setstate(state['python'])
  np.random.set_state(state['numpy'])
  eager = _context.context()
  eager._seed = state['tf_seed']  # pylint: disable=protected-access
  if state['tf_op_seeds'] is None:
    eager._rng = None  # pylint: disable=protected-access
  else:
    eager._rng = random.Random()  # pylint: disable=protected-access
    eager._rng.setstate(state['tf_op_seeds'])  # pylint: disable=protected-access
  seed_generator = _keras_backend._SEED_GENERATOR  # pylint: disable=protected-access
  if state['keras'] is None:
    if hasattr(seed_generator, 'generator'):
      del seed_generator.generator
  else:
    seed_generator.generator = random.Random()
    seed_generator.generator.setstate(state['keras'])

