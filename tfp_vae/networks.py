"""Encoder and decoder trunks: MLPs, gated MLPs and stride-2 convolutions.

A trunk maps its input to a flat parameter vector for a distribution layer
(`distribution_layers`): the encoder trunk ends in `Dense(posterior
params_size)`, the decoder trunk in `params_size` units of the likelihood.
All sizes come from `ModelConfig`.

  encoder: image [B, H, W, C] -> params [B, posterior_params_size]
  decoder: latent [B, D]      -> params [B, likelihood_params_size]
"""

import numpy as np
import tensorflow as tf

from tfp_vae._keras import keras

__all__ = ['GatedDense', 'mlp_encoder', 'mlp_decoder', 'conv_encoder',
           'conv_decoder', 'make_encoder', 'make_decoder']

layers = keras.layers


@keras.saving.register_keras_serializable(package='tfp_vae')
class GatedDense(layers.Layer):
  """A dense layer with a multiplicative sigmoid gate.

    h = activation(x W + b) * sigmoid(x V + c)        [B, N] -> [B, units]

  The gated linear unit of Dauphin et al. (2017, "Language modeling with
  gated convolutional networks"), which Tomczak & Welling (2018, "VAE with
  a VampPrior") use as the hidden layer of their MLP VAEs, with
  `activation='linear'`. W and V are one `[N, 2 * units]` kernel, so a
  layer is one matmul.
  """

  def __init__(self, units, activation='linear', **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.activation = keras.activations.get(activation)
    self._projection = layers.Dense(2 * self.units, name='projection')

  def build(self, input_shape):
    self._projection.build(input_shape)
    super().build(input_shape)

  def call(self, inputs):
    value, gate = tf.split(self._projection(inputs), 2, axis=-1)
    return self.activation(value) * tf.sigmoid(gate)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

  def get_config(self):
    return dict(super().get_config(), units=self.units,
                activation=keras.activations.serialize(self.activation))


def _hidden_layer(units, activation, gated):
  if gated:
    return GatedDense(units, activation=activation)
  return layers.Dense(units, activation=activation)


def mlp_encoder(image_shape, hidden_units, num_params, activation='relu',
                name='encoder', gated=False):
  """Flatten -> Dense(hidden_units[0]) -> ... -> Dense(num_params).

  Args:
    image_shape: `(H, W, C)`.
    hidden_units: sequence of hidden widths, e.g. `(512, 512)`.
    num_params: width of the output (the posterior's `params_size`).
    activation: hidden activation.
    name: model name.
    gated: hidden layers are `GatedDense` (with `activation` on their value
      path) instead of `Dense`.

  Returns:
    `tf_keras.Sequential`: `[B, H, W, C] -> [B, num_params]`.
  """
  return keras.Sequential(
      [layers.InputLayer(input_shape=tuple(image_shape)), layers.Flatten()] +
      [_hidden_layer(units, activation, gated) for units in hidden_units] +
      [layers.Dense(num_params, name='posterior_params')], name=name)


def mlp_decoder(latent_dim, hidden_units, num_params, activation='relu',
                name='decoder', gated=False):
  """Dense(hidden_units[-1]) -> ... -> Dense(hidden_units[0]) -> Dense(num_params).

  The widths mirror the encoder's (784-512-256 encoder, 256-512-784 decoder);
  `gated` as in `mlp_encoder`.

  Returns:
    `tf_keras.Sequential`: `[B, latent_dim] -> [B, num_params]`.
  """
  return keras.Sequential(
      [layers.InputLayer(input_shape=(latent_dim,))] +
      [_hidden_layer(units, activation, gated)
       for units in reversed(hidden_units)] +
      [layers.Dense(num_params, name='likelihood_params')], name=name)


def conv_encoder(image_shape, filters, num_params, activation='relu',
                 kernel_size=3, name='encoder'):
  """Stride-2 `Conv2D`s (each halves H and W) -> Flatten -> Dense(num_params).

  Returns:
    `tf_keras.Sequential`: `[B, H, W, C] -> [B, num_params]`.
  """
  return keras.Sequential(
      [layers.InputLayer(input_shape=tuple(image_shape))] +
      [layers.Conv2D(f, kernel_size, strides=2, padding='same',
                     activation=activation) for f in filters] +
      [layers.Flatten(), layers.Dense(num_params, name='posterior_params')],
      name=name)


def conv_decoder(latent_dim, image_shape, filters, num_params,
                 activation='relu', kernel_size=3, name='decoder'):
  """Dense -> reshape -> stride-2 `Conv2DTranspose`s -> Conv2D -> Flatten.

  The first Dense maps z to a `[H / 2^n, W / 2^n, filters[-1]]` feature map;
  each transposed convolution doubles H and W (filters in reverse order); a
  final 'same' convolution gives k * C channels per pixel, where
  k = num_params / (H * W * C) is the number of parameters per pixel value,
  and the output is laid out as k whole images, one after another.

  Args:
    latent_dim: D.
    image_shape: `(H, W, C)`; H and W must be multiples of `2 ** len(filters)`.
    filters: the encoder's filters; used in reverse.
    num_params: the likelihood's `params_size`, a multiple of `H * W * C`.

  Returns:
    `tf_keras.Sequential`: `[B, latent_dim] -> [B, num_params]`.

  Raises:
    ValueError: if H or W is not a multiple of `2 ** len(filters)`, or
      `num_params` is not a multiple of `H * W * C`.
  """
  height, width, channels = image_shape
  factor = 2 ** len(filters)
  if height % factor or width % factor:
    raise ValueError(
        f'conv_decoder: image shape {tuple(image_shape)} cannot be reached by '
        f'{len(filters)} stride-2 transposed convolutions; height and width '
        f'must be multiples of {factor}.')
  num_pixels = height * width * channels
  if num_params % num_pixels:
    raise ValueError(f'conv_decoder: num_params={num_params} is not a '
                     f'multiple of the {num_pixels} pixel values.')
  params_per_pixel = num_params // num_pixels
  base_shape = (height // factor, width // factor, filters[-1])
  return keras.Sequential(
      [layers.InputLayer(input_shape=(latent_dim,)),
       layers.Dense(int(np.prod(base_shape)), activation=activation),
       layers.Reshape(base_shape)] +
      [layers.Conv2DTranspose(f, kernel_size, strides=2, padding='same',
                              activation=activation)
       for f in reversed(filters)] +
      [layers.Conv2D(params_per_pixel * channels, kernel_size, padding='same',
                     name='likelihood_params'),
       # [B, H, W, k * C] -> [B, k, H, W, C] -> flat: the likelihood layers
       # split their params into k blocks of one image each (e.g. mean logits,
       # then raw scales), and this order keeps each block a whole image.
       layers.Reshape((height, width, params_per_pixel, channels)),
       layers.Permute((3, 1, 2, 4)),
       layers.Flatten()], name=name)


def make_encoder(config, num_params):
  """The encoder trunk a `ModelConfig` asks for."""
  if config.architecture in ('mlp', 'gated_mlp'):
    return mlp_encoder(config.image_shape, config.hidden_units, num_params,
                       config.activation,
                       gated=config.architecture == 'gated_mlp')
  return conv_encoder(config.image_shape, config.conv_filters, num_params,
                      config.activation)


def make_decoder(config, num_params):
  """The decoder trunk a `ModelConfig` asks for."""
  if config.architecture in ('mlp', 'gated_mlp'):
    return mlp_decoder(config.latent_dim, config.hidden_units, num_params,
                       config.activation,
                       gated=config.architecture == 'gated_mlp')
  return conv_decoder(config.latent_dim, config.image_shape,
                      config.conv_filters, num_params, config.activation)
