"""Summaries of a trained encoder and of per-example estimates.

  `summarize`                      mean and its standard error
  `active_units`                   latent dimensions the encoder uses
                                   (Burda et al. 2016)
  `active_dimensions`              which ones, most active first
  `posterior_correlation_stats`    how far a posterior is from its
                                   diagonal projection
  `posterior_moments`              its mean and covariance

Every quantity is computed from distributions (`covariance`,
`tfd.kl_divergence`), so it works for every Gaussian posterior of this
package; for the IAF posterior, whose moments have no closed form, from
its samples (Monte Carlo).
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import objectives

tfd = tfp.distributions

__all__ = ['summarize', 'active_units', 'active_dimensions',
           'posterior_correlation_stats', 'posterior_moments',
           'has_analytic_moments']


def summarize(values):
  """Mean of per-example values and the standard error of that mean.

  Args:
    values: array-like `[N]`, e.g. per-example log-likelihoods.

  Returns:
    dict: 'mean' (float), 'standard_error' (float: sample standard deviation,
    ddof=1, over sqrt(N); None for N = 1, where it is undefined) and
    'num_examples' (int).

  Raises:
    ValueError: for empty `values`.
  """
  values = np.asarray(values, np.float64).reshape([-1])
  if values.size == 0:
    raise ValueError('summarize needs at least one value; got none.')
  standard_error = None
  if values.size > 1:
    standard_error = float(np.std(values, ddof=1) / math.sqrt(values.size))
  return {'mean': float(np.mean(values)), 'standard_error': standard_error,
          'num_examples': int(values.size)}


def active_dimensions(latent_means, threshold=0.01):
  """The latent dimensions whose posterior mean varies with x, most first.

  Args:
    latent_means: array `[N, D]`, E_q[z | x_n] for each example.
    threshold: a dimension is active when its variance over examples exceeds
      this (default 0.01, as in Burda et al. 2016).

  Returns:
    `(dimensions, variances)`: `dimensions`, a Python list of the active
    dimensions' indices by decreasing variance (ties by index), and
    `variances`, `np.float64` `[D]`, the variance of every dimension.

  Raises:
    ValueError: if `latent_means` is not `[N, D]` with N >= 1.

  ```none
  A_u = Var_x(E_q[u | x]),  active iff A_u > threshold
  ```

  Variance over examples is the population variance (ddof=0).

  References: Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders,
  ICLR 2016, Sec. 5.2.
  """
  latent_means = np.asarray(latent_means, np.float64)
  if latent_means.ndim != 2 or latent_means.shape[0] == 0:
    raise ValueError('`latent_means` must have shape [num_examples, '
                     f'latent_dim] with num_examples >= 1; got '
                     f'{latent_means.shape}.')
  variances = np.var(latent_means, axis=0)  # [D]
  # A stable sort of -variance keeps equal variances in index order.
  ranked = np.argsort(-variances, kind='stable')
  return [int(d) for d in ranked if variances[d] > threshold], variances


def active_units(latent_means, threshold=0.01):
  """Number of latent dimensions whose posterior mean varies with x.

  Args:
    latent_means: array `[N, D]`, E_q[z | x_n] for each example.
    threshold: a dimension is active when its variance over examples exceeds
      this (default 0.01, as in Burda et al. 2016).

  Returns:
    Python `int` in [0, D]: `len(active_dimensions(...)[0])`.

  Raises:
    ValueError: if `latent_means` is not `[N, D]` with N >= 1.
  """
  return len(active_dimensions(latent_means, threshold)[0])


def has_analytic_moments(q):
  """True for the Gaussians: diagonal, full covariance and low-rank."""
  return isinstance(q, (tfd.MultivariateNormalLinearOperator,
                        tfd.MultivariateNormalDiagPlusLowRankCovariance))


def posterior_moments(approx_posterior, latents=None):
  """q(z|x)'s mean `[B, D]` and covariance `[B, D, D]`, exact or Monte Carlo.

  Args:
    approx_posterior: q(z|x), batch `[B]`, event `[D]`.
    latents: `[S, B, D]` samples of q, S >= 2; used (and needed) only for
      a posterior without closed-form moments (the IAF posterior).

  Returns:
    `(mean, covariance)`: analytic for the Gaussian families, else the
    sample mean and the sample covariance (ddof=1) of `latents`.

  Raises:
    ValueError: for a point mass, or a posterior without closed-form moments
      and no `latents`.
  """
  q = objectives.unwrap_distribution(approx_posterior)
  if objectives.is_point_mass(q):
    raise ValueError('posterior_correlation_stats needs a posterior with a '
                     'covariance; got a point mass.')
  if has_analytic_moments(q):
    return q.mean(), q.covariance()
  if latents is None:
    raise ValueError(
        f'{type(q).__name__} has no closed-form covariance: pass `latents`, '
        f'samples [S, B, D] of it, for a Monte Carlo estimate.')
  mean = tf.reduce_mean(latents, axis=0)  # [B, D]
  centred = latents - mean  # [S, B, D]
  num_samples = tf.cast(tf.shape(latents)[0], latents.dtype)
  covariance = tf.einsum('sbi,sbj->bij', centred, centred) / (
      num_samples - 1.)  # [B, D, D]
  return mean, covariance


def correlation_terms(approx_posterior, latents=None):
  """Per-example (mean |off-diagonal correlation|, KL to diagonal), `[B]`.

  See `posterior_correlation_stats`; `latents` `[S, B, D]` as in
  `posterior_moments` (a flow's terms are Monte Carlo estimates from them).
  """
  q = objectives.unwrap_distribution(approx_posterior)
  mean, covariance = posterior_moments(q, latents)  # [B, D], [B, D, D]
  variance = tf.linalg.diag_part(covariance)  # [B, D]
  stddev = tf.sqrt(variance)
  correlation = covariance / (stddev[..., :, tf.newaxis] *
                              stddev[..., tf.newaxis, :])  # [B, D, D]
  latent_dim = tf.cast(tf.shape(covariance)[-1], covariance.dtype)
  off_diagonal = correlation - tf.linalg.diag(
      tf.linalg.diag_part(correlation))
  num_pairs = latent_dim * (latent_dim - 1.)
  # D = 1 has no pairs: report 0 rather than 0 / 0.
  mean_abs_correlation = tf.math.divide_no_nan(
      tf.reduce_sum(tf.abs(off_diagonal), axis=[-2, -1]), num_pairs)  # [B]
  diagonal_projection = tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)
  if has_analytic_moments(q):
    kl_to_diagonal = tfd.kl_divergence(q, diagonal_projection)  # [B]
  else:
    # E_q[log q(z) - log q_diag(z)] on the same samples; for the IAF,
    # log q of its own samples reuses the flow pass that drew them.
    kl_to_diagonal = tf.reduce_mean(
        q.log_prob(latents) - diagonal_projection.log_prob(latents),
        axis=0)  # [B]
  return mean_abs_correlation, kl_to_diagonal


def posterior_correlation_stats(approx_posterior, latents=None):
  """How correlated a posterior is, averaged over a batch.

  Args:
    approx_posterior: q(z|x) with batch `[B]`, event `[D]`: a Gaussian
      (diagonal, full covariance, low-rank: exact values from its
      covariance) or the IAF posterior (Monte Carlo, from `latents`).
    latents: `[S, B, D]` samples of q (S >= 2, e.g. from
      `objectives.sample_latents`); needed only for the IAF posterior.

  Returns:
    dict of Python floats:
      'mean_abs_offdiag_correlation': mean over examples and the D * (D - 1)
        off-diagonal entries of |corr(z_i, z_j)| (0 for D = 1);
      'kl_to_diagonal': mean over examples of KL(q || q_diag), where q_diag =
        `tfd.MultivariateNormalDiag(mean, sqrt(diag(cov)))` keeps q's means
        and marginal variances: the information in the correlations, in nats.
    Both are 0 for a diagonal posterior. q_diag is the diagonal Gaussian
    closest to q (moment matching minimises KL(q || .) over them), so for
    a flow the KL also counts q's departure from a Gaussian. For the IAF
    posterior both are Monte Carlo estimates: the correlation from the
    samples' covariance, the KL as mean_s [log q(z_s) - log q_diag(z_s)].

  Raises:
    ValueError: for a point-mass posterior, or an IAF posterior without
      `latents`.

  ```none
  R = diag(cov)^(-1/2) @ cov @ diag(cov)^(-1/2)
  KL(q || q_diag) = -0.5 * log det(R)
  ```
  """
  mean_abs_correlation, kl_to_diagonal = correlation_terms(approx_posterior,
                                                          latents)
  return {
      'mean_abs_offdiag_correlation': float(
          tf.reduce_mean(mean_abs_correlation)),
      'kl_to_diagonal': float(tf.reduce_mean(kl_to_diagonal)),
  }
