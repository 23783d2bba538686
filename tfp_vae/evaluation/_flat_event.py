"""log p(x|z) of an image likelihood, computed over the flattened pixels.

The package's likelihood layers give p(x|z) the image's event shape,
`tfd.Independent(tfd.Bernoulli(logits [..., 28, 28, 1]), 3)`, so that its
mean and samples come out as images. Scoring images with it makes XLA reduce
over three event axes of a `[chunk, B, 28, 28, 1]` tensor broadcast against
`[B, 28, 28, 1]` images, and on CPU that costs 25-30% more than the same
Bernoulli over a flat `[784]` event (BENCHMARKS.md, "Importance-sampled
log-likelihood"; `benchmarks/logprob_microbenchmark.py`). In the importance
sampler's inner loop, where the decoder runs K times per example, the flat
form is what the evaluation uses.

`flat_event_log_prob(likelihood, images)` is that flat form for the
package's two pixel likelihoods, an `Independent` over an elementwise
`Bernoulli` or `Normal`; any other likelihood is scored as it is. The value
is the same sum of per-pixel terms of the same values, so it equals
`likelihood.log_prob(images)` up to float rounding: the order of the
additions, and for Bernoulli logits one softplus per pixel where TFP takes
two (for pixels in [0, 1], not only binary ones).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import objectives

tfd = tfp.distributions

__all__ = ['flat_event_log_prob', 'flat_pixels']


def flat_pixels(likelihood):
  """The per-pixel distribution of `likelihood` over flattened pixels.

  Args:
    likelihood: p(x|z), as in `flat_event_log_prob`.

  Returns:
    `(pixels, event_ndims)`: `pixels` the `tfd.Bernoulli` or `tfd.Normal` of
    batch `[k, B, H * W * C]` with the same parameters, and `event_ndims`
    the number of image axes it flattened (3 for `[H, W, C]`); or None for
    a likelihood it cannot flatten (any other distribution).
  """
  # A `tfp.layers` output wraps the distribution; the wrapper's log_prob is
  # the wrapped one's.
  likelihood = objectives.unwrap_distribution(likelihood)
  if not isinstance(likelihood, tfd.Independent):
    return None
  pixels = likelihood.distribution
  # `tfd.Independent` keeps `reinterpreted_batch_ndims` as a Tensor; its
  # static value decides the flattening.
  event_ndims = tf.get_static_value(likelihood.reinterpreted_batch_ndims)
  if (not isinstance(pixels, (tfd.Bernoulli, tfd.Normal)) or
      event_ndims is None or pixels.event_shape.rank != 0 or
      pixels.batch_shape.rank is None):
    return None
  event_ndims = int(event_ndims)
  batch_ndims = pixels.batch_shape.rank - event_ndims
  full_shape = pixels.batch_shape_tensor()  # [k, B, H, W, C]
  leading_shape = full_shape[:batch_ndims]  # [k, B]

  def flat(values):  # Broadcast to [k, B, H, W, C], then [k, B, pixels].
    return tf.reshape(tf.broadcast_to(values, full_shape),
                      tf.concat([leading_shape, [-1]], axis=0))

  if isinstance(pixels, tfd.Bernoulli):
    if pixels.logits is not None:
      return tfd.Bernoulli(logits=flat(pixels.logits),
                           dtype=pixels.dtype), event_ndims
    return tfd.Bernoulli(probs=flat(pixels.probs),
                         dtype=pixels.dtype), event_ndims
  return tfd.Normal(loc=flat(pixels.loc),
                    scale=flat(pixels.scale)), event_ndims


def flat_event_log_prob(likelihood, images):
  """`likelihood.log_prob(images)`, with the event flattened to one axis.

  Args:
    likelihood: p(x|z), batch `[k, B]`, event the image shape `[H, W, C]`:
      a `tfd.Independent` over a `tfd.Bernoulli` (logits or probs) or a
      `tfd.Normal`, as the package's likelihood layers build it. Any other
      distribution is scored by its own `log_prob`.
    images: `[B, H, W, C]`, broadcastable against the likelihood's batch.

  Returns:
    log p(x|z), `[k, B]`: the same value as `likelihood.log_prob(images)`,
    summed over the flattened pixels `[k, B, H * W * C]` instead of over the
    image axes.

  ```none
  Bernoulli: log p(x|z) = sum_pixels x * l - softplus(l),   l = logits
  Normal:    log p(x|z) = sum_pixels Normal(loc, scale).log_prob(x)
  ```
  """
  flattened = flat_pixels(likelihood)
  if flattened is None:
    return likelihood.log_prob(images)
  pixels, event_ndims = flattened
  images = tf.convert_to_tensor(images, pixels.dtype)
  # Images are `[B, H, W, C]`: flattening their own event axes keeps them
  # broadcastable against the flat parameters `[k, B, pixels]`.
  flat_images = tf.reshape(
      images, tf.concat([tf.shape(images)[:tf.rank(images) - event_ndims],
                         [-1]], axis=0))
  if isinstance(pixels, tfd.Bernoulli) and pixels.logits is not None:
    # TFP's Bernoulli.log_prob takes two softplus per pixel,
    # -(1 - x) softplus(l) - x softplus(-l); this is the same value with one
    # (softplus(-l) = softplus(l) - l), ~10% of the estimator's time
    # (BENCHMARKS.md, "Importance-sampled log-likelihood").
    logits = pixels.logits  # [k, B, pixels]
    per_pixel = flat_images * logits - tf.math.softplus(logits)
  else:
    per_pixel = pixels.log_prob(flat_images)
  return tf.reduce_sum(per_pixel, axis=-1)  # [k, B]
