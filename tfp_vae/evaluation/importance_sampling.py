"""The importance-sampled estimate of log p(x) (Burda et al. 2016).

`importance_sampled_log_likelihood(images, encode, decode, prior, K)` works
for any posterior with a density, prior and likelihood of this package, and
for a hand-made model given as `encode`/`decode`/`prior`.
`importance_sampling_statistics` is the same estimator, which also returns
the K-sample ELBO and the effective sample size of its weights
(`diagnostics`), from the same samples.

Everything runs in batches of examples, and in chunks of importance samples
inside one compiled `tf.function` per batch, with a running logsumexp across
chunks, so K = 5000 samples on a test set costs its FLOPs, not Python
overhead, in bounded memory. The decoder's log p(x|z) is summed over the
flattened pixels (`_flat_event`): the same value as the image-shaped
likelihood's `log_prob`, about a quarter cheaper under XLA.

Sampling noise is stateless and tied to an example's position in `images`:
example i draws its K samples from the seed `fold_in([seed, stream], i)`.
For every posterior drawn from standard normal noise
(`objectives.has_reparameterization_noise`: diagonal, full covariance,
low-rank and IAF) an example's estimate therefore depends only on `seed`,
its row and its own pixels, never on `batch_size` or `samples_per_chunk`.

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

from typing import NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf

from tfp_vae import objectives
from tfp_vae._checks import check_integer
from tfp_vae._checks import check_positive_int
from tfp_vae.evaluation import diagnostics
from tfp_vae.evaluation._flat_event import flat_event_log_prob


__all__ = ['importance_sampled_log_likelihood', 'importance_sampling_statistics',
           'ImportanceSamplingStatistics', 'sample_latents_per_example',
           'evaluation_subset']

# Second halves of the stateless seeds `[seed, stream]`: independent noise for
# the importance samples and for the single-sample ELBO of the same seed
# (`model_evaluation`).
_IMPORTANCE_STREAM = 7001
_ELBO_STREAM = 7002

# Examples per batch when the caller gives none. Large enough that the
# decoder's matmuls are efficient, small enough that the per-batch noise
# ([K, B, D] floats: 32 MB for K=5000, D=16) stays small.
DEFAULT_BATCH_SIZE = 100

# Upper bound on samples_per_chunk * batch_size * values-per-example when the
# chunk size is chosen automatically: 2**22 float32 values (16 MiB) per
# decoder-output-sized tensor, a few of which live at once (logits, per-pixel
# log-probs, the widest hidden layer): memory stays bounded whatever the
# image size, and chunks of 5,000 decoded MNIST rows ran 5-8% faster than
# chunks of 10,000, with smaller ones no faster (BENCHMARKS.md, "Importance-
# sampled log-likelihood"). MNIST, batch 100: 50 samples a chunk.
_MAX_CHUNK_VALUES = 2**22


def _stream_seed(seed, stream):
  return tf.constant([seed, stream], tf.int64)


def _tfp_seed(seed):
  # TFP's samplers take int32 seeds; the wrap-around of the cast is harmless.
  return tf.cast(seed, tf.int32)


def _standard_normal_per_example(stream_seed, example_indices, num_samples,
                                 noise_size, dtype):
  """N(0, I) noise `[K, B, N]`; column b depends on `example_indices[b]` only.

  Each example draws its own `[K, N]` block from `fold_in(stream_seed, index)`,
  so the noise of an example is the same whatever batch it is evaluated in.
  N is `objectives.reparameterization_noise_size` (D, or D + R for the
  low-rank posterior).
  """
  def draw(index):
    seed = tf.random.experimental.stateless_fold_in(stream_seed, index)
    return tf.random.stateless_normal([num_samples, noise_size], seed=seed,
                                      dtype=dtype)  # [K, N]
  # A map, not vectorized_map: pfor has no batched stateless-normal kernel
  # and would fall back to the same loop, with warnings.
  noise = tf.map_fn(draw, tf.cast(example_indices, tf.int64),
                    fn_output_signature=dtype)  # [B, K, N]
  return tf.transpose(noise, [1, 0, 2])  # [K, B, N]


def _sample_per_example(approx_posterior, num_samples, stream_seed,
                        example_indices):
  """Samples `[K, B, D]` drawn as described in `sample_latents_per_example`."""
  q = objectives.unwrap_distribution(approx_posterior)
  if objectives.is_point_mass(q):
    return tf.broadcast_to(
        q.loc, tf.concat([[num_samples], tf.shape(q.loc)], axis=0))
  if objectives.has_reparameterization_noise(q):
    noise = _standard_normal_per_example(
        stream_seed, example_indices, num_samples,
        objectives.reparameterization_noise_size(q), q.dtype)  # [K, B, N]
    return objectives.latents_from_noise(q, noise)  # [K, B, D]
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
    `[K, B, D]` samples. For a q of `objectives.has_reparameterization_noise`
    (diagonal, full covariance, low-rank, IAF), `z[k, b] =
    objectives.latents_from_noise(q, eps)[k, b]` (for a Gaussian `loc[b] +
    scale[b] @ eps[k, b]`) with `eps[:, b] ~ N(0, I)` drawn from the
    stateless seed `fold_in([seed, stream], example_indices[b])`: it depends
    on the example's index and not on the batch. Any other q samples with a seed folded from
    the batch's first index (the draw then depends on the batching). A point
    mass gives its location K times.
  """
  num_samples = check_positive_int(num_samples, 'num_samples')
  return _sample_per_example(
      approx_posterior, num_samples,
      _stream_seed(check_integer(seed, 'seed'), _IMPORTANCE_STREAM),
      tf.convert_to_tensor(example_indices))


