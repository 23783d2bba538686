"""The variational autoencoder: encoder -> q(z|x), prior p(z), decoder -> p(x|z).

`VariationalAutoencoder` is a `tf_keras.Model` built from a `ModelConfig`.
Its pieces are distributions: `encode(x)` returns q(z|x), `decode(z)` returns
p(x|z), `prior_distribution()` returns p(z). Training uses Keras's own
machinery: `train_step`/`test_step` compute the per-example objective of
`objectives`, reduce it with the global batch size (`compute_average_loss`),
and report `loss`, `elbo`, `kl` (the rate) and `nll` (the distortion), in
nats per example.

Sampling noise is stateless: step t of training draws from the seed
`[config.seed, t]`, so training is reproducible, resumes exactly from a
checkpoint (the step counter is the optimizer's), and 1 or N replicas that
share a global batch draw the same noise (see `objectives.sample_latents`).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distribution_layers
from tfp_vae import fused_steps
from tfp_vae import networks
from tfp_vae import objectives
from tfp_vae import priors
from tfp_vae._keras import keras
from tfp_vae.config import ModelConfig

tfd = tfp.distributions

__all__ = ['VariationalAutoencoder', 'make_posterior_layer',
           'make_likelihood_layer', 'make_prior']

# Offsets added to `config.seed` for the independent noise streams.
_TRAIN_STREAM, _EVAL_STREAM = 0, 1


def make_posterior_layer(config):
  """The posterior layer a `ModelConfig` asks for.

  Its tensor stand-in is the mean (for the IAF, which has no closed-form
  mean, the flow of the base mean): the model draws its own samples with
  stateless seeds, so the layer need not draw one.
  """
  if config.posterior == 'diag':
    return distribution_layers.DiagonalGaussianPosterior(
        config.latent_dim, min_scale=config.posterior_min_scale,
        convert_to_tensor_fn='mean', name='posterior')
  if config.posterior == 'full_cov':
    return distribution_layers.FullCovarianceGaussianPosterior(
        config.latent_dim, min_scale=config.posterior_min_scale,
        off_diagonal_scale=config.full_cov_off_diagonal_scale,
        convert_to_tensor_fn='mean', name='posterior')
  if config.posterior == 'low_rank':
    return distribution_layers.LowRankGaussianPosterior(
        config.latent_dim, config.posterior_rank,
        min_scale=config.posterior_min_scale, convert_to_tensor_fn='mean',
        name='posterior')
  if config.posterior == 'iaf':
    return distribution_layers.InverseAutoregressiveFlowPosterior(
        config.latent_dim, flow_steps=config.flow_steps,
        flow_hidden_units=config.flow_hidden_units,
        min_scale=config.posterior_min_scale,
        convert_to_tensor_fn='flow_of_base_mean', name='posterior')
  return distribution_layers.PointMassPosterior(
      config.latent_dim, convert_to_tensor_fn='mean', name='posterior')


def make_likelihood_layer(config):
  """The likelihood (decoder head) layer a `ModelConfig` asks for."""
  if config.likelihood == 'bernoulli':
    return distribution_layers.IndependentBernoulliLikelihood(
        config.image_shape, convert_to_tensor_fn='mean', name='likelihood')
  return distribution_layers.IndependentNormalLikelihood(
      config.image_shape, scale=config.normal_scale,
      convert_to_tensor_fn='mean', name='likelihood')


def make_prior(config):
  """The prior layer a `ModelConfig` asks for."""
  if config.prior == 'normal':
    return priors.StandardNormalPrior(config.latent_dim, name='prior')
  return priors.MixtureOfGaussiansPrior(
      config.latent_dim, config.mixture_components, seed=config.seed,
      name='prior')


def _stateless_seed(stream_seed, counter):
  return tf.stack([tf.cast(stream_seed, tf.int64), tf.cast(counter, tf.int64)])


@keras.saving.register_keras_serializable(package='tfp_vae')
class VariationalAutoencoder(keras.Model):
  """A VAE whose posterior, prior and likelihood are `tfd.Distribution`s.

  Args:
    config: a `ModelConfig` (or its dict form, as stored in a saved model).
    **kwargs: `tf_keras.Model` arguments (`name`).

  Attributes:
    encoder, decoder: the networks (`tf_keras.Sequential`).
    posterior_layer, likelihood_layer: distribution layers.
    prior: prior layer; `prior_distribution()` gives p(z).
    beta: non-trainable `tf.Variable`, the KL weight; assign to it to change
      the weight during training without rebuilding anything.

  Example:

  ```python
  model = VariationalAutoencoder(ModelConfig(posterior='full_cov'))
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
  model.fit(images_dataset, epochs=10)
  q = model.encode(images)            # MultivariateNormalTriL, batch [B]
  x_new = model.sample(16, seed=1)    # [16, 28, 28, 1] decoder means
  ```
  """

  def __init__(self, config, **kwargs):
    if isinstance(config, dict):
      config = ModelConfig.from_dict(config)
    if not isinstance(config, ModelConfig):
      raise ValueError('VariationalAutoencoder needs a ModelConfig; got '
                       f'{type(config).__name__}.')
    if config.kl_warmup_epochs:
      # The model counts steps; how many make an epoch depends on the data.
      raise ValueError(
          f'--kl_warmup_epochs={config.kl_warmup_epochs} must be converted to '
          'steps before a model is built: `config.resolve_run_settings` does '
          'it with the data\'s steps per epoch (`training.train` calls it).')
    kwargs.setdefault('name', 'vae')
    super().__init__(**kwargs)
    self._model_config = config
    self.posterior_layer = make_posterior_layer(config)
    self.likelihood_layer = make_likelihood_layer(config)
    self.prior = make_prior(config)
    self.encoder = networks.make_encoder(config,
                                         self._posterior_params_size())
    self.decoder = networks.make_decoder(
        config, self._likelihood_params_size())
    if config.posterior == 'full_cov':
      self._start_from_a_diagonal_posterior()
    self.beta = tf.Variable(float(config.beta), trainable=False,
                            dtype=tf.float32, name='beta')
    # Counts evaluation batches so each draws fresh noise; zeroed when Keras
    # resets metrics (start of every evaluate()), so evaluation is repeatable.
    self._eval_batches = tf.Variable(
        0, trainable=False, dtype=tf.int64, name='eval_batches',
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # The noise streams' seeds, read from a variable instead of traced into
    # the steps as constants: the compiled XLA programs are then the same
    # for every seed, and a run with another seed loads them from the
    # compilation cache (`tfp_vae.compilation_cache`). Not tracked (no
    # weight, not checkpointed or saved): the config holds the seed.
    object.__setattr__(self, '_stream_seeds', tf.Variable(
        [config.seed + _TRAIN_STREAM, config.seed + _EVAL_STREAM],
        trainable=False, dtype=tf.int64, name='stream_seeds'))
    names = ['loss', 'elbo', 'kl', 'nll']
    if config.objective == 'iwae':
      names.append('iwae')
    self._trackers = {n: keras.metrics.Mean(name=n) for n in names}
    # Create every weight now (the per-pixel likelihood scale is built on
    # first call), so a fresh model can restore a checkpoint at once.
    self.decode(tf.zeros([1, config.latent_dim]))
    self.built = True

  def _start_from_a_diagonal_posterior(self):
    """Zeroes the encoder weights behind the Cholesky factor's off-diagonal.

    With the encoder's default initialisation every raw entry of the
    Cholesky factor L is O(1), and row i of L holds i off-diagonal entries,
    so the initial marginal variance of z_i grows with i: at D=32 on
    binarized MNIST the last coordinate starts at ~1.8 (diag: ~0.5) and the
    KL at ~13 nats (diag: ~5). That noise made full_cov training lag far
    behind diag (validation ELBO -123.5 vs -105.0 after 6 epochs, 784-512-512
    MLP), a handicap of the initialisation, not of the family. With these
    weights zeroed, q(z|x) starts diagonal, as the diag family does, and
    learns its correlations from there (their gradients are not zero);
    `ModelConfig.full_cov_off_diagonal_scale` damps how fast they drift
    under Adam's noise from then on. Restoring a checkpoint or a saved
    model overwrites this as usual.
    """
    output_layer = self.encoder.layers[-1]  # Dense -> posterior params.
    keep = tf.constant(~self.posterior_layer.off_diagonal_params_mask(
        self._model_config.latent_dim), dtype=output_layer.kernel.dtype)
    output_layer.kernel.assign(output_layer.kernel * keep)
    output_layer.bias.assign(output_layer.bias * keep)

  @property
  def model_config(self):
    """The `ModelConfig` this model was built from."""
    return self._model_config

  def _posterior_params_size(self):
    config = self._model_config
    if config.posterior == 'low_rank':
      return self.posterior_layer.params_size(config.latent_dim,
                                              config.posterior_rank)
    return self.posterior_layer.params_size(config.latent_dim)

  def _likelihood_params_size(self):
    config = self._model_config
    if config.likelihood == 'normal':
      return self.likelihood_layer.params_size(config.image_shape,
                                               config.normal_scale)
    return self.likelihood_layer.params_size(config.image_shape)

  # Distributions ###############################################################

  def encode(self, images, training=False):
    """Returns q(z|x): batch `[B]`, event `[latent_dim]`, for `[B, H, W, C]`."""
    return self.posterior_layer(self.encoder(images, training=training))

  def decode(self, latents, training=False):
    """Returns p(x|z): batch `latents.shape[:-1]`, event `image_shape`.

    Args:
      latents: `[..., latent_dim]`, e.g. `[L, B, D]` samples.
      training: Keras training flag for the decoder network.
    """
    leading_shape = tf.shape(latents)[:-1]
    flat_latents = tf.reshape(latents, [-1, self._model_config.latent_dim])
    params = self.decoder(flat_latents, training=training)  # [prod(...), P]
    params = tf.reshape(
        params, tf.concat([leading_shape, tf.shape(params)[-1:]], axis=0))
    return self.likelihood_layer(params)

  def prior_distribution(self):
    """Returns p(z), event `[latent_dim]`."""
    return self.prior.distribution()

  # Using a trained model #######################################################

  def sample(self, num_examples, seed=0, use_mean=True):
    """Draws new images: z ~ p(z), then the decoder's mean (or a sample).

    Returns:
      `[num_examples, H, W, C]`.
    """
    # int32: the seed dtype TFP's samplers accept.
    seed = tf.cast(tf.random.experimental.stateless_split(
        _stateless_seed(seed, 0), 2), tf.int32)
    latents = self.prior_distribution().sample(num_examples, seed=seed[0])
    likelihood = self.decode(latents)
    return likelihood.mean() if use_mean else likelihood.sample(seed=seed[1])

  def reconstruct(self, images):
    """Decoder means at the posterior's point: `[B, H, W, C]` -> same shape.

    The point is the posterior layer's tensor stand-in: the mean of a
    Gaussian posterior, the location of a point mass, and for the IAF (whose
    mean has no closed form) the flow applied to its base mean.
    """
    return self.decode(tf.convert_to_tensor(self.encode(images))).mean()

  # Objective ###################################################################

  def compute_terms(self, images, seed, training=False, kl_weight=None,
                    example_offset=0, total_examples=None):
    """Per-example objective terms for a batch.

    Args:
      images: `[B, H, W, C]`.
      seed: stateless seed `[2]` for this batch's noise.
      training: Keras training flag; also turns on input noise.
      kl_weight: weight of the rate in `loss` (default: `self.beta`).
      example_offset, total_examples: this batch's place in the global batch
        (see `objectives.sample_latents`).

    Returns:
      dict of `[B]` tensors: 'loss' (what training minimises), 'elbo', 'kl'
      (rate), 'nll' (distortion), and 'iwae' when the objective is IWAE.
    """
    config = self._model_config
    latent_seed, input_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    encoder_input = images
    if training and config.input_noise_stddev > 0:
      noise = objectives.standard_normal_slice(
          tf.shape(images), input_seed, example_offset, total_examples,
          images.dtype)
      encoder_input = images + config.input_noise_stddev * noise
    approx_posterior = self.encode(encoder_input, training=training)
    latents = objectives.sample_latents(
        approx_posterior, config.num_samples, latent_seed,
        example_offset=example_offset,
        total_examples=total_examples)  # [L, B, D]
    prior = self.prior_distribution()
    decode = lambda z: self.decode(z, training=training)
    if config.objective == 'iwae':
      terms = objectives.iwae_bound(images, approx_posterior, prior, decode,
                                    latents)
      return {'loss': -terms.iwae, 'elbo': terms.elbo, 'kl': terms.rate,
              'nll': terms.distortion, 'iwae': terms.iwae}
    terms = objectives.elbo(images, approx_posterior, prior, decode, latents,
                            kl=config.kl)
    if kl_weight is None:
      kl_weight = self.beta
    kl_weight = tf.cast(kl_weight, terms.rate.dtype)
    return {'loss': terms.distortion + kl_weight * terms.rate,
            'elbo': terms.elbo, 'kl': terms.rate, 'nll': terms.distortion}

  def kl_weight(self, step):
    """beta * min(1, (step + 1) / kl_warmup_steps): the KL weight at `step`."""
    warmup_steps = self._model_config.kl_warmup_steps
    if not warmup_steps:
      return tf.identity(self.beta)
    ramp = tf.minimum(1.0, tf.cast(step + 1, tf.float32) / warmup_steps)
    return self.beta * ramp

  def _global_batch_position(self, images):
    """(offset of this replica's examples in the global batch, global size).

    Replicas need not hold equally many examples: `tf.distribute` splits a
    global batch of 15 over 2 replicas as rows 0-7 and 8-14, and so the last,
    smaller evaluation batch too. So the sizes are all-reduced, not assumed
    equal (an all-reduce of one-hot rows, an op every strategy supports).
    """
    context = tf.distribute.get_replica_context()
    local_batch_size = tf.shape(images)[0]
    if context is None or context.num_replicas_in_sync == 1:
      return 0, local_batch_size
    num_replicas = context.num_replicas_in_sync
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    batch_sizes = tf.cast(context.all_reduce(
        tf.distribute.ReduceOp.SUM,
        tf.one_hot(replica_id, num_replicas) *
        tf.cast(local_batch_size, tf.float32)), tf.int32)  # [num_replicas]
    return (tf.reduce_sum(batch_sizes[:replica_id]),
            tf.reduce_sum(batch_sizes))

  def _update_metrics(self, terms, example_weights=None):
    for name, tracker in self._trackers.items():
      tracker.update_state(terms[name], sample_weight=example_weights)
    return self.get_metrics_result()

  # Keras contract ##############################################################

  @property
  def metrics(self):
    return list(self._trackers.values())

  def reset_metrics(self):
    super().reset_metrics()
    self._eval_batches.assign(0)

  # The steps are plain TF ops with no Python control flow on tensors, so
  # Keras's functions call them without AutoGraph converting their source
  # and every function they reach: seconds off every first epoch.
  @tf.autograph.experimental.do_not_convert
  def train_step(self, data):
    images = data[0] if isinstance(data, (tuple, list)) else data
    step = self.optimizer.iterations
    seed = _stateless_seed(self._stream_seeds[0], step)
    offset, total = self._global_batch_position(images)
    with tf.GradientTape() as tape:
      terms = self.compute_terms(images, seed, training=True,
                                 kl_weight=self.kl_weight(step),
                                 example_offset=offset, total_examples=total)
      # Sum over this replica's examples / global batch size: N replicas'
      # gradients add up to the gradient of the global batch mean (also when
      # they hold unequal shares, which the default divisor gets wrong).
      loss = tf.nn.compute_average_loss(terms['loss'],
                                        global_batch_size=total)
      # Under mixed_float16, Keras wraps the optimizer in a loss-scale
      # optimizer: scale the loss so small float16 gradients do not flush to
      # zero, and unscale the gradients before they are applied.
      scales_loss = isinstance(self.optimizer,
                               keras.mixed_precision.LossScaleOptimizer)
      if scales_loss:
        loss = self.optimizer.get_scaled_loss(loss)
    gradients = tape.gradient(loss, self.trainable_variables)
    if scales_loss:
      gradients = self.optimizer.get_unscaled_gradients(gradients)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    return self._update_metrics(terms)

  def make_train_function(self, force=False):
    """Keras's train function, with each execution's steps in one XLA call.

    See `fused_steps.make_train_function`; Keras's own where fusion does not
    apply.
    """
    if self.train_function is not None and not force:
      return self.train_function
    self.train_function = fused_steps.make_train_function(
        self, super().make_train_function(force=True))
    self.train_tf_function = self.train_function
    return self.train_function

  @tf.autograph.experimental.do_not_convert
  def test_step(self, data):
    """Updates the metrics with one batch: images, or (images, y, weights).

    Per-example weights (Keras's sample_weight, `[B]`) make the metrics
    weighted means; weight-0 rows are padding (see
    `data.make_evaluation_dataset`) and leave them unchanged.
    """
    images, _, example_weights = keras.utils.unpack_x_y_sample_weight(data)
    seed = _stateless_seed(self._stream_seeds[1], self._eval_batches)
    self._eval_batches.assign_add(1)
    offset, total = self._global_batch_position(images)
    terms = self.compute_terms(images, seed, training=False, kl_weight=1.0,
                               example_offset=offset, total_examples=total)
    return self._update_metrics(terms, example_weights)

  def call(self, images, training=False):
    """Per-example terms of the unweighted objective with fixed noise.

    Returns:
      dict of `[B]` tensors 'loss', 'elbo', 'kl', 'nll' (and 'iwae').
    """
    # The seed as a constant: `call` is what a SavedModel exports, and an
    # exported function may not read the untracked seed variable.
    seed = _stateless_seed(self._model_config.seed + _EVAL_STREAM, -1)
    return self.compute_terms(images, seed, training=training, kl_weight=1.0)

  def get_config(self):
    return {'config': self._model_config.to_dict(), 'name': self.name}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    del custom_objects
    return cls(ModelConfig.from_dict(config['config']),
               name=config.get('name', 'vae'))
