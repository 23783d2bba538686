"""Tests for tfp_vae.schedules: known values, serialization, checkpointed state."""

import json
import math
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tfp_vae import _keras_internals
from tfp_vae import runs
from tfp_vae import schedules
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig

STEPS_PER_EPOCH = 10


def train_config(**overrides):
  return TrainConfig(**{'learning_rate': 1e-3, **overrides})


def rate(schedule, step):
  return float(schedule(tf.constant(step, tf.int64)).numpy())


class BurdaScheduleTest(tf.test.TestCase):

  def test_stages_last_three_to_the_i_epochs_for_3280_epochs_in_all(self):
    starts = [0] + schedules.BurdaSchedule.stage_end_epochs()
    self.assertEqual(starts, [0, 1, 4, 13, 40, 121, 364, 1093])
    lengths = np.diff(starts + [3280])
    self.assertEqual(list(lengths), [3 ** i for i in range(8)])

  def test_the_rate_of_each_stage_at_its_first_and_last_step(self):
    schedule = schedules.BurdaSchedule(1e-3, STEPS_PER_EPOCH)
    starts = [0] + schedule.stage_end_epochs()
    ends = schedule.stage_end_epochs() + [3280]
    for i, (start, end) in enumerate(zip(starts, ends)):
      # The float32 nearest to 1e-3 * 10^(-i/7), exactly.
      expected = float(np.float32(1e-3 * 10 ** (-i / 7)))
      self.assertEqual(rate(schedule, start * STEPS_PER_EPOCH), expected, i)
      self.assertEqual(rate(schedule, end * STEPS_PER_EPOCH - 1), expected, i)
    # Stage 7 is a tenth of the initial rate, and stays after 3280 epochs.
    self.assertAllClose(rate(schedule, 3280 * STEPS_PER_EPOCH), 1e-4,
                        rtol=1e-6)
    self.assertAllClose(rate(schedule, 10 ** 9), 1e-4, rtol=1e-6)

  def test_computes_under_xla(self):
    schedule = schedules.BurdaSchedule(1e-3, STEPS_PER_EPOCH)
    compiled = tf.function(schedule, jit_compile=True)
    for step in (0, 9, 10, 39, 40, 10 ** 6):
      self.assertEqual(float(compiled(tf.constant(step, tf.int64))),
                       rate(schedule, step))

  def test_refuses_bad_arguments_naming_them(self):
    with self.assertRaisesRegex(ValueError, '`steps_per_epoch`.*0'):
      schedules.BurdaSchedule(1e-3, 0)
    with self.assertRaisesRegex(ValueError, '`initial_learning_rate`'):
      schedules.BurdaSchedule(-1.0, 10)


