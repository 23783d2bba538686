"""The input pipeline: the `tf.data` streams that training and evaluation read.

  make_training_dataset    an endless, resumable stream of full training
                           batches, shuffled afresh each epoch, optionally
                           binarized afresh each batch.
  make_evaluation_dataset  a split in its file order, in full batches with
                           per-example weights (0 for the last batch's
                           padding).

The training stream is a pure function of (seed, epoch, step): the order of
epoch e is a stateless shuffle keyed on (seed, e), and the binarization noise
of batch s of epoch e is keyed on (seed, e, s). Nothing depends on how many
batches were drawn before, so a run resumed at (epoch, step) sees exactly
the batches an uninterrupted run would have seen.

Both streams hold their images as 8-bit codes when that is exact (binary
pixels, and grey levels k / 255 as the datasets' files store them) and
decode each batch to float32: the batches are bit for bit those of float32
storage, and the in-memory copies that a stream makes (`tf.constant`, and
tf.data's copy of what its functions capture) are 4x smaller, so less memory
is written before the first step (BENCHMARKS.md, "Whole runs").
"""

import numpy as np
import tensorflow as tf

__all__ = ['make_evaluation_dataset', 'make_training_dataset']


def make_training_dataset(images, batch_size, seed, start_epoch=0,
                          start_step=0, dynamic_binarization=False):
  """An endless stream of training batches, epoch after epoch, from a position.

  Epoch e visits the images in the order of a stateless shuffle keyed on
  (seed, e); batches are full (the last partial batch of an epoch is
  dropped). With `dynamic_binarization`, each batch is a fresh Bernoulli
  draw keyed on (seed, e, batch index). The stream starts at batch
  `start_step` of epoch `start_epoch`, so a resumed run sees the batches an
  uninterrupted one would.

  Args:
    images: `[N, H, W, C]` float32 in [0, 1].
    batch_size: global batch size B <= N.
    seed: Python int.
    start_epoch, start_step: where to start.
    dynamic_binarization: binarize each batch afresh.

  Returns:
    `tf.data.Dataset` of `[B, H, W, C]` float32 batches.

  #### Examples

  ```python
  dataset = load_dataset('fashion_mnist', seed=1)
  batches = make_training_dataset(dataset.train_images, 128, seed=1,
                                  dynamic_binarization=True)
  model.fit(batches, steps_per_epoch=len(dataset.train_images) // 128)
  ```
  """
  num_images = len(images)
  steps_per_epoch = num_images // batch_size
  codes, decode = _compact(images)

  # Traced as written, not through AutoGraph (`_not_converted`).
  @_not_converted
  def epoch_batches(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_images), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
    order = tf.reshape(order[:steps_per_epoch * batch_size],
                       [steps_per_epoch, batch_size])
    return tf.data.Dataset.from_tensor_slices(order).enumerate().map(
        _not_converted(lambda step, index: (epoch, step, index)))

  @_not_converted
  def gather(epoch, step, index):
    batch = decode(tf.gather(codes, index))  # [B, H, W, C]
    if dynamic_binarization:
      # A large prime keeps the (seed, epoch) pairs of different seeds apart.
      noise = tf.random.stateless_uniform(
          tf.shape(batch), seed=tf.stack([
              tf.cast(seed, tf.int64) * 1_000_003 + epoch, step]))
      batch = tf.cast(noise < batch, tf.float32)
    return batch

  dataset = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max)
  dataset = dataset.flat_map(epoch_batches).skip(start_step)
  dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return _without_autotune_thread(dataset.prefetch(tf.data.AUTOTUNE))


