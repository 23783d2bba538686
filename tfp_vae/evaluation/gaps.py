"""Where the inference gap comes from: approximation vs amortization.

A VAE's ELBO falls short of log p(x) by the inference gap, KL(q(z|x) || p(z|x)).
Cremer, Li & Duvenaud (2018) split it in two. For each example x, let q*_x be
the best member of the encoder's own family for that x alone, found by
maximizing the ELBO over the family's parameters with the decoder and prior
fixed. Then

```none
log p(x) - ELBO[q]  =  (log p(x) - ELBO[q*])  +  (ELBO[q*] - ELBO[q])
inference gap       =  approximation gap      +  amortization gap
```

The approximation gap is what the family cannot represent (0 when p(z|x) is
in the family); the amortization gap is what the encoder loses by predicting
q from x with one network instead of fitting each x (0 for a perfect
encoder). Both are >= 0 up to Monte Carlo error.

  `inference_gaps`        the decomposition for any encoder / posterior layer
                          / decoder / prior, as a `GapReport`
  `gap_analysis`          the same for a `VariationalAutoencoder`
  `GapReport`             per-example values, summaries with standard errors,
                          a JSON-ready dict and a text table

q*_x comes from `local_fit.fit_local_posteriors`; log p(x), the ELBOs and
the effective sample sizes from `importance_sampling.
importance_sampling_statistics`.

References:
  Cremer, Li & Duvenaud, Inference Suboptimality in Variational
    Autoencoders, ICML 2018.
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from tfp_vae import _checks
from tfp_vae.evaluation import diagnostics
from tfp_vae.evaluation import importance_sampling
from tfp_vae.evaluation import local_fit
from tfp_vae.evaluation import metrics

__all__ = ['GapReport', 'inference_gaps', 'gap_analysis', 'format_gap_table']


# Per-example values of a `GapReport` that are summarized as mean +- stderr,
# in table order, with their descriptions.
_GAP_QUANTITIES = (
    ('log_likelihood', 'log p(x), the tighter IS estimate'),
    ('log_likelihood_amortized', 'log p(x), IS with q(z|x) as proposal'),
    ('log_likelihood_optimized', 'log p(x), IS with q*_x as proposal'),
    ('elbo_amortized', 'ELBO[q], the encoder\'s q(z|x)'),
    ('elbo_optimized', 'ELBO[q*], the fitted q*_x'),
    ('inference_gap', 'inference gap = log p(x) - ELBO[q]'),
    ('approximation_gap', 'approximation gap = log p(x) - ELBO[q*]'),
    ('amortization_gap', 'amortization gap = ELBO[q*] - ELBO[q]'),
)


# eq=False: fields are numpy arrays, whose == is elementwise.
@dataclasses.dataclass(frozen=True, eq=False)
class GapReport:
  """The inference-gap decomposition of `inference_gaps`, per example.

  Every array is numpy `[N]`, one entry per evaluated example, in nats
  (float64) unless said otherwise.

  Attributes:
    log_likelihood: the tighter of the two importance-sampled estimates of
      log p(x) below (the one with the higher mean over the examples,
      `settings['tighter_proposal']`); the gaps use this one.
    log_likelihood_amortized: K-sample estimate with q(z|x) as proposal
      (`importance_sampling.importance_sampled_log_likelihood`).
    log_likelihood_optimized: the same with q*_x as proposal, on the same
      per-example noise.
    elbo_amortized: ELBO[q], the mean of the K log-weights of q(z|x).
    elbo_optimized: ELBO[q*], the mean of the K log-weights of q*_x.
    inference_gap: log_likelihood - elbo_amortized.
    approximation_gap: log_likelihood - elbo_optimized.
    amortization_gap: elbo_optimized - elbo_amortized.
    effective_sample_size_amortized, effective_sample_size_optimized: the
      ESS of each estimate's normalized weights (`diagnostics`).
    fit_num_steps: int, Adam steps of the local fit; fit_converged: bool.
    settings: dict of the analysis's arguments (plain values).
    seconds: dict, wall time of its phases: 'fit' (the local fit),
      'importance_sampling' (both estimates) and 'total', compilation
      included.
  """
  log_likelihood: np.ndarray
  log_likelihood_amortized: np.ndarray
  log_likelihood_optimized: np.ndarray
  elbo_amortized: np.ndarray
  elbo_optimized: np.ndarray
  inference_gap: np.ndarray
  approximation_gap: np.ndarray
  amortization_gap: np.ndarray
  effective_sample_size_amortized: np.ndarray
  effective_sample_size_optimized: np.ndarray
  fit_num_steps: np.ndarray
  fit_converged: np.ndarray
  settings: dict
  seconds: dict

  @property
  def num_examples(self):
    return int(self.log_likelihood.shape[0])

  def summary(self, ess_threshold_fraction=None):
    """Means with standard errors over examples, and the diagnostics.

    The standard error of a gap is that of the per-example differences
    (paired: the examples are shared), `metrics.summarize`.

    Args:
      ess_threshold_fraction: the ESS threshold as a fraction of K (default:
        `settings['ess_threshold_fraction']`).

    Returns:
      dict of JSON-serialisable values: for each quantity of the table a
      dict {'mean', 'standard_error', 'num_examples'}; 'effective_sample_size_
      amortized' and '..._optimized' as `diagnostics.
      summarize_effective_sample_size`; 'fit' with the mean and max number
      of steps and the fraction of examples that converged; and
      'fraction_optimized_proposal_higher', the fraction of examples whose
      log p(x) estimate with q*_x is the higher of the two.
    """
    if ess_threshold_fraction is None:
      ess_threshold_fraction = self.settings['ess_threshold_fraction']
    num_importance_samples = self.settings['num_importance_samples']
    summary = {name: metrics.summarize(getattr(self, name))
               for name, _ in _GAP_QUANTITIES}
    for proposal in ('amortized', 'optimized'):
      name = f'effective_sample_size_{proposal}'
      summary[name] = diagnostics.summarize_effective_sample_size(
          getattr(self, name), num_importance_samples,
          ess_threshold_fraction)
    summary['fit'] = {
        'mean_steps': float(np.mean(self.fit_num_steps)),
        'max_steps_taken': int(np.max(self.fit_num_steps)),
        'fraction_converged': float(np.mean(self.fit_converged)),
    }
    summary['fraction_optimized_proposal_higher'] = float(np.mean(
        self.log_likelihood_optimized > self.log_likelihood_amortized))
    return summary

  def to_dict(self, per_example=False):
    """Plain dict for JSON: 'settings', 'summary' (and 'per_example' lists)."""
    result = {'settings': dict(self.settings), 'num_examples':
              self.num_examples, 'seconds': dict(self.seconds),
              'summary': self.summary()}
    if per_example:
      result['per_example'] = {
          field.name: getattr(self, field.name).tolist()
          for field in dataclasses.fields(self)
          if field.name not in ('settings', 'seconds')}
    return result

  def format_table(self, title=None):
    """A fixed-width text table of the summary: `format_gap_table`."""
    return format_gap_table(self.to_dict(), title)


def format_gap_table(report_dict, title=None):
  """A fixed-width text table of a gap report, for logs and terminals.

  Args:
    report_dict: `GapReport.to_dict()` (as `evaluate_model` stores it under
      'gaps').
    title: optional first line.

  Returns:
    The table, a `str` of lines.

  Example (a D=16 diag MLP after 2 epochs, 200 binarized-MNIST test
  images, K=5000; benchmarks/gap_benchmark.py):

  ```none
  quantity                                      mean    stderr
  log p(x), the tighter IS estimate          -108.86      2.03
  log p(x), IS with q(z|x) as proposal       -109.67      2.04
  log p(x), IS with q*_x as proposal         -108.86      2.03
  ELBO[q], the encoder's q(z|x)              -114.81      2.09
  ELBO[q*], the fitted q*_x                  -110.22      2.03
  inference gap = log p(x) - ELBO[q]            5.94      0.15
  approximation gap = log p(x) - ELBO[q*]       1.36      0.02
  amortization gap = ELBO[q*] - ELBO[q]         4.59      0.14
  ESS of q(z|x) weights: mean 24.3, median 15.9, min 1.0; 88.0% of
    examples below 50 (1% of K=5000)
  ...
  ```
  """
  summary = report_dict['summary']
  settings = report_dict['settings']
  lines = [title] if title else []
  width = max(len(description) for _, description in _GAP_QUANTITIES)
  lines.append(f'{"quantity":<{width}}  {"mean":>9}  {"stderr":>8}')
  for name, description in _GAP_QUANTITIES:
    entry = summary[name]
    stderr = entry['standard_error']
    stderr = '-' if stderr is None else f'{stderr:.2f}'
    lines.append(f'{description:<{width}}  {entry["mean"]:>9.2f}  '
                 f'{stderr:>8}')
  for proposal, label in (('amortized', 'q(z|x)'), ('optimized', 'q*_x')):
    ess = summary[f'effective_sample_size_{proposal}']
    num_samples = ess['num_importance_samples']
    lines.append(
        f'ESS of {label} weights: mean {ess["mean"]:.1f}, median '
        f'{ess["median"]:.1f}, min {ess["min"]:.1f}; '
        f'{100 * ess["fraction_below_threshold"]:.1f}% of examples below '
        f'{ess["threshold"]:g} ({100 * ess["threshold"] / num_samples:g}% '
        f'of K={num_samples})')
  fit = summary['fit']
  lines.append(
      f'local fit: {fit["mean_steps"]:.0f} Adam steps on average (max '
      f'{fit["max_steps_taken"]} of {settings["max_steps"]}), '
      f'{100 * fit["fraction_converged"]:.1f}% converged; log p(x) from '
      f'the {settings["tighter_proposal"]} proposal (q*_x gave the '
      'higher estimate for '
      f'{100 * summary["fraction_optimized_proposal_higher"]:.1f}% of '
      'examples)')
  return '\n'.join(lines)


def _encoder_params(encode_params, images, batch_size):
  """`encode_params` over `images` in batches: numpy `[N, params_size]`."""
  return np.concatenate([
      np.asarray(encode_params(tf.convert_to_tensor(
          images[start:start + batch_size])))
      for start in range(0, images.shape[0], batch_size)])


def inference_gaps(
    images, encode_params, posterior_fn, decode, prior,
    num_importance_samples=5000, max_steps=local_fit.DEFAULT_MAX_STEPS,
    num_samples=local_fit.DEFAULT_NUM_SAMPLES,
    learning_rate=local_fit.DEFAULT_LEARNING_RATE,
    check_every=local_fit.DEFAULT_CHECK_EVERY,
    patience=local_fit.DEFAULT_PATIENCE,
    tolerance=local_fit.DEFAULT_TOLERANCE, batch_size=None,
    samples_per_chunk=None, seed=0,
    ess_threshold_fraction=diagnostics.DEFAULT_THRESHOLD_FRACTION,
    jit_compile=True):
  """The approximation / amortization split of the inference gap, per example.

  1. q(z|x) = posterior_fn(encode_params(x)): the amortized posterior.
  2. q*_x = posterior_fn(params*), params* fitted per example from
     encode_params(x) by `local_fit.fit_local_posteriors`.
  3. Two importance-sampling passes with K samples
     (`importance_sampling.importance_sampling_statistics`), one with q and
     one with q*_x as the proposal, on the same per-example noise (common random
     numbers, so their differences are not swamped by sampling noise). Each
     gives a log p(x) estimate, the K-sample Monte Carlo ELBO of its
     proposal, and the effective sample size of its weights.
  4. log p(x) is the tighter of the two estimates: both are stochastic
     lower bounds, so the one with the higher mean over the examples is
     taken, for every example (`settings['tighter_proposal']` says which;
     q*_x is usually the better proposal). Not the per-example max: that
     is biased upwards by the estimates' noise. Both estimates are
     reported too, and the gaps use the tighter one.

  Args:
    images: array `[N, ...]`, the examples x.
    encode_params: callable, `[B, ...]` examples -> the posterior layer's
      input `[B, params_size]`, e.g. `model.encoder`.
    posterior_fn: callable, `[B, params_size]` -> q with batch `[B]`, event
      `[D]`, e.g. `model.posterior_layer`. Must have a density and
      reparameterized samples.
    decode: callable, latents `[k, B, D]` -> p(x|z) with batch `[k, B]`.
    prior: p(z), event `[D]`.
    num_importance_samples: Python `int` K > 0 (default 5000): the samples
      of each log p(x) estimate, and of each ELBO (the mean of the same K
      log-weights; its Monte Carlo standard error is std(log w) / sqrt(K)).
    max_steps, num_samples, learning_rate, check_every, patience, tolerance:
      the local fit, as in `local_fit.fit_local_posteriors`.
    batch_size: examples per batch, for the fit and the estimates (default:
      min(N, 100)).
    samples_per_chunk: as in
      `importance_sampling.importance_sampled_log_likelihood`.
    seed: Python `int`, seeds the fit and the importance samples.
    ess_threshold_fraction: ESS below this fraction of K flags an example
      in the summary (default 0.01, `diagnostics`).
    jit_compile: compile the fit and the estimates with XLA (default True).

  Returns:
    A `GapReport`.

  Raises:
    ValueError: for a bad argument (named) or a point-mass family.

  ```none
  log_w(q)[k]      = log p(x|z_k) + log p(z_k) - log q(z_k|x),  z_k ~ q
  log_p_x(q)       = logsumexp_k log_w(q)[k] - log K
  ELBO[q]          = mean_k log_w(q)[k]
  log_p_x          = log_p_x(q*) if mean(log_p_x(q*)) >= mean(log_p_x(q))
                     else log_p_x(q)
  approximation    = log_p_x - ELBO[q*]
  amortization     = ELBO[q*] - ELBO[q]
  approximation + amortization = log_p_x - ELBO[q]     (exactly)
  ```

  Both estimates, and so the chosen one, are below log p(x) in expectation;
  with K in the thousands their Monte Carlo error is small (the per-example
  ESS says how small). A q*_x that the fit left worse than q (a negative
  amortization gap beyond noise) shows a fit that needs more steps or a
  smaller learning rate.

  Example:

  ```python
  report = inference_gaps(
      test_images[:200], model.encoder, model.posterior_layer, model.decode,
      model.prior_distribution(), num_importance_samples=5000)
  print(report.format_table())
  json.dump(report.to_dict(), file)
  ```
  """
  images = np.asarray(images)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  num_importance_samples = _checks.check_positive_int(
      num_importance_samples, 'num_importance_samples')
  if batch_size is not None:
    _checks.check_positive_int(batch_size, 'batch_size')
  batch_size = batch_size or min(images.shape[0],
                                 local_fit.DEFAULT_BATCH_SIZE)
  seed = _checks.check_integer(seed, 'seed')
  # Checked now, not after the fit has run.
  ess_threshold_fraction = diagnostics.check_threshold_fraction(
      ess_threshold_fraction)

  start_time = time.perf_counter()
  initial_params = _encoder_params(encode_params, images, batch_size)
  fit = local_fit.fit_local_posteriors(
      images, initial_params, posterior_fn, decode, prior,
      max_steps=max_steps, num_samples=num_samples,
      learning_rate=learning_rate, check_every=check_every,
      patience=patience, tolerance=tolerance, batch_size=batch_size,
      seed=seed, jit_compile=jit_compile)

  def estimate_with(params):
    # The same seed for both proposals: example i's standard-normal noise is
    # the same, so a Gaussian q and q* see the same eps, moved by their own
    # location and scale.
    return importance_sampling.importance_sampling_statistics(
        images, posterior_fn, decode, prior,
        num_importance_samples=num_importance_samples,
        samples_per_chunk=samples_per_chunk, batch_size=batch_size,
        seed=seed, jit_compile=jit_compile, encoder_inputs=params)

  fit_done_time = time.perf_counter()
  amortized = estimate_with(initial_params)
  optimized = estimate_with(fit.params)
  end_time = time.perf_counter()
  # One choice for all examples, not a per-example max: the max of two noisy
  # estimates is biased upwards by their noise (on the linear-Gaussian model
  # of the tests, +0.02 nats when q's ESS was ~500 of 5000), and that bias
  # would go straight into the approximation gap.
  optimized_is_tighter = (np.mean(optimized.log_likelihood) >=
                          np.mean(amortized.log_likelihood))
  tighter = optimized if optimized_is_tighter else amortized
  log_likelihood = tighter.log_likelihood
  settings = dict(
      num_importance_samples=num_importance_samples, max_steps=max_steps,
      num_samples=num_samples, learning_rate=learning_rate,
      check_every=check_every, patience=patience, tolerance=tolerance,
      batch_size=batch_size, seed=seed,
      ess_threshold_fraction=float(ess_threshold_fraction),
      tighter_proposal='optimized' if optimized_is_tighter else 'amortized')
  return GapReport(
      log_likelihood=log_likelihood,
      log_likelihood_amortized=amortized.log_likelihood,
      log_likelihood_optimized=optimized.log_likelihood,
      elbo_amortized=amortized.elbo,
      elbo_optimized=optimized.elbo,
      inference_gap=log_likelihood - amortized.elbo,
      approximation_gap=log_likelihood - optimized.elbo,
      amortization_gap=optimized.elbo - amortized.elbo,
      effective_sample_size_amortized=amortized.effective_sample_size,
      effective_sample_size_optimized=optimized.effective_sample_size,
      fit_num_steps=fit.num_steps.astype(np.int64),
      fit_converged=fit.converged.astype(bool),
      settings=settings,
      seconds={'fit': fit_done_time - start_time,
               'importance_sampling': end_time - fit_done_time,
               'total': end_time - start_time})


def gap_analysis(model, images, num_examples=None,
                 max_steps=local_fit.DEFAULT_MAX_STEPS,
                 num_samples=local_fit.DEFAULT_NUM_SAMPLES,
                 num_importance_samples=5000, seed=0, **kwargs):
  """`inference_gaps` for a trained `VariationalAutoencoder`.

  What `evaluate_model(..., gap_examples=n)` (`scripts/evaluate.py --gaps`)
  and the posterior comparison call.

  Args:
    model: a `VariationalAutoencoder` whose posterior has a density ('diag',
      'full_cov').
    images: array `[N, H, W, C]`, e.g. the test split.
    num_examples: None (default) analyses all N images; otherwise a random
      subset of this many, drawn with `seed` and kept in file order (data
      files can be sorted by class, so never the first rows).
    max_steps, num_samples, num_importance_samples, seed: as in
      `inference_gaps`.
    **kwargs: the other arguments of `inference_gaps` (`learning_rate`,
      `batch_size`, `jit_compile`, ...).

  Returns:
    A `GapReport`; its settings also hold 'posterior', 'latent_dim' and
    'example_indices' (the rows of `images` analysed).

  Raises:
    ValueError: for a point-mass ('deterministic') model, or a bad argument
      (named).
  """
  config = model.model_config
  if not config.posterior_has_density:
    raise ValueError(
        'gap_analysis needs a posterior with a density; the model has '
        f'posterior={config.posterior!r}, a point mass with no ELBO to '
        'split.')
  images = np.asarray(images, np.float32)
  if images.ndim < 1 or images.shape[0] == 0:
    raise ValueError(f'`images` must hold at least one example; got shape '
                     f'{images.shape}.')
  seed = _checks.check_integer(seed, 'seed')
  if num_examples is not None:
    num_examples = _checks.check_positive_int(num_examples, 'num_examples')
  example_indices = importance_sampling.evaluation_subset(
      images.shape[0], num_examples or 0, seed)
  report = inference_gaps(
      images[example_indices], model.encoder, model.posterior_layer,
      model.decode, model.prior_distribution(),
      num_importance_samples=num_importance_samples, max_steps=max_steps,
      num_samples=num_samples, seed=seed, **kwargs)
  return dataclasses.replace(report, settings=dict(
      report.settings, posterior=config.posterior,
      latent_dim=config.latent_dim,
      example_indices=example_indices.tolist()))
