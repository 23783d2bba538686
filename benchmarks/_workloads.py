"""The measurements `benchmark.py` runs, one per subprocess.

Each function here takes a `spec` dict (plain values) and returns a dict of
results. `benchmark.py --worker=<spec as JSON>` runs one of them in a fresh
Python process, so TensorFlow's device setup (logical CPU devices for 2
replicas), environment variables read at start-up (`XLA_FLAGS`,
`TF_ENABLE_ONEDNN_OPTS`) and the peak memory (`ru_maxrss` of that process)
belong to that one configuration.

Timing rules: a training rate is examples per wall-clock second over whole
`fit` epochs (or windows of steps) after a first epoch that pays for
tracing and XLA compilation; the result holds every timed window's rate and
their median.

The workload ("MLP VAE"): encoder 784-512-512 (ReLU) -> posterior params
for a 16-dimensional latent; decoder 16-512-512 (ReLU) -> 784 Bernoulli
logits; standard normal prior; analytic KL; one latent sample; Adam 1e-3.
"""

import dataclasses
import os
import resource
import tempfile
import time

import numpy as np

LATENT_DIM = 16
HIDDEN_UNITS = (512, 512)
IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = 784


################################################################################
# FLOP counts.
################################################################################


def posterior_params_size(posterior, latent_dim=LATENT_DIM):
  if posterior == 'diag':
    return 2 * latent_dim
  return latent_dim + latent_dim * (latent_dim + 1) // 2


def _dense_macs(widths):
  return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def encoder_macs(posterior):
  return _dense_macs([NUM_PIXELS, *HIDDEN_UNITS,
                      posterior_params_size(posterior)])


def decoder_macs():
  return _dense_macs([LATENT_DIM, *reversed(HIDDEN_UNITS), NUM_PIXELS])


def train_flops_per_example(posterior):
  """6 x multiply-adds of the dense layers: forward 2, backward 4.

  The convention of the issue (8.1 MFLOP diag, 8.5 MFLOP full_cov). The
  elementwise work (activations, KL, Bernoulli log-prob, Adam on 1.4M
  weights per step) is not counted.
  """
  return 6 * (encoder_macs(posterior) + decoder_macs())


def loglik_flops_per_sample():
  """Decoder forward per importance sample: 2 x multiply-adds.

  The per-pixel Bernoulli log-prob (784 softplus per sample, ~0.1% of the
  multiply-adds) and the encoder (once per image) are not counted.
  """
  return 2 * decoder_macs()


################################################################################
# Helpers.
################################################################################


def _peak_rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.