def make_evaluation_dataset(images, batch_size):
  """The images in their order, in full batches weighted 1 (padding 0).

  The last batch is padded up to `batch_size` with blank images of weight
  0, so that every batch has the same static shape: the XLA-compiled
  evaluation step is then compiled once, for validation and test alike,
  and not a second time for a smaller last batch (10,000 images in batches
  of 128 leave 16). `VariationalAutoencoder.test_step` takes weighted means,
  so the metrics stay the averages over exactly the N real images.

  Args:
    images: `[N, H, W, C]` pixels (cast to float32).
    batch_size: positive int B.

  Returns:
    `tf.data.Dataset` of `(images, weights, weights)`, Keras's
    (x, y, sample_weight) form (y, unused, repeats the weights):
    `[B, H, W, C]` float32 images and `[B]` float32 weights, 1 for the N
    real images and 0 for the padding; ceil(N / B) batches.
  """
  codes, decode = _compact(images)
  image_shape = codes.shape[1:]

  @_not_converted
  def pad_to_full_batch(batch):
    batch = decode(batch)
    num_real = tf.shape(batch)[0]
    # Zeros after the real images along the batch axis only.
    padding = tf.concat([[[0, batch_size - num_real]],
                         tf.zeros([len(image_shape), 2], tf.int32)], axis=0)
    batch = tf.ensure_shape(tf.pad(batch, padding),
                            [batch_size, *image_shape])  # [B, H, W, C]
    weights = tf.cast(tf.range(batch_size) < num_real, tf.float32)  # [B]
    # Keras's (x, y, sample_weight). The VAE has no target; y is the weights
    # again because a None y does not pass through a multi-worker
    # strategy's distributed dataset.
    return batch, weights, weights

  return _without_autotune_thread(
      tf.data.Dataset.from_tensor_slices(codes).batch(batch_size).map(
          pad_to_full_batch).prefetch(tf.data.AUTOTUNE))


# Pixels are stored as uint8 codes q with pixel = float32(q) / 255 when
# that is exact for every pixel; checked this many images at a time, so
# that the check's temporaries stay small.
_CODE_SCALE = 255
_CHECK_CHUNK_IMAGES = 4096


def _compact(images):
  """`images` as a constant tensor, and the function that decodes a batch.

  ```none
  codes = uint8(round(x * 255))   if float32(codes) / 255 == x, bit for bit,
                                  for every pixel x (binary and 8-bit grey)
  codes = float32(x)              otherwise
  decode(batch) = float32(batch) / 255,  or the batch as it is
  ```

  Args:
    images: `[N, H, W, C]` pixels, cast to float32.

  Returns:
    `(codes, decode)`: a `[N, H, W, C]` uint8 or float32 `tf.Tensor`, and a
    function of a gathered `[..., H, W, C]` slice of it that gives float32
    pixels equal to those of `images`.
  """
  images = np.asarray(images, np.float32)
  codes = np.empty(images.shape, np.uint8)
  scale = np.float32(_CODE_SCALE)
  for start in range(0, len(images), _CHECK_CHUNK_IMAGES):
    chunk = images[start:start + _CHECK_CHUNK_IMAGES]
    with np.errstate(invalid='ignore'):  # NaN: the check below fails.
      chunk_codes = np.clip(np.rint(chunk * scale), 0, _CODE_SCALE).astype(
          np.uint8)
    decoded = chunk_codes.astype(np.float32) / scale
    if not np.array_equal(decoded.view(np.uint32), chunk.view(np.uint32)):
      return tf.constant(images), tf.identity
    codes[start:start + _CHECK_CHUNK_IMAGES] = chunk_codes

  def decode(batch):
    return tf.cast(batch, tf.float32) / scale
  return tf.constant(codes), decode


def _not_converted(function):
  """`function`, marked for tf.data and `tf.function` to trace as written.

  AutoGraph rewrites a function's source before tracing it so that Python
  `if`/`for` on tensors become TF control flow; for a function with none
  (every one this module hands to tf.data) that only costs time at start-up.
  """
  return tf.autograph.experimental.do_not_convert(function)


def _without_autotune_thread(dataset):
  """`dataset` with tf.data's autotuning model (and its thread) turned off.

  An iterator of an autotuned dataset runs an optimization thread that
  wakes at doubling intervals, up to one a minute, and the iterator's
  destructor waits for it. When `fit` dropped its training iterator this
  wait was not cut short: it lasted until the thread's next wake-up, up to
  60 s after the last epoch (and up to the pass's length after each
  validation pass), the post-fit stall of issue 16 (BENCHMARKS.md, "Whole
  runs"). Nothing here needs the tuning: a batch is one gather (and one
  Bernoulli draw) from memory. Without the model, `AUTOTUNE` falls back
  to tf.data's fixed defaults: a parallel map runs a default number of
  calls at once (bounded by the thread pool, one thread per core), and
  `prefetch` grows its buffer whenever the consumer finds it empty.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return dataset.with_options(options)
