"""Training steps fused into one XLA call per Keras execution.

`make_train_function(model, keras_train_function)` is what
`VariationalAutoencoder.make_train_function` returns: Keras's train
function, or where it applies, one that runs each execution's steps inside
one XLA-compiled while loop.
"""

import tensorflow as tf

from tfp_vae import _keras_internals

__all__ = ['make_train_function']


def make_train_function(model, keras_train_function):
  """Keras's train function, with each execution's steps in one XLA call.

  tf_keras runs `steps_per_execution` steps as a TF while loop that, per
  step, pulls a batch and launches the XLA-compiled `train_step`. Here one
  execution first pulls its n batches into a `TensorArray` (`[n, B, ...]`),
  then runs all n steps in one XLA-compiled while loop: the same steps,
  order, noise and step counters (weights equal to rounding;
  tests/test_model.py), one `train_function` call per execution for the
  callbacks. Why: the per-step launch and host round trip are a sizeable
  share of a small model's step (BENCHMARKS.md, "Fused steps").

  The stacked batches always hold `steps_per_execution` (as compiled)
  steps, `[n, B, ...]` with the unused rows zero: `fit` runs an epoch's
  last execution with fewer steps when the epoch is not a multiple of n
  (390 = 7 * 50 + 40 on binarized MNIST), and a stack of that many would
  be a second input shape, so a second XLA compilation of the whole loop
  (as long as the first) in the first epoch.

  Keras's own function is kept where fusion does not apply: XLA off,
  eager runs, more than one replica (XLA cannot compile a step replicated
  over logical CPU devices), a parameter-server coordinator, an
  autotuned `steps_per_execution`, or batches whose shape is not fully
  static (their steps cannot be stacked).

  Args:
    model: a compiled `tf_keras.Model` whose `train_step` returns its
      `get_metrics_result()` (the logs' structure before the first step).
    keras_train_function: what Keras's own `make_train_function` built.

  Returns:
    The train function: iterator -> logs of the execution's last step.
    The fused loop, when used, is kept as `model._fused_steps` (untracked).
  """
  if (not model.jit_compile or model.run_eagerly or
      _keras_internals.cluster_coordinator(model) is not None or
      model.distribute_strategy.num_replicas_in_sync != 1 or
      _keras_internals.steps_per_execution_variable(model) is None or
      model.autotune_steps_per_execution):
    return keras_train_function
  # Read now, outside any execution: `fit` calls this before its first
  # one, while the variable still holds the compiled value (it lowers it
  # for the duration of an epoch's shorter last execution).
  capacity = int(
      _keras_internals.steps_per_execution_variable(model).numpy())

  def run_steps(batches, num_steps):
    """num_steps train steps on batches[0], ..., batches[num_steps - 1]."""

    def one_step(step, logs):
      del logs  # Only the last step's are returned.
      batch = tf.nest.map_structure(lambda b: b[step], batches)
      return step + 1, model.train_step(batch)

    # One counted while loop over every step, so `train_step` is traced
    # and compiled once: a first step peeled off before the loop (to give
    # the loop's logs their structure) would be a second copy of the whole
    # step in the XLA program, doubling its tracing and compilation. The
    # logs start as the metrics' results, which is what `train_step`
    # returns. Not `for i in tf.range(num_steps)`: XLA builds that range
    # as an array of num_steps elements, which makes num_steps a
    # compile-time constant, and so each new number of steps (an epoch's
    # shorter last execution, a resumed epoch's first) a new compilation.
    _, logs = tf.while_loop(
        lambda step, logs: step < num_steps, one_step,
        (tf.constant(0), model.get_metrics_result()))
    _keras_internals.train_counter(model).assign_add(
        tf.cast(num_steps, tf.int64))
    return logs

  # Without AutoGraph: this loop is written as TF control flow, and the
  # step below it has none, so converting their source (and every
  # function they call) would only add seconds to the first epoch.
  run_steps = tf.function(run_steps, jit_compile=True,
                          reduce_retracing=True, autograph=False)
  # Not a tracked attribute: checkpoints and SavedModels stay as they were.
  object.__setattr__(model, '_fused_steps', run_steps)

  def train_function(iterator):
    element_spec = iterator.element_spec
    specs = tf.nest.flatten(element_spec)
    if not all(s.shape.is_fully_defined() for s in specs):
      return keras_train_function(iterator)
    max_steps = tf.minimum(
        tf.cast(_keras_internals.steps_per_execution_variable(model),
                tf.int32), capacity)
    # A static size: the stack below is [capacity, B, ...] whatever
    # max_steps is; rows never written stack as zeros, and run_steps
    # leaves them alone.
    arrays = [tf.TensorArray(s.dtype, size=capacity, element_shape=s.shape)
              for s in specs]
    # The first batch with `next`, so an exhausted iterator raises
    # OutOfRangeError as Keras expects; a dataset that ends mid-execution
    # yields a shorter execution, not lost steps.
    arrays = [a.write(0, v)
              for a, v in zip(arrays, tf.nest.flatten(next(iterator)))]
    num_steps = tf.constant(1)
    for i in tf.range(1, max_steps):
      optional = iterator.get_next_as_optional()
      if not optional.has_value():
        break
      arrays = [a.write(i, v) for a, v in
                zip(arrays, tf.nest.flatten(optional.get_value()))]
      num_steps += 1
    batches = tf.nest.pack_sequence_as(element_spec,
                                       [a.stack() for a in arrays])
    return model.distribute_strategy.run(run_steps,
                                         args=(batches, num_steps))

  return tf.function(train_function, reduce_retracing=True)