def _cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _setup_tensorflow(spec):
  """Imports TF and applies the spec's thread and device settings."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if spec.get('intra_op_threads') is not None:
    tf.config.threading.set_intra_op_parallelism_threads(
        spec['intra_op_threads'])
  if spec.get('inter_op_threads') is not None:
    tf.config.threading.set_inter_op_parallelism_threads(
        spec['inter_op_threads'])
  replicas = spec.get('replicas', 1)
  if replicas > 1:
    from tfp_vae import distribute  # pylint: disable=g-import-not-at-top
    distribute.split_cpu_into_logical_devices(replicas)
  return tf


def _load_images(spec, split='train'):
  with np.load(spec['data_path']) as arrays:
    return arrays[f'{split}_images']


def _summarize_windows(window_seconds, examples_per_window):
  rates = [examples_per_window / s for s in window_seconds]
  return {'examples_per_s': float(np.median(rates)),
          'window_examples_per_s': [round(r, 1) for r in rates],
          'window_seconds': [round(s, 3) for s in window_seconds],
          'examples_per_window': int(examples_per_window)}


def _fit_and_time(model, dataset, steps_per_epoch, timed_epochs, batch_size,
                  extra_callbacks=()):
  """Runs `fit` for 1 + timed_epochs epochs; times each epoch."""
  from tfp_vae._keras import keras  # pylint: disable=g-import-not-at-top

  class EpochTimer(keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.seconds = []
      self._start = None

    def on_epoch_begin(self, epoch, logs=None):
      self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.seconds.append(time.perf_counter() - self._start)
      self.last_logs = {k: float(v) for k, v in (logs or {}).items()}

  timer = EpochTimer()
  model.fit(dataset, epochs=1 + timed_epochs, steps_per_epoch=steps_per_epoch,
            verbose=0, callbacks=[timer, *extra_callbacks])
  result = _summarize_windows(timer.seconds[1:], steps_per_epoch * batch_size)
  result['first_epoch_s'] = round(timer.seconds[0], 3)
  result['final_logs'] = timer.last_logs
  return result


################################################################################
# Prototype changes to the package, applied by monkeypatching (see `patches`).
################################################################################


def _patch_no_metrics():
  """train_step reports only the loss (one Mean tracker updated, not four)."""
  from tfp_vae import model as model_lib  # pylint: disable=g-import-not-at-top

  def update_metrics(self, terms):
    tracker = self._trackers['loss']  # pylint: disable=protected-access
    tracker.update_state(terms['loss'])
    return {'loss': tracker.result()}

  model_lib.VariationalAutoencoder._update_metrics = update_metrics  # pylint: disable=protected-access


def _patch_no_global_noise():
  """Noise drawn for the local batch only (no global-batch draw + slice)."""
  from tfp_vae import objectives  # pylint: disable=g-import-not-at-top
  original = objectives.sample_latents

  def sample_latents(approx_posterior, num_samples, seed, example_offset=0,
                     total_examples=None):
    del example_offset, total_examples
    return original(approx_posterior, num_samples, seed)

  objectives.sample_latents = sample_latents


def _patch_keras_step_loop():
  """`fit` uses tf_keras's own train function: one XLA launch per step.

  What the package ran before `VariationalAutoencoder.make_train_function`
  fused each execution's steps into one XLA call; the A/B of that change.
  """
  from tfp_vae import model as model_lib  # pylint: disable=g-import-not-at-top
  from tfp_vae._keras import keras  # pylint: disable=g-import-not-at-top
  model_lib.VariationalAutoencoder.make_train_function = (
      keras.Model.make_train_function)


_PATCHES = {
    'no_metrics': _patch_no_metrics,
    'no_global_noise': _patch_no_global_noise,
    'keras_step_loop': _patch_keras_step_loop,
}


def _apply_patches(spec):
  for name in spec.get('patches', ()):
    _PATCHES[name]()


################################################################################
# Training: the package's own path.
################################################################################


def _package_configs(spec):
  from tfp_vae.config import ModelConfig  # pylint: disable=g-import-not-at-top
  from tfp_vae.config import TrainConfig  # pylint: disable=g-import-not-at-top
  model_config = ModelConfig(posterior=spec['posterior'],
                             latent_dim=LATENT_DIM, hidden_units=HIDDEN_UNITS)
  train_config = TrainConfig(batch_size=spec['batch_size'])
  overrides = {}
  if spec.get('jit_compile') is not None:
    overrides['jit_compile'] = spec['jit_compile']
  if spec.get('steps_per_execution') is not None:
    overrides['steps_per_execution'] = spec['steps_per_execution']
  return model_config, dataclasses.replace(train_config, **overrides)


def fit_package(spec):
  """`runs.build_model` + `model.fit(data.make_training_dataset(...))`.

  What `training.train` (and so `scripts/train.py`) runs, without its
  callbacks and validation; `train_end_to_end` measures those.
  spec: posterior, batch_size, jit_compile/steps_per_execution (None: the
  TrainConfig defaults), replicas, steps_per_epoch, timed_epochs, data
  ('pipeline' or 'constant': one batch repeated, no input pipeline work),
  patches.
  """
  tf = _setup_tensorflow(spec)
  _apply_patches(spec)
  from tfp_vae import distribute  # pylint: disable=g-import-not-at-top
  from tfp_vae import data as data_lib  # pylint: disable=g-import-not-at-top
  from tfp_vae import runs  # pylint: disable=g-import-not-at-top
  model_config, train_config = _package_configs(spec)
  images = _load_images(spec)
  strategy = (distribute.make_strategy('mirrored') if spec.get('replicas', 1) > 1
              else distribute.make_strategy('default'))
  start = time.perf_counter()
  with strategy.scope():
    model = runs.build_model(model_config, train_config)
  if spec.get('data', 'pipeline') == 'constant':
    dataset = tf.data.Dataset.from_tensors(
        tf.constant(images[:train_config.batch_size])).repeat()
  else:
    dataset = data_lib.make_training_dataset(
        images, train_config.batch_size, train_config.seed)
  steps_per_epoch = spec.get('steps_per_epoch') or (
      len(images) // train_config.batch_size)
  result = _fit_and_time(model, dataset, steps_per_epoch,
                         spec.get('timed_epochs', 3), train_config.batch_size)
  result.update(
      setup_s=round(time.perf_counter() - start, 2),
      jit_compile=train_config.jit_compile,
      steps_per_execution=train_config.steps_per_execution,
      replicas=strategy.num_replicas_in_sync)
  return result


def train_end_to_end(spec):
  """`training.train` itself: fit plus its callbacks, validation, checkpoints.

  Rate = training examples per second of `TrainingResult.epoch_seconds`
  (which include each epoch's validation pass, checkpoint and TensorBoard
  summaries), over the epochs after the first.
  """
  _setup_tensorflow(spec)
  _apply_patches(spec)
  from tfp_vae import data as data_lib  # pylint: disable=g-import-not-at-top
  from tfp_vae import training  # pylint: disable=g-import-not-at-top
  model_config, train_config = _package_configs(spec)
  dataset = data_lib.ImageDataset(
      name='binarized_mnist', train_images=_load_images(spec, 'train'),
      validation_images=_load_images(spec, 'validation'),
      test_images=_load_images(spec, 'test'), train_labels=None,
      validation_labels=None, test_labels=None, binarization='static',
      image_shape=IMAGE_SHAPE, source=spec['data_path'])
  with tempfile.TemporaryDirectory() as model_dir:
    train_config = dataclasses.replace(
        train_config, dataset='binarized_mnist', model_dir=model_dir,
        epochs=1 + spec.get('timed_epochs', 2))
    result = training.train(model_config, train_config, dataset=dataset,
                            verbose=0)
  steps = len(dataset.train_images) // train_config.batch_size
  summary = _summarize_windows(result.epoch_seconds[1:],
                               steps * train_config.batch_size)
  summary['first_epoch_s'] = round(result.epoch_seconds[0], 3)
  summary['final_elbo'] = float(result.history['elbo'][-1])
  return summary


################################################################################
# Training: baselines.
################################################################################


def fit_tutorial(spec):
  """TFP's Probabilistic Layers tutorial design (see _tutorial_baseline)."""
  _setup_tensorflow(spec)
  import _tutorial_baseline  # pylint: disable=g-import-not-at-top
  images = _load_images(spec)
  batch_size = spec['batch_size']
  start = time.perf_counter()
  model = _tutorial_baseline.build_tutorial_vae(
      spec['posterior'], LATENT_DIM, HIDDEN_UNITS, IMAGE_SHAPE,
      jit_compile=spec.get('jit_compile', False),
      steps_per_execution=spec.get('steps_per_execution', 1))
  dataset = _tutorial_baseline.tutorial_dataset(images, batch_size)
  steps_per_epoch = spec.get('steps_per_epoch') or len(images) // batch_size
  result = _fit_and_time(model, dataset, steps_per_epoch,
                         spec.get('timed_epochs', 3), batch_size)
  result['setup_s'] = round(time.perf_counter() - start, 2)
  return result


