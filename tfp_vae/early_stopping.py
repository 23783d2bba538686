"""Early stopping on the validation ELBO, with its state in the checkpoint.

Keras's `EarlyStopping` keeps its best value, patience counter and best
weights in Python attributes, so a run killed and resumed starts its
patience afresh and forgets its best weights. `EarlyStoppingState` keeps
them in variables that `training.train` saves in every checkpoint (under
the name `early_stopping`), so a resumed run stops at the epoch an
uninterrupted one would, and ends with the same best weights.

Semantics are those of `keras.callbacks.EarlyStopping(monitor='val_elbo',
mode='max', min_delta=0, restore_best_weights=True)`, which the package used
before:

```none
on each epoch's end, with the epoch's validation ELBO `value`:
  if no epoch has been seen:  best_weights = weights     (even if value is NaN)
  wait = wait + 1
  if value > best:            best = value; best_epoch = epoch
                              best_weights = weights; wait = 0
  stop if wait >= patience
at the end of training:       weights = best_weights
```
"""

import numpy as np
import tensorflow as tf

__all__ = ['EarlyStoppingState']


class EarlyStoppingState(tf.Module):
  """Best validation ELBO, its epoch and weights, and the patience counter.

  Args:
    weights: the model's weights (`model.weights`, what Keras's
      `get_weights` returns): the state keeps variables of their shapes and
      dtypes for the best epoch's copy. Create the state in the model's
      distribution-strategy scope.
    name: Python `str`, the module's name.

  Attributes (variables, saved in checkpoints):
    best: float64, the best validation value so far (-inf before any).
    best_epoch: int64, its 1-based epoch (0 before any epoch was seen).
    wait: int64, epochs since the best one.
    best_weights: copies of `weights` at `best_epoch`.
  """

  def __init__(self, weights, name='early_stopping'):
    super().__init__(name=name)
    with self.name_scope:
      self.best = tf.Variable(-np.inf, dtype=tf.float64, trainable=False,
                              name='best')
      self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name='best_epoch')
      self.wait = tf.Variable(0, dtype=tf.int64, trainable=False,
                              name='wait')
      self.best_weights = [
          tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False,
                      name=f'best_weight_{i}')
          for i, w in enumerate(weights)]

  def update(self, epoch, value, weights):
    """Takes the validation value at the end of (1-based) `epoch`.

    Args:
      epoch: Python `int`, the 1-based epoch that just ended.
      value: its validation ELBO.
      weights: the model's weights now (`model.weights`).

    Returns:
      True if `value` is the best so far.
    """
    if int(self.best_epoch.numpy()) == 0:
      # As Keras: a run whose first value is NaN still has best weights.
      self._keep_weights(epoch, weights)
    self.wait.assign_add(1)
    # NaN compares false: never an improvement.
    if float(value) > float(self.best.numpy()):
      self.best.assign(float(value))
      self._keep_weights(epoch, weights)
      self.wait.assign(0)
      return True
    return False

  def stopped(self, patience):
    """Whether `patience` epochs have passed without a better value."""
    return int(self.wait.numpy()) >= patience

  def has_best_weights(self):
    return int(self.best_epoch.numpy()) > 0

  def best_weight_values(self):
    """The kept weights as numpy arrays, for `model.set_weights`."""
    return [v.numpy() for v in self.best_weights]

  def _keep_weights(self, epoch, weights):
    for kept, weight in zip(self.best_weights, weights, strict=True):
      kept.assign(weight)
    self.best_epoch.assign(epoch)