def _chunking(num_examples, values_per_example, num_importance_samples,
              samples_per_chunk, batch_size):
  """(batch_size, samples_per_chunk, num_chunks), sizes chosen to fit memory."""
  if batch_size is None:
    batch_size = min(num_examples, DEFAULT_BATCH_SIZE)
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
                               samples_per_chunk, num_chunks, from_noise,
                               jit_compile, with_diagnostics=False):
  """The compiled per-batch estimator: a `tf.while_loop` over sample chunks.

  Posteriors drawn from standard normal noise take pre-drawn noise
  `[num_chunks, chunk, B, N]` (drawn outside the compiled function: XLA's CPU
  random numbers are several times slower than TF's kernels); other
  posteriors sample inside the loop. For the IAF, `log_prob` of the latents
  reuses the flow's forward pass that made them (no inversion).

  With `with_diagnostics`, the loop also carries, per example, the sum of the
  log-weights and the running logsumexp of 2 * log-weights, and the function
  returns `(log_likelihood, elbo, effective_sample_size)`, each `[B]`;
  without, it returns the estimate alone.
  """
  def log_weights_of(images, approx_posterior, latents):
    log_likelihood = flat_event_log_prob(decode(latents),
                                         images)  # [chunk, B]
    return (log_likelihood + prior.log_prob(latents) -
            approx_posterior.log_prob(latents))  # [chunk, B]

  def batch_log_likelihood(images, encoder_inputs, noise, batch_seed):
    approx_posterior = encode(encoder_inputs)
    batch_size = tf.shape(images)[0]
    # Running logsumexp over the chunks seen so far, per example; starts at
    # log(0). reduce_logsumexp of [running, chunk] is exact with -inf.
    running = tf.fill([batch_size], tf.constant(-np.inf, prior.dtype))
    sample_in_chunk = tf.range(samples_per_chunk)

    def body(chunk, running, *sums):
      if from_noise:
        latents = objectives.latents_from_noise(
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
      if not with_diagnostics:
        return chunk + 1, running
      # sum_k log w_k (padding adds 0) and logsumexp_k 2 log w_k (padding
      # adds exp(-inf) = 0).
      sum_log_weights, running_squared = sums
      sum_log_weights += tf.reduce_sum(
          tf.where(is_real[:, tf.newaxis], log_weights,
                   tf.zeros_like(log_weights)), axis=0)  # [B]
      running_squared = tf.reduce_logsumexp(
          tf.stack([running_squared,
                    tf.reduce_logsumexp(2. * log_weights, axis=0)]), axis=0)
      return chunk + 1, running, sum_log_weights, running_squared

    loop_vars = (tf.constant(0), running)
    if with_diagnostics:
      loop_vars += (tf.zeros_like(running), running)
    loop_vars = tf.while_loop(
        lambda chunk, *_: chunk < num_chunks, body, loop_vars,
        # One chunk at a time: parallel iterations would multiply the memory.
        parallel_iterations=1)
    running = loop_vars[1]
    num_samples = tf.constant(num_importance_samples, running.dtype)
    log_likelihood = running - tf.math.log(num_samples)  # [B]
    if not with_diagnostics:
      return (log_likelihood,)
    sum_log_weights, running_squared = loop_vars[2:]
    return (log_likelihood, sum_log_weights / num_samples,
            diagnostics.effective_sample_size_from_sums(
                running, running_squared))

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
  return _importance_sample(
      images, encode, decode, prior, num_importance_samples,
      samples_per_chunk, batch_size, seed, jit_compile,
      with_diagnostics=False).log_likelihood


class ImportanceSamplingStatistics(NamedTuple):
  """Per-example results of `importance_sampling_statistics`, numpy `[N]`."""
  log_likelihood: np.ndarray  # logsumexp_k(log_weights) - log K
  elbo: np.ndarray  # mean_k log_weights: the K-sample Monte Carlo ELBO
  effective_sample_size: np.ndarray  # (sum_k w_k)^2 / sum_k w_k^2, in [1, K]


def importance_sampling_statistics(images, encode, decode, prior,
                                   num_importance_samples=5000,
                                   samples_per_chunk=None, batch_size=None,
                                   seed=0, jit_compile=True,
                                   encoder_inputs=None):
  """`importance_sampled_log_likelihood` with the ELBO and ESS of its samples.

  The same estimator on the same samples (same `seed`, same draw), whose
  loop also keeps, per example, the sum of the log-weights and the
  logsumexp of twice the log-weights: without storing the `[K, N]` weights
  it returns the K-sample Monte Carlo ELBO and the effective sample size of
  the normalized weights (`diagnostics.effective_sample_size`).

  Args:
    images, encode, decode, prior, num_importance_samples, samples_per_chunk,
      batch_size, seed, jit_compile: as in
      `importance_sampled_log_likelihood`.
    encoder_inputs: optional array `[N, ...]` that `encode` is called on
      instead of the images, row for row: e.g. per-example posterior
      parameters `[N, params_size]` with `encode` a posterior layer, to use a
      fitted local posterior as the proposal (`gaps`). Default: `images`.

  Returns:
    `ImportanceSamplingStatistics` of numpy float64 `[N]` arrays:
    'log_likelihood' (what `importance_sampled_log_likelihood` returns for
    the same arguments), 'elbo' and 'effective_sample_size'.

  Raises:
    ValueError: as `importance_sampled_log_likelihood`, and if
      `encoder_inputs` does not have one row per image.

  ```none
  log_weights[k] = log p(x | z_k) + log p(z_k) - log q(z_k | x)
  log_likelihood = logsumexp_k(log_weights) - log K
  elbo = (1/K) sum_k log_weights[k]
  effective_sample_size = exp(2 * logsumexp_k(log_weights)
                              - logsumexp_k(2 * log_weights))
  ```
  """
  return _importance_sample(
      images, encode, decode, prior, num_importance_samples,
      samples_per_chunk, batch_size, seed, jit_compile,
      with_diagnostics=True, encoder_inputs=encoder_inputs)


def _importance_sample(images, encode, decode, prior, num_importance_samples,
                       samples_per_chunk, batch_size, seed, jit_compile,
                       with_diagnostics, encoder_inputs=None):
  """Runs the chunked estimator; returns `ImportanceSamplingStatistics`.

  Without `with_diagnostics` only 'log_likelihood' is computed (the others
  are None).
  """
  images = np.asarray(images)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  num_examples = images.shape[0]
  num_importance_samples = check_positive_int(num_importance_samples,
                                              'num_importance_samples')
  if samples_per_chunk is not None:
    check_positive_int(samples_per_chunk, 'samples_per_chunk')
  if batch_size is not None:
    check_positive_int(batch_size, 'batch_size')
  seed = check_integer(seed, 'seed')
  if encoder_inputs is None:
    encoder_inputs = images
  encoder_inputs = np.asarray(encoder_inputs)
  if encoder_inputs.ndim < 1 or encoder_inputs.shape[0] != num_examples:
    raise ValueError('`encoder_inputs` must have one row per image '
                     f'({num_examples}); got shape {encoder_inputs.shape}.')

  # One eager call on one example tells the posterior's kind and size before
  # anything is compiled.
  probe = objectives.unwrap_distribution(encode(encoder_inputs[:1]))
  if objectives.is_point_mass(probe):
    raise ValueError(
        'importance_sampled_log_likelihood needs a posterior with a density; '
        f'the encoder returned a point mass ({type(probe).__name__}), for '
        'which importance weights are undefined.')
  from_noise = objectives.has_reparameterization_noise(probe)
  noise_size = (int(objectives.reparameterization_noise_size(probe))
                if from_noise else 0)
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
        stream_seed, example_indices, padded_num_samples, noise_size,
        dtype)  # [num_chunks * chunk, B, N]
    return tf.reshape(noise, [num_chunks, samples_per_chunk, -1, noise_size])

  def make(jit):
    return _make_batch_log_likelihood(
        encode, decode, prior, num_importance_samples, samples_per_chunk,
        num_chunks, from_noise, jit, with_diagnostics)

  batch_log_likelihood = make(jit_compile)
  logging.info(
      'Importance sampling: %d examples, K=%d in %d chunk(s) of %d, batches '
      'of %d, jit_compile=%s.', num_examples, num_importance_samples,
      num_chunks, samples_per_chunk, batch_size, jit_compile)
  estimates = []
  for start in range(0, num_examples, batch_size):
    example_indices = np.arange(start, min(start + batch_size, num_examples))
    batch_images = tf.convert_to_tensor(images[example_indices])
    batch_inputs = (batch_images if encoder_inputs is images else
                    tf.convert_to_tensor(encoder_inputs[example_indices]))
    batch_seed = tf.random.experimental.stateless_fold_in(stream_seed, start)
    # The other path samples inside the loop and needs no noise; a
    # placeholder keeps one signature.
    noise = (draw_noise(example_indices) if from_noise
             else tf.zeros([0], dtype))
    try:
      estimate = batch_log_likelihood(batch_images, batch_inputs, noise,
                                      batch_seed)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.InternalError) as error:
      if not jit_compile:
        raise
      logging.warning('XLA could not compile the importance-sampling loop '
                      '(%s); running it without jit_compile.',
                      str(error).splitlines()[0])
      jit_compile = False
      batch_log_likelihood = make(False)
      estimate = batch_log_likelihood(batch_images, batch_inputs, noise,
                                      batch_seed)
    estimates.append([value.numpy().astype(np.float64) for value in estimate])
    logging.log_every_n_seconds(
        logging.INFO, 'Importance sampling: %d / %d examples done.', 30,
        example_indices[-1] + 1, num_examples)
  columns = [np.concatenate(column) for column in zip(*estimates)]
  if not with_diagnostics:
    columns += [None, None]
  return ImportanceSamplingStatistics(*columns)


def evaluation_subset(num_examples, max_examples, seed):
  """Rows of a split to evaluate: all, or a seeded random subset.

  Args:
    num_examples: the split's size N.
    max_examples: 0 for every row; otherwise at most this many.
    seed: Python `int` drawing the subset.

  Returns:
    int array of row indices, increasing: examples keep their file order
    (and so their sampling noise). A subset is random, never the first
    rows: data files can be sorted by class.
  """
  if max_examples and max_examples < num_examples:
    return np.sort(np.random.default_rng(seed).choice(
        num_examples, size=max_examples, replace=False))
  return np.arange(num_examples)
