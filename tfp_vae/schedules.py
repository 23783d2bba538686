"""Learning-rate schedules: the rate of every training step, by name.

`learning_rate_schedule(train_config, steps_per_epoch)` turns
`--learning_rate_schedule` and its settings into what `keras.optimizers.Adam`
takes as its `learning_rate`:

  constant     the float `--learning_rate` (the optimizer then holds it in a
               variable, as before schedules existed, so older checkpoints
               keep restoring);
  burda        `BurdaSchedule` (Burda et al., 2016);
  exponential  Keras's `ExponentialDecay` over epochs;
  step         the same with `staircase=True`;
  cosine       Keras's `CosineDecay` to a floor, over the run's length;
  plateau      `ReduceLearningRateOnPlateau`, lowered when the validation
               ELBO stops improving.

Every schedule but the last is a function of the optimizer's step counter
alone, so a resumed run, whose counter the checkpoint restores, continues it
exactly. Reduce-on-plateau depends on the validation metrics of past epochs:
its state (current rate, best value, epochs without improvement) lives in
variables that the optimizer tracks, so the checkpoint holds them too.

Each schedule is a registered, serializable tf_keras `LearningRateSchedule`
whose `get_config` holds plain values only.
"""

import numpy as np
import tensorflow as tf

from tfp_vae import _checks
from tfp_vae._keras import keras

__all__ = ['BurdaSchedule', 'ReduceLearningRateOnPlateau',
           'learning_rate_schedule', 'run_steps']

_PACKAGE = 'tfp_vae'


def run_steps(train_config, steps_per_epoch):
  """The number of steps a run trains: its epochs, or `max_steps` if fewer."""
  steps = train_config.epochs * steps_per_epoch
  if train_config.max_steps:
    steps = min(steps, train_config.max_steps)
  return steps


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BurdaSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """Burda et al.'s schedule: 3^i epochs at `initial * 10^(-i/7)`, i = 0..7.

  Stage i lasts 3^i epochs, so the eight stages take
  1 + 3 + 9 + ... + 2187 = 3280 epochs; after them the rate stays at the
  last stage's, `initial / 10`.

  Args:
    initial_learning_rate: Python `float` > 0, the rate of stage 0 (Burda et
      al. used 1e-3, with Adam's epsilon 1e-4).
    steps_per_epoch: Python `int` > 0, optimizer steps in one epoch.
    name: optional name of the schedule.

  ```none
  epoch = step // steps_per_epoch
  stage = number of i in 0..6 with epoch >= (3^(i+1) - 1) / 2
        # stage 0: epoch 0; stage 1: epochs 1-3; stage 2: epochs 4-12; ...
  learning_rate(step) = initial_learning_rate * 10^(-stage / 7)
  ```

  #### References

  [1]: Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
       Autoencoders. In _ICLR_, 2016 (Section 5 and Appendix D).
       https://arxiv.org/abs/1509.00519
  """

  NUM_STAGES = 8

  def __init__(self, initial_learning_rate, steps_per_epoch, name=None):
    super().__init__()
    self.initial_learning_rate = _checks.check_positive_float(
        initial_learning_rate, 'initial_learning_rate')
    self.steps_per_epoch = _checks.check_positive_int(steps_per_epoch,
                                                      'steps_per_epoch')
    self.name = name

  @classmethod
  def stage_end_epochs(cls):
    """The epochs at which stages 1..7 begin: 1, 4, 13, 40, 121, 364, 1093."""
    return [(3 ** (i + 1) - 1) // 2 for i in range(cls.NUM_STAGES - 1)]

  @classmethod
  def stage_learning_rates(cls, initial_learning_rate):
    """`initial * 10^(-i/7)` for the stages i = 0..7, as Python floats."""
    return [initial_learning_rate * 10 ** (-i / 7)
            for i in range(cls.NUM_STAGES)]

  def __call__(self, step):
    with tf.name_scope(self.name or 'BurdaSchedule'):
      # Stage boundaries in steps; int64 like the optimizer's step counter.
      boundaries = tf.constant(
          [epoch * self.steps_per_epoch for epoch in self.stage_end_epochs()],
          tf.int64)
      stage = tf.reduce_sum(tf.cast(
          tf.cast(step, tf.int64) >= boundaries, tf.int32))
      # The rates as Python computes them, so each stage's rate is the
      # float32 nearest to `initial * 10**(-i/7)`, whatever the step.
      rates = tf.constant(self.stage_learning_rates(
          self.initial_learning_rate), tf.float32)
      return tf.gather(rates, stage)

  def get_config(self):
    return {'initial_learning_rate': self.initial_learning_rate,
            'steps_per_epoch': self.steps_per_epoch, 'name': self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReduceLearningRateOnPlateau(
    keras.optimizers.schedules.LearningRateSchedule, tf.Module):
  """A learning rate lowered when the validation ELBO stops improving.

  `update(value)` is called once per epoch with the epoch's validation ELBO
  (higher is better); the rate the optimizer reads is the current value of
  a variable, whatever the step. The state lives in variables (tracked by
  the optimizer, whose `_learning_rate` this is, so checkpoints hold it):

    learning_rate  the current rate (float32)
    best           the best validation value so far (float64, -inf at first)
    wait           epochs since the last improvement (int64)

  Args:
    initial_learning_rate: Python `float` > 0.
    factor: Python `float` in (0, 1), multiplies the rate at each reduction.
    patience: Python `int` > 0, epochs without improvement before a
      reduction.
    min_learning_rate: Python `float` >= 0, the rate is never lowered below
      it.
    name: optional name (of the schedule and of its variables' scope).

  ```none
  on update(value):
    if value > best:        best = value; wait = 0
    else:                   wait = wait + 1
    if wait >= patience:    learning_rate = max(learning_rate * factor,
                                                min_learning_rate)
                            wait = 0
  ```

  As Keras's `ReduceLROnPlateau` with `min_delta=0` and no cool-down, but
  its state is part of the checkpoint, so a resumed run continues it.
  """

  def __init__(self, initial_learning_rate, factor, patience,
               min_learning_rate=0.0, name=None):
    tf.Module.__init__(self, name=name or 'reduce_learning_rate_on_plateau')
    self.initial_learning_rate = _checks.check_positive_float(
        initial_learning_rate, 'initial_learning_rate')
    self.factor = _checks.check_positive_float(factor, 'factor')
    if self.factor >= 1:
      raise ValueError(f'`factor` must be in (0, 1); got {factor}.')
    self.patience = _checks.check_positive_int(patience, 'patience')
    self.min_learning_rate = _checks.check_positive_float(
        min_learning_rate, 'min_learning_rate', allow_zero=True)
    with self.name_scope:
      self.learning_rate = tf.Variable(self.initial_learning_rate,
                                       dtype=tf.float32, trainable=False,
                                       name='learning_rate')
      self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False,
                              name='best')
      self.wait = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name='wait')

  def __call__(self, step):
    del step  # The rate depends on past validation values, not the step.
    return tf.identity(self.learning_rate)

  def update(self, value):
    """Takes an epoch's validation value; returns True if the rate dropped."""
    value = float(value)
    # NaN compares false: an epoch with a NaN value counts as no improvement.
    if value > float(self.best.numpy()):
      self.best.assign(value)
      self.wait.assign(0)
      return False
    self.wait.assign_add(1)
    if int(self.wait.numpy()) < self.patience:
      return False
    self.wait.assign(0)
    rate = float(self.learning_rate.numpy())
    lowered = max(rate * self.factor, self.min_learning_rate)
    self.learning_rate.assign(lowered)
    return lowered < rate

  def get_config(self):
    return {'initial_learning_rate': self.initial_learning_rate,
            'factor': self.factor, 'patience': self.patience,
            'min_learning_rate': self.min_learning_rate, 'name': self.name}


