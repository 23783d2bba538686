"""Variational objectives, one value per example, from distribution log-probs.

Every density here comes from a `tfd.Distribution`'s `log_prob` or from
`tfd.kl_divergence`; nothing hand-writes a Gaussian.

Notation: x is a batch of B examples, z a latent of size D, L (or K) the
number of latent samples per example, q(z|x) the approximate posterior, p(z)
the prior and p(x|z) the decoder's likelihood.

```none
ELBO(x)  = E_q[log p(x|z)] - KL(q(z|x) || p(z))          = -distortion - rate
  distortion = -(1/L) sum_l log p(x|z_l)                   z_l ~ q(z|x)
  rate (analytic, SGVB estimator B) = tfd.kl_divergence(q, p)
  rate (Monte Carlo, SGVB estimator A) = (1/L) sum_l [log q(z_l|x) - log p(z_l)]
IWAE_K(x) = logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K
```

`ELBO <= IWAE_K <= IWAE_{K+1} <= log p(x)` in expectation; IWAE_1 is the
single-sample ELBO with the Monte Carlo KL.

References:
  Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014 (SGVB A and B).
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
  Alemi et al., Fixing a Broken ELBO, ICML 2018 (rate and distortion).
"""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae.distribution_layers import flow_of_base_mean

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['ElboTerms', 'IwaeTerms', 'standard_normal_slice', 'sample_latents',
           'has_reparameterization_noise', 'reparameterization_noise_size',
           'latents_from_noise', 'elbo', 'iwae_bound', 'is_point_mass',
           'unwrap_distribution', 'log_mean_exp', 'posterior_location']


class ElboTerms(NamedTuple):
  """Per-example ELBO and its parts, each of shape `[B]`."""
  elbo: tf.Tensor        # -distortion - rate
  rate: tf.Tensor        # KL(q(z|x) || p(z)), analytic or Monte Carlo
  distortion: tf.Tensor  # -E_q[log p(x|z)]


class IwaeTerms(NamedTuple):
  """Per-example IWAE bound, and the ELBO of the same K samples, `[B]` each."""
  iwae: tf.Tensor
  elbo: tf.Tensor        # mean_k log_weights: the K-sample Monte Carlo ELBO
  rate: tf.Tensor        # mean_k [log q(z_k|x) - log p(z_k)]
  distortion: tf.Tensor  # -mean_k log p(x|z_k)


def unwrap_distribution(distribution):
  """The `tfd.Distribution` inside a `tfp.layers` tensor-coercible output."""
  return getattr(distribution, 'tensor_distribution', distribution)


def is_point_mass(distribution):
  """True for a `tfd.VectorDeterministic` (autoencoder) posterior."""
  return isinstance(unwrap_distribution(distribution),
                    (tfd.VectorDeterministic, tfd.Deterministic))


# Philox by name: the default 'auto_select' picks another generator under XLA,
# so a compiled and an eager run of the same seed would draw different noise.
_RNG_ALGORITHM = 'philox'


def standard_normal_slice(local_shape, seed, example_offset=0,
                          total_examples=None, dtype=tf.float32, batch_axis=0):
  """N(0, 1) noise for this replica's slice of a global batch.

  Draws noise for the whole global batch (`total_examples` along
  `batch_axis`) from a stateless `seed` and returns the rows
  `[example_offset, example_offset + B)`, B = `local_shape[batch_axis]`. An
  example's noise thus depends on its position in the global batch only,
  not on how many replicas share the batch.

  Args:
    local_shape: int Tensor or list, the shape wanted, e.g. `[L, B, D]`.
    seed: stateless seed, int Tensor of shape `[2]`.
    example_offset: first row of the slice.
    total_examples: global batch size (default: B, no slicing).
    dtype: floating dtype.
    batch_axis: the axis holding examples.

  Returns:
    `local_shape` Tensor of standard normal draws.
  """
  local_shape = tf.convert_to_tensor(local_shape, tf.int32)
  if total_examples is None:
    return tf.random.stateless_normal(local_shape, seed=seed, dtype=dtype,
                                      alg=_RNG_ALGORITHM)
  global_shape = tf.tensor_scatter_nd_update(
      local_shape, [[batch_axis]], [tf.cast(total_examples, tf.int32)])
  noise = tf.random.stateless_normal(global_shape, seed=seed, dtype=dtype,
                                     alg=_RNG_ALGORITHM)
  begin = tf.tensor_scatter_nd_update(
      tf.zeros_like(local_shape), [[batch_axis]],
      [tf.cast(example_offset, tf.int32)])
  return tf.slice(noise, begin, local_shape)