def _raw_vae(tf, posterior):
  """The workload written with tf ops only (no Keras layers, no tfd)."""
  rng = np.random.default_rng(0)

  def dense(fan_in, fan_out):
    limit = np.sqrt(6. / (fan_in + fan_out))
    return [tf.Variable(rng.uniform(-limit, limit, [fan_in, fan_out]).astype(
        np.float32)), tf.Variable(np.zeros([fan_out], np.float32))]

  num_params = posterior_params_size(posterior)
  widths_encoder = [NUM_PIXELS, *HIDDEN_UNITS, num_params]
  widths_decoder = [LATENT_DIM, *reversed(HIDDEN_UNITS), NUM_PIXELS]
  encoder = [dense(a, b) for a, b in zip(widths_encoder[:-1],
                                         widths_encoder[1:])]
  decoder = [dense(a, b) for a, b in zip(widths_decoder[:-1],
                                         widths_decoder[1:])]
  variables = [v for layer in encoder + decoder for v in layer]

  def mlp(layers, inputs):
    outputs = inputs
    for index, (kernel, bias) in enumerate(layers):
      outputs = tf.matmul(outputs, kernel) + bias
      if index < len(layers) - 1:
        outputs = tf.nn.relu(outputs)
    return outputs

  def loss_fn(images, seed):
    batch_size = tf.shape(images)[0]
    params = mlp(encoder, tf.reshape(images, [batch_size, NUM_PIXELS]))
    loc = params[:, :LATENT_DIM]
    noise = tf.random.stateless_normal([batch_size, LATENT_DIM], seed)
    if posterior == 'diag':
      scale = tf.nn.softplus(params[:, LATENT_DIM:]) + 1e-5  # [B, D]
      latents = loc + scale * noise
      kl = tf.reduce_sum(0.5 * (tf.square(scale) + tf.square(loc) - 1.) -
                         tf.math.log(scale), axis=-1)
    else:
      import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
      tril = tfp.math.fill_triangular(params[:, LATENT_DIM:])  # [B, D, D]
      diag = tf.nn.softplus(tf.linalg.diag_part(tril)) + 1e-5  # [B, D]
      is_diagonal = tf.cast(tf.eye(LATENT_DIM), tf.bool)
      scale_tril = tf.where(is_diagonal, tf.linalg.diag(diag), tril)
      latents = loc + tf.linalg.matvec(scale_tril, noise)
      kl = 0.5 * (tf.reduce_sum(tf.square(scale_tril), axis=[-2, -1]) +
                  tf.reduce_sum(tf.square(loc), axis=-1) - LATENT_DIM) - (
                      tf.reduce_sum(tf.math.log(diag), axis=-1))
    logits = mlp(decoder, latents)
    targets = tf.reshape(images, [batch_size, NUM_PIXELS])
    # -log Bernoulli(x; logits) = softplus(logits) - x * logits.
    nll = tf.reduce_sum(tf.nn.softplus(logits) - targets * logits, axis=-1)
    return tf.reduce_mean(nll + kl)

  return variables, loss_fn