class LearningRateScheduleTest(tf.test.TestCase, parameterized.TestCase):

  def test_constant_is_the_float_itself(self):
    # A float keeps the optimizer's learning-rate variable, which older
    # checkpoints hold.
    self.assertEqual(schedules.learning_rate_schedule(train_config(), 7),
                     1e-3)

  def test_exponential_decays_by_the_factor_every_n_epochs(self):
    schedule = schedules.learning_rate_schedule(
        train_config(learning_rate_schedule='exponential',
                     learning_rate_decay=0.5, learning_rate_decay_epochs=2),
        STEPS_PER_EPOCH)
    for step in (0, 5, 20, 30, 40):
      self.assertAllClose(rate(schedule, step), 1e-3 * 0.5 ** (step / 20),
                          rtol=1e-6)

  def test_step_decays_by_the_factor_at_each_multiple_of_n_epochs(self):
    schedule = schedules.learning_rate_schedule(
        train_config(learning_rate_schedule='step', learning_rate_decay=0.1,
                     learning_rate_decay_epochs=3), STEPS_PER_EPOCH)
    for step, stage in ((0, 0), (29, 0), (30, 1), (59, 1), (60, 2)):
      self.assertAllClose(rate(schedule, step), 1e-3 * 0.1 ** stage,
                          rtol=1e-6)

  @parameterized.named_parameters(
      ('over_the_epochs', dict(epochs=4), 40),
      ('over_max_steps', dict(epochs=4, max_steps=30), 30),
      ('max_steps_beyond_the_epochs', dict(epochs=4, max_steps=100), 40))
  def test_cosine_falls_to_its_floor_over_the_run(self, length, total):
    floor = 1e-4
    schedule = schedules.learning_rate_schedule(
        train_config(learning_rate_schedule='cosine', min_learning_rate=floor,
                     **length), STEPS_PER_EPOCH)
    self.assertAllClose(rate(schedule, 0), 1e-3, rtol=1e-6)
    self.assertAllClose(rate(schedule, total // 2), (1e-3 + floor) / 2,
                        rtol=1e-5)
    step = total // 4
    expected = floor + (1e-3 - floor) * (1 + math.cos(math.pi * step / total)
                                         ) / 2
    self.assertAllClose(rate(schedule, step), expected, rtol=1e-5)
    self.assertAllClose(rate(schedule, total), floor, rtol=1e-5)
    self.assertAllClose(rate(schedule, 2 * total), floor, rtol=1e-5)

  @parameterized.parameters('burda', 'exponential', 'step', 'cosine',
                            'plateau')
  def test_serializes_to_plain_values_and_back(self, name):
    schedule = schedules.learning_rate_schedule(
        train_config(learning_rate_schedule=name,
                     learning_rate_decay_epochs=2), STEPS_PER_EPOCH)
    serialized = keras.optimizers.schedules.serialize(schedule)
    # Plain JSON: loading it runs no code.
    restored = keras.optimizers.schedules.deserialize(
        json.loads(json.dumps(serialized)))
    self.assertIs(type(restored), type(schedule))
    self.assertEqual(restored.get_config(), schedule.get_config())
    for step in (0, 15, 45, 400):
      self.assertEqual(rate(restored, step), rate(schedule, step))

  def test_refuses_a_step_count_that_is_no_positive_integer(self):
    with self.assertRaisesRegex(ValueError, '`steps_per_epoch`'):
      schedules.learning_rate_schedule(train_config(), 0)


class ReduceLearningRateOnPlateauTest(tf.test.TestCase):

  def make(self, **overrides):
    return schedules.ReduceLearningRateOnPlateau(
        **{'initial_learning_rate': 1.0, 'factor': 0.5, 'patience': 2,
           'min_learning_rate': 0.2, **overrides})

  def test_lowers_after_patience_epochs_without_improvement_to_the_floor(self):
    schedule = self.make()
    values = [-10, -9, -9, -9.5, -8, -8, -8, -8, -8, -8, -8]
    rates, waits = [], []
    for value in values:
      schedule.update(value)
      rates.append(rate(schedule, 0))
      waits.append(int(schedule.wait.numpy()))
    # Equal is no improvement; a reduction restarts the count.
    self.assertAllClose(rates, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2,
                                0.2])
    self.assertEqual(waits, [0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0])
    self.assertEqual(float(schedule.best.numpy()), -8)

  def test_a_nan_value_is_no_improvement(self):
    schedule = self.make(patience=1)
    schedule.update(-5.0)
    self.assertTrue(schedule.update(float('nan')))
    self.assertAllClose(rate(schedule, 0), 0.5)

  def test_the_rate_is_the_same_at_every_step(self):
    schedule = self.make()
    self.assertEqual({rate(schedule, s) for s in (0, 1, 10 ** 6)}, {1.0})

  def test_its_state_is_saved_with_the_optimizer_and_restored(self):
    model_config = ModelConfig(image_shape=(4, 4, 1), hidden_units=(8,),
                               latent_dim=2, posterior='diag')
    config = train_config(learning_rate_schedule='plateau',
                          learning_rate_patience=1, jit_compile=False)
    model = runs.build_model(model_config, config, STEPS_PER_EPOCH)
    schedule = _keras_internals.learning_rate_schedule(model.optimizer)
    self.assertIsInstance(schedule, schedules.ReduceLearningRateOnPlateau)
    schedule.update(-3.0)
    schedule.update(-4.0)
    schedule.update(-3.5)
    saved = (rate(schedule, 0), float(schedule.best.numpy()),
             int(schedule.wait.numpy()))
    self.assertAllClose(saved, (2.5e-4, -3.0, 0))
    path = tf.train.Checkpoint(optimizer=model.optimizer).save(
        os.path.join(tempfile.mkdtemp(), 'ckpt'))

    other = runs.build_model(model_config, config, STEPS_PER_EPOCH)
    other_schedule = _keras_internals.learning_rate_schedule(
        other.optimizer)
    self.assertAllClose(rate(other_schedule, 0), 1e-3)
    tf.train.Checkpoint(optimizer=other.optimizer).restore(
        path).assert_existing_objects_matched()
    self.assertEqual((rate(other_schedule, 0),
                      float(other_schedule.best.numpy()),
                      int(other_schedule.wait.numpy())), saved)

  def test_refuses_bad_arguments_naming_them(self):
    for name, value in (('factor', 1.0), ('factor', 0.0), ('patience', 0),
                        ('min_learning_rate', -1.0)):
      with self.assertRaisesRegex(ValueError, f'`{name}`'):
        self.make(**{name: value})


class OptimizerTest(tf.test.TestCase):

  def test_build_model_gives_adam_the_epsilon_and_the_schedule(self):
    model_config = ModelConfig(image_shape=(4, 4, 1), hidden_units=(8,),
                               latent_dim=2, posterior='diag')
    config = train_config(learning_rate_schedule='burda', adam_epsilon=1e-4,
                          jit_compile=False)
    model = runs.build_model(model_config, config, STEPS_PER_EPOCH)
    self.assertEqual(model.optimizer.epsilon, 1e-4)
    self.assertIsInstance(
        _keras_internals.learning_rate_schedule(model.optimizer),
        schedules.BurdaSchedule)
    # A model built to be used, not trained, gets the constant rate.
    used = runs.build_model(model_config, config)
    self.assertAllClose(float(used.optimizer.learning_rate.numpy()), 1e-3)


if __name__ == '__main__':
  tf.test.main()
