"""Evaluating a trained VAE: log p(x), ELBO, KL and latent usage per split.

The importance-sampled log p(x) comes with the effective sample size of its
weights (`diagnostics`), and on request with the inference-gap analysis of
`gaps` on a subset of the examples.

  `evaluate_model`       every metric of a `VariationalAutoencoder` on images
  `evaluate_model_dir`   the same for a trained model directory on one split
                         of its data (what `scripts/evaluate.py` calls)

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016
    (the estimator, K = 5000, and the active-units criterion).
  Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014.
  Cremer, Li & Duvenaud, Inference Suboptimality in VAEs, ICML 2018 (the gap
    log p(x) - ELBO).
"""

import dataclasses
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from tfp_vae import _checks
from tfp_vae import data as data_lib
from tfp_vae import objectives
from tfp_vae import runs
from tfp_vae.evaluation import diagnostics
from tfp_vae.evaluation import gaps
from tfp_vae.evaluation import importance_sampling
from tfp_vae.evaluation import local_fit
from tfp_vae.evaluation import metrics
from tfp_vae.names import EVALUATION_SPLITS

__all__ = ['evaluate_model', 'evaluate_model_dir', 'SPLITS']

# The splits `evaluate_model_dir` scores; the default first.
SPLITS = EVALUATION_SPLITS

# The estimator's per-example sampling, shared so that the ELBO here draws
# its noise exactly as the estimator does.
# pylint: disable=protected-access
_stream_seed = importance_sampling._stream_seed
_sample_per_example = importance_sampling._sample_per_example
_ELBO_STREAM = importance_sampling._ELBO_STREAM
# pylint: enable=protected-access
# The samples behind the Monte Carlo moments (mean, covariance) of a
# posterior without closed-form ones (the IAF): an independent stream, and
# enough samples that the correlations' Monte Carlo error (~1/sqrt(S) = 0.06
# per entry) is small beside the correlations a posterior learns.
_MOMENTS_STREAM = 7003
_MOMENT_SAMPLES = 256