def learning_rate_schedule(train_config, steps_per_epoch):
  """The `learning_rate` for Adam that `train_config` asks for.

  Args:
    train_config: `config.TrainConfig`; reads `learning_rate`,
      `learning_rate_schedule` and the settings of the chosen schedule.
    steps_per_epoch: Python `int` > 0, optimizer steps in one epoch (the
      schedules are set in epochs; the optimizer counts steps).

  Returns:
    A Python `float` for 'constant', else a `LearningRateSchedule`.

  Raises:
    ValueError: for a `steps_per_epoch` that is not a positive integer.

  With `lr0 = --learning_rate`, `decay = --learning_rate_decay`,
  `N = --learning_rate_decay_epochs * steps_per_epoch`,
  `floor = --min_learning_rate` and `T` the steps of the run (`--epochs`
  times `steps_per_epoch`, or `--max_steps` if fewer):

  ```none
  constant:     lr(step) = lr0
  burda:        see `BurdaSchedule`
  exponential:  lr(step) = lr0 * decay^(step / N)
  step:         lr(step) = lr0 * decay^floor(step / N)
  cosine:       lr(step) = floor + (lr0 - floor)
                           * (1 + cos(pi * min(step, T) / T)) / 2
  plateau:      see `ReduceLearningRateOnPlateau` (factor `decay`,
                patience `--learning_rate_patience` epochs, minimum `floor`)
  ```

  #### References

  [1]: Ilya Loshchilov, Frank Hutter. SGDR: Stochastic Gradient Descent with
       Warm Restarts. In _ICLR_, 2017 (the cosine schedule).
  """
  steps_per_epoch = _checks.check_positive_int(steps_per_epoch,
                                               'steps_per_epoch')
  config = train_config
  name = config.learning_rate_schedule
  if name == 'constant':
    return config.learning_rate
  if name == 'burda':
    return BurdaSchedule(config.learning_rate, steps_per_epoch)
  if name in ('exponential', 'step'):
    return keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=config.learning_rate_decay_epochs * steps_per_epoch,
        decay_rate=config.learning_rate_decay, staircase=name == 'step')
  if name == 'cosine':
    # Keras's floor is a fraction of the initial rate.
    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=run_steps(config, steps_per_epoch),
        alpha=config.min_learning_rate / config.learning_rate)
  if name == 'plateau':
    return ReduceLearningRateOnPlateau(
        config.learning_rate, factor=config.learning_rate_decay,
        patience=config.learning_rate_patience,
        min_learning_rate=config.min_learning_rate)
  raise ValueError(f'Unknown --learning_rate_schedule={name!r}.')

