"""Tests for tfp_vae/_keras_internals.py: one per hook into private state.

Each test fails with a message naming the hook when a tf_keras or
TensorFlow upgrade changes the private state the hook relies on; the fix
then belongs in `_keras_internals` alone.
"""

import random

import numpy as np
import tensorflow as tf

from tfp_vae import _keras_internals
from tfp_vae._keras import keras

_UPGRADE = ('tf_keras changed the private state behind '
            '`_keras_internals.{}`; adapt that hook.')


def _compiled_model(steps_per_execution=1):
  model = keras.Sequential([keras.Input([2]), keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.SGD(0.01), loss='mse',
                steps_per_execution=steps_per_execution)
  return model


def _batches():
  features = tf.ones([4, 2])
  return tf.data.Dataset.from_tensors((features, tf.ones([4, 1]))).repeat()


class InitialPositionTest(tf.test.TestCase):

  def test_fit_starts_at_the_set_position_and_at_zero_after_clearing(self):
    model = _compiled_model()
    # Epoch 1 (0-based), batch 3 of 4: fit runs one batch of epoch 1 and
    # all 4 of epoch 2.
    _keras_internals.set_initial_position(model, 1, 3)
    model.fit(_batches(), epochs=3, steps_per_epoch=4, verbose=0)
    self.assertEqual(int(model.optimizer.iterations.numpy()), 5,
                     msg=_UPGRADE.format('set_initial_position'))
    _keras_internals.clear_initial_position(model)
    model.fit(_batches(), epochs=1, steps_per_epoch=4, verbose=0)
    self.assertEqual(int(model.optimizer.iterations.numpy()), 9,
                     msg=_UPGRADE.format('clear_initial_position'))


class CompiledModelVariablesTest(tf.test.TestCase):

  def test_steps_per_execution_variable(self):
    model = _compiled_model(steps_per_execution=3)
    variable = _keras_internals.steps_per_execution_variable(model)
    message = _UPGRADE.format('steps_per_execution_variable')
    self.assertIsInstance(variable, tf.Variable, msg=message)
    self.assertEqual(int(variable.numpy()), 3, msg=message)
    self.assertIs(variable, model.steps_per_execution, msg=message)

  def test_train_counter_counts_the_steps_fit_runs(self):
    model = _compiled_model(steps_per_execution=2)
    model.fit(_batches(), epochs=1, steps_per_epoch=6, verbose=0)
    counter = _keras_internals.train_counter(model)
    message = _UPGRADE.format('train_counter')
    self.assertIsInstance(counter, tf.Variable, msg=message)
    self.assertEqual(counter.dtype, tf.int64, msg=message)
    self.assertEqual(int(counter.numpy()), 6, msg=message)
    # A fused train function adds its step count here (fused_steps.py).
    counter.assign_add(2)
    self.assertEqual(int(counter.numpy()), 8, msg=message)

  def test_cluster_coordinator_is_none_without_parameter_servers(self):
    model = _compiled_model()
    self.assertIsNone(_keras_internals.cluster_coordinator(model),
                      msg=_UPGRADE.format('cluster_coordinator'))


class OptimizerTest(tf.test.TestCase):

  def test_learning_rate_schedule_is_what_the_optimizer_was_built_with(self):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = keras.optimizers.Adam(schedule)
    self.assertIs(_keras_internals.learning_rate_schedule(optimizer),
                  schedule, _UPGRADE.format('learning_rate_schedule'))
    constant = keras.optimizers.Adam(0.25)
    self.assertEqual(
        float(_keras_internals.learning_rate_schedule(constant).numpy()),
        0.25, _UPGRADE.format('learning_rate_schedule'))


class GlobalRandomStateTest(tf.test.TestCase):

  def _draws(self):
    return (random.random(), np.random.rand(),
            tf.random.uniform([3]).numpy(),
            keras.backend.random_uniform([2]).numpy())

  def test_restoring_a_snapshot_undoes_set_random_seed(self):
    message = _UPGRADE.format('get/set_global_random_state')
    keras.utils.set_random_seed(11)
    self._draws()
    snapshot = _keras_internals.get_global_random_state()
    expected = self._draws()
    # What building a model for loading does to the global state.
    _keras_internals.set_global_random_state(snapshot)
    keras.utils.set_random_seed(12345)
    self._draws()
    _keras_internals.set_global_random_state(snapshot)
    actual = self._draws()
    for want, got in zip(expected, actual):
      self.assertAllEqual(want, got, msg=message)

  def test_an_unseeded_tensorflow_stays_unseeded(self):
    tf.random.set_seed(None)
    snapshot = _keras_internals.get_global_random_state()
    self.assertIsNone(snapshot['tf_seed'],
                      msg=_UPGRADE.format('get_global_random_state'))
    keras.utils.set_random_seed(3)
    _keras_internals.set_global_random_state(snapshot)
    self.assertIsNone(
        _keras_internals.get_global_random_state()['tf_seed'],
        msg=_UPGRADE.format('set_global_random_state'))

if __name__ == '__main__':
  tf.test.main()
