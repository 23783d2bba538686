"""Tests for tfp_vae.evaluation._flat_event: the flat-pixel log p(x|z).

The flat form sums the same per-pixel terms as the image-shaped likelihood,
so it must equal `likelihood.log_prob(images)` to float rounding, for every
likelihood the package builds, and the importance-sampled log p(x) that uses
it must equal the one computed from the image-shaped log-prob.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import evaluation
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.evaluation import _flat_event
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

_IMAGE_SHAPE = (7, 5, 2)


def _images(num_examples, binary, seed=0):
  rng = np.random.RandomState(seed)
  values = rng.rand(num_examples, *_IMAGE_SHAPE)
  return (values > 0.5 if binary else values).astype(np.float32)


def _image_shaped_only(decode):
  """`decode` whose likelihood `flat_event_log_prob` cannot flatten.

  An `Independent` over the likelihood with no further event dimensions:
  the same distribution and log-prob, through TFP's own reduction over the
  image axes.
  """
  return lambda latents: tfd.Independent(decode(latents), 0)


class FlatEventLogProbTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('bernoulli_logits', 'logits'), ('bernoulli_probs', 'probs'),
      ('normal', 'normal'),
      # Grey pixels scored by a Bernoulli (TFP allows any x in [0, 1]): the
      # one-softplus form is the same function of x, not only at 0 and 1.
      ('bernoulli_logits_grey_pixels', 'logits_grey'))
  def test_equals_the_image_shaped_log_prob(self, kind):
    rng = np.random.RandomState(1)
    params = rng.randn(3, 4, *_IMAGE_SHAPE).astype(np.float32)  # [k, B, ...]
    if kind in ('logits', 'logits_grey'):
      pixels = tfd.Bernoulli(logits=3 * params, dtype=tf.float32)
    elif kind == 'probs':
      pixels = tfd.Bernoulli(probs=tf.sigmoid(params), dtype=tf.float32)
    else:
      pixels = tfd.Normal(loc=params, scale=(0.3 + rng.rand(
          *_IMAGE_SHAPE)).astype(np.float32))
    likelihood = tfd.Independent(pixels, len(_IMAGE_SHAPE))
    images = _images(4, binary=kind in ('logits', 'probs'))
    flat = _flat_event.flat_event_log_prob(likelihood, images)
    self.assertEqual(flat.shape, [3, 4])
    self.assertAllClose(flat, likelihood.log_prob(images), rtol=1e-5,
                        atol=1e-3)

  @parameterized.named_parameters(
      ('bernoulli', dict(likelihood='bernoulli')),
      ('normal_per_pixel', dict(likelihood='normal')),
      ('normal_predicted', dict(likelihood='normal',
                                normal_scale='predicted')))
  def test_equals_the_package_likelihoods_log_prob(self, overrides):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(ModelConfig(
        image_shape=_IMAGE_SHAPE, latent_dim=3, hidden_units=(16,),
        **overrides))
    latents = tf.random.stateless_normal([6, 4, 3], seed=[1, 2])
    likelihood = model.decode(latents)
    images = _images(4, binary=overrides['likelihood'] == 'bernoulli')
    # The flat path is taken (not the fall-back to the likelihood's own
    # log_prob): the layer's output is flattened to 7 * 5 * 2 pixels.
    pixels, event_ndims = _flat_event.flat_pixels(likelihood)
    self.assertEqual(pixels.batch_shape, [6, 4, 70])
    self.assertEqual(event_ndims, 3)
    self.assertAllClose(_flat_event.flat_event_log_prob(likelihood, images),
                        likelihood.log_prob(images), rtol=1e-5, atol=1e-3)

  def test_other_distributions_use_their_own_log_prob(self):
    likelihood = tfd.MultivariateNormalDiag(loc=tf.zeros([4, 3]))
    value = tf.ones([4, 3])
    self.assertIsNone(_flat_event.flat_pixels(likelihood))
    self.assertAllEqual(_flat_event.flat_event_log_prob(likelihood, value),
                        likelihood.log_prob(value))

  @parameterized.parameters(True, False)
  def test_importance_sampled_estimate_is_unchanged(self, jit_compile):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(ModelConfig(
        image_shape=_IMAGE_SHAPE, latent_dim=3, hidden_units=(16,)))
    images = _images(12, binary=True)
    kwargs = dict(num_importance_samples=300, samples_per_chunk=64,
                  batch_size=5, seed=3, jit_compile=jit_compile)
    flat = evaluation.importance_sampled_log_likelihood(
        images, model.encode, model.decode, model.prior_distribution(),
        **kwargs)
    image_shaped = evaluation.importance_sampled_log_likelihood(
        images, model.encode, _image_shaped_only(model.decode),
        model.prior_distribution(), **kwargs)
    # The same samples and the same sum of per-pixel terms in another order:
    # equal to float32 rounding of ~50-nat numbers.
    self.assertAllClose(flat, image_shaped, rtol=0, atol=2e-4)


if __name__ == '__main__':
  tf.test.main()