def _flow_over_gaussian(distribution):
  """True for a transformed distribution of a Gaussian (the IAF posterior).

  Tested by its parts, not by class: `tfd.TransformedDistribution(...)`
  returns an instance of TFP's private non-composite base class when the
  bijector is not a composite tensor (a MAF's network is not), which is not
  an instance of `tfd.TransformedDistribution`.
  """
  return (isinstance(getattr(distribution, 'bijector', None), tfb.Bijector)
          and isinstance(getattr(distribution, 'distribution', None),
                         tfd.MultivariateNormalLinearOperator))


def posterior_location(approx_posterior):
  """The latent that stands for q(z|x) in plots and summaries, `[..., D]`.

  Its mean where that has a closed form (the Gaussians, a point mass);
  for a flow over a Gaussian (the IAF posterior), whose mean has none, the
  flow applied to its base's mean, `f(E[x])`: deterministic and one network
  pass per step (the IAF layer's 'flow_of_base_mean' stand-in). A Monte
  Carlo mean is `metrics.posterior_moments`' business, where E_q[z] itself
  is wanted.
  """
  q = unwrap_distribution(approx_posterior)
  if _flow_over_gaussian(q):
    return flow_of_base_mean(q)
  return q.mean()


def has_reparameterization_noise(approx_posterior):
  """True if `latents_from_noise` can draw from this posterior.

  That is: a Gaussian with a linear-operator scale (diagonal, full
  covariance), a diagonal-plus-low-rank covariance Gaussian, or a flow over
  one of the former (the IAF posterior).
  """
  q = unwrap_distribution(approx_posterior)
  return (isinstance(q, (tfd.MultivariateNormalLinearOperator,
                         tfd.MultivariateNormalDiagPlusLowRankCovariance)) or
          _flow_over_gaussian(q))


def reparameterization_noise_size(approx_posterior):
  """N, the size of the standard normal noise behind one latent sample.

  D for a Gaussian with a scale (and a flow over one), D + R for the
  diagonal-plus-low-rank covariance of rank R.

  Returns:
    Python `int` if static, else an int32 scalar Tensor.
  """
  q = unwrap_distribution(approx_posterior)
  if _flow_over_gaussian(q):
    q = q.distribution
  size = tf.compat.dimension_value(q.event_shape[-1])
  if size is None:
    size = q.event_shape_tensor()[-1]
  if isinstance(q, tfd.MultivariateNormalDiagPlusLowRankCovariance):
    rank = tf.compat.dimension_value(q.cov_operator.u.shape[-1])
    size += tf.shape(q.cov_operator.u)[-1] if rank is None else rank
  return size


