"""Tests for tfp_vae.model.VariationalAutoencoder.

The objective the model reports is checked against an independent sum of its
parts: `encode`, `objectives.sample_latents`, `decode(z).log_prob(x)` and
`tfd.kl_divergence`, called here with the same seeds.
"""

import os
import re
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import _keras_internals
from tfp_vae import objectives
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig
from tfp_vae.model import VariationalAutoencoder

tfd = tfp.distributions

IMAGE_SHAPE = (8, 8, 1)


def small_config(**overrides):
  values = dict(image_shape=IMAGE_SHAPE, latent_dim=3, hidden_units=(32,),
                conv_filters=(8, 16), posterior='diag', seed=0)
  values.update(overrides)
  return ModelConfig(**values)


def bar_images(num_examples, seed):
  """8x8 binary images holding one horizontal or one vertical bar."""
  rng = np.random.RandomState(seed)
  images = np.zeros((num_examples,) + IMAGE_SHAPE, np.float32)
  for image in images:
    if rng.rand() < 0.5:
      image[rng.randint(8), :, 0] = 1.0
    else:
      image[:, rng.randint(8), 0] = 1.0
  return images


def continuous_images(num_examples, seed):
  rng = np.random.RandomState(seed)
  return rng.uniform(0.05, 0.95, (num_examples,) + IMAGE_SHAPE).astype(
      np.float32)


def latent_seed_of(seed):
  """The part of a batch seed that draws latents (compute_terms' split)."""
  return tf.random.experimental.stateless_split(seed, 2)[0]


def independent_terms(model, images, seed, kl_weight):
  """Per-example ELBO terms, summed from the model's parts by hand.

  Returns numpy dict with 'loss', 'elbo', 'kl', 'nll' of shape [B].
  """
  config = model.model_config
  approx_posterior = model.encode(images)
  latents = objectives.sample_latents(approx_posterior, config.num_samples,
                                      latent_seed_of(seed))  # [L, B, D]
  log_likelihood = model.decode(latents).log_prob(images)  # [L, B]
  nll = -tf.reduce_mean(log_likelihood, axis=0)
  q = approx_posterior.tensor_distribution
  prior = model.prior_distribution()
  if objectives.is_point_mass(q):
    kl = tf.zeros_like(nll)
  elif config.kl == 'analytic':
    kl = tfd.kl_divergence(q, prior)
  else:
    kl = tf.reduce_mean(q.log_prob(latents) - prior.log_prob(latents), axis=0)
  return {'loss': (nll + kl_weight * kl).numpy(),
          'elbo': (-nll - kl).numpy(), 'kl': kl.numpy(), 'nll': nll.numpy()}


class StructureTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('diag_bernoulli_mlp', dict(posterior='diag'),
       tfd.MultivariateNormalDiag, tfd.Bernoulli, tfd.MultivariateNormalDiag),
      ('full_cov_normal_conv',
       dict(posterior='full_cov', likelihood='normal', architecture='conv'),
       tfd.MultivariateNormalTriL, tfd.Normal, tfd.MultivariateNormalDiag),
      ('point_mass_predicted_normal',
       dict(posterior='deterministic', likelihood='normal',
            normal_scale='predicted'),
       tfd.VectorDeterministic, tfd.Normal, tfd.MultivariateNormalDiag),
      ('diag_conv_mixture',
       dict(architecture='conv', prior='mixture', kl='mc'),
       tfd.MultivariateNormalDiag, tfd.Bernoulli, tfd.MixtureSameFamily),
  )
  def test_distributions_types_and_shapes(self, overrides, posterior_type,
                                          pixel_type, prior_type):
    config = small_config(**overrides)
    model = VariationalAutoencoder(config)
    images = bar_images(5, seed=0)
    approx_posterior = model.encode(images)
    self.assertIsInstance(approx_posterior.tensor_distribution,
                          posterior_type)
    self.assertEqual(approx_posterior.batch_shape, [5])
    self.assertEqual(approx_posterior.event_shape, [3])
    latents = tf.random.stateless_normal([2, 5, 3], seed=(1, 2))
    likelihood = model.decode(latents)
    self.assertIsInstance(likelihood.tensor_distribution, tfd.Independent)
    self.assertIsInstance(likelihood.tensor_distribution.distribution,
                          pixel_type)
    self.assertEqual(likelihood.batch_shape, [2, 5])
    self.assertEqual(likelihood.event_shape, IMAGE_SHAPE)
    self.assertEqual(likelihood.log_prob(images).shape, [2, 5])
    prior = model.prior_distribution()
    self.assertIsInstance(prior, prior_type)
    self.assertEqual(prior.batch_shape, [])
    self.assertEqual(prior.event_shape, [3])
    terms = model(images)
    expected_keys = {'loss', 'elbo', 'kl', 'nll'}
    self.assertEqual(set(terms), expected_keys)
    for value in terms.values():
      self.assertEqual(value.shape, [5])
      self.assertTrue(np.all(np.isfinite(value)))

  @parameterized.named_parameters(('bernoulli', 'bernoulli'),
                                  ('normal', 'normal'))
  def test_sample_and_reconstruct_shapes_and_ranges(self, likelihood):
    model = VariationalAutoencoder(small_config(likelihood=likelihood))
    samples = self.evaluate(model.sample(6, seed=3))
    self.assertEqual(samples.shape, (6,) + IMAGE_SHAPE)
    self.assertTrue(np.all((samples >= 0) & (samples <= 1)))
    self.assertAllEqual(model.sample(6, seed=3), samples)
    self.assertNotAllClose(model.sample(6, seed=4), samples)
    drawn = self.evaluate(model.sample(6, seed=3, use_mean=False))
    self.assertEqual(drawn.shape, (6,) + IMAGE_SHAPE)
    if likelihood == 'bernoulli':
      self.assertTrue(np.all((drawn == 0) | (drawn == 1)))
    images = bar_images(4, seed=1)
    reconstructions = self.evaluate(model.reconstruct(images))
    self.assertEqual(reconstructions.shape, (4,) + IMAGE_SHAPE)
    self.assertTrue(np.all((reconstructions >= 0) & (reconstructions <= 1)))

  def test_config_argument(self):
    config = small_config()
    self.assertEqual(VariationalAutoencoder(config.to_dict()).model_config,
                     config)
    with self.assertRaisesRegex(ValueError, 'ModelConfig'):
      VariationalAutoencoder('diag')


class SaveLoadTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('keras', 'keras'), ('saved_model', 'tf'))
  def test_round_trip_gives_identical_distributions(self, save_format):
    # One model with every weight kind: conv trunks, full-covariance
    # posterior, per-pixel Normal scale, mixture prior.
    config = small_config(posterior='full_cov', likelihood='normal',
                          architecture='conv', prior='mixture', kl='mc')
    model = VariationalAutoencoder(config)
    rng = np.random.RandomState(0)
    # Move the weights that start at constants, so a weight that is not
    # restored shows.
    model.likelihood_layer.raw_scale.assign(rng.randn(*IMAGE_SHAPE))
    model.prior.mixture_logits.assign(rng.randn(config.mixture_components))
    model.prior.raw_scale.assign(
        rng.randn(config.mixture_components, config.latent_dim))
    model.beta.assign(0.5)
    images = continuous_images(4, seed=2)
    latents = rng.randn(2, 4, config.latent_dim).astype(np.float32)
    expected_terms = model(images)
    with tempfile.TemporaryDirectory() as tmp:
      if save_format == 'keras':
        path = os.path.join(tmp, 'vae.keras')
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
      else:
        path = os.path.join(tmp, 'vae')
        model.save(path, save_format='tf')
        loaded = keras.models.load_model(path)
    self.assertIsInstance(loaded, VariationalAutoencoder)
    self.assertEqual(loaded.model_config, config)
    self.assertEqual(float(loaded.beta.numpy()), 0.5)
    self.assertAllEqual(loaded.encode(images).mean(),
                        model.encode(images).mean())
    self.assertAllEqual(loaded.encode(images).stddev(),
                        model.encode(images).stddev())
    self.assertAllEqual(loaded.decode(latents).log_prob(images),
                        model.decode(latents).log_prob(images))
    self.assertAllEqual(loaded.prior_distribution().log_prob(latents),
                        model.prior_distribution().log_prob(latents))
    loaded_terms = loaded(images)
    for name, value in expected_terms.items():
      self.assertAllEqual(loaded_terms[name], value)


class ObjectiveTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('diag_analytic', dict(posterior='diag', kl='analytic')),
      ('full_cov_analytic', dict(posterior='full_cov', kl='analytic')),
      ('full_cov_mc', dict(posterior='full_cov', kl='mc')),
      ('low_rank_analytic', dict(posterior='low_rank', kl='analytic')),
      ('low_rank_mc', dict(posterior='low_rank', kl='mc')),
      ('iaf_mc', dict(posterior='iaf', kl='mc', flow_hidden_units=(8,))),
      ('mixture_mc', dict(posterior='diag', kl='mc', prior='mixture')),
      ('normal_likelihood', dict(posterior='diag', likelihood='normal')),
  )
  def test_terms_are_the_sum_of_their_parts(self, overrides):
    model = VariationalAutoencoder(small_config(num_samples=3, **overrides))
    images = (continuous_images(5, seed=3) if 'likelihood' in overrides else
              bar_images(5, seed=3))
    seed = tf.constant([5, 6], tf.int64)
    # The KL weight is a variable: changing it needs no rebuild.
    model.beta.assign(0.25)
    terms = model.compute_terms(images, seed)
    expected = independent_terms(model, images, seed, kl_weight=0.25)
    for name in ('elbo', 'kl', 'nll', 'loss'):
      self.assertAllClose(terms[name], expected[name], rtol=1e-5, atol=1e-5,
                          msg=name)
    self.assertTrue(np.all(np.abs(expected['kl']) > 1e-3))
    self.assertAllClose(terms['elbo'], -terms['nll'] - terms['kl'])
    self.assertAllClose(terms['loss'], terms['nll'] + 0.25 * terms['kl'])
    self.assertNotAllClose(terms['loss'], -terms['elbo'])
    model.beta.assign(2.0)
    self.assertAllClose(model.compute_terms(images, seed)['loss'],
                        expected['nll'] + 2.0 * expected['kl'], rtol=1e-5)
    self.assertAllClose(
        model.compute_terms(images, seed, kl_weight=0.0)['loss'],
        expected['nll'], rtol=1e-5)
    # Calling the model reports the unweighted objective, with fixed noise.
    called = model(images)
    self.assertAllClose(called['loss'], -called['elbo'])
    self.assertAllEqual(model(images)['elbo'], called['elbo'])

  def test_iwae_terms(self):
    model = VariationalAutoencoder(
        small_config(objective='iwae', num_samples=4, kl='mc'))
    images = bar_images(5, seed=4)
    seed = tf.constant([7, 8], tf.int64)
    terms = model.compute_terms(images, seed)
    self.assertIn('iwae', terms)
    approx_posterior = model.encode(images)
    latents = objectives.sample_latents(approx_posterior, 4,
                                        latent_seed_of(seed))
    log_weights = (model.decode(latents).log_prob(images) +
                   model.prior_distribution().log_prob(latents) -
                   approx_posterior.log_prob(latents))  # [K, B]
    expected_iwae = (tf.reduce_logsumexp(log_weights, axis=0) -
                     np.log(4.0))
    self.assertAllClose(terms['iwae'], expected_iwae, rtol=1e-5)
    self.assertAllClose(terms['loss'], -terms['iwae'])
    self.assertAllClose(terms['elbo'], tf.reduce_mean(log_weights, axis=0),
                        rtol=1e-5)
    self.assertTrue(np.all(terms['iwae'] >= terms['elbo']))

  def test_kl_weight_warms_up_linearly(self):
    model = VariationalAutoencoder(small_config(beta=0.5, kl_warmup_steps=4))
    for step in range(8):
      self.assertAllClose(model.kl_weight(tf.constant(step, tf.int64)),
                          0.5 * min(1.0, (step + 1) / 4))
    model.beta.assign(2.0)
    self.assertAllClose(model.kl_weight(tf.constant(1, tf.int64)), 1.0)
    self.assertAllClose(model.kl_weight(tf.constant(10, tf.int64)), 2.0)
    no_warmup = VariationalAutoencoder(small_config(beta=0.5))
    self.assertAllClose(no_warmup.kl_weight(tf.constant(0, tf.int64)), 0.5)

  def test_fit_reports_the_mean_loss_with_the_kl_counted_once(self):
    # Regression test for the tfp.layers VAE tutorial bug (TFP issue 1215):
    # the KL term added both as an activity regulariser and in the loss.
    # With a 2-step warm-up the KL weight is 0.5 at step 0 and 1 at step 1.
    config = small_config(kl_warmup_steps=2)
    model = VariationalAutoencoder(config)
    images = bar_images(16, seed=5)
    batch_size = 8
    # A zero learning rate keeps the weights, so every step can be redone.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(
        tf.data.Dataset.from_tensor_slices(images).batch(batch_size),
        epochs=1, verbose=0)
    self.assertEmpty(model.losses)
    per_step = []
    for step, kl_weight in enumerate((0.5, 1.0)):
      train_seed = tf.constant([config.seed, step], tf.int64)
      per_step.append(independent_terms(
          model, images[step * batch_size:(step + 1) * batch_size],
          train_seed, kl_weight))
    for name in ('loss', 'elbo', 'kl', 'nll'):
      expected = np.mean(np.concatenate([terms[name] for terms in per_step]))
      self.assertAllClose(history.history[name][0], expected, rtol=1e-5,
                          msg=name)
    self.assertGreater(history.history['kl'][0], 0.01)
    # Two equal batches, the KL weighed by 0.5 then 1: counted once each.
    kl_by_step = [terms['kl'].mean() for terms in per_step]
    nll = history.history['nll'][0]
    self.assertAllClose(history.history['loss'][0],
                        nll + 0.5 * (0.5 * kl_by_step[0] + kl_by_step[1]),
                        rtol=1e-5)

  def test_point_mass_posterior_has_no_kl(self):
    model = VariationalAutoencoder(
        small_config(posterior='deterministic', beta=3.0))
    images = bar_images(4, seed=6)
    terms = model.compute_terms(images, tf.constant([1, 2], tf.int64))
    self.assertAllEqual(terms['kl'], np.zeros(4))
    self.assertAllClose(terms['loss'], terms['nll'])
    self.assertAllClose(terms['elbo'], -terms['nll'])
    expected_nll = -model.decode(model.encode(images).mean()).log_prob(images)
    self.assertAllClose(terms['nll'], expected_nll, rtol=1e-6)

  def test_denoising_autoencoder_corrupts_the_input_not_the_target(self):
    noise_stddev = 0.3
    model = VariationalAutoencoder(
        small_config(posterior='deterministic',
                     input_noise_stddev=noise_stddev))
    images = bar_images(4, seed=7)
    # Evaluation: clean input, deterministic.
    eval_terms = model(images)
    self.assertAllEqual(model(images)['nll'], eval_terms['nll'])
    clean_nll = -model.decode(model.encode(images).mean()).log_prob(images)
    self.assertAllClose(eval_terms['nll'], clean_nll, rtol=1e-6)
    # Training: noisy encoder input, clean target.
    train_terms = model(images, training=True)
    self.assertNotAllClose(train_terms['nll'], eval_terms['nll'])
    seed = tf.constant([3, 4], tf.int64)
    terms = model.compute_terms(images, seed, training=True)
    input_seed = tf.random.experimental.stateless_split(seed, 2)[1]
    noisy_images = images + noise_stddev * tf.random.stateless_normal(
        images.shape, input_seed)
    code = model.encode(noisy_images).mean()
    self.assertAllClose(terms['nll'],
                        -model.decode(code).log_prob(images), rtol=1e-6)
    self.assertNotAllClose(terms['nll'],
                           -model.decode(code).log_prob(noisy_images))

  @parameterized.named_parameters(('diag', 'diag'), ('full_cov', 'full_cov'),
                                  ('low_rank', 'low_rank'), ('iaf', 'iaf'))
  def test_replica_halves_see_the_noise_of_the_whole_batch(self, posterior):
    model = VariationalAutoencoder(
        small_config(posterior=posterior, input_noise_stddev=0.2,
                     kl='mc' if posterior == 'iaf' else 'analytic',
                     num_samples=2))
    images = bar_images(6, seed=8)
    seed = tf.constant([9, 10], tf.int64)
    whole = model.compute_terms(images, seed, training=True)
    first = model.compute_terms(images[:2], seed, training=True,
                                example_offset=0, total_examples=6)
    second = model.compute_terms(images[2:], seed, training=True,
                                 example_offset=2, total_examples=6)
    for name in ('loss', 'elbo', 'kl', 'nll'):
      self.assertAllClose(tf.concat([first[name], second[name]], axis=0),
                          whole[name], rtol=1e-5, atol=1e-5)


class TrainingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('diag', 'diag'), ('full_cov', 'full_cov'))
  def test_training_improves_validation_elbo_under_xla(self, posterior):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config(posterior=posterior,
                                                latent_dim=2))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True,
                  steps_per_execution=25)
    validation = tf.data.Dataset.from_tensor_slices(
        bar_images(128, seed=1)).batch(64)
    # No drop_remainder: the batch size is unknown when the step is traced.
    train = tf.data.Dataset.from_tensor_slices(bar_images(512, seed=0)).shuffle(
        512, seed=0).batch(32).repeat()
    before = model.evaluate(validation, verbose=0, return_dict=True)
    history = model.fit(train, steps_per_epoch=300, epochs=1, verbose=0)
    after = model.evaluate(validation, verbose=0, return_dict=True)
    self.assertTrue(np.isfinite(history.history['loss'][0]))
    # An untrained model is near 64 * log(2) = 44 nats; a good one is ~20.
    self.assertGreater(after['elbo'], before['elbo'] + 10.0)
    self.assertGreater(after['elbo'], -30.0)


def keras_per_step_train_function(model):
  """Makes `model.fit` use tf_keras's own train function (one XLA call/step)."""
  model.make_train_function = (
      lambda force=False: keras.Model.make_train_function(model, force))


class InitialisationTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('mlp', 'conv')
  def test_full_cov_starts_diagonal_and_learns_correlations(self,
                                                            architecture):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config(
        posterior='full_cov', latent_dim=4, architecture=architecture))
    images = bar_images(64, seed=0)
    scale = model.encode(images).scale.to_dense().numpy()  # [64, 4, 4]
    self.assertAllEqual(np.tril(scale, -1), np.zeros_like(scale))
    self.assertGreater(np.abs(np.diagonal(scale, axis1=1, axis2=2)).min(), 0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    scale = model.encode(images).scale.to_dense().numpy()
    self.assertGreater(np.abs(np.tril(scale, -1)).max(), 1e-3)


class FusedStepsTest(tf.test.TestCase, parameterized.TestCase):
  """`make_train_function` fuses an execution's steps into one XLA call.

  The fused function must take exactly the steps Keras's per-step loop
  takes: same batches, same order, same noise, same counters. The weights
  agree to rounding: XLA may fuse the same step differently inside a loop
  (bitwise equal on one CPU, 1-ulp differences on another), while one batch
  or noise draw off would move them by about the learning rate, 3e-3.
  """

  def fit_both(self, make_dataset, steps_per_execution, **fit_kwargs):
    models = []
    for fused in (True, False):
      keras.utils.set_random_seed(0)
      model = VariationalAutoencoder(small_config(posterior='full_cov'))
      model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True,
                    steps_per_execution=steps_per_execution)
      if not fused:
        keras_per_step_train_function(model)
      history = model.fit(make_dataset(), verbose=0, **fit_kwargs)
      models.append((model, history.history))
    (fused_model, fused_history), (keras_model, keras_history) = models
    self.assertGreater(fused_model._fused_steps.experimental_get_tracing_count(),
                       0)
    self.assertFalse(hasattr(keras_model, '_fused_steps'))
    self.assertEqual(int(fused_model.optimizer.iterations),
                     int(keras_model.optimizer.iterations))
    self.assertEqual(int(_keras_internals.train_counter(fused_model)),
                     int(_keras_internals.train_counter(keras_model)))
    for fused_weight, keras_weight in zip(fused_model.get_weights(),
                                          keras_model.get_weights()):
      self.assertAllClose(fused_weight, keras_weight, rtol=1e-6, atol=1e-6)
    return fused_model, fused_history, keras_history

  def assertSameHistory(self, fused_history, keras_history):
    self.assertCountEqual(fused_history, keras_history)
    for name in keras_history:
      self.assertAllClose(fused_history[name], keras_history[name],
                          rtol=1e-5, atol=0, msg=name)

  def test_epochs_that_end_mid_execution(self):
    # 7 steps per epoch at 3 per execution: executions of 3, 3, 1 steps.
    images = bar_images(256, seed=0)
    model, fused_history, keras_history = self.fit_both(
        lambda: tf.data.Dataset.from_tensor_slices(images).shuffle(
            256, seed=0).batch(16, drop_remainder=True).repeat(),
        steps_per_execution=3, steps_per_epoch=7, epochs=2)
    self.assertEqual(int(model.optimizer.iterations), 14)
    self.assertSameHistory(fused_history, keras_history)

  def test_a_dataset_that_runs_out_mid_execution(self):
    # 10 batches, 12 steps asked for at 4 per execution: the third
    # execution finds 2 batches and must run both.
    images = bar_images(160, seed=0)
    model, _, _ = self.fit_both(
        lambda: tf.data.Dataset.from_tensor_slices(images).batch(
            16, drop_remainder=True),
        steps_per_execution=4, steps_per_epoch=12, epochs=1)
    self.assertEqual(int(model.optimizer.iterations), 10)

  def test_image_label_pairs(self):
    images = bar_images(96, seed=0)
    labels = np.arange(96, dtype=np.int64)
    model, fused_history, keras_history = self.fit_both(
        lambda: tf.data.Dataset.from_tensor_slices((images, labels)).batch(
            16, drop_remainder=True),
        steps_per_execution=5, epochs=2)
    self.assertEqual(int(model.optimizer.iterations), 12)
    self.assertSameHistory(fused_history, keras_history)

  def test_batches_of_unknown_size_use_the_keras_loop(self):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config())
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True,
                  steps_per_execution=4)
    model.fit(tf.data.Dataset.from_tensor_slices(bar_images(100, seed=0))
              .batch(16), epochs=1, verbose=0)
    self.assertEqual(int(model.optimizer.iterations), 7)
    self.assertEqual(model._fused_steps.experimental_get_tracing_count(), 0)

  def test_no_fusion_without_xla(self):
    model = VariationalAutoencoder(small_config())
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False,
                  steps_per_execution=4)
    model.fit(tf.data.Dataset.from_tensor_slices(bar_images(64, seed=0))
              .batch(16, drop_remainder=True), epochs=1, verbose=0)
    self.assertEqual(int(model.optimizer.iterations), 4)
    self.assertFalse(hasattr(model, '_fused_steps'))


