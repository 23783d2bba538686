"""Tests for tfp_vae.networks."""

from absl.testing import parameterized
import numpy as np
from scipy import special
import tensorflow as tf

from tfp_vae import distribution_layers
from tfp_vae import networks
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig


def dense_units(model):
  return [layer.units for layer in model.layers
          if isinstance(layer, keras.layers.Dense)]


class MlpTest(tf.test.TestCase):

  def test_encoder_shapes_and_widths(self):
    encoder = networks.mlp_encoder((8, 6, 2), (32, 16), 10)
    self.assertEqual(dense_units(encoder), [32, 16, 10])
    self.assertEqual(encoder.layers[-1].name, 'posterior_params')
    self.assertEqual(encoder.layers[-1].get_config()['activation'], 'linear')
    images = np.random.RandomState(0).rand(3, 8, 6, 2).astype('float32')
    self.assertEqual(encoder(images).shape, [3, 10])

  def test_decoder_mirrors_encoder_widths(self):
    decoder = networks.mlp_decoder(4, (32, 16), 96)
    self.assertEqual(dense_units(decoder), [16, 32, 96])
    self.assertEqual(decoder.layers[-1].name, 'likelihood_params')
    self.assertEqual(decoder(np.zeros([3, 4], np.float32)).shape, [3, 96])

  def test_activation_is_used(self):
    encoder = networks.mlp_encoder((2, 2, 1), (5,), 3, activation='tanh')
    hidden = [layer for layer in encoder.layers
              if isinstance(layer, keras.layers.Dense)][0]
    self.assertEqual(hidden.get_config()['activation'], 'tanh')


class GatedDenseTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('linear', 'linear', lambda a: a),
                                  ('tanh', 'tanh', np.tanh))
  def test_is_value_times_sigmoid_gate(self, activation, numpy_activation):
    # h = activation(x W + b) * sigmoid(x V + c), W|V and b|c one kernel.
    layer = networks.GatedDense(3, activation=activation)
    inputs = np.random.RandomState(0).randn(4, 5).astype('float32')
    outputs = self.evaluate(layer(inputs))
    kernel, bias = self.evaluate(layer.weights)
    self.assertEqual(kernel.shape, (5, 6))
    projected = inputs @ kernel + bias
    self.assertAllClose(
        outputs,
        numpy_activation(projected[:, :3]) * special.expit(projected[:, 3:]),
        atol=1e-6)

  def test_config_round_trip(self):
    layer = networks.GatedDense(7, activation='tanh', name='g')
    clone = networks.GatedDense.from_config(layer.get_config())
    self.assertEqual((clone.units, clone.name), (7, 'g'))
    self.assertIs(clone.activation, keras.activations.tanh)

  def test_gated_mlp_trunks(self):
    encoder = networks.mlp_encoder((4, 4, 1), (8, 6), 5, activation='linear',
                                   gated=True)
    gated = [layer for layer in encoder.layers
             if isinstance(layer, networks.GatedDense)]
    self.assertEqual([layer.units for layer in gated], [8, 6])
    self.assertEqual(encoder(np.zeros([2, 4, 4, 1], np.float32)).shape,
                     [2, 5])
    decoder = networks.mlp_decoder(3, (8, 6), 16, gated=True)
    self.assertEqual([layer.units for layer in decoder.layers
                      if isinstance(layer, networks.GatedDense)], [6, 8])
    self.assertEqual(decoder(np.zeros([2, 3], np.float32)).shape, [2, 16])