def plain_loop(spec):
  """A hand-written TF2 loop around `tf.function(jit_compile=True)` steps.

  spec['math']: 'package' (the package's `VariationalAutoencoder.compute_terms`,
  the same model math as `fit`) or 'raw' (tf ops only, `_raw_vae`).
  spec['steps_per_call']: 1 = a Python loop calling one compiled step per
  batch; k > 1 = k steps in one XLA program (a while loop over k stacked
  batches from `dataset.batch(k)`), the `lax.scan` design.
  Both use the package's input pipeline and tf_keras's Adam.
  """
  tf = _setup_tensorflow(spec)
  from tfp_vae import data as data_lib  # pylint: disable=g-import-not-at-top
  from tfp_vae._keras import keras  # pylint: disable=g-import-not-at-top
  from tfp_vae.model import VariationalAutoencoder  # pylint: disable=g-import-not-at-top
  model_config, train_config = _package_configs(spec)
  images = _load_images(spec)
  batch_size = train_config.batch_size
  steps_per_call = spec.get('steps_per_call', 1)
  start = time.perf_counter()
  if spec.get('math', 'package') == 'package':
    keras.utils.set_random_seed(0)
    model = VariationalAutoencoder(model_config)
    variables = model.trainable_variables

    def loss_fn(batch, seed):
      terms = model.compute_terms(batch, seed, training=True)
      return tf.reduce_mean(terms['loss'])
  else:
    variables, loss_fn = _raw_vae(tf, spec['posterior'])
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(variables)

  def train_step(batch):
    seed = tf.stack([tf.constant(0, tf.int64),
                     tf.cast(optimizer.iterations, tf.int64)])
    with tf.GradientTape() as tape:
      loss = loss_fn(batch, seed)
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    return loss

  dataset = data_lib.make_training_dataset(images, batch_size, 0)
  if steps_per_call == 1:
    compiled = tf.function(train_step, jit_compile=True)
  else:
    dataset = dataset.batch(steps_per_call, drop_remainder=True).prefetch(2)

    def train_steps(batches):  # [k, B, H, W, C]
      loss = train_step(batches[0])
      for step in tf.range(1, steps_per_call):
        loss = train_step(batches[step])
      return loss

    compiled = tf.function(train_steps, jit_compile=True)
  iterator = iter(dataset)
  calls_per_window = max(1, spec['steps_per_window'] // steps_per_call)
  window_seconds = []
  first_window_s = None
  for window in range(1 + spec.get('timed_windows', 3)):
    window_start = time.perf_counter()
    for _ in range(calls_per_window):
      loss = compiled(next(iterator))
    loss = float(loss)
    seconds = time.perf_counter() - window_start
    if window == 0:
      first_window_s = seconds
    else:
      window_seconds.append(seconds)
  result = _summarize_windows(window_seconds,
                              calls_per_window * steps_per_call * batch_size)
  result.update(first_epoch_s=round(first_window_s, 3), final_loss=loss,
                setup_s=round(time.perf_counter() - start, 2))
  return result


################################################################################
# Input pipeline, matmul roofline.
################################################################################


def pipeline(spec):
  """`data.make_training_dataset` alone, drained inside a tf.function.

  Reports batches per second and the CPU time the pipeline spends per batch
  (process user + system time / batches): on 2 cores, CPU time the training
  step cannot use.
  """
  tf = _setup_tensorflow(spec)
  from tfp_vae import data as data_lib  # pylint: disable=g-import-not-at-top
  images = _load_images(spec)
  batch_size = spec['batch_size']
  iterator = iter(data_lib.make_training_dataset(images, batch_size, 0))
  num_batches = spec.get('num_batches', 2000)

  @tf.function
  def drain(count):
    total = tf.constant(0.)
    for _ in tf.range(count):
      total += next(iterator)[0, 0, 0, 0]
    return total

  drain(tf.constant(50)).numpy()
  cpu_start, start = _cpu_seconds(), time.perf_counter()
  drain(tf.constant(num_batches)).numpy()
  seconds = time.perf_counter() - start
  cpu_seconds = _cpu_seconds() - cpu_start
  return {'batches_per_s': num_batches / seconds,
          'examples_per_s': num_batches * batch_size / seconds,
          'cpu_ms_per_batch': 1e3 * cpu_seconds / num_batches,
          'wall_ms_per_batch': 1e3 * seconds / num_batches}


def matmul(spec):
  """f32 matmul GFLOP/s of the workload's shapes, TF kernels and XLA.

  Each timed call runs 10 independent matmuls so the launch cost is
  amortised; the best of the timed repetitions is kept (a roofline wants the
  machine's capability, not its noise).
  """
  tf = _setup_tensorflow(spec)
  shapes = [tuple(s) for s in spec.get('shapes', [
      (128, 784, 512), (128, 512, 512), (128, 512, 784), (784, 128, 512),
      (10000, 512, 784), (2048, 2048, 2048)])]
  results = []
  for m, k, n in shapes:
    lhs = tf.random.normal([m, k])
    rhs = tf.random.normal([k, n])
    row = {'shape': [m, k, n]}
    for name, jit in (('tf', False), ('xla', True)):
      many = tf.function(
          lambda a, b: tf.add_n([tf.matmul(a + float(i), b)
                                 for i in range(10)]), jit_compile=jit)
      many(lhs, rhs).numpy()
      calls = max(1, int(2e9 / (20 * m * k * n)))  # ~0.1-0.2 s per rep.
      best = np.inf
      for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
          out = many(lhs, rhs)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / (10 * calls))
      row[f'{name}_gflops'] = round(2 * m * k * n / best / 1e9, 1)
    results.append(row)
  return {'matmuls': results}