def _xla_program(function, *args):
  """The HLO instructions of `function(*args)` compiled by XLA, sorted.

  Layer and function names differ between two models of one process
  (dense_1 and dense_3, __inference_train_step_1141 and _2286) and so do
  the numbers and order of instructions, but not between two runs of one
  script: the comparison leaves names, numbers and order out, and keeps
  every instruction with its operands' shapes and its constants.
  """
  text = tf.function(function, jit_compile=True).experimental_get_compiler_ir(
      *args)(stage='hlo')
  text = re.sub(r', metadata=\{[^}]*\}', '', text)
  text = re.sub(r'_inference_\w+?_\d+__', '_inference_FUNCTION__', text)
  text = re.sub(r'(%[\w-]+)\.\d+', r'\1', text)
  return sorted(line for line in text.splitlines()
                if not line.startswith('HloModule'))


class SeedIndependentCompilationTest(tf.test.TestCase):
  """The compiled steps do not depend on the seed.

  The seed is read from a variable, so every --seed compiles the same XLA
  programs and a run with another seed loads them from the compilation
  cache. A seed traced as a constant would show up as one differing line
  (`s64[] constant(7)`).
  """

  def test_train_and_test_steps_are_the_same_program_for_every_seed(self):
    images = tf.constant(bar_images(4, seed=0))
    weights = tf.ones([4])
    programs = []
    for seed in (0, 7):
      model = VariationalAutoencoder(small_config(posterior='iaf', kl='mc',
                                                  seed=seed))
      model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
      model.optimizer.build(model.trainable_variables)
      programs.append((_xla_program(model.train_step, images),
                       _xla_program(model.test_step,
                                    (images, weights, weights))))
    (train_0, test_0), (train_7, test_7) = programs
    self.assertEqual(train_0, train_7)
    self.assertEqual(test_0, test_7)

  def test_the_seed_variable_is_no_weight(self):
    # Checkpoints and saved models hold what they held before: the seed
    # comes from the config.
    model = VariationalAutoencoder(small_config(seed=7))
    self.assertNotIn('stream_seeds',
                     [w.name.split(':')[0] for w in model.weights])
    self.assertAllEqual(model._stream_seeds, [7, 8])


