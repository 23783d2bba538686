"""What the Bernoulli log-prob costs inside the IS log-likelihood's chunk.

Times, under `tf.function(jit_compile=True)`, one chunk of the importance-
sampled log-likelihood's decoding (latents [100 samples, 100 images, 16] ->
784 Bernoulli logits through a 16-512-512-784 ReLU MLP, random weights),
followed by different ways of reducing the logits to log p(x|z) [100, 100]:

  dense layers only    sum of the logits (the matmuls, bias and ReLU alone)
  tfd Bernoulli        tfd.Independent(tfd.Bernoulli(logits), 1).log_prob(x)
  x*l - softplus(l)    the same quantity written by hand
  -sigmoid_xent        -sum(tf.nn.sigmoid_cross_entropy_with_logits)
  log_sigmoid((2x-1)l) the same quantity as one log-sigmoid per pixel
  package network, flat event [784] / event [28, 28, 1]
                       tfp_vae's decoder network with a tfd Bernoulli over
                       the flat pixels / over the image shape, as the
                       package's likelihood layer builds it
  package decode       tfp_vae's own decoder (`model.decode(z).log_prob(x)`)
  package decode, flat_event_log_prob
                       the same likelihood scored over the flattened pixels,
                       as the importance sampler now does
                       (`tfp_vae.evaluation._flat_event`)

and prints ms per chunk and GFLOP/s of the decoder's matmuls (2 x (16*512 +
512*512 + 512*784) per sample). The four hand-made log-probs give the same
mean log p(x|z) (printed); the package's decoder has its own weights, so
its four rows agree with each other, not with the first four. Best of 3 x 10 calls; the machine's noise applies (rerun and
compare rows of one run).

  python benchmarks/logprob_microbenchmark.py
"""

import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae.config import ModelConfig
from tfp_vae.evaluation._flat_event import flat_event_log_prob
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

_SAMPLES, _IMAGES, _LATENT, _HIDDEN, _PIXELS = 100, 100, 16, 512, 784
_LAYER_SHAPES = [(_LATENT, _HIDDEN), (_HIDDEN, _HIDDEN), (_HIDDEN, _PIXELS)]


def _time_per_call(function, argument, calls=10, rounds=3):
  compiled = tf.function(function, jit_compile=True)
  result = compiled(argument).numpy()  # Trace and compile.
  best = float('inf')
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(calls):
      output = compiled(argument)
    output.numpy()
    best = min(best, (time.perf_counter() - start) / calls)
  return best, result


def main():
  rng = np.random.default_rng(0)
  kernels = [tf.constant(0.05 * rng.normal(size=s).astype(np.float32))
             for s in _LAYER_SHAPES]
  biases = [tf.zeros([s[1]]) for s in _LAYER_SHAPES]
  latents = tf.constant(
      rng.normal(size=(_SAMPLES, _IMAGES, _LATENT)).astype(np.float32))
  pixels = tf.constant(
      (rng.uniform(size=(_IMAGES, _PIXELS)) < 0.2).astype(np.float32))

  def logits(z):  # [S, B, D] -> [S, B, 784]
    h = tf.nn.relu(tf.einsum('sbd,dh->sbh', z, kernels[0]) + biases[0])
    h = tf.nn.relu(tf.einsum('sbd,dh->sbh', h, kernels[1]) + biases[1])
    return tf.einsum('sbd,dh->sbh', h, kernels[2]) + biases[2]

  model = VariationalAutoencoder(ModelConfig(
      posterior='diag', latent_dim=_LATENT, hidden_units=(_HIDDEN, _HIDDEN)))
  images = tf.reshape(pixels, [_IMAGES, 28, 28, 1])

  def package_logits(z):  # The package's decoder network, [S, B, 784].
    flat_logits = model.decoder(tf.reshape(z, [-1, _LATENT]))
    return tf.reshape(flat_logits, [_SAMPLES, _IMAGES, _PIXELS])

  variants = {
      'dense layers only': lambda z: tf.reduce_sum(logits(z), -1),
      'tfd Bernoulli': lambda z: tfd.Independent(
          tfd.Bernoulli(logits=logits(z)), 1).log_prob(pixels),
      'x*l - softplus(l)': lambda z: tf.reduce_sum(
          pixels * logits(z) - tf.nn.softplus(logits(z)), -1),
      '-sigmoid_xent': lambda z: -tf.reduce_sum(
          tf.nn.sigmoid_cross_entropy_with_logits(
              labels=tf.broadcast_to(pixels, [_SAMPLES, _IMAGES, _PIXELS]),
              logits=logits(z)), -1),
      'log_sigmoid((2x-1)l)': lambda z: tf.reduce_sum(
          tf.math.log_sigmoid((2 * pixels - 1) * logits(z)), -1),
      'package network, flat event [784]': lambda z: tfd.Independent(
          tfd.Bernoulli(logits=package_logits(z)), 1).log_prob(pixels),
      'package network, event [28, 28, 1]': lambda z: tfd.Independent(
          tfd.Bernoulli(logits=tf.reshape(
              package_logits(z), [_SAMPLES, _IMAGES, 28, 28, 1])),
          3).log_prob(images),
      'package decode': lambda z: model.decode(z).log_prob(images),
      'package decode, flat_event_log_prob': lambda z: flat_event_log_prob(
          model.decode(z), images),
  }
  flop = 2 * sum(k * n for k, n in _LAYER_SHAPES) * _SAMPLES * _IMAGES
  print(f'| variant | ms per chunk | GFLOP/s | mean log p(x|z) |')
  print('|---|---:|---:|---:|')
  for name, function in variants.items():
    seconds, result = _time_per_call(function, latents)
    mean = '' if name == 'dense layers only' else f'{result.mean():.4f}'
    print(f'| {name} | {seconds * 1e3:.1f} | {flop / seconds / 1e9:.0f} | '
          f'{mean} |', flush=True)


if __name__ == '__main__':
  main()