################################################################################
# Importance-sampled log-likelihood.
################################################################################


def loglik(spec):
  """`evaluation.importance_sampled_log_likelihood` at K on the test images.

  Untrained weights (the cost does not depend on them). First a compile run
  on one batch, then a timed estimate on `estimate_examples` images; if the
  estimated time of all `num_examples` test images is within `budget_s`,
  times them all, otherwise times a random `subset_examples` subset and
  extrapolates linearly (the cost per batch is the same for every batch).
  """
  tf = _setup_tensorflow(spec)
  from tfp_vae import evaluation  # pylint: disable=g-import-not-at-top
  from tfp_vae import runs  # pylint: disable=g-import-not-at-top
  model_config, train_config = _package_configs(spec)
  model = runs.build_model(model_config, train_config)
  test_images = _load_images(spec, 'test')
  num_examples = spec.get('num_examples') or len(test_images)
  num_samples = spec['num_importance_samples']
  rng = np.random.default_rng(0)
  kwargs = dict(encode=model.encode, decode=model.decode,
                prior=model.prior_distribution(),
                num_importance_samples=num_samples,
                batch_size=spec.get('loglik_batch_size'),
                samples_per_chunk=spec.get('samples_per_chunk'), seed=0)

  def timed(count):
    index = np.sort(rng.permutation(len(test_images))[:count])
    start = time.perf_counter()
    values = evaluation.importance_sampled_log_likelihood(
        test_images[index], **kwargs)
    return time.perf_counter() - start, values

  batch = spec.get('loglik_batch_size') or 100
  compile_s, _ = timed(batch)
  estimate_examples = min(spec.get('estimate_examples', 500), num_examples)
  estimate_s, _ = timed(estimate_examples)
  estimated_full_s = estimate_s * num_examples / estimate_examples
  if estimated_full_s <= spec.get('budget_s', 240):
    measured_examples = num_examples
  else:
    measured_examples = min(spec.get('subset_examples', 1000), num_examples)
  measured_s, values = timed(measured_examples)
  full_s = measured_s * num_examples / measured_examples
  flops = num_examples * num_samples * loglik_flops_per_sample()
  breakdown = _loglik_breakdown(tf, model, test_images, num_samples, spec)
  gflops = flops / full_s / 1e9
  return {
      'breakdown': breakdown,
      # The "FLOP cost": the time the decoder's matmuls alone take
      # at the rate this machine runs their shapes (`matmuls_only` of the
      # breakdown). 1.0 would be a pure-matmul evaluation.
      'times_flop_cost': round(breakdown['matmuls_only_gflops'] / gflops, 2),
      'num_examples': num_examples, 'num_importance_samples': num_samples,
      'measured_examples': measured_examples,
      'extrapolated': measured_examples != num_examples,
      'first_call_s': round(compile_s, 2),
      'estimate_from_examples': estimate_examples,
      'estimated_full_s_from_estimate': round(estimated_full_s, 1),
      'measured_s': round(measured_s, 2), 'full_s': round(full_s, 1),
      'decoder_tflop': flops / 1e12,
      'gflops': gflops,
      'mean_log_likelihood_untrained': float(np.mean(values)),
  }