def evaluate_model(model, images, num_importance_samples=5000,
                   batch_size=None, seed=0, samples_per_chunk=None,
                   jit_compile=True, gap_examples=0,
                   gap_max_steps=local_fit.DEFAULT_MAX_STEPS,
                   gap_samples=local_fit.DEFAULT_NUM_SAMPLES):
  """Test-set metrics of a `VariationalAutoencoder`, in nats per example.

  Args:
    model: a `VariationalAutoencoder`.
    images: array `[N, H, W, C]`.
    num_importance_samples: K for the log-likelihood estimate (default 5000);
      0 skips it (its entries are then None).
    batch_size: examples per batch (default: min(N, 100)).
    seed: Python `int` seeding all sampling noise.
    samples_per_chunk, jit_compile: as in `importance_sampled_log_likelihood`.
    gap_examples: Python `int` >= 0; if > 0, `gaps.gap_analysis` on a seeded
      random subset of this many of the images (all of them if fewer), with
      K = `num_importance_samples` (default 0: no gap analysis).
    gap_max_steps, gap_samples: the local fit's cap on Adam steps and its
      latent samples per step (`local_fit.fit_local_posteriors`' `max_steps`
      and `num_samples`).

  Returns:
    dict of JSON-serialisable values (floats, ints, str, or None):
      'log_likelihood', 'log_likelihood_stderr': mean and standard error of
        `importance_sampled_log_likelihood` with K samples;
      'elbo', 'kl', 'nll' (and '*_stderr'): the ELBO, its rate
        KL(q(z|x) || p(z)) and its distortion -log p(x|z), from
        `objectives.elbo` with one latent sample per example and the model's
        `kl` setting (analytic `tfd.kl_divergence`, or Monte Carlo on the same
        sample), averaged over the examples. This is the ELBO the model
        trains on (for `objective='iwae'` models too, which report the IWAE
        bound separately through `log_likelihood`);
      'gap', 'gap_stderr': log_likelihood - elbo, per example then averaged
        (>= 0 up to Monte Carlo error; the paired standard error);
      'effective_sample_size': `diagnostics.summarize_effective_sample_size`
        of the estimate's per-example ESS (mean, median, min, and the
        fraction of examples below 1% of K), or None without the estimate;
      'gaps': with `gap_examples` > 0, `GapReport.to_dict()`, else None;
      'active_units': `active_units` of the posterior means;
      'mean_abs_offdiag_correlation', 'kl_to_diagonal':
        `posterior_correlation_stats` averaged over the examples (0 for a
        diagonal posterior). For the IAF posterior the means, the
        correlations and the KL are Monte Carlo estimates from 256 samples
        per example (`metrics.posterior_moments`);
      'num_examples', 'num_importance_samples', 'latent_dim', 'posterior'.
    For a point-mass ('deterministic') posterior only the reconstruction
    'nll' (and 'nll_stderr') is computed; the entries that need a density are
    None.

  Raises:
    ValueError: for empty `images`, a negative `num_importance_samples` or
      `gap_examples`, or `gap_examples` > 0 for a point-mass posterior.
  """
  config = model.model_config
  images = np.asarray(images, np.float32)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  _checks.check_int_at_least(num_importance_samples, 'num_importance_samples',
                             0)
  if batch_size is not None:
    _checks.check_positive_int(batch_size, 'batch_size')
  seed = _checks.check_integer(seed, 'seed')
  _checks.check_int_at_least(gap_examples, 'gap_examples', 0)
  if gap_examples and not config.posterior_has_density:
    raise ValueError(
        f'`gap_examples` must be 0 for a model with posterior='
        f'{config.posterior!r} (a point mass has no ELBO to split); got '
        f'{gap_examples}.')
  if gap_examples and not num_importance_samples:
    raise ValueError('`gap_examples` > 0 needs num_importance_samples > 0; '
                     f'got gap_examples={gap_examples}.')
  num_examples = images.shape[0]
  batch_size = batch_size or min(num_examples,
                                 importance_sampling.DEFAULT_BATCH_SIZE)
  has_density = config.posterior_has_density
  elbo_seed = _stream_seed(seed, _ELBO_STREAM)
  moments_seed = _stream_seed(seed, _MOMENTS_STREAM)

  @tf.function(reduce_retracing=True)
  def batch_terms(batch_images, example_indices):
    approx_posterior = model.encode(batch_images)
    latents = _sample_per_example(approx_posterior, 1, elbo_seed,
                                  example_indices)  # [1, B, D]
    terms = objectives.elbo(batch_images, approx_posterior,
                            model.prior_distribution(), model.decode, latents,
                            kl=config.kl)
    outputs = {'elbo': terms.elbo, 'kl': terms.rate, 'nll': terms.distortion}
    q = objectives.unwrap_distribution(approx_posterior)
    if not has_density:
      outputs['posterior_mean'] = q.mean()  # The point itself.
      return outputs
    moment_latents = None  # The Gaussians' moments are exact.
    if not metrics.has_analytic_moments(q):
      moment_latents = _sample_per_example(
          approx_posterior, _MOMENT_SAMPLES, moments_seed,
          example_indices)  # [S, B, D]
    outputs['posterior_mean'], _ = metrics.posterior_moments(
        q, moment_latents)  # [B, D]
    (outputs['mean_abs_offdiag_correlation'],
     outputs['kl_to_diagonal']) = metrics.correlation_terms(
         approx_posterior, moment_latents)
    return outputs

  per_example = {}
  for start in range(0, num_examples, batch_size):
    example_indices = np.arange(start, min(start + batch_size, num_examples))
    outputs = batch_terms(tf.convert_to_tensor(images[example_indices]),
                          tf.convert_to_tensor(example_indices))
    for name, value in outputs.items():
      per_example.setdefault(name, []).append(value.numpy())
  per_example = {name: np.concatenate(values)
                 for name, values in per_example.items()}

  results = {'num_examples': int(num_examples),
             'num_importance_samples': None, 'latent_dim': config.latent_dim,
             'posterior': config.posterior, 'effective_sample_size': None,
             'gaps': None}
  for name in ('log_likelihood', 'elbo', 'kl', 'nll', 'gap'):
    results[name] = results[name + '_stderr'] = None
  for name in ('active_units', 'mean_abs_offdiag_correlation',
               'kl_to_diagonal'):
    results[name] = None

  def put(name, values):
    summary = metrics.summarize(values)
    results[name] = summary['mean']
    results[name + '_stderr'] = summary['standard_error']

  put('nll', per_example['nll'])
  if not has_density:
    return results
  put('elbo', per_example['elbo'])
  put('kl', per_example['kl'])
  results['active_units'] = metrics.active_units(
      per_example['posterior_mean'])
  for name in ('mean_abs_offdiag_correlation', 'kl_to_diagonal'):
    results[name] = float(np.mean(per_example[name]))
  if num_importance_samples:
    # The same estimate as `importance_sampled_log_likelihood`, on the same
    # samples, with its weights' effective sample size at no extra decoding.
    statistics = importance_sampling.importance_sampling_statistics(
        images, model.encode, model.decode, model.prior_distribution(),
        num_importance_samples=num_importance_samples,
        samples_per_chunk=samples_per_chunk, batch_size=batch_size,
        seed=seed, jit_compile=jit_compile)
    log_likelihood = statistics.log_likelihood
    results['num_importance_samples'] = int(num_importance_samples)
    put('log_likelihood', log_likelihood)
    put('gap', log_likelihood - per_example['elbo'])
    results['effective_sample_size'] = (
        diagnostics.summarize_effective_sample_size(
            statistics.effective_sample_size, num_importance_samples))
  if gap_examples:
    report = gaps.gap_analysis(
        model, images, num_examples=min(gap_examples, num_examples),
        max_steps=gap_max_steps, num_samples=gap_samples,
        num_importance_samples=num_importance_samples, seed=seed,
        batch_size=batch_size, samples_per_chunk=samples_per_chunk,
        jit_compile=jit_compile)
    results['gaps'] = report.to_dict()
  return results


