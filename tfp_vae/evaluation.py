"""Evaluating a trained VAE: importance-sampled log p(x), ELBO, latent usage.

Every quantity is computed from distributions (`log_prob`, `covariance`,
`tfd.kl_divergence`), so it works for any posterior, prior and likelihood of
this package, and for a hand-made model given as `encode`/`decode`/`prior`.

  `importance_sampled_log_likelihood`  log p(x) per example (Burda et al. 2016)
  `summarize`                          mean and its standard error
  `active_units`                       latent dimensions the encoder uses
  `posterior_correlation_stats`        how far a full-covariance posterior is
                                       from its diagonal projection
  `evaluate_model`                     all of the above for a
                                       `VariationalAutoencoder` on images
  `evaluate_model_dir`                 the same for a trained model directory
                                       on one split of its data (what
                                       `scripts/evaluate.py` calls)

Everything runs in batches of examples; the importance-sampled estimate also
runs in chunks of importance samples inside one compiled `tf.function` per
batch, with a running logsumexp across chunks, so K = 5000 samples on a test
set costs its FLOPs, not Python overhead, in bounded memory.

Sampling noise is stateless and tied to an example's position in `images`:
example i draws its K samples from the seed `fold_in([seed, stream], i)`.
For Gaussian posteriors (diagonal and full covariance) an example's estimate
therefore depends only on `seed`, its row and its own pixels, never on
`batch_size` or `samples_per_chunk`.

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016
    (the estimator, K = 5000, and the active-units criterion).
  Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014.
  Cremer, Li & Duvenaud, Inference Suboptimality in VAEs, ICML 2018 (the gap
    log p(x) - ELBO).
"""

import dataclasses
import math
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import data as data_lib
from tfp_vae import objectives

tfd = tfp.distributions

__all__ = ['importance_sampled_log_likelihood', 'sample_latents_per_example',
           'summarize', 'active_units', 'posterior_correlation_stats',
           'evaluate_model', 'evaluate_model_dir', 'SPLITS']

SPLITS = ('test', 'validation', 'train')

# Second halves of the stateless seeds `[seed, stream]`: independent noise for
# the importance samples and for the single-sample ELBO of the same seed.
_IMPORTANCE_STREAM = 7001
_ELBO_STREAM = 7002

# Examples per batch when the caller gives none. Large enough that the
# decoder's matmuls are efficient, small enough that the per-batch noise
# ([K, B, D] floats: 32 MB for K=5000, D=16) stays small.
_DEFAULT_BATCH_SIZE = 100

# Upper bound on samples_per_chunk * batch_size * values-per-example when the
# chunk size is chosen automatically: 2**23 float32 values (32 MiB) per
# decoder-output-sized tensor, a few of which live at once (logits, per-pixel
# log-probs, the widest hidden layer). On CPU, chunks of 5k-10k decoded rows
# ran fastest (they stay in cache; 20k rows ran ~30% slower). MNIST, batch
# 100: 100 samples a chunk.
_MAX_CHUNK_VALUES = 2**23


def _check_positive_int(value, name):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f'`{name}` must be a positive integer; got {value!r}.')
  if value <= 0:
    raise ValueError(f'`{name}` must be a positive integer; got {value}.')
  return int(value)


def _check_seed(seed):
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f'`seed` must be an integer; got {seed!r}.')
  return int(seed)


def _is_gaussian(distribution):
  """True for `loc + scale @ eps` posteriors (diagonal and full covariance)."""
  return isinstance(objectives.unwrap_distribution(distribution),
                    tfd.MultivariateNormalLinearOperator)


def _stream_seed(seed, stream):
  return tf.constant([seed, stream], tf.int64)


def _tfp_seed(seed):
  # TFP's samplers take int32 seeds; the wrap-around of the cast is harmless.
  return tf.cast(seed, tf.int32)