def latents_from_noise(approx_posterior, noise):
  """The reparameterized latents for standard normal `noise`.

  Args:
    approx_posterior: q(z|x), batch `[B]`, event `[D]`, one of the
      posteriors of `has_reparameterization_noise`.
    noise: `[..., B, N]` draws from N(0, I), N =
      `reparameterization_noise_size(approx_posterior)`.

  Returns:
    latents `[..., B, D]`, differentiable with respect to q's parameters:

  ```none
  Gaussian, scale S:                 z = loc + S @ eps
  diag(d) + V V^T:                   z = loc + sqrt(d) * eps[:D] + V @ eps[D:]
  flow f over a Gaussian base:       z = f(base latents)
  ```
  For a Gaussian with a scale and for a flow, `approx_posterior.log_prob(z)`
  of the returned tensor reuses this forward pass (TFP's bijector cache,
  keyed on the tensor; `tfd.MultivariateNormalLinearOperator` is the
  standard normal through `Shift(loc)(ScaleMatvecLinearOperator(S))`):

  ```none
  log q(z) = log N(eps; 0, I) - log|det S|        (a flow: minus its pass's too)
  ```
  with no inversion. For full covariance that is no triangular solve, which
  in float32 loses everything once S is ill-conditioned (a tiny diagonal
  under large off-diagonal entries, as early in a KL warm-up: the solve's
  error grows by |S_ij / S_jj| per row), and it is exactly the function of
  q's parameters the solve computes, so its gradient is the same.
  """
  q = unwrap_distribution(approx_posterior)
  if _flow_over_gaussian(q):
    base_latents = latents_from_noise(q.distribution, noise)  # [..., B, D]
    # The bijector's output is returned unmodified, so its cache finds it.
    return q.bijector.forward(base_latents)
  if isinstance(q, tfd.MultivariateNormalDiagPlusLowRankCovariance):
    covariance = q.cov_operator  # diag(d) + u @ u^T
    event_size = tf.shape(q.loc)[-1]
    diag_noise = noise[..., :event_size]  # [..., B, D]
    factor_noise = noise[..., event_size:]  # [..., B, R]
    return (q.loc + covariance.base_operator.cholesky().matvec(diag_noise) +
            tf.linalg.matvec(covariance.u, factor_noise))  # [..., B, D]
  # loc + S @ eps, through the distribution's own bijector so that its
  # cache holds eps for `log_prob`.
  return q.bijector.forward(noise)  # [..., B, D]


def sample_latents(approx_posterior, num_samples, seed, example_offset=0,
                   total_examples=None):
  """Reparameterized samples z ~ q(z|x), reproducible across replica layouts.

  For the posteriors of `has_reparameterization_noise` (diagonal, full
  covariance, low-rank and IAF) the sample is written as the
  reparameterization trick, `z = latents_from_noise(q, eps)` (for a Gaussian
  `loc + scale @ eps`) with `eps ~ N(0, I)`, and `eps` is drawn for the
  whole global batch of `total_examples` and sliced at `example_offset`.
  Each example's noise then depends only on its place in the global batch,
  so one replica and N replicas that split the same global batch draw the
  same z (the replica at offset r * B gets rows r * B .. (r + 1) * B - 1).
  A point mass returns its location. Other distributions fall back to
  `approx_posterior.sample(seed=...)` with the offset folded into the seed.

  For the IAF posterior, `approx_posterior.log_prob(latents)` of the result
  (the Monte Carlo KL, the IWAE weights) reuses the flow's forward pass that
  made it (see `latents_from_noise`).

  Args:
    approx_posterior: distribution with batch shape `[B]`, event `[D]`.
    num_samples: Python `int` L.
    seed: stateless seed, int Tensor of shape `[2]`.
    example_offset: index of this batch's first example in the global batch.
    total_examples: size of the global batch (default: B).

  Returns:
    latents: `[L, B, D]`, differentiable with respect to q's parameters.
  """
  q = unwrap_distribution(approx_posterior)
  if is_point_mass(q):
    return tf.broadcast_to(q.loc, tf.concat([[num_samples], tf.shape(q.loc)],
                                            axis=0))  # [L, B, D]
  if has_reparameterization_noise(q):
    batch_shape = q.batch_shape_tensor()  # [B]
    noise = standard_normal_slice(
        tf.concat([[num_samples], batch_shape,
                   [reparameterization_noise_size(q)]], axis=0), seed,
        example_offset, total_examples, q.dtype, batch_axis=1)  # [L, B, N]
    return latents_from_noise(q, noise)  # [L, B, D]
  seed = tf.random.experimental.stateless_fold_in(seed, example_offset)
  return q.sample(num_samples, seed=seed)  # [L, B, D]