class WeightedEvaluationTest(tf.test.TestCase, parameterized.TestCase):
  """`test_step` with per-example weights: padding leaves the metrics alone."""

  @parameterized.parameters(False, True)
  def test_padded_batches_average_exactly_the_real_images(self, jit_compile):
    # A point-mass posterior draws no noise, so each image's terms are fixed
    # and the metrics must be their plain means over the 20 real images,
    # whatever the weight-0 padding of the last batch holds.
    images = bar_images(20, seed=0)
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config(posterior='deterministic'))
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  jit_compile=jit_compile, weighted_metrics=[])
    padded = np.concatenate([images, np.ones((4,) + IMAGE_SHAPE, np.float32)])
    weights = np.concatenate([np.ones(20), np.zeros(4)]).astype(np.float32)
    metrics = model.evaluate(
        tf.data.Dataset.from_tensor_slices((padded, weights)).map(
            lambda x, w: (x, None, w)).batch(8),
        return_dict=True, verbose=0)
    terms = model(tf.constant(images))  # dict of [20]
    for name in ('elbo', 'kl', 'nll', 'loss'):
      self.assertAllClose(metrics[name], np.mean(terms[name]), rtol=1e-5)


if __name__ == '__main__':
  tf.test.main()


def move_flow_weights(model, seed):
  """Random values for the IAF networks' weights (masks kept)."""
  rng = np.random.RandomState(seed)
  for network in model.posterior_layer.autoregressive_networks:
    for weight in network.weights:
      value = tf.constant(0.2 * rng.randn(*weight.shape.as_list()),
                          weight.dtype)
      if weight.constraint is not None:  # The MADE mask.
        value = weight.constraint(value)
      weight.assign(value)