def prepare_data(spec):
  """Writes the benchmark's images to `spec['data_path']` (an .npz file).

  The statically binarized MNIST from `spec['mnist_dir']` when it holds the
  files, else random binary images of the same shapes (50k/10k/10k).
  """
  from tfp_vae import data as data_lib  # pylint: disable=g-import-not-at-top
  splits = ('train', 'validation', 'test')
  source = None
  why_not = 'no such directory'
  if spec.get('mnist_dir') and os.path.isdir(spec['mnist_dir']):
    try:
      dataset = data_lib.load_dataset('binarized_mnist',
                                      data_dir=spec['mnist_dir'],
                                      download=False)
      arrays = {f'{split}_images': getattr(dataset, f'{split}_images')
                for split in splits}
      source = f'binarized MNIST from {spec["mnist_dir"]}'
    except data_lib.DataError as error:
      why_not = str(error).splitlines()[0]
  if source is None:
    rng = np.random.default_rng(0)
    arrays = {f'{split}_images': (rng.random([size, *IMAGE_SHAPE]) < 0.13
                                  ).astype(np.float32)
              for split, size in zip(splits, (50000, 10000, 10000))}
    source = f'random binary images (binarized MNIST not read: {why_not})'
  np.savez(spec['data_path'], **arrays)
  return {'data_source': source,
          'shapes': {k: list(v.shape) for k, v in arrays.items()}}


