"""Priors p(z) over the latent vector, as Keras layers that own their variables.

A prior is a layer so that its variables (if any) are tracked, checkpointed
and trained with the model; `distribution()` returns the `tfd.Distribution`
with event shape `[latent_size]` and no batch shape.

  `StandardNormalPrior`      N(0, I); analytic KL against Gaussian posteriors.
  `MixtureOfGaussiansPrior`  learnable mixture of diagonal Gaussians; no
                             closed-form KL, so the Monte Carlo estimator is
                             required (asking for the analytic one is refused).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae._checks import check_positive_int
from tfp_vae._keras import keras

tfd = tfp.distributions

__all__ = ['StandardNormalPrior', 'MixtureOfGaussiansPrior']

_PACKAGE = 'tfp_vae'


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StandardNormalPrior(keras.layers.Layer):
  """The standard normal prior `tfd.MultivariateNormalDiag(0, I)`.

  Args:
    latent_size: Python `int` > 0, the event size D.
    **kwargs: `tf_keras.layers.Layer` arguments (`name`, `dtype`).
  """

  has_analytic_kl = True

  def __init__(self, latent_size, **kwargs):
    super().__init__(**kwargs)
    self.latent_size = check_positive_int(latent_size, 'latent_size')

  def distribution(self):
    """Returns `tfd.MultivariateNormalDiag` with event shape `[latent_size]`."""
    return tfd.MultivariateNormalDiag(
        loc=tf.zeros([self.latent_size], self.dtype),
        scale_diag=tf.ones([self.latent_size], self.dtype))

  def call(self, inputs=None):
    del inputs
    return self.distribution()

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size)
    return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixtureOfGaussiansPrior(keras.layers.Layer):
  """A learnable mixture of `num_components` diagonal Gaussians.

  ```none
  p(z) = sum_k softmax(mixture_logits)_k * Normal(z; loc_k, diag(scale_k)^2)
  scale_k = softplus(raw_scale_k) + 1e-5
  ```

  The component locations start at a seeded draw from N(0, I) so that the
  components are distinct; the scales start at 1 and the weights uniform.
  `tfd.kl_divergence(q, mixture)` has no closed form; use the Monte Carlo KL.

  Args:
    latent_size: Python `int` > 0, the event size D.
    num_components: Python `int` > 0, the number of mixture components K.
    seed: Python `int`, seeds the initial component locations.
    **kwargs: `tf_keras.layers.Layer` arguments.

  References: TFP's former `examples/vae.py` (mixture prior option);
  Tomczak & Welling, VAE with a VampPrior, 2018 (why learnable priors help).
  """

  has_analytic_kl = False

  def __init__(self, latent_size, num_components, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.latent_size = check_positive_int(latent_size, 'latent_size')
    self.num_components = check_positive_int(num_components,
                                             'num_components')
    self.seed = int(seed)
    self.loc = self.add_weight(
        name='loc', shape=[self.num_components, self.latent_size],
        initializer=keras.initializers.RandomNormal(seed=self.seed))
    self.raw_scale = self.add_weight(
        name='raw_scale', shape=[self.num_components, self.latent_size],
        initializer=keras.initializers.Constant(np.log(np.e - 1.0)))
    self.mixture_logits = self.add_weight(
        name='mixture_logits', shape=[self.num_components],
        initializer='zeros')
    self.built = True

  def distribution(self):
    """Returns `tfd.MixtureSameFamily`, event shape `[latent_size]`."""
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=self.mixture_logits),
        components_distribution=tfd.MultivariateNormalDiag(
            loc=self.loc,
            scale_diag=tf.math.softplus(self.raw_scale) + 1e-5))

  def call(self, inputs=None):
    del inputs
    return self.distribution()

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size,
                  num_components=self.num_components, seed=self.seed)
    return config
