"""Statistics over seeds: summaries, paired differences, t-intervals.

For each metric, per family: the mean, standard deviation, minimum and
maximum over seeds (`summarize_over_seeds`); and the difference of each
family from a baseline, paired by seed, with a 95% t-interval over seeds
(`paired_difference`). With one seed there is no spread over seeds; the
interval then comes from the standard errors over test examples of the two
estimates, and says so.
"""

import functools
import math
import statistics

import numpy as np
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = ['t_quantile', 'summarize_over_seeds', 'paired_difference',
           'seconds_per_epoch']


_CONFIDENCE = 0.95


@functools.lru_cache(maxsize=None)
def t_quantile(probability, df):
  """Quantile of Student's t distribution with `df` degrees of freedom.

  Computed by `tfd.StudentT(df, 0, 1).quantile` in float64 (an inverse
  regularised incomplete beta function), exact to ~1e-12; no scipy needed.

  Args:
    probability: Python `float` in (0, 1), e.g. 0.975.
    df: Python number > 0.

  Returns:
    Python `float`.

  Raises:
    ValueError: for `probability` outside (0, 1) or `df <= 0`.
  """
  if not 0 < probability < 1:
    raise ValueError(f'probability must be in (0, 1); got {probability!r}.')
  if not df > 0:
    raise ValueError(f'df must be > 0; got {df!r}.')
  student_t = tfd.StudentT(df=np.float64(df), loc=np.float64(0),
                           scale=np.float64(1))
  return float(student_t.quantile(np.float64(probability)))


def _as_values(values):
  """Floats, or None if any value is missing (a metric a family lacks)."""
  values = list(values)
  if not values or any(v is None for v in values):
    return None
  return np.asarray(values, np.float64)


def summarize_over_seeds(values):
  """Mean and spread of one metric over seeds.

  Args:
    values: sequence of per-seed numbers (None where a run lacks the metric).

  Returns:
    dict: 'mean', 'std' (sample standard deviation, ddof=1; None for one
    seed), 'min', 'max', 'num_seeds'; the values are None if any seed lacks
    the metric.
  """
  array = _as_values(values)
  count = len(list(values))
  if array is None:
    return {'mean': None, 'std': None, 'min': None, 'max': None,
            'num_seeds': count}
  return {'mean': float(array.mean()),
          'std': float(array.std(ddof=1)) if array.size > 1 else None,
          'min': float(array.min()), 'max': float(array.max()),
          'num_seeds': int(array.size)}


def paired_difference(values, baseline_values, standard_errors=None,
                      baseline_standard_errors=None, confidence=_CONFIDENCE):
  """Mean of `values - baseline_values`, paired by seed, with an interval.

  Args:
    values, baseline_values: equal-length sequences of per-seed numbers
      (seed i of one pairs with seed i of the other).
    standard_errors, baseline_standard_errors: optional per-seed standard
      errors of the numbers (e.g. over test examples); used only with one
      seed.
    confidence: Python `float` in (0, 1), default 0.95.

  Returns:
    dict: 'mean', 'ci_low', 'ci_high', 'half_width', 'std' (of the per-seed
    differences), 'per_seed' (the differences), 'num_seeds' and 'method':
      't over seeds': n >= 2 seeds; a t-interval with n - 1 degrees of
        freedom, which assumes the per-seed differences are roughly normal;
      'normal from standard errors': one seed, with standard errors; a
        normal interval of half-width z * sqrt(se^2 + se_baseline^2). The two
        estimates share their test images, so their errors are positively
        correlated and this interval is conservative; it says nothing about
        the variation from one training seed to another;
      'none': one seed and no standard errors (the interval is None).
    All numbers are None if a value is missing.

  Raises:
    ValueError: if the sequences differ in length or are empty.

  ```none
  d_i = values[i] - baseline_values[i],  i = 1..n
  mean +- t_{(1 + confidence) / 2, n - 1} * std(d, ddof=1) / sqrt(n)
  ```
  """
  values, baseline_values = list(values), list(baseline_values)
  if len(values) != len(baseline_values) or not values:
    raise ValueError(f'paired_difference needs two non-empty sequences of '
                     f'the same length; got {len(values)} and '
                     f'{len(baseline_values)}.')
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1); got {confidence!r}.')
  result = {'mean': None, 'ci_low': None, 'ci_high': None,
            'half_width': None, 'std': None, 'per_seed': None,
            'num_seeds': len(values), 'method': 'none',
            'confidence': confidence}
  first, second = _as_values(values), _as_values(baseline_values)
  if first is None or second is None:
    return result
  differences = first - second
  count = differences.size
  result.update(mean=float(differences.mean()),
                per_seed=[float(d) for d in differences])
  half_width = None
  if count >= 2:
    result['std'] = float(differences.std(ddof=1))
    half_width = t_quantile((1 + confidence) / 2, count - 1) * (
        result['std'] / math.sqrt(count))
    result['method'] = 't over seeds'
  else:
    errors = _as_values(standard_errors or [None])
    baseline_errors = _as_values(baseline_standard_errors or [None])
    if errors is not None and baseline_errors is not None:
      z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
      half_width = z * math.sqrt(float(errors[0])**2 +
                                 float(baseline_errors[0])**2)
      result['method'] = 'normal from standard errors'
  if half_width is not None:
    result.update(half_width=float(half_width),
                  ci_low=float(result['mean'] - half_width),
                  ci_high=float(result['mean'] + half_width))
  return result


def seconds_per_epoch(epoch_seconds):
  """Mean wall time of an epoch, leaving out the first when there are more.

  The first epoch of a process also traces and compiles the training and
  validation steps, so with more than one epoch it is left out.

  Args:
    epoch_seconds: sequence of per-epoch wall times (training and the
      validation pass).

  Returns:
    Python `float`, or None for an empty sequence.
  """
  epoch_seconds = [float(s) for s in epoch_seconds]
  if not epoch_seconds:
    return None
  timed = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
  return float(np.mean(timed))