def _loglik_breakdown(tf, model, images, num_samples, spec):
  """Where one batch's time goes: the parts of the estimator, timed alone.

  For one batch of the size `importance_sampled_log_likelihood` uses, times
  `num_chunks` calls of (a) XLA-compiled `model.decode(z).log_prob(x)` on a
  chunk `[chunk, B, D]` (the image-shaped event), (a') the same with the
  flat-event log-prob the estimator uses (`_flat_event`), (b) the decoder's three dense layers alone (matmul
  + bias + ReLU, as `tf.matmul` on its weights) on the same rows, and
  (c) `tf.linalg.matmul` alone (no bias, no ReLU). Each is reported as
  GFLOP/s of the decoder's multiply-adds, comparable with the full run's.
  """
  from tfp_vae.evaluation import importance_sampling  # pylint: disable=g-import-not-at-top
  batch_size, chunk, num_chunks = importance_sampling._chunking(  # pylint: disable=protected-access
      len(images), NUM_PIXELS, num_samples, spec.get('samples_per_chunk'),
      spec.get('loglik_batch_size'))
  batch = tf.constant(images[:batch_size])
  latents = tf.random.normal([chunk, batch_size, LATENT_DIM])
  kernels = [layer.kernel for layer in model.decoder.layers
             if hasattr(layer, 'kernel')]
  biases = [layer.bias for layer in model.decoder.layers
            if hasattr(layer, 'bias')]

  from tfp_vae.evaluation import _flat_event  # pylint: disable=g-import-not-at-top

  def decode_log_prob(z):
    return tf.reduce_sum(model.decode(z).log_prob(batch))

  def decode_flat_log_prob(z):
    return tf.reduce_sum(_flat_event.flat_event_log_prob(model.decode(z),
                                                         batch))

  def dense_layers(z, use_bias_relu=True):
    outputs = tf.reshape(z, [-1, LATENT_DIM])
    for index, kernel in enumerate(kernels):
      outputs = tf.matmul(outputs, kernel)
      if use_bias_relu:
        outputs += biases[index]
        if index < len(kernels) - 1:
          outputs = tf.nn.relu(outputs)
    return tf.reduce_sum(outputs)

  parts = {
      'decode_and_log_prob': decode_log_prob,
      'decode_and_flat_log_prob': decode_flat_log_prob,
      'dense_layers': dense_layers,
      'matmuls_only': lambda z: dense_layers(z, use_bias_relu=False),
  }
  flops = batch_size * num_samples * loglik_flops_per_sample()
  result = {'batch_size': batch_size, 'samples_per_chunk': chunk,
            'num_chunks': num_chunks}
  for name, function in parts.items():
    compiled = tf.function(function, jit_compile=True)
    compiled(latents).numpy()
    best = np.inf
    for _ in range(2):
      start = time.perf_counter()
      for _ in range(num_chunks):
        out = compiled(latents)
      out.numpy()
      best = min(best, time.perf_counter() - start)
    result[f'{name}_batch_s'] = round(best, 3)
    result[f'{name}_gflops'] = round(flops / best / 1e9, 1)
  return result


WORKLOADS = {
    'prepare_data': prepare_data,
    'fit_package': fit_package,
    'train_end_to_end': train_end_to_end,
    'fit_tutorial': fit_tutorial,
    'plain_loop': plain_loop,
    'pipeline': pipeline,
    'matmul': matmul,
    'loglik': loglik,
}


def run(spec):
  """Runs `spec['workload']`; adds the process's peak RSS and wall time."""
  start = time.perf_counter()
  result = WORKLOADS[spec['workload']](spec)
  result['peak_rss_mib'] = round(_peak_rss_mib(), 1)
  result['process_s'] = round(time.perf_counter() - start, 1)
  return result
