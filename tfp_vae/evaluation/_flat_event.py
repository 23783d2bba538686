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
is the same sum of the same per-pixel terms, so it equals
`likelihood.log_prob(images)` up to the order of the float additions.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import objectives

tfd = tfp.distributions

__all__ = ['flat_event_log_prob']


def _flat(values, leading_shape):
  """`values` broadcast to the likelihood's shape, then `[..., pixels]`."""
  return tf.reshape(values, tf.concat([leading_shape, [-1]], axis=0))


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
  # A `tfp.layers` output wraps the distribution; the wrapper's log_prob is
  # the wrapped one's.
  distribution = objectives.unwrap_distribution(likelihood)
  if not isinstance(distribution, tfd.Independent):
    return likelihood.log_prob(images)
  likelihood = distribution
  pixels = likelihood.distribution
  # `tfd.Independent` keeps `reinterpreted_batch_ndims` as a Tensor; its
  # static value decides the flattening.
  event_ndims = tf.get_static_value(likelihood.reinterpreted_batch_ndims)
  if (not isinstance(pixels, (tfd.Bernoulli, tfd.Normal)) or
      event_ndims is None or
      pixels.event_shape.rank != 0 or
      pixels.batch_shape.rank is None):
    return likelihood.log_prob(images)
  event_ndims = int(event_ndims)
  batch_ndims = pixels.batch_shape.rank - event_ndims
  full_shape = pixels.batch_shape_tensor()  # [k, B, H, W, C]
  leading_shape = full_shape[:batch_ndims]  # [k, B]
  images = tf.convert_to_tensor(images, pixels.dtype)
  # Images are `[B, H, W, C]`: flattening their own event axes keeps them
  # broadcastable against the flat parameters `[k, B, pixels]`.
  flat_images = tf.reshape(
      images, tf.concat([tf.shape(images)[:tf.rank(images) - event_ndims],
                         [-1]], axis=0))
  if isinstance(pixels, tfd.Bernoulli):
    if pixels.logits is not None:
      flat_pixels = tfd.Bernoulli(
          logits=_flat(tf.broadcast_to(pixels.logits, full_shape),
                       leading_shape), dtype=pixels.dtype)
    else:
      flat_pixels = tfd.Bernoulli(
          probs=_flat(tf.broadcast_to(pixels.probs, full_shape),
                      leading_shape), dtype=pixels.dtype)
  else:
    flat_pixels = tfd.Normal(
        loc=_flat(tf.broadcast_to(pixels.loc, full_shape), leading_shape),
        scale=_flat(tf.broadcast_to(pixels.scale, full_shape), leading_shape))
  return tf.reduce_sum(flat_pixels.log_prob(flat_images), axis=-1)  # [k, B]