def _standard_normal_per_example(stream_seed, example_indices, num_samples,
                                 latent_dim, dtype):
  """N(0, I) noise `[K, B, D]`; column b depends on `example_indices[b]` only.

  Each example draws its own `[K, D]` block from `fold_in(stream_seed, index)`,
  so the noise of an example is the same whatever batch it is evaluated in.
  """
  def draw(index):
    seed = tf.random.experimental.stateless_fold_in(stream_seed, index)
    return tf.random.stateless_normal([num_samples, latent_dim], seed=seed,
                                      dtype=dtype)  # [K, D]
  # A map, not vectorized_map: pfor has no batched stateless-normal kernel
  # and would fall back to the same loop, with warnings.
  noise = tf.map_fn(draw, tf.cast(example_indices, tf.int64),
                    fn_output_signature=dtype)  # [B, K, D]
  return tf.transpose(noise, [1, 0, 2])  # [K, B, D]


def _latents_from_noise(approx_posterior, noise):
  """`loc + scale @ noise` for a Gaussian q: `[K, B, D]` -> `[K, B, D]`."""
  q = objectives.unwrap_distribution(approx_posterior)
  return q.mean() + q.scale.matvec(noise)  # [K, B, D]


def _sample_per_example(approx_posterior, num_samples, stream_seed,
                        example_indices):
  """Samples `[K, B, D]` drawn as described in `sample_latents_per_example`."""
  q = objectives.unwrap_distribution(approx_posterior)
  if objectives.is_point_mass(q):
    return tf.broadcast_to(
        q.loc, tf.concat([[num_samples], tf.shape(q.loc)], axis=0))
  if _is_gaussian(q):
    latent_dim = tf.compat.dimension_value(q.event_shape[-1])
    if latent_dim is None:
      latent_dim = q.event_shape_tensor()[-1]
    noise = _standard_normal_per_example(
        stream_seed, example_indices, num_samples, latent_dim,
        q.dtype)  # [K, B, D]
    return _latents_from_noise(q, noise)
  seed = tf.random.experimental.stateless_fold_in(
      stream_seed, tf.cast(example_indices[0], tf.int64))
  return q.sample(num_samples, seed=_tfp_seed(seed))  # [K, B, D]


def sample_latents_per_example(approx_posterior, num_samples, seed,
                               example_indices):
  """The latent samples `importance_sampled_log_likelihood` draws.

  Exposed so that its draw can be reproduced, e.g. to check that the K = 1
  estimate equals `objectives.iwae_bound` on the same samples.

  Args:
    approx_posterior: q(z|x), batch `[B]`, event `[D]`.
    num_samples: Python `int` K > 0.
    seed: Python `int`, the `seed` given to `importance_sampled_log_likelihood`.
    example_indices: int `[B]`, each example's row in the evaluated `images`.

  Returns:
    `[K, B, D]` samples. For a Gaussian q, `z[k, b] = loc[b] + scale[b] @
    eps[k, b]` with `eps[:, b] ~ N(0, I)` drawn from the stateless seed
    `fold_in([seed, stream], example_indices[b])`: it depends on the example's
    index and not on the batch. Any other q samples with a seed folded from
    the batch's first index (the draw then depends on the batching). A point
    mass gives its location K times.
  """
  num_samples = _check_positive_int(num_samples, 'num_samples')
  return _sample_per_example(
      approx_posterior, num_samples,
      _stream_seed(_check_seed(seed), _IMPORTANCE_STREAM),
      tf.convert_to_tensor(example_indices))