def elbo(images, approx_posterior, prior, decode, latents, kl='analytic'):
  """The evidence lower bound per example, from the given latent samples.

  Args:
    images: `[B, *image_shape]` data x.
    approx_posterior: q(z|x), batch `[B]`, event `[D]`.
    prior: p(z), event `[D]`.
    decode: callable, latents `[L, B, D]` -> p(x|z) with batch `[L, B]`.
    latents: `[L, B, D]` samples from q (see `sample_latents`).
    kl: 'analytic' (`tfd.kl_divergence`, SGVB estimator B) or 'mc'
      (`log q(z|x) - log p(z)` on `latents`, estimator A).

  Returns:
    `ElboTerms` of `[B]` tensors. For a point-mass posterior the rate is 0 and
    the ELBO is the autoencoder's reconstruction log-likelihood.

  Raises:
    ValueError: for an unknown `kl`, or `kl='analytic'` where `tfd` has no
      closed form for the pair (e.g. a mixture prior).
  """
  log_likelihood = decode(latents).log_prob(images)  # [L, B]
  distortion = -tf.reduce_mean(log_likelihood, axis=0)  # [B]
  if is_point_mass(approx_posterior):
    rate = tf.zeros_like(distortion)
  elif kl == 'analytic':
    q = unwrap_distribution(approx_posterior)
    p = unwrap_distribution(prior)
    try:
      rate = tfd.kl_divergence(q, p)  # [B]
    except NotImplementedError:
      raise ValueError(
          f"kl='analytic' is not available: tfd.kl_divergence has no closed "
          f"form for {type(q).__name__} || {type(p).__name__}. Use "
          f"kl='mc'.") from None
  elif kl == 'mc':
    rate = tf.reduce_mean(
        approx_posterior.log_prob(latents) - prior.log_prob(latents),
        axis=0)  # [B]
  else:
    raise ValueError(f"kl must be 'analytic' or 'mc'; got {kl!r}.")
  return ElboTerms(elbo=-distortion - rate, rate=rate, distortion=distortion)


def iwae_bound(images, approx_posterior, prior, decode, latents):
  """The importance-weighted bound IWAE_K per example (Burda et al., 2016).

  Args:
    images: `[B, *image_shape]`.
    approx_posterior: q(z|x), batch `[B]`, event `[D]`; must have a density.
    prior: p(z), event `[D]`.
    decode: callable, latents `[K, B, D]` -> p(x|z) with batch `[K, B]`.
    latents: `[K, B, D]` samples from q.

  Returns:
    `IwaeTerms` of `[B]` tensors.

  ```none
  log_weights[k] = log p(x|z_k) + log p(z_k) - log q(z_k|x)     # [K, B]
  iwae = logsumexp_k(log_weights) - log K
  ```
  """
  if is_point_mass(approx_posterior):
    raise ValueError('The IWAE bound needs a posterior with a density; a '
                     'point mass has none.')
  log_likelihood = decode(latents).log_prob(images)  # [K, B]
  log_ratio = approx_posterior.log_prob(latents) - prior.log_prob(latents)
  log_weights = log_likelihood - log_ratio  # [K, B]
  iwae = log_mean_exp(log_weights, axis=0)  # [B]
  rate = tf.reduce_mean(log_ratio, axis=0)
  distortion = -tf.reduce_mean(log_likelihood, axis=0)
  return IwaeTerms(iwae=iwae, elbo=-distortion - rate, rate=rate,
                   distortion=distortion)


def log_mean_exp(values, axis=0):
  """`log(mean(exp(values)))` along `axis`, computed stably."""
  count = tf.cast(tf.shape(values)[axis], values.dtype)
  return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(count)