def _check_model_dir_arguments(model_dir, split, num_importance_samples,
                               batch_size, max_examples, seed, gap_examples,
                               gap_max_steps, gap_samples):
  config_path = os.path.join(model_dir, runs.CONFIG_FILE)
  if not os.path.isfile(config_path):
    # Argument names are `scripts/evaluate.py`'s flag names (as in `config`).
    _checks.fail_flag(
        'model_dir', model_dir,
        f'be a directory written by scripts/train.py; {config_path} does not '
        'exist')
  if split not in SPLITS:
    _checks.fail_flag('split', split, f'be one of {", ".join(SPLITS)}')
  for name, value, lowest in (
      ('num_importance_samples', num_importance_samples, 1),
      ('batch_size', batch_size, 1), ('max_examples', max_examples, 0)):
    if name == 'batch_size' and value is None:
      continue
    _checks.check_flag_int_at_least(value, name, lowest, allow_numpy=True)
  _checks.check_flag_integer(seed, 'seed', allow_numpy=True)
  _checks.check_flag_int_at_least(gap_examples, 'gap_examples', 0,
                                  allow_numpy=True)
  for name, value in (('gap_max_steps', gap_max_steps),
                      ('gap_samples', gap_samples)):
    _checks.check_flag_int_at_least(value, name, 1, allow_numpy=True)
  if gap_examples:
    posterior = runs.read_configs(model_dir)[0].posterior
    if posterior == 'deterministic':
      _checks.fail_flag(
          'gap_examples', gap_examples,
          f'be 0 for a model with posterior={posterior!r} (its point mass '
          'has no ELBO to split into approximation and amortization gaps)')


def evaluate_model_dir(model_dir, split='test', num_importance_samples=5000,
                       batch_size=None, max_examples=0, seed=0,
                       data_dir=None, samples_per_chunk=None,
                       jit_compile=True, gap_examples=0,
                       gap_max_steps=local_fit.DEFAULT_MAX_STEPS,
                       gap_samples=local_fit.DEFAULT_NUM_SAMPLES):
  """Evaluates the model a training run left in `model_dir` on one data split.

  Restores the model (`runs.load_trained_model`: the final model, else
  the newest readable checkpoint; whatever strategy trained it), loads the
  data the run trained on (`data.load_data` with the saved `TrainConfig`,
  including its `max_train_examples` subsets) and calls `evaluate_model`.

  Args:
    model_dir: a directory written by `scripts/train.py` (holding
      config.json).
    split: 'test' (default), 'validation' or 'train'.
    num_importance_samples: K > 0 for the log-likelihood (default 5000).
    batch_size: examples per batch (default: min(N, 100)).
    max_examples: 0 evaluates the whole split; otherwise a random subset of
      this many examples, drawn with `seed` (never the first rows: data files
      can be sorted by class).
    seed: Python `int`; seeds the subset and all sampling noise.
    data_dir: where the dataset files are (default: the run's `data_dir`).
    samples_per_chunk, jit_compile: as in `importance_sampled_log_likelihood`.
    gap_examples, gap_max_steps, gap_samples: the gap analysis, as in
      `evaluate_model` (`scripts/evaluate.py --gaps`).

  Returns:
    `evaluate_model`'s dict plus 'model_dir', 'checkpoint_path', 'dataset',
    'split', 'max_examples', 'seed' and 'seconds' (wall time of the
    evaluation), all JSON-serialisable.

  Raises:
    ValueError: naming the argument (as `--name=value`, the flag of
      `scripts/evaluate.py`) for a bad value, e.g. a `model_dir` without
      config.json; before any model or data is loaded.
    data.DataError: if the dataset files cannot be read.
  """
  _check_model_dir_arguments(model_dir, split, num_importance_samples,
                             batch_size, max_examples, seed, gap_examples,
                             gap_max_steps, gap_samples)
  start_time = time.perf_counter()
  loaded = runs.load_trained_model(model_dir)
  train_config = loaded.train_config
  if data_dir:
    train_config = dataclasses.replace(train_config, data_dir=data_dir)
  dataset = data_lib.load_data(train_config, loaded.model_config)
  images = getattr(dataset, f'{split}_images')
  if split == 'train' and dataset.binarization == 'dynamic':
    # Training images are grey levels binarized afresh each epoch; score one
    # seeded binarization, as the validation and test splits are.
    rng = np.random.default_rng([seed, 1])
    images = (rng.random(images.shape) < images).astype(np.float32)
  images = images[importance_sampling.evaluation_subset(
      len(images), max_examples, seed)]
  logging.info('Evaluating %s (%s) on %d %s images of %s.', model_dir,
               loaded.checkpoint_path, len(images), split, dataset.name)
  results = evaluate_model(
      loaded.model, images, num_importance_samples=num_importance_samples,
      batch_size=batch_size, seed=seed, samples_per_chunk=samples_per_chunk,
      jit_compile=jit_compile, gap_examples=gap_examples,
      gap_max_steps=gap_max_steps, gap_samples=gap_samples)
  results.update(model_dir=str(model_dir),
                 checkpoint_path=str(loaded.checkpoint_path),
                 dataset=dataset.name, split=split,
                 max_examples=int(max_examples), seed=int(seed),
                 seconds=time.perf_counter() - start_time)
  return results