class ConvTest(tf.test.TestCase, parameterized.TestCase):

  def test_encoder_halves_the_image_per_layer(self):
    encoder = networks.conv_encoder((8, 16, 1), (4, 8), 6)
    convs = [layer for layer in encoder.layers
             if isinstance(layer, keras.layers.Conv2D)]
    self.assertEqual([c.output_shape[1:] for c in convs],
                     [(4, 8, 4), (2, 4, 8)])
    self.assertEqual(encoder(np.zeros([2, 8, 16, 1], np.float32)).shape,
                     [2, 6])

  @parameterized.named_parameters(('one_param_per_pixel', 1),
                                  ('two_params_per_pixel', 2))
  def test_decoder_output_shape(self, params_per_pixel):
    image_shape = (8, 4, 3)
    num_params = params_per_pixel * 8 * 4 * 3
    decoder = networks.conv_decoder(5, image_shape, (4, 8), num_params)
    transposed = [layer for layer in decoder.layers
                  if isinstance(layer, keras.layers.Conv2DTranspose)]
    # Filters in reverse, each doubling height and width.
    self.assertEqual([t.output_shape[1:] for t in transposed],
                     [(4, 2, 8), (8, 4, 4)])
    self.assertEqual(decoder(np.zeros([2, 5], np.float32)).shape,
                     [2, num_params])

  def test_decoder_refuses_unreachable_shapes(self):
    with self.assertRaisesRegex(ValueError, 'multiples of 8'):
      networks.conv_decoder(2, (28, 20, 1), (8, 16, 32), 560)
    with self.assertRaisesRegex(ValueError, 'num_params=100'):
      networks.conv_decoder(2, (8, 8, 1), (8,), 100)

  def test_decoder_tail_lays_params_out_as_whole_images(self):
    # Feed the tail (Reshape, Permute, Flatten) a known feature map whose
    # value spells out (block, row, column, channel).
    height, width, channels, blocks = 4, 8, 2, 2
    decoder = networks.conv_decoder(3, (height, width, channels), (4, 8),
                                    blocks * height * width * channels)
    index = [i for i, layer in enumerate(decoder.layers)
             if layer.name == 'likelihood_params'][0]
    tail = decoder.layers[index + 1:]
    self.assertLen(tail, 3)
    block, row, column, channel = np.meshgrid(
        np.arange(blocks), np.arange(height), np.arange(width),
        np.arange(channels), indexing='ij')
    code = 1000 * block + 100 * row + 10 * column + channel  # [k, H, W, C]
    # The conv's channel axis holds k * C values: block-major.
    feature_map = np.transpose(code, (1, 2, 0, 3)).reshape(
        1, height, width, blocks * channels).astype('float32')
    flat = feature_map
    for layer in tail:
      flat = layer(flat)
    # Block j is one whole image, flattened row-major over (H, W, C).
    self.assertAllEqual(flat[0], code.reshape(-1))

  @parameterized.named_parameters(('one_channel', 1), ('three_channels', 3))
  def test_predicted_normal_reads_mean_and_scale_from_their_channels(
      self, channels):
    # The likelihood's mean at pixel (h, w, c) is sigmoid of the final conv's
    # channel c there, and its scale comes from channel C + c.
    image_shape = (8, 8, channels)
    num_params = distribution_layers.IndependentNormalLikelihood.params_size(
        image_shape, 'predicted')
    decoder = networks.conv_decoder(2, image_shape, (8, 16), num_params)
    conv_output = keras.Model(
        decoder.inputs, decoder.get_layer('likelihood_params').output)
    latents = np.random.RandomState(0).randn(3, 2).astype('float32')
    features = self.evaluate(conv_output(latents))  # [B, H, W, 2C]
    self.assertEqual(features.shape, (3, 8, 8, 2 * channels))
    likelihood = distribution_layers.IndependentNormalLikelihood(
        image_shape, scale='predicted')(decoder(latents))
    self.assertAllClose(likelihood.mean(),
                        special.expit(features[..., :channels]), atol=1e-6)
    self.assertAllClose(
        likelihood.stddev(),
        np.logaddexp(0.0, features[..., channels:]) + 1e-3, atol=1e-6)

  def test_bernoulli_logits_are_the_conv_output(self):
    image_shape = (8, 8, 2)
    decoder = networks.conv_decoder(2, image_shape, (8,), 8 * 8 * 2)
    conv_output = keras.Model(
        decoder.inputs, decoder.get_layer('likelihood_params').output)
    latents = np.random.RandomState(1).randn(3, 2).astype('float32')
    likelihood = distribution_layers.IndependentBernoulliLikelihood(
        image_shape)(decoder(latents))
    self.assertAllClose(likelihood.tensor_distribution.distribution.logits,
                        conv_output(latents))


class FactoryTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('mlp', 'mlp'), ('gated_mlp', 'gated_mlp'),
                                  ('conv', 'conv'))
  def test_make_encoder_and_decoder_follow_the_config(self, architecture):
    config = ModelConfig(image_shape=(8, 8, 1), latent_dim=3,
                         hidden_units=(16,), conv_filters=(4, 8),
                         architecture=architecture, activation='elu')
    encoder = networks.make_encoder(config, 9)
    decoder = networks.make_decoder(config, 64)
    self.assertEqual(encoder(np.zeros([2, 8, 8, 1], np.float32)).shape,
                     [2, 9])
    self.assertEqual(decoder(np.zeros([2, 3], np.float32)).shape, [2, 64])
    has_conv = any(isinstance(layer, keras.layers.Conv2D)
                   for layer in encoder.layers)
    self.assertEqual(has_conv, architecture == 'conv')
    self.assertEqual(
        any(isinstance(layer, networks.GatedDense) for layer in encoder.layers),
        architecture == 'gated_mlp')
    hidden = [layer for layer in encoder.layers
              if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D,
                                    networks.GatedDense))]
    self.assertEqual(hidden[0].get_config()['activation'], 'elu')
    if architecture == 'mlp':
      self.assertEqual(dense_units(encoder), [16, 9])


if __name__ == '__main__':
  tf.test.main()
