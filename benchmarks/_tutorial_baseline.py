"""The baseline design: TFP's "Probabilistic Layers VAE" tutorial, on the MLP VAE.

The tutorial builds a VAE from `tfp.layers` inside `tf_keras.Sequential`
models and trains it with plain `model.fit`:

  encoder  = Sequential([..., Dense(params_size), <posterior layer with
                         activity_regularizer=KLDivergenceRegularizer(prior)>])
  decoder  = Sequential([..., Dense(784), IndependentBernoulli(image_shape)])
  vae      = Model(encoder.inputs, decoder(encoder.outputs[0]))
  vae.compile(Adam(1e-3), loss=lambda x, rv_x: -rv_x.log_prob(x))
  vae.fit(dataset of (x, x) pairs)

No XLA, one step per call (tf_keras's defaults). The posterior layer's tensor
stand-in is a sample (the `tfp.layers` default), which is the one latent
sample the decoder sees. Only the networks and the KL differ from the
tutorial, to make the workload the same as the package's:

* MLP 784-512-512 / 16-512-512-784 (the tutorial uses convolutions);
* the exact (analytic) KL, `use_exact_kl=True` (the tutorial's regularizer
  default is a one-sample Monte Carlo KL). The full-covariance posterior's
  prior is therefore `MultivariateNormalDiag(0, I)`, for which `tfd` has the
  closed form KL(MultivariateNormalTriL || .); the diagonal posterior uses
  `IndependentNormal` and the tutorial's `Independent(Normal(0, 1))` prior.

Keras divides an activity regularizer's (summed) loss by the batch size, so
the loss is mean_b[-log p(x_b|z_b) + KL(q(z|x_b) || p(z))], the per-example
negative ELBO the package minimises.

Reference: "TFP Probabilistic Layers: Variational Auto Encoder",
tensorflow/probability, tensorflow_probability/examples/jupyter_notebooks/
Probabilistic_Layers_VAE.ipynb.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = ['build_tutorial_vae', 'tutorial_dataset']


def _prior_and_posterior_layer(posterior, latent_dim):
  if posterior == 'diag':
    prior = tfd.Independent(tfd.Normal(loc=tf.zeros(latent_dim), scale=1.),
                            reinterpreted_batch_ndims=1)
    layer_class = tfpl.IndependentNormal
  elif posterior == 'full_cov':
    prior = tfd.MultivariateNormalDiag(loc=tf.zeros(latent_dim),
                                       scale_diag=tf.ones(latent_dim))
    layer_class = tfpl.MultivariateNormalTriL
  else:
    raise ValueError(f"posterior must be 'diag' or 'full_cov'; got "
                     f'{posterior!r}.')
  layer = layer_class(
      latent_dim, activity_regularizer=tfpl.KLDivergenceRegularizer(
          prior, use_exact_kl=True, weight=1.0))
  return layer, layer_class.params_size(latent_dim)


def build_tutorial_vae(posterior, latent_dim=16, hidden_units=(512, 512),
                       image_shape=(28, 28, 1), learning_rate=1e-3,
                       jit_compile=False, steps_per_execution=1):
  """The tutorial's VAE with MLP networks, compiled as the tutorial does.

  Args:
    posterior: 'diag' or 'full_cov'.
    latent_dim, hidden_units, image_shape: the workload's sizes.
    learning_rate: Adam's step size.
    jit_compile, steps_per_execution: `compile` arguments; the tutorial's
      design is the default (False, 1).

  Returns:
    A compiled `tf_keras.Model` mapping images to p(x|z) (a distribution).
  """
  posterior_layer, num_params = _prior_and_posterior_layer(posterior,
                                                           latent_dim)
  layers = tf_keras.layers
  encoder = tf_keras.Sequential(
      [layers.InputLayer(input_shape=image_shape), layers.Flatten()] +
      [layers.Dense(units, activation='relu') for units in hidden_units] +
      [layers.Dense(num_params), posterior_layer], name='encoder')
  decoder = tf_keras.Sequential(
      [layers.InputLayer(input_shape=[latent_dim])] +
      [layers.Dense(units, activation='relu')
       for units in reversed(hidden_units)] +
      [layers.Dense(int(np.prod(image_shape))),
       tfpl.IndependentBernoulli(image_shape, tfd.Bernoulli.logits)],
      name='decoder')
  vae = tf_keras.Model(inputs=encoder.inputs,
                       outputs=decoder(encoder.outputs[0]), name='vae')
  negative_log_likelihood = lambda x, rv_x: -rv_x.log_prob(x)
  vae.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
              loss=negative_log_likelihood, jit_compile=jit_compile,
              steps_per_execution=steps_per_execution)
  return vae


def tutorial_dataset(images, batch_size, seed=0):
  """The tutorial's input pipeline: shuffle, batch, (x, x) pairs, prefetch.

  Args:
    images: `[N, H, W, C]` float32.
    batch_size: B; the last partial batch of an epoch is dropped, as in the
      package's pipeline, so every step has the same shape.
    seed: shuffle seed.

  Returns:
    An endless `tf.data.Dataset` of `([B, H, W, C], [B, H, W, C])` pairs.
  """
  dataset = tf.data.Dataset.from_tensor_slices(images)
  dataset = dataset.shuffle(len(images), seed=seed,
                            reshuffle_each_iteration=True).repeat()
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.map(lambda x: (x, x)).prefetch(tf.data.AUTOTUNE)
