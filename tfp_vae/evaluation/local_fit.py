"""The local posterior q*_x: the best member of q's family for one x alone.

For an example x, q*_x maximizes the ELBO over the parameters of the
encoder's posterior family, with the decoder and prior fixed:

```none
q*_x = argmax_{q in family} E_q[log p(x|z) + log p(z) - log q(z)]
```

The family is given by a posterior layer (`distribution_layers`): its input,
the `params_size` numbers the encoder predicts for each example, is the free
variable, and the layer's `new(params)` builds q*_x. Weights the layer holds
itself stay fixed, as the decoder's do. `fit_local_posteriors` runs Adam on
every example's row of parameters at once, in one XLA-compiled
`tf.while_loop` per batch (no Python loop over examples or steps), with
sticking-the-landing gradients and a per-example stopping rule.
`gaps.inference_gaps` uses q*_x to split the inference gap; the
true-posterior figure (`plotting.true_posterior`) draws it.

References:
  Cremer, Li & Duvenaud, Inference Suboptimality in Variational
    Autoencoders, ICML 2018.
  Roeder, Wu & Duvenaud, Sticking the Landing: Simple, Lower-Variance
    Gradient Estimators for Variational Inference, NeurIPS 2017.
  Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfp_vae import _checks
from tfp_vae import names
from tfp_vae import objectives
from tfp_vae.evaluation import importance_sampling
from tfp_vae.evaluation._flat_event import flat_event_log_prob

__all__ = ['LocalPosteriorFit', 'fit_local_posteriors', 'check_has_density',
           'DEFAULT_MAX_STEPS', 'DEFAULT_NUM_SAMPLES', 'DEFAULT_LEARNING_RATE',
           'DEFAULT_CHECK_EVERY', 'DEFAULT_PATIENCE', 'DEFAULT_TOLERANCE',
           'DEFAULT_BATCH_SIZE']

# Cap on the Adam steps of the local fit. On D=16 MLPs trained for 2 epochs
# on binarized MNIST, all of 200 test images stopped on the convergence rule
# with the defaults below: after 388 steps on average (at most 900) for
# diag, 688 (at most 1150) for full_cov (benchmarks/gap_benchmark.py).
DEFAULT_MAX_STEPS = names.GAP_MAX_STEPS
# Latent samples per example and step for the fit's ELBO gradient.
DEFAULT_NUM_SAMPLES = names.GAP_SAMPLES
# Adam's step size on the raw parameters (locations, raw scales). The
# encoder's q is usually within a few tenths of q* per coordinate, so steps
# of ~0.01 reach it in a few hundred steps without overshooting by more
# than the gradient noise does anyway.
DEFAULT_LEARNING_RATE = 1e-2
# Convergence: every `check_every` steps the mean fit-ELBO estimate over the
# last `check_every` steps is compared with the best such window mean so
# far; an example stops after `patience` windows in a row that improve it by
# less than `tolerance` nats. A window's mean averages check_every *
# num_samples = 500 samples, so its noise (~0.1 nats on MNIST) is below the
# improvement of an example that is still climbing.
DEFAULT_CHECK_EVERY = 50
DEFAULT_PATIENCE = 3
DEFAULT_TOLERANCE = 0.01

# Second half of the stateless seed `[seed, stream]` of the fit's noise; the
# importance samples use `importance_sampling`'s own stream of the same seed.
_FIT_STREAM = 7101

# Examples fitted together when the caller gives none, as in the estimator.
DEFAULT_BATCH_SIZE = importance_sampling.DEFAULT_BATCH_SIZE

# Adam's moment decay rates and denominator offset (Kingma & Ba's defaults).
_ADAM_BETA_1, _ADAM_BETA_2, _ADAM_EPSILON = 0.9, 0.999, 1e-8



class LocalPosteriorFit(NamedTuple):
  """Result of `fit_local_posteriors`, numpy arrays with one row per example."""
  params: np.ndarray     # [N, params_size]: the posterior layer's input for q*
  num_steps: np.ndarray  # [N] int: Adam steps taken before stopping
  converged: np.ndarray  # [N] bool: stopped by the rule, not by the cap


def _make_batch_fit(posterior_fn, decode, prior, num_samples, max_steps,
                    learning_rate, check_every, patience, tolerance,
                    jit_compile):
  """The compiled per-batch fit: one `tf.while_loop` over Adam steps."""

  def local_elbo(images, params, seed):
    """Monte Carlo ELBO of posterior_fn(params), `[B]`, and its gradient path.

    Sticking the landing (Roeder et al. 2017): log q is evaluated with the
    parameters held fixed, so the gradient flows through the samples only.
    The dropped score term has expectation 0, so the gradient stays
    unbiased, and its variance vanishes as q approaches p(z|x): the fit
    settles on q* instead of jittering around it, which is what lets the
    approximation gap of an exact family come out as 0.
    """
    approx_posterior = posterior_fn(params)
    latents = approx_posterior.sample(num_samples,
                                      seed=seed)  # [S, B, D]
    held_posterior = posterior_fn(tf.stop_gradient(params))
    log_weights = (flat_event_log_prob(decode(latents), images) +
                   prior.log_prob(latents) -
                   held_posterior.log_prob(latents))  # [S, B]
    return tf.reduce_mean(log_weights, axis=0)  # [B]

  def fit(images, initial_params, batch_seed):
    dtype = initial_params.dtype
    batch_size = tf.shape(initial_params)[0]
    zeros = tf.zeros_like(initial_params)  # [B, P]
    no_examples = tf.zeros([batch_size], tf.bool)
    state = dict(
        step=tf.constant(0), params=initial_params,
        first_moment=zeros, second_moment=zeros,
        window_sum=tf.zeros([batch_size], dtype),
        best_window_mean=tf.fill([batch_size], tf.constant(-np.inf, dtype)),
        stalls=tf.zeros([batch_size], tf.int32),
        num_steps=tf.zeros([batch_size], tf.int32),
        converged=no_examples)
    beta_1 = tf.constant(_ADAM_BETA_1, dtype)
    beta_2 = tf.constant(_ADAM_BETA_2, dtype)

    def keep_going(state):
      return tf.logical_and(state['step'] < max_steps,
                            tf.logical_not(tf.reduce_all(state['converged'])))

    def body(state):
      step, params = state['step'], state['params']
      seed = tf.cast(tf.random.experimental.stateless_fold_in(
          batch_seed, tf.cast(step, tf.int64)), tf.int32)
      with tf.GradientTape() as tape:
        tape.watch(params)
        elbo = local_elbo(images, params, seed)  # [B]
        # Example b's ELBO depends on row b of params only, so the gradient
        # of the sum is every example's own gradient at once.
        loss = -tf.reduce_sum(elbo)
      gradient = tape.gradient(loss, params)  # [B, P]

      # Adam, per example and coordinate; examples that have converged keep
      # their parameters and moments.
      active = tf.logical_not(state['converged'])  # [B]
      first_moment = (beta_1 * state['first_moment'] +
                      (1. - beta_1) * gradient)
      second_moment = (beta_2 * state['second_moment'] +
                       (1. - beta_2) * tf.square(gradient))
      t = tf.cast(step + 1, dtype)
      step_size = (learning_rate * tf.sqrt(1. - beta_2**t) /
                   (1. - beta_1**t))
      new_params = params - step_size * first_moment / (
          tf.sqrt(second_moment) + _ADAM_EPSILON)
      active_rows = active[:, tf.newaxis]  # [B, 1]
      params = tf.where(active_rows, new_params, params)
      first_moment = tf.where(active_rows, first_moment,
                              state['first_moment'])
      second_moment = tf.where(active_rows, second_moment,
                               state['second_moment'])

      # Convergence, checked at the end of every window of check_every steps.
      window_sum = state['window_sum'] + tf.where(active, elbo,
                                                  tf.zeros_like(elbo))
      window_mean = window_sum / check_every
      improved = window_mean > state['best_window_mean'] + tolerance
      window_ends = tf.equal((step + 1) % check_every, 0)
      best_window_mean = tf.where(
          window_ends & active,
          tf.maximum(state['best_window_mean'], window_mean),
          state['best_window_mean'])
      stalls = tf.where(window_ends & active,
                        tf.where(improved, 0, state['stalls'] + 1),
                        state['stalls'])
      converged = state['converged'] | (active & (stalls >= patience))
      window_sum = tf.where(window_ends, tf.zeros_like(window_sum),
                            window_sum)
      return [dict(step=step + 1, params=params, first_moment=first_moment,
                   second_moment=second_moment, window_sum=window_sum,
                   best_window_mean=best_window_mean, stalls=stalls,
                   num_steps=state['num_steps'] + tf.cast(active, tf.int32),
                   converged=converged)]

    (state,) = tf.while_loop(keep_going, body, [state],
                             parallel_iterations=1)
    return state['params'], state['num_steps'], state['converged']

  return tf.function(fit, jit_compile=jit_compile, reduce_retracing=True)


def fit_local_posteriors(images, initial_params, posterior_fn, decode, prior,
                         max_steps=DEFAULT_MAX_STEPS,
                         num_samples=DEFAULT_NUM_SAMPLES,
                         learning_rate=DEFAULT_LEARNING_RATE,
                         check_every=DEFAULT_CHECK_EVERY,
                         patience=DEFAULT_PATIENCE,
                         tolerance=DEFAULT_TOLERANCE, batch_size=None,
                         seed=0, jit_compile=True):
  """Fits q*_x = argmax ELBO over one posterior family, for each example.

  Starting from `posterior_fn(initial_params)` (typically the encoder's
  q(z|x)), maximizes each example's ELBO over its own row of parameters with
  Adam, `num_samples` reparameterized samples per step, the decoder and
  prior fixed. All examples of a batch move together in one
  `tf.while_loop` compiled by XLA; an example stops when its ELBO has
  stopped improving (see below), the batch when all have stopped or after
  `max_steps` steps.

  Args:
    images: array `[N, ...]`, the examples x.
    initial_params: array `[N, params_size]`, the starting raw parameters,
      e.g. `model.encoder(images)`.
    posterior_fn: callable, params `[B, params_size]` -> q with batch `[B]`,
      event `[D]`, reparameterized samples and a density, e.g.
      `model.posterior_layer` or a `distribution_layers` posterior layer.
    decode: callable, latents `[S, B, D]` -> p(x|z) with batch `[S, B]`.
    prior: p(z), event `[D]`.
    max_steps: Python `int` > 0, the cap on Adam steps (default 2000).
    num_samples: Python `int` S > 0, latent samples per example and step
      (default 10).
    learning_rate: Python `float` > 0, Adam's step size (default 0.01).
    check_every: Python `int` > 0, steps per convergence window (default 50).
    patience: Python `int` > 0, windows without improvement before an
      example stops (default 3).
    tolerance: Python `float` >= 0, in nats: the least improvement of a
      window's mean ELBO estimate over the best so far that counts (default
      0.01).
    batch_size: examples fitted together (default: min(N, 100)).
    seed: Python `int`, seeds the fit's sampling noise.
    jit_compile: compile the loop with XLA (default True).

  Returns:
    `LocalPosteriorFit`: 'params' `[N, params_size]` (the dtype of
    `initial_params`), 'num_steps' `[N]` and 'converged' `[N]`.

  Raises:
    ValueError: for a bad argument (named), mismatched row counts, or a
      point-mass family (it has no density, so no ELBO to climb).

  ```none
  g_t = grad_params (1/S) sum_s [log p(x|z_s) + log p(z_s)
                                 - log q_stop(z_s)],  z_s ~ q_params
  params_t = Adam(params_{t-1}, -g_t)           (one row per example)
  window_mean_w = mean of the ELBO estimates of the w-th window of steps
  stop when window_mean_w <= max_{v < w} window_mean_v + tolerance
            for `patience` windows in a row
  ```

  The noise of step t is drawn for the whole batch from `fold_in([seed,
  stream, first row], t)`: the fit is reproducible for the same seed and
  batch size; another batch size gives another (equally good) fit.
  """
  images = np.asarray(images)
  initial_params = np.asarray(initial_params)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  num_examples = images.shape[0]
  if initial_params.ndim != 2 or initial_params.shape[0] != num_examples:
    raise ValueError('`initial_params` must have shape [num_examples='
                     f'{num_examples}, params_size]; got '
                     f'{initial_params.shape}.')
  max_steps = _checks.check_positive_int(max_steps, 'max_steps')
  num_samples = _checks.check_positive_int(num_samples, 'num_samples')
  learning_rate = _checks.check_positive_float(learning_rate,
                                               'learning_rate')
  check_every = _checks.check_positive_int(check_every, 'check_every')
  patience = _checks.check_positive_int(patience, 'patience')
  tolerance = _checks.check_positive_float(tolerance, 'tolerance',
                                           allow_zero=True)
  if batch_size is not None:
    _checks.check_positive_int(batch_size, 'batch_size')
  batch_size = batch_size or min(num_examples, DEFAULT_BATCH_SIZE)
  seed = _checks.check_integer(seed, 'seed')
  check_has_density(posterior_fn(initial_params[:1]))

  fit_batch = _make_batch_fit(
      posterior_fn, decode, prior, num_samples, max_steps, learning_rate,
      check_every, patience, tolerance, jit_compile)
  stream_seed = tf.constant([seed, _FIT_STREAM], tf.int64)
  results = []
  for start in range(0, num_examples, batch_size):
    rows = slice(start, min(start + batch_size, num_examples))
    batch_seed = tf.random.experimental.stateless_fold_in(stream_seed, start)
    results.append([value.numpy() for value in fit_batch(
        tf.convert_to_tensor(images[rows]),
        tf.convert_to_tensor(initial_params[rows]), batch_seed)])
  params, num_steps, converged = (np.concatenate(column)
                                  for column in zip(*results))
  return LocalPosteriorFit(params=params, num_steps=num_steps,
                           converged=converged)


def check_has_density(approx_posterior):
  if objectives.is_point_mass(approx_posterior):
    raise ValueError(
        'The gap analysis needs a posterior family with a density; got a '
        'point mass ('
        f'{type(objectives.unwrap_distribution(approx_posterior)).__name__}'
        '), which has no ELBO to fit and no importance weights.')
