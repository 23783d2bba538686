"""Importance-sampling diagnostics: the effective sample size of the weights.

An importance-sampled estimate of log p(x) (`importance_sampling`) is only
as good as its weights w_k = p(x, z_k) / q(z_k | x) are even. When a few
weights dominate, the estimate rests on those few samples and a larger K (or a better
proposal) is needed; the estimate itself does not show it. Kish's effective
sample size of the normalized weights does:

```none
ESS = (sum_k w_k)^2 / sum_k w_k^2
    = exp(2 * logsumexp_k(log_w) - logsumexp_k(2 * log_w))
```

ESS = K when all weights are equal (q is the exact posterior), and ESS = 1
when one weight carries all the mass. The log-space form never forms a
weight, so it holds for log-weights of any size (MNIST log-weights are about
-100 nats: exp would underflow in float32), and it needs only two running
logsumexps, not the `[K, B]` weights, which is how the chunked estimator
computes it.

  `effective_sample_size`            log_weights `[K, B]` -> ESS `[B]`
  `effective_sample_size_from_sums`  the two logsumexps -> ESS `[B]`
  `summarize_effective_sample_size`  mean, median, min and the fraction of
                                     examples below a threshold

References:
  Kish, Survey Sampling, 1965 (the effective sample size).
  Owen, Monte Carlo theory, methods and examples, 2013, Ch. 9.3.
"""

import numpy as np
import tensorflow as tf

from tfp_vae import _checks

__all__ = ['effective_sample_size', 'effective_sample_size_from_sums',
           'summarize_effective_sample_size', 'check_threshold_fraction',
           'DEFAULT_THRESHOLD_FRACTION']

# An example is flagged when its ESS is below 1% of K: at K = 5000 fewer than
# 50 samples carry the estimate. The ESS of a proposal that is good but not
# exact on MNIST is typically a few percent of K, so flagged examples are the
# ones whose estimate is dominated by a handful of samples.
DEFAULT_THRESHOLD_FRACTION = 0.01


def effective_sample_size(log_weights, axis=0):
  """Kish's effective sample size of normalized importance weights.

  Args:
    log_weights: float Tensor, e.g. `[K, B]`: log w for K samples of each of
      B examples. Entries of -inf (weight 0, e.g. padding) are allowed, as
      long as each example has one finite entry.
    axis: the sample axis (default 0).

  Returns:
    ESS, `log_weights`' shape without `axis` (e.g. `[B]`), in [1, K] up to
    rounding.

  ```none
  ESS = exp(2 * logsumexp(log_weights) - logsumexp(2 * log_weights))
  ```
  """
  log_weights = tf.convert_to_tensor(log_weights, name='log_weights')
  return effective_sample_size_from_sums(
      tf.reduce_logsumexp(log_weights, axis=axis),
      tf.reduce_logsumexp(2. * log_weights, axis=axis))


def effective_sample_size_from_sums(log_sum_weights, log_sum_squared_weights):
  """ESS from `logsumexp(log_w)` and `logsumexp(2 * log_w)`, per example.

  What a chunked estimator keeps instead of the weights: two running
  logsumexps over the chunks (see
  `importance_sampling.importance_sampling_statistics`).

  Args:
    log_sum_weights: `[B]`, log sum_k w_k.
    log_sum_squared_weights: `[B]`, log sum_k w_k^2.

  Returns:
    ESS `[B]`: `exp(2 * log_sum_weights - log_sum_squared_weights)`.
  """
  log_sum_weights = tf.convert_to_tensor(log_sum_weights,
                                         name='log_sum_weights')
  log_sum_squared_weights = tf.convert_to_tensor(
      log_sum_squared_weights, dtype=log_sum_weights.dtype,
      name='log_sum_squared_weights')
  # Both logsumexps are shifted by the same max log-weight internally, so the
  # difference is that of two O(log K) numbers: no overflow, no cancellation
  # of large values.
  return tf.exp(2. * log_sum_weights - log_sum_squared_weights)


def check_threshold_fraction(threshold_fraction):
  """Returns `threshold_fraction` as a float; ValueError unless in (0, 1]."""
  try:
    threshold_fraction = float(threshold_fraction)
  except (TypeError, ValueError):
    raise ValueError('`threshold_fraction` must be a number in (0, 1]; got '
                     f'{threshold_fraction!r}.') from None
  if not 0 < threshold_fraction <= 1:  # False for nan too.
    raise ValueError('`threshold_fraction` must be in (0, 1]; got '
                     f'{threshold_fraction}.')
  return threshold_fraction


def summarize_effective_sample_size(
    effective_sample_sizes, num_importance_samples,
    threshold_fraction=DEFAULT_THRESHOLD_FRACTION):
  """Summary of per-example effective sample sizes, for a report.

  Args:
    effective_sample_sizes: array-like `[N]`, one ESS per example.
    num_importance_samples: Python `int` K, the samples behind each ESS.
    threshold_fraction: Python `float` in (0, 1]; examples with
      ESS < threshold_fraction * K are counted as too few (default 0.01).

  Returns:
    dict of JSON-serialisable values: 'mean', 'median', 'min' (ESS, in
    samples), 'mean_fraction' (mean ESS / K), 'threshold' (in samples),
    'fraction_below_threshold' (of the N examples), 'num_importance_samples'
    and 'num_examples'.

  Raises:
    ValueError: for empty or non-1-D `effective_sample_sizes`, a
      non-positive `num_importance_samples`, or `threshold_fraction`
      outside (0, 1].
  """
  values = np.asarray(effective_sample_sizes, np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError('`effective_sample_sizes` must be a non-empty 1-D array; '
                     f'got shape {values.shape}.')
  num_importance_samples = _checks.check_positive_int(
      num_importance_samples, 'num_importance_samples')
  threshold_fraction = check_threshold_fraction(threshold_fraction)
  threshold = threshold_fraction * num_importance_samples
  return {
      'mean': float(np.mean(values)),
      'median': float(np.median(values)),
      'min': float(np.min(values)),
      'mean_fraction': float(np.mean(values) / num_importance_samples),
      'threshold': float(threshold),
      'fraction_below_threshold': float(np.mean(values < threshold)),
      'num_importance_samples': int(num_importance_samples),
      'num_examples': int(values.size),
  }