NEW_FAMILIES = (
    ('low_rank', dict(posterior='low_rank', posterior_rank=2)),
    ('iaf', dict(posterior='iaf', kl='mc', flow_steps=2,
                 flow_hidden_units=(8,))),
)


class PosteriorFamiliesTest(tf.test.TestCase, parameterized.TestCase):
  """The low-rank and IAF families through the whole model."""

  @parameterized.named_parameters(*NEW_FAMILIES)
  def test_xla_training_steps_move_every_weight(self, overrides):
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config(**overrides))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True,
                  steps_per_execution=2)
    before = [v.numpy() for v in model.trainable_variables]
    # No drop_remainder: the batch size is unknown when the step is traced.
    train = tf.data.Dataset.from_tensor_slices(bar_images(40, seed=0)).batch(
        16)
    history = model.fit(train, epochs=2, verbose=0)
    self.assertTrue(np.all(np.isfinite(history.history['loss'])))
    self.assertEqual(int(model.optimizer.iterations), 6)
    for variable, old in zip(model.trainable_variables, before):
      self.assertNotAllClose(variable.numpy(), old, msg=variable.name)
    if overrides['posterior'] == 'iaf':
      flow_variables = model.posterior_layer.trainable_variables
      self.assertLen(flow_variables, 2 * 6)
      self.assertTrue(all(any(v is w for w in model.trainable_variables)
                          for v in flow_variables))
      # Still autoregressive: the optimizer re-applied the MADE masks (the
      # kernels' constraints) after each of the compiled steps' updates.
      masked = [v for v in flow_variables if v.constraint is not None]
      self.assertLen(masked, 2 * 2)
      for variable in masked:
        self.assertAllEqual(variable, variable.constraint(variable))

  @parameterized.named_parameters(
      *[(f'{name}_{save_format}', overrides, save_format)
        for name, overrides in NEW_FAMILIES
        for save_format in ('keras', 'tf')],
      ('gated_mlp_keras', dict(posterior='diag', architecture='gated_mlp',
                               activation='linear'), 'keras'))
  def test_save_load_round_trip(self, overrides, save_format):
    config = small_config(**overrides)
    model = VariationalAutoencoder(config)
    if config.posterior == 'iaf':
      move_flow_weights(model, seed=3)
    images = bar_images(4, seed=2)
    latents = np.random.RandomState(1).randn(2, 4, 3).astype(np.float32)
    expected_terms = model(images)
    with tempfile.TemporaryDirectory() as tmp:
      if save_format == 'keras':
        path = os.path.join(tmp, 'vae.keras')
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
      else:
        path = os.path.join(tmp, 'vae')
        model.save(path, save_format='tf')
        loaded = keras.models.load_model(path)
    self.assertEqual(loaded.model_config, config)
    self.assertAllEqual(loaded.encode(images).log_prob(latents),
                        model.encode(images).log_prob(latents))
    self.assertAllEqual(loaded.reconstruct(images), model.reconstruct(images))
    loaded_terms = loaded(images)
    for name, value in expected_terms.items():
      self.assertAllEqual(loaded_terms[name], value)

  def test_checkpoint_restores_the_flow_into_a_fresh_model(self):
    config = small_config(**dict(NEW_FAMILIES)['iaf'])
    model = VariationalAutoencoder(config)
    move_flow_weights(model, seed=4)
    images = bar_images(4, seed=2)
    expected = model(images)['elbo']
    with tempfile.TemporaryDirectory() as tmp:
      path = tf.train.Checkpoint(model=model).save(os.path.join(tmp, 'ckpt'))
      fresh = VariationalAutoencoder(config)
      self.assertNotAllClose(fresh(images)['elbo'], expected)
      tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    self.assertAllEqual(fresh(images)['elbo'], expected)

  def test_fresh_iaf_model_equals_the_diag_model(self):
    # The flow starts at the identity: with the same encoder and decoder
    # weights, the IAF model's terms are the diagonal model's.
    iaf = VariationalAutoencoder(small_config(**dict(NEW_FAMILIES)['iaf']))
    diag = VariationalAutoencoder(small_config(posterior='diag', kl='mc'))
    latent_dim = 3
    for source, target in zip(iaf.encoder.weights, diag.encoder.weights):
      if source.shape == target.shape:
        target.assign(source)
      else:  # The output layer: [..., 2D + C] -> keep the base's 2D params.
        target.assign(source[..., :2 * latent_dim])
    for source, target in zip(iaf.decoder.weights, diag.decoder.weights):
      target.assign(source)
    images = bar_images(6, seed=5)
    iaf_terms, diag_terms = iaf(images), diag(images)
    for name in ('elbo', 'kl', 'nll'):
      self.assertAllClose(iaf_terms[name], diag_terms[name], rtol=1e-5)


class MixedPrecisionTest(tf.test.TestCase, parameterized.TestCase):

  def tearDown(self):
    keras.mixed_precision.set_global_policy('float32')
    super().tearDown()

  @parameterized.named_parameters(
      *[(f'{posterior}_{policy}', posterior, policy)
        for posterior in ('diag', 'full_cov', 'low_rank', 'iaf')
        for policy in ('mixed_float16', 'mixed_bfloat16')])
  def test_a_vae_trains_under_a_mixed_policy(self, posterior, policy):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(small_config(
        posterior=posterior, kl='mc' if posterior == 'iaf' else 'analytic',
        flow_hidden_units=(8,)))
    self.assertEqual(model.encoder.layers[-1].compute_dtype,
                     policy[len('mixed_'):])
    self.assertEqual(model.posterior_layer.compute_dtype, 'float32')
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(bar_images(32, seed=0), batch_size=16, epochs=1,
                        verbose=0)
    self.assertEqual(int(model.optimizer.iterations), 2)
    self.assertTrue(np.isfinite(history.history['loss'][0]))
    terms = model(bar_images(4, seed=1))
    for value in terms.values():
      self.assertEqual(value.dtype, tf.float32)
