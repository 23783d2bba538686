"""Tests for tfp_vae.config: validation names the flag, JSON round trips."""

import dataclasses
import json
import math

from absl.testing import parameterized
import tensorflow as tf

from tfp_vae.config import ConfigMismatchError
from tfp_vae.config import ModelConfig
from tfp_vae.config import TrainConfig
from tfp_vae.config import resolve_run_settings


class ModelConfigTest(tf.test.TestCase, parameterized.TestCase):

  def test_defaults_are_valid(self):
    config = ModelConfig()
    self.assertEqual(config.posterior, 'full_cov')
    self.assertTrue(config.posterior_has_density)
    self.assertFalse(
        ModelConfig(posterior='deterministic').posterior_has_density)

  @parameterized.named_parameters(
      ('latent_dim_zero', 'latent_dim', 0),
      ('latent_dim_negative', 'latent_dim', -3),
      ('latent_dim_float', 'latent_dim', 2.5),
      ('latent_dim_bool', 'latent_dim', True),
      ('num_samples_zero', 'num_samples', 0),
      ('num_samples_negative', 'num_samples', -1),
      ('mixture_components_zero', 'mixture_components', 0),
      ('kl_warmup_steps_negative', 'kl_warmup_steps', -1),
      ('kl_warmup_epochs_negative', 'kl_warmup_epochs', -1),
      ('kl_warmup_epochs_float', 'kl_warmup_epochs', 2.5),
      ('beta_negative', 'beta', -0.5),
      ('beta_nan', 'beta', math.nan),
      ('beta_inf', 'beta', math.inf),
      ('input_noise_stddev_negative', 'input_noise_stddev', -0.1),
      ('posterior_min_scale_negative', 'posterior_min_scale', -1e-5),
      ('off_diagonal_scale_zero', 'full_cov_off_diagonal_scale', 0.0),
      ('off_diagonal_scale_nan', 'full_cov_off_diagonal_scale', math.nan),
      ('posterior', 'posterior', 'gaussian'),
      ('likelihood', 'likelihood', 'poisson'),
      ('normal_scale', 'normal_scale', 'global'),
      ('prior', 'prior', 'vamp'),
      ('architecture', 'architecture', 'resnet'),
      ('activation', 'activation', 'gelu2'),
      ('kl', 'kl', 'exact'),
      ('objective', 'objective', 'vimco'),
      ('hidden_units_empty', 'hidden_units', ()),
      ('hidden_units_zero', 'hidden_units', (512, 0)),
      ('conv_filters_negative', 'conv_filters', (-32,)),
      ('image_shape_rank', 'image_shape', (28, 28)),
      ('image_shape_zero', 'image_shape', (28, 0, 1)),
      ('seed', 'seed', 'zero'),
      ('posterior_rank_zero', 'posterior_rank', 0),
      ('flow_steps_zero', 'flow_steps', 0),
      ('flow_steps_float', 'flow_steps', 1.5),
      ('flow_hidden_units_empty', 'flow_hidden_units', ()),
      ('flow_hidden_units_zero', 'flow_hidden_units', (64, 0)),
  )
  def test_invalid_value_names_flag_and_value(self, field, value):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(**{field: value})
    message = str(raised.exception)
    self.assertIn(f'--{field}', message)
    self.assertIn(repr(value), message)

  def test_analytic_kl_with_mixture_prior_names_both_flags(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(prior='mixture', kl='analytic')
    message = str(raised.exception)
    self.assertIn('--kl', message)
    self.assertIn('--prior', message)
    self.assertIn('mixture', message)
    ModelConfig(prior='mixture', kl='mc')  # The valid combination.

  def test_new_families_are_accepted(self):
    config = ModelConfig(posterior='low_rank', posterior_rank=16,
                         latent_dim=16)
    self.assertEqual(config.posterior_rank, 16)
    config = ModelConfig(posterior='iaf', kl='mc', flow_steps=3,
                         flow_hidden_units=(32,))
    self.assertTrue(config.posterior_has_density)
    self.assertEqual(ModelConfig.from_json(config.to_json()), config)
    # The objective IWAE needs no KL estimator, but the flag still must not
    # ask for an analytic one.
    ModelConfig(posterior='iaf', kl='mc', objective='iwae')

  def test_analytic_kl_with_iaf_names_both_flags(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(posterior='iaf', kl='analytic')
    message = str(raised.exception)
    for flag in ('--kl=analytic', '--posterior=iaf', '--kl=mc'):
      self.assertIn(flag, message)

  def test_rank_above_latent_dim_names_both_flags(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(posterior='low_rank', posterior_rank=5, latent_dim=4)
    self.assertIn('--posterior_rank=5', str(raised.exception))
    self.assertIn('--latent_dim=4', str(raised.exception))
    # A rank that the family does not use is not checked against it.
    ModelConfig(posterior='diag', posterior_rank=5, latent_dim=4)

  def test_iaf_needs_two_latent_dimensions(self):
    with self.assertRaisesRegex(ValueError, '--latent_dim'):
      ModelConfig(posterior='iaf', kl='mc', latent_dim=1)

  @parameterized.parameters('diag', 'full_cov', 'deterministic')
  def test_a_config_stored_before_the_new_families_loads_unchanged(
      self, posterior):
    values = ModelConfig(posterior=posterior).to_dict()
    for field in ('posterior_rank', 'flow_steps', 'flow_hidden_units'):
      del values[field]
    self.assertEqual(ModelConfig.from_dict(values),
                     ModelConfig(posterior=posterior))

  def test_iwae_with_point_mass_names_both_flags(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(posterior='deterministic', objective='iwae')
    message = str(raised.exception)
    self.assertIn('--objective', message)
    self.assertIn('--posterior', message)

  def test_conv_with_unreachable_image_size_names_architecture(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(image_shape=(28, 20, 1), architecture='conv',
                  conv_filters=(32, 64, 128))
    message = str(raised.exception)
    self.assertIn('--architecture', message)
    self.assertIn('(28, 20, 1)', message)
    # Two stride-2 layers fit 28 x 20 (multiples of 4), and an MLP fits all.
    ModelConfig(image_shape=(28, 20, 1), architecture='conv',
                conv_filters=(32, 64))
    ModelConfig(image_shape=(28, 20, 1), architecture='mlp',
                conv_filters=(32, 64, 128))

  def test_json_round_trip(self):
    config = ModelConfig(image_shape=(28, 20, 1), latent_dim=4,
                         posterior='diag', likelihood='normal',
                         normal_scale='predicted', prior='mixture', kl='mc',
                         hidden_units=(64, 32), beta=0.5, kl_warmup_steps=10,
                         input_noise_stddev=0.1, seed=3)
    text = config.to_json()
    values = json.loads(text)
    self.assertEqual(values['image_shape'], [28, 20, 1])
    self.assertEqual(values['hidden_units'], [64, 32])
    restored = ModelConfig.from_json(text)
    self.assertEqual(restored, config)
    self.assertIsInstance(restored.image_shape, tuple)
    self.assertEqual(ModelConfig.from_dict(config.to_dict()), config)

  def test_a_stored_config_without_a_later_setting_keeps_its_old_value(self):
    values = ModelConfig(posterior='full_cov').to_dict()
    del values['full_cov_off_diagonal_scale']
    self.assertEqual(ModelConfig.from_dict(values).full_cov_off_diagonal_scale,
                     1.0)
    self.assertEqual(ModelConfig().full_cov_off_diagonal_scale, 0.03)
    self.assertEqual(ModelConfig.from_dict(ModelConfig().to_dict()),
                     ModelConfig())

  @parameterized.parameters('diag', 'deterministic')
  def test_a_later_setting_that_changes_nothing_takes_the_default(
      self, posterior):
    # An old diag run must still match the same command's config on resume.
    values = ModelConfig(posterior=posterior).to_dict()
    del values['full_cov_off_diagonal_scale']
    self.assertEqual(ModelConfig.from_dict(values),
                     ModelConfig(posterior=posterior))

  def test_from_dict_refuses_unknown_keys(self):
    values = ModelConfig().to_dict()
    values['latent_size'] = 3
    with self.assertRaisesRegex(ValueError, 'latent_size'):
      ModelConfig.from_dict(values)

  @parameterized.named_parameters(
      ('dict', {'class_name': 'Adam'}),
      ('callable', lambda: 'diag'),
      ('class', ModelConfig),
  )
  def test_from_dict_refuses_non_plain_values(self, value):
    with self.assertRaisesRegex(ValueError, 'posterior'):
      ModelConfig.from_dict({'posterior': value})

  def test_from_dict_needs_a_dict(self):
    with self.assertRaisesRegex(ValueError, 'dict'):
      ModelConfig.from_dict([('latent_dim', 3)])

  def test_frozen_and_differences(self):
    config = ModelConfig()
    with self.assertRaises(dataclasses.FrozenInstanceError):
      config.latent_dim = 3
    other = ModelConfig(latent_dim=3, seed=1)
    self.assertEqual(config.differences(other),
                     [('latent_dim', 16, 3), ('seed', 0, 1)])
    self.assertEqual(config.differences(other, ignore=('seed',)),
                     [('latent_dim', 16, 3)])
    self.assertTrue(issubclass(ConfigMismatchError, ValueError))


class TrainConfigTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('batch_size_zero', 'batch_size', 0),
      ('batch_size_negative', 'batch_size', -8),
      ('epochs_zero', 'epochs', 0),
      ('learning_rate_zero', 'learning_rate', 0.0),
      ('learning_rate_negative', 'learning_rate', -1e-3),
      ('learning_rate_nan', 'learning_rate', math.nan),
      ('dataset', 'dataset', 'cifar10'),
      ('strategy', 'strategy', 'parameter_server'),
      ('binarization', 'binarization', 'otsu'),
      ('max_train_examples', 'max_train_examples', -1),
      ('steps_per_execution', 'steps_per_execution', 0),
      ('keep_checkpoints', 'keep_checkpoints', 0),
      ('checkpoint_every_steps', 'checkpoint_every_steps', -5),
      ('early_stopping_patience', 'early_stopping_patience', -1),
      ('num_importance_samples', 'num_importance_samples', -1),
      ('jit_compile', 'jit_compile', 'yes'),
      ('model_dir', 'model_dir', ''),
      ('seed', 'seed', 1.5),
      ('max_steps', 'max_steps', -1),
      ('learning_rate_schedule', 'learning_rate_schedule', 'linear'),
      ('learning_rate_decay_zero', 'learning_rate_decay', 0.0),
      ('learning_rate_decay_one', 'learning_rate_decay', 1.0),
      ('learning_rate_decay_epochs', 'learning_rate_decay_epochs', -2),
      ('learning_rate_patience', 'learning_rate_patience', 0),
      ('min_learning_rate', 'min_learning_rate', -1e-5),
      ('adam_epsilon_zero', 'adam_epsilon', 0.0),
      ('adam_epsilon_nan', 'adam_epsilon', math.nan),
  )
  def test_invalid_value_names_flag_and_value(self, field, value):
    with self.assertRaises(ValueError) as raised:
      TrainConfig(**{field: value})
    message = str(raised.exception)
    self.assertIn(f'--{field}', message)
    self.assertIn(repr(value), message)

  def test_json_round_trip(self):
    config = TrainConfig(dataset='binarized_mnist', batch_size=32, epochs=2,
                         learning_rate=3e-4, strategy='mirrored',
                         jit_compile=False, num_importance_samples=100,
                         model_dir='/tmp/somewhere', seed=5)
    restored = TrainConfig.from_json(config.to_json())
    self.assertEqual(restored, config)
    self.assertEqual(TrainConfig.from_dict(config.to_dict()), config)

  def test_from_dict_refuses_unknown_keys_and_non_plain_values(self):
    with self.assertRaisesRegex(ValueError, 'lr'):
      TrainConfig.from_dict({'lr': 0.1})
    with self.assertRaisesRegex(ValueError, 'learning_rate'):
      TrainConfig.from_dict({'learning_rate': {'schedule': 'cosine'}})
    with self.assertRaisesRegex(ValueError, 'learning_rate'):
      TrainConfig.from_dict({'learning_rate': lambda step: 0.1})


class ProtocolSettingsTest(tf.test.TestCase, parameterized.TestCase):

  def test_the_kl_warm_up_in_steps_and_in_epochs_is_refused(self):
    with self.assertRaises(ValueError) as raised:
      ModelConfig(kl_warmup_steps=100, kl_warmup_epochs=2)
    message = str(raised.exception)
    self.assertIn('--kl_warmup_steps=100', message)
    self.assertIn('--kl_warmup_epochs=2', message)

  @parameterized.parameters('exponential', 'step')
  def test_a_decay_schedule_needs_its_epochs(self, schedule):
    with self.assertRaisesRegex(
        ValueError, f'--learning_rate_schedule={schedule} needs '
        '--learning_rate_decay_epochs > 0'):
      TrainConfig(learning_rate_schedule=schedule)
    TrainConfig(learning_rate_schedule=schedule, learning_rate_decay_epochs=3)

  def test_the_floor_must_be_below_the_learning_rate(self):
    with self.assertRaisesRegex(
        ValueError, r'--min_learning_rate=0\.01 .* below '
        r'--learning_rate=0\.001'):
      TrainConfig(learning_rate_schedule='cosine', min_learning_rate=0.01)

  def test_settings_added_later_read_as_their_old_behaviour(self):
    values = TrainConfig().to_dict()
    for name in ('max_steps', 'learning_rate_schedule', 'learning_rate_decay',
                 'learning_rate_decay_epochs', 'learning_rate_patience',
                 'min_learning_rate', 'adam_epsilon'):
      del values[name]
    old = TrainConfig.from_dict(values)
    # Adam's epsilon was Keras's default; no schedule, no step budget.
    self.assertEqual((old.adam_epsilon, old.learning_rate_schedule,
                      old.max_steps), (1e-7, 'constant', 0))
    model_values = ModelConfig().to_dict()
    del model_values['kl_warmup_epochs']
    self.assertEqual(ModelConfig.from_dict(model_values).kl_warmup_epochs, 0)


class ResolveRunSettingsTest(tf.test.TestCase):

  def test_the_dataset_binarization_and_the_warm_up_in_steps(self):
    model_config, train_config = resolve_run_settings(
        ModelConfig(kl_warmup_epochs=3), TrainConfig(dataset='mnist'),
        binarization='dynamic', steps_per_epoch=50)
    self.assertEqual(train_config.binarization, 'dynamic')
    self.assertEqual((model_config.kl_warmup_steps,
                      model_config.kl_warmup_epochs), (150, 0))
    # Resolved settings resolve to themselves.
    self.assertEqual(resolve_run_settings(model_config, train_config,
                                          'dynamic', 50),
                     (model_config, train_config))

  def test_a_binarization_other_than_the_datas_is_refused(self):
    with self.assertRaisesRegex(ValueError,
                                '--binarization=none .* \'dynamic\''):
      resolve_run_settings(ModelConfig(),
                           TrainConfig(dataset='mnist', binarization='none'),
                           binarization='dynamic', steps_per_epoch=50)

  def test_a_model_is_not_built_with_the_warm_up_in_epochs(self):
    from tfp_vae.model import VariationalAutoencoder  # pylint: disable=g-import-not-at-top
    with self.assertRaisesRegex(ValueError, '--kl_warmup_epochs=3'):
      VariationalAutoencoder(ModelConfig(kl_warmup_epochs=3))


if __name__ == '__main__':
  tf.test.main()