def _chunking(num_examples, values_per_example, num_importance_samples,
              samples_per_chunk, batch_size):
  """(batch_size, samples_per_chunk, num_chunks), sizes chosen to fit memory."""
  if batch_size is None:
    batch_size = min(num_examples, _DEFAULT_BATCH_SIZE)
  if samples_per_chunk is None:
    samples_per_chunk = _MAX_CHUNK_VALUES // (batch_size * values_per_example)
  samples_per_chunk = max(1, min(samples_per_chunk, num_importance_samples))
  # The last chunk is padded up to the chunk size (a compiled loop needs one
  # static shape). Prefer a chunk size that divides K, within a factor 2 of
  # the largest allowed; otherwise spread K evenly over the chunks, so that
  # padding wastes fewer than num_chunks samples.
  for size in range(samples_per_chunk, (samples_per_chunk - 1) // 2, -1):
    if num_importance_samples % size == 0:
      return batch_size, size, num_importance_samples // size
  num_chunks = -(-num_importance_samples // samples_per_chunk)
  samples_per_chunk = -(-num_importance_samples // num_chunks)
  return batch_size, samples_per_chunk, num_chunks


def _make_batch_log_likelihood(encode, decode, prior, num_importance_samples,
                               samples_per_chunk, num_chunks, gaussian,
                               jit_compile):
  """The compiled per-batch estimator: a `tf.while_loop` over sample chunks.

  Gaussian posteriors take pre-drawn noise `[num_chunks, chunk, B, D]` (drawn
  outside the compiled function: XLA's CPU random numbers are several times
  slower than TF's kernels); other posteriors sample inside the loop.
  """
  def log_weights_of(images, approx_posterior, latents):
    log_likelihood = decode(latents).log_prob(images)  # [chunk, B]
    return (log_likelihood + prior.log_prob(latents) -
            approx_posterior.log_prob(latents))  # [chunk, B]

  def batch_log_likelihood(images, noise, batch_seed):
    approx_posterior = encode(images)
    batch_size = tf.shape(images)[0]
    # Running logsumexp over the chunks seen so far, per example; starts at
    # log(0). reduce_logsumexp of [running, chunk] is exact with -inf.
    running = tf.fill([batch_size], tf.constant(-np.inf, prior.dtype))
    sample_in_chunk = tf.range(samples_per_chunk)

    def body(chunk, running):
      if gaussian:
        latents = _latents_from_noise(
            approx_posterior, noise[chunk])  # [chunk, B, D]
      else:
        latents = approx_posterior.sample(
            samples_per_chunk, seed=_tfp_seed(
                tf.random.experimental.stateless_fold_in(
                    batch_seed, tf.cast(chunk, tf.int64))))  # [chunk, B, D]
      log_weights = log_weights_of(images, approx_posterior, latents)
      # The last chunk is padded up to the chunk size; its extra samples get
      # weight exp(-inf) = 0.
      is_real = chunk * samples_per_chunk + sample_in_chunk < (
          num_importance_samples)  # [chunk]
      log_weights = tf.where(is_real[:, tf.newaxis], log_weights,
                             tf.constant(-np.inf, log_weights.dtype))
      chunk_total = tf.reduce_logsumexp(log_weights, axis=0)  # [B]
      running = tf.reduce_logsumexp(tf.stack([running, chunk_total]), axis=0)
      return chunk + 1, running

    _, running = tf.while_loop(
        lambda chunk, _: chunk < num_chunks, body, (tf.constant(0), running),
        # One chunk at a time: parallel iterations would multiply the memory.
        parallel_iterations=1)
    return running - tf.math.log(
        tf.constant(num_importance_samples, running.dtype))  # [B]

  return tf.function(batch_log_likelihood, jit_compile=jit_compile,
                     reduce_retracing=True)


def importance_sampled_log_likelihood(images, encode, decode, prior,
                                      num_importance_samples=5000,
                                      samples_per_chunk=None, batch_size=None,
                                      seed=0, jit_compile=True):
  """Importance-sampled estimate of log p(x) per example (Burda et al. 2016).

  Args:
    images: array `[N, ...]` of examples (any event shape the likelihood
      scores, e.g. `[N, 28, 28, 1]`).
    encode: callable, `[B, ...]` examples -> q(z|x) with batch `[B]`, event
      `[D]`, e.g. `model.encode`. It must have a density.
    decode: callable, latents `[k, B, D]` -> p(x|z) with batch `[k, B]`, e.g.
      `model.decode`.
    prior: p(z), a distribution with event `[D]`, e.g.
      `model.prior_distribution()`.
    num_importance_samples: Python `int` K > 0 (default 5000, as in Burda et
      al.).
    samples_per_chunk: importance samples decoded at once per batch (default:
      as many as keep `chunk * batch_size * values_per_example` within 2**23,
      e.g. 100 for 100 MNIST images). Adjusted down so that K splits into
      chunks of (nearly) equal size.
    batch_size: examples per batch (default: min(N, 100)). Memory grows with
      `batch_size * samples_per_chunk`, and with `batch_size * K * D` for the
      pre-drawn noise.
    seed: Python `int`; the same seed gives the same estimates.
    jit_compile: compile the per-batch computation with XLA (default True); if
      XLA cannot compile it, a warning is logged and it runs without XLA.

  Returns:
    numpy float64 array `[N]`: the estimate for each example, in nats.

  Raises:
    ValueError: if the posterior is a point mass (it has no density, so the
      importance weights are undefined), or for a non-positive K, batch size
      or chunk size, or empty `images`.

  ```none
  z_k ~ q(z | x),  k = 1..K
  log_weights[k] = log p(x | z_k) + log p(z_k) - log q(z_k | x)
  log p(x) ~= logsumexp_k(log_weights) - log K
  ```

  The estimate is a stochastic lower bound: E[estimate] <= log p(x), with
  equality when q is the exact posterior (every weight then equals p(x)); it
  increases with K towards log p(x). It is computed in chunks of samples with
  a running logsumexp, so memory does not grow with K.

  Example:

  ```python
  log_px = importance_sampled_log_likelihood(
      test_images, model.encode, model.decode, model.prior_distribution(),
      num_importance_samples=5000)
  summarize(log_px)  # {'mean': -86.3, 'standard_error': 0.2, ...}
  ```
  """
  images = np.asarray(images)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  num_examples = images.shape[0]
  num_importance_samples = _check_positive_int(num_importance_samples,
                                               'num_importance_samples')
  if samples_per_chunk is not None:
    _check_positive_int(samples_per_chunk, 'samples_per_chunk')
  if batch_size is not None:
    _check_positive_int(batch_size, 'batch_size')
  seed = _check_seed(seed)

  # One eager call on one example tells the posterior's kind and size before
  # anything is compiled.
  probe = objectives.unwrap_distribution(encode(images[:1]))
  if objectives.is_point_mass(probe):
    raise ValueError(
        'importance_sampled_log_likelihood needs a posterior with a density; '
        f'the encoder returned a point mass ({type(probe).__name__}), for '
        'which importance weights are undefined.')
  gaussian = _is_gaussian(probe)
  latent_dim = int(probe.event_shape[-1])
  dtype = probe.dtype

  values_per_example = max(1, int(np.prod(images.shape[1:])))
  batch_size, samples_per_chunk, num_chunks = _chunking(
      num_examples, values_per_example, num_importance_samples,
      samples_per_chunk, batch_size)
  padded_num_samples = num_chunks * samples_per_chunk
  stream_seed = _stream_seed(seed, _IMPORTANCE_STREAM)

  @tf.function(reduce_retracing=True)
  def draw_noise(example_indices):
    noise = _standard_normal_per_example(
        stream_seed, example_indices, padded_num_samples, latent_dim,
        dtype)  # [num_chunks * chunk, B, D]
    return tf.reshape(noise, [num_chunks, samples_per_chunk, -1, latent_dim])

  def make(jit):
    return _make_batch_log_likelihood(
        encode, decode, prior, num_importance_samples, samples_per_chunk,
        num_chunks, gaussian, jit)

  batch_log_likelihood = make(jit_compile)
  logging.info(
      'Importance sampling: %d examples, K=%d in %d chunk(s) of %d, batches '
      'of %d, jit_compile=%s.', num_examples, num_importance_samples,
      num_chunks, samples_per_chunk, batch_size, jit_compile)
  estimates = []
  for start in range(0, num_examples, batch_size):
    example_indices = np.arange(start, min(start + batch_size, num_examples))
    batch_images = tf.convert_to_tensor(images[example_indices])
    batch_seed = tf.random.experimental.stateless_fold_in(stream_seed, start)
    # The non-Gaussian path samples inside the loop and needs no noise; a
    # placeholder keeps one signature.
    noise = (draw_noise(example_indices) if gaussian
             else tf.zeros([0], dtype))
    try:
      estimate = batch_log_likelihood(batch_images, noise, batch_seed)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.InternalError) as error:
      if not jit_compile:
        raise
      logging.warning('XLA could not compile the importance-sampling loop '
                      '(%s); running it without jit_compile.',
                      str(error).splitlines()[0])
      jit_compile = False
      batch_log_likelihood = make(False)
      estimate = batch_log_likelihood(batch_images, noise, batch_seed)
    estimates.append(estimate.numpy().astype(np.float64))
    logging.log_every_n_seconds(
        logging.INFO, 'Importance sampling: %d / %d examples done.', 30,
        example_indices[-1] + 1, num_examples)
  return np.concatenate(estimates)


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


def active_units(latent_means, threshold=0.01):
  """Number of latent dimensions whose posterior mean varies with x.

  Args:
    latent_means: array `[N, D]`, E_q[z | x_n] for each example.
    threshold: a dimension is active when its variance over examples exceeds
      this (default 0.01, as in Burda et al. 2016).

  Returns:
    Python `int` in [0, D].

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
  return int(np.sum(np.var(latent_means, axis=0) > threshold))


def _correlation_terms(approx_posterior):
  """Per-example (mean |off-diagonal correlation|, KL to diagonal), `[B]`."""
  q = objectives.unwrap_distribution(approx_posterior)
  if objectives.is_point_mass(q):
    raise ValueError('posterior_correlation_stats needs a posterior with a '
                     'covariance; got a point mass.')
  covariance = q.covariance()  # [B, D, D]
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
  diagonal_projection = tfd.MultivariateNormalDiag(loc=q.mean(),
                                                   scale_diag=stddev)
  kl_to_diagonal = tfd.kl_divergence(q, diagonal_projection)  # [B]
  return mean_abs_correlation, kl_to_diagonal


def posterior_correlation_stats(approx_posterior):
  """How correlated a (full-covariance) posterior is, averaged over a batch.

  Args:
    approx_posterior: q(z|x) with batch `[B]`, event `[D]` and a
      `covariance()` (e.g. `tfd.MultivariateNormalTriL`).

  Returns:
    dict of Python floats:
      'mean_abs_offdiag_correlation': mean over examples and the D * (D - 1)
        off-diagonal entries of |corr(z_i, z_j)| (0 for D = 1);
      'kl_to_diagonal': mean over examples of KL(q || q_diag), where q_diag =
        `tfd.MultivariateNormalDiag(mean, sqrt(diag(cov)))` keeps q's means
        and marginal variances: the information in the correlations, in nats.
    Both are 0 for a diagonal posterior.

  Raises:
    ValueError: for a point-mass posterior.

  ```none
  R = diag(cov)^(-1/2) @ cov @ diag(cov)^(-1/2)
  KL(q || q_diag) = -0.5 * log det(R)
  ```
  """
  mean_abs_correlation, kl_to_diagonal = _correlation_terms(approx_posterior)
  return {
      'mean_abs_offdiag_correlation': float(
          tf.reduce_mean(mean_abs_correlation)),
      'kl_to_diagonal': float(tf.reduce_mean(kl_to_diagonal)),
  }


def evaluate_model(model, images, num_importance_samples=5000,
                   batch_size=None, seed=0, samples_per_chunk=None,
                   jit_compile=True):
  """Test-set metrics of a `VariationalAutoencoder`, in nats per example.

  Args:
    model: a `VariationalAutoencoder`.
    images: array `[N, H, W, C]`.
    num_importance_samples: K for the log-likelihood estimate (default 5000);
      0 skips it (its entries are then None).
    batch_size: examples per batch (default: min(N, 100)).
    seed: Python `int` seeding all sampling noise.
    samples_per_chunk, jit_compile: as in `importance_sampled_log_likelihood`.

  Returns:
    dict of JSON-serialisable values (floats, ints, str, or None):
      'log_likelihood', 'log_likelihood_stderr': mean and standard error of
        `importance_sampled_log_likelihood` with K samples;
      'elbo', 'kl', 'nll' (and '*_stderr'): the ELBO, its rate
        KL(q(z|x) || p(z)) and its distortion -log p(x|z), from
        `objectives.elbo` with one latent sample per example and the model's
        `kl` setting (analytic `tfd.kl_divergence`, or Monte Carlo on the same
        sample), averaged over the examples. This is the ELBO the model
        trains on (for `objective='iwae'` models too, which report the IWAE
        bound separately through `log_likelihood`);
      'gap', 'gap_stderr': log_likelihood - elbo, per example then averaged
        (>= 0 up to Monte Carlo error; the paired standard error);
      'active_units': `active_units` of the posterior means;
      'mean_abs_offdiag_correlation', 'kl_to_diagonal':
        `posterior_correlation_stats` averaged over the examples (0 for a
        diagonal posterior);
      'num_examples', 'num_importance_samples', 'latent_dim', 'posterior'.
    For a point-mass ('deterministic') posterior only the reconstruction
    'nll' (and 'nll_stderr') is computed; the entries that need a density are
    None.

  Raises:
    ValueError: for empty `images`, or a negative `num_importance_samples`.
  """
  config = model.model_config
  images = np.asarray(images, np.float32)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  if (isinstance(num_importance_samples, bool) or
      not isinstance(num_importance_samples, (int, np.integer)) or
      num_importance_samples < 0):
    raise ValueError('`num_importance_samples` must be an integer >= 0; got '
                     f'{num_importance_samples!r}.')
  if batch_size is not None:
    _check_positive_int(batch_size, 'batch_size')
  seed = _check_seed(seed)
  num_examples = images.shape[0]
  batch_size = batch_size or min(num_examples, _DEFAULT_BATCH_SIZE)
  has_density = config.posterior_has_density
  elbo_seed = _stream_seed(seed, _ELBO_STREAM)

  @tf.function(reduce_retracing=True)
  def batch_terms(batch_images, example_indices):
    approx_posterior = model.encode(batch_images)
    latents = _sample_per_example(approx_posterior, 1, elbo_seed,
                                  example_indices)  # [1, B, D]
    terms = objectives.elbo(batch_images, approx_posterior,
                            model.prior_distribution(), model.decode, latents,
                            kl=config.kl)
    outputs = {'elbo': terms.elbo, 'kl': terms.rate, 'nll': terms.distortion,
               'posterior_mean': objectives.unwrap_distribution(
                   approx_posterior).mean()}
    if has_density:
      (outputs['mean_abs_offdiag_correlation'],
       outputs['kl_to_diagonal']) = _correlation_terms(approx_posterior)
    return outputs

  per_example = {}
  for start in range(0, num_examples, batch_size):
    example_indices = np.arange(start, min(start + batch_size, num_examples))
    outputs = batch_terms(tf.convert_to_tensor(images[example_indices]),
                          tf.convert_to_tensor(example_indices))
    for name, value in outputs.items():
      per_example.setdefault(name, []).append(value.numpy())
  per_example = {name: np.concatenate(values)
                 for name, values in per_example.items()}

  results = {'num_examples': int(num_examples),
             'num_importance_samples': None, 'latent_dim': config.latent_dim,
             'posterior': config.posterior}
  for name in ('log_likelihood', 'elbo', 'kl', 'nll', 'gap'):
    results[name] = results[name + '_stderr'] = None
  for name in ('active_units', 'mean_abs_offdiag_correlation',
               'kl_to_diagonal'):
    results[name] = None

  def put(name, values):
    summary = summarize(values)
    results[name] = summary['mean']
    results[name + '_stderr'] = summary['standard_error']

  put('nll', per_example['nll'])
  if not has_density:
    return results
  put('elbo', per_example['elbo'])
  put('kl', per_example['kl'])
  results['active_units'] = active_units(per_example['posterior_mean'])
  for name in ('mean_abs_offdiag_correlation', 'kl_to_diagonal'):
    results[name] = float(np.mean(per_example[name]))
  if num_importance_samples:
    log_likelihood = importance_sampled_log_likelihood(
        images, model.encode, model.decode, model.prior_distribution(),
        num_importance_samples=num_importance_samples,
        samples_per_chunk=samples_per_chunk, batch_size=batch_size,
        seed=seed, jit_compile=jit_compile)
    results['num_importance_samples'] = int(num_importance_samples)
    put('log_likelihood', log_likelihood)
    put('gap', log_likelihood - per_example['elbo'])
  return results


def _fail(name, value, must):
  # Argument names are `scripts/evaluate.py`'s flag names (as in `config`).
  raise ValueError(f'--{name}={value!r} is invalid: {name} must {must}.')


def _check_model_dir_arguments(model_dir, split, num_importance_samples,
                               batch_size, max_examples, seed):
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(model_dir, training.CONFIG_FILE)
  if not os.path.isfile(config_path):
    _fail('model_dir', model_dir,
          f'be a directory written by scripts/train.py; {config_path} does '
          'not exist')
  if split not in SPLITS:
    _fail('split', split, f'be one of {", ".join(SPLITS)}')
  for name, value, lowest in (
      ('num_importance_samples', num_importance_samples, 1),
      ('batch_size', batch_size, 1), ('max_examples', max_examples, 0)):
    if name == 'batch_size' and value is None:
      continue
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
        or value < lowest):
      _fail(name, value, f'be an integer >= {lowest}')
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    _fail('seed', seed, 'be an integer')


def evaluate_model_dir(model_dir, split='test', num_importance_samples=5000,
                       batch_size=None, max_examples=0, seed=0,
                       data_dir=None, samples_per_chunk=None,
                       jit_compile=True):
  """Evaluates the model a training run left in `model_dir` on one data split.

  Restores the model (`training.load_trained_model`: the final model, else
  the newest readable checkpoint; whatever strategy trained it), loads the
  data the run trained on (`data.load_data` with the saved `TrainConfig`,
  including its `max_train_examples` subsets) and calls `evaluate_model`.

  Args:
    model_dir: a directory written by `scripts/train.py` (holding
      config.json).
    split: 'test' (default), 'validation' or 'train'.
    num_importance_samples: K > 0 for the log-likelihood (default 5000).
    batch_size: examples per batch (default: min(N, 100)).
    max_examples: 0 evaluates the whole split; otherwise a random subset of
      this many examples, drawn with `seed` (never the first rows: data files
      can be sorted by class).
    seed: Python `int`; seeds the subset and all sampling noise.
    data_dir: where the dataset files are (default: the run's `data_dir`).
    samples_per_chunk, jit_compile: as in `importance_sampled_log_likelihood`.

  Returns:
    `evaluate_model`'s dict plus 'model_dir', 'checkpoint_path', 'dataset',
    'split', 'max_examples', 'seed' and 'seconds' (wall time of the
    evaluation), all JSON-serialisable.

  Raises:
    ValueError: naming the argument (as `--name=value`, the flag of
      `scripts/evaluate.py`) for a bad value, e.g. a `model_dir` without
      config.json; before any model or data is loaded.
    data.DataError: if the dataset files cannot be read.
  """
  # Imported here: `training` imports this module for its final test metrics.
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  _check_model_dir_arguments(model_dir, split, num_importance_samples,
                             batch_size, max_examples, seed)
  start_time = time.perf_counter()
  loaded = training.load_trained_model(model_dir)
  train_config = loaded.train_config
  if data_dir:
    train_config = dataclasses.replace(train_config, data_dir=data_dir)
  dataset = data_lib.load_data(train_config, loaded.model_config)
  images = getattr(dataset, f'{split}_images')
  if split == 'train' and dataset.binarization == 'dynamic':
    # Training images are grey levels binarized afresh each epoch; score one
    # seeded binarization, as the validation and test splits are.
    rng = np.random.default_rng([seed, 1])
    images = (rng.random(images.shape) < images).astype(np.float32)
  if max_examples and max_examples < len(images):
    # Sorted, so examples keep their file order (and their noise with it).
    subset = np.sort(np.random.default_rng(seed).choice(
        len(images), size=max_examples, replace=False))
    images = images[subset]
  logging.info('Evaluating %s (%s) on %d %s images of %s.', model_dir,
               loaded.checkpoint_path, len(images), split, dataset.name)
  results = evaluate_model(
      loaded.model, images, num_importance_samples=num_importance_samples,
      batch_size=batch_size, seed=seed, samples_per_chunk=samples_per_chunk,
      jit_compile=jit_compile)
  results.update(model_dir=str(model_dir),
                 checkpoint_path=str(loaded.checkpoint_path),
                 dataset=dataset.name, split=split,
                 max_examples=int(max_examples), seed=int(seed),
                 seconds=time.perf_counter() - start_time)
  return results
