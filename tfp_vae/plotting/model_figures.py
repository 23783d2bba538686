"""Figures of a trained model: prior samples, latent manifold, posteriors.

Each takes a `VariationalAutoencoder` (or several), runs forward passes only
(decoder means, posterior covariances) and saves one PNG, as `figures` does.

  `plot_prior_samples`               decoder means at z ~ p(z)
  `plot_latent_manifold`             decoder means on a grid of z (D = 2)
  `plot_posterior_ellipses`          q(z|x) 1-sd ellipses over p(z) (D = 2)
  `prior_marginal_quantiles`         quantiles of each coordinate of p(z)
"""

import matplotlib
import matplotlib.patches
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import objectives
from tfp_vae.plotting import _canvas
from tfp_vae.plotting import figures

tfd = tfp.distributions

__all__ = [
    'plot_latent_manifold',
    'plot_posterior_ellipses',
    'plot_prior_samples',
    'prior_marginal_quantiles',
]

# Kingma & Welling (2014), Fig. 4: the manifold spans the prior's quantiles
# from 5% to 95% in each latent coordinate.
_MANIFOLD_PROBABILITY_RANGE = (0.05, 0.95)


# Prior marginals drawn from this many samples when the prior has no
# closed-form quantile (the mixture prior); fixed seed so pictures repeat.
_NUM_PRIOR_QUANTILE_SAMPLES = 20000


def _decoder_mean_kind(model):
  """What a decoder mean is, in words, for titles."""
  config = getattr(model, 'model_config', None)
  if getattr(config, 'likelihood', None) == 'bernoulli':
    return 'Bernoulli means: pixel probabilities, no pixel noise'
  if getattr(config, 'likelihood', None) == 'normal':
    return 'Normal means, no pixel noise'
  return 'no pixel noise'


def plot_prior_samples(model, path, num_samples=64, seed=0, num_columns=None):
  """Saves decoder means at latents drawn from the prior: `model.sample`.

  The images are E[x | z] for z ~ p(z), not draws x ~ p(x | z): for a
  Bernoulli decoder a draw is salt-and-pepper noise around the mean, which
  hides what the model learned. The title says so.

  Args:
    model: a `VariationalAutoencoder` (anything with `sample(n, seed)`
      returning `[n, H, W, C]`).
    path: where to write the PNG.
    num_samples: Python `int`, how many images. Default 64.
    seed: Python `int`, the stateless sampling seed. Default 0.
    num_columns: tiles per row; default a square-ish grid without empty
      tiles (`image_summary_grid`).

  Returns:
    `path`.
  """
  images = np.asarray(model.sample(num_samples, seed=seed))
  return figures.plot_image_grid(
      images, path, num_columns=num_columns,
      title=f'Prior samples: decoder means E[x | z] at z ~ p(z) '
      f'({_decoder_mean_kind(model)}); {num_samples} samples, seed {seed}')


def prior_marginal_quantiles(prior, probabilities):
  """Quantiles of each coordinate of the prior p(z).

  Exact for a `MultivariateNormalDiag` prior (the standard normal one):
  loc + scale * Phi^-1(p). Other priors (the learnable mixture) have no
  closed-form marginal quantile, so they are estimated from a fixed-seed
  sample.

  Args:
    prior: `tfd.Distribution` with event shape `[D]` and no batch shape.
    probabilities: `[P]` values in (0, 1).

  Returns:
    `np.float64` array `[P, D]`.
  """
  probabilities = np.asarray(probabilities, np.float64)
  if isinstance(prior, tfd.MultivariateNormalDiag):
    standard_quantiles = tfd.Normal(np.float64(0), np.float64(1)).quantile(
        probabilities).numpy()  # [P]
    loc = np.asarray(prior.mean(), np.float64)  # [D]
    scale = np.asarray(prior.stddev(), np.float64)  # [D]
    return loc + standard_quantiles[:, np.newaxis] * scale  # [P, D]
  samples = np.asarray(prior.sample(
      _NUM_PRIOR_QUANTILE_SAMPLES, seed=tf.constant([0, 0], tf.int32)),
                       np.float64)  # [S, D]
  return np.quantile(samples, probabilities, axis=0)  # [P, D]


def _require_2d_latent(model, what, model_name=None):
  latent_dim = model.model_config.latent_dim
  if latent_dim != 2:
    which = f'model {model_name!r} has' if model_name else 'the model has'
    raise ValueError(
        f'{what} needs a 2-dimensional latent space, but {which} '
        f'latent_dim={latent_dim}. Train with --latent_dim=2, or use '
        f'plot_latent_scatter, which projects higher-dimensional latents.')


def plot_latent_manifold(model, path, grid_size=20):
  """Saves the learned data manifold: decoder means on a grid of latents.

  The latents form a `grid_size x grid_size` grid spanning the prior's
  central mass: in each coordinate, the prior's quantiles at probabilities
  evenly spaced in [0.05, 0.95]. For the standard normal prior this is the
  inverse normal CDF of an even grid, as in Kingma & Welling (2014), Fig. 4,
  so every tile has the same prior probability mass around it.

  ```none
  p = linspace(0.05, 0.95, grid_size)
  z[row, col] = (quantile_0(p[col]), quantile_1(p[grid_size - 1 - row]))
  tile[row, col] = E[x | z[row, col]]  (decoder mean)
  ```

  z[0] grows to the right and z[1] upwards, as on the axes of a scatter plot.

  Args:
    model: a `VariationalAutoencoder` with `latent_dim == 2`.
    path: where to write the PNG.
    grid_size: Python `int` >= 2, tiles per side. Default 20.

  Returns:
    `path`.

  Raises:
    ValueError: if the model's latent_dim is not 2, or grid_size < 2.

  References: Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014.
  """
  _require_2d_latent(model, 'plot_latent_manifold')
  if isinstance(grid_size, bool) or not isinstance(grid_size, int) or (
      grid_size < 2):
    raise ValueError(f'grid_size must be an integer >= 2; got {grid_size!r}.')
  probabilities = np.linspace(*_MANIFOLD_PROBABILITY_RANGE, grid_size)
  quantiles = prior_marginal_quantiles(model.prior_distribution(),
                                        probabilities)  # [G, 2]
  # Row 0 is the top of the picture, so it takes the largest z[1].
  z0, z1 = np.meshgrid(quantiles[:, 0], quantiles[::-1, 1])  # [G, G] each
  latents = np.stack([z0.ravel(), z1.ravel()], axis=-1)  # [G * G, 2]
  images = np.asarray(model.decode(latents.astype(np.float32)).mean())
  grid = figures.image_summary_grid(
      images, num_columns=grid_size)[0]  # [G*H, G*W, C]

  figure = _canvas.new_figure(7.0, 7.0)
  axes = figure.add_subplot()
  _canvas.show_image(axes, grid)
  # Ticks at tile centres, labelled with that tile's latent coordinate.
  height, width = images.shape[1:3]
  tick_indices = np.unique(np.linspace(0, grid_size - 1, 5).round().astype(int))
  axes.set_xticks((tick_indices + 0.5) * width - 0.5)
  axes.set_xticklabels([f'{quantiles[i, 0]:.2f}' for i in tick_indices])
  axes.set_yticks((tick_indices + 0.5) * height - 0.5)
  axes.set_yticklabels([f'{quantiles[grid_size - 1 - i, 1]:.2f}'
                        for i in tick_indices])
  axes.set_xlabel('z[0]')
  axes.set_ylabel('z[1]')
  axes.set_title('Decoder means on a grid of prior quantiles '
                 f'{_MANIFOLD_PROBABILITY_RANGE[0]:g} to '
                 f'{_MANIFOLD_PROBABILITY_RANGE[1]:g}')
  return _canvas.save_figure(figure, path)


# Samples drawn per image for a posterior with no ellipse (the IAF).
_FLOW_SAMPLES_PER_IMAGE = 300


def _is_gaussian(distribution):
  """True for the Gaussian posteriors, whose `covariance()` is exact."""
  return isinstance(distribution, (
      tfd.MultivariateNormalLinearOperator,
      tfd.MultivariateNormalDiagPlusLowRankCovariance))


def _posterior_ellipses_figure(models_by_name, images, num_images=8,
                               num_std=1.0, grid_points=200):
  """Builds the figure of `plot_posterior_ellipses` (see there)."""
  if not models_by_name:
    raise ValueError('models_by_name must name at least one model.')
  for name, model in models_by_name.items():
    _require_2d_latent(model, 'plot_posterior_ellipses', model_name=name)
  images = _canvas.as_images(images)[:num_images]
  num_images = images.shape[0]
  colors = _canvas.distinct_colors(num_images)

  # Each model's posteriors for the same images: locations [B, 2],
  # covariances [B, 2, 2] (zero for a point-mass posterior, which has no
  # spread) and, for a posterior that is not Gaussian (the IAF), samples
  # [S, B, 2], drawn instead of an ellipse; its covariance is then the
  # samples' own, used only to size the window.
  posteriors = {}
  for name, model in models_by_name.items():
    approx_posterior = objectives.unwrap_distribution(model.encode(images))
    means = np.asarray(objectives.posterior_location(approx_posterior),
                       np.float64)  # [B, 2]
    samples = None
    if not model.model_config.posterior_has_density:
      covariances = np.zeros([num_images, 2, 2])
    elif _is_gaussian(approx_posterior):
      covariances = np.asarray(approx_posterior.covariance(),
                               np.float64)  # [B, 2, 2]
    else:
      samples = np.asarray(approx_posterior.sample(
          _FLOW_SAMPLES_PER_IMAGE, seed=(0, 1)), np.float64)  # [S, B, 2]
      centred = samples - samples.mean(axis=0)
      covariances = np.einsum('sbi,sbj->bij', centred, centred) / (
          len(samples) - 1)  # [B, 2, 2]
    posteriors[name] = (means, covariances, samples)

  # One square window for all subplots, so they compare at a glance: the
  # priors' central 99.8% and every ellipse, with a margin.
  low, high = [], []
  for name, model in models_by_name.items():
    quantiles = prior_marginal_quantiles(model.prior_distribution(),
                                          [0.001, 0.999])  # [2, 2]
    means, covariances, _ = posteriors[name]
    half_extent = num_std * np.sqrt(np.maximum(
        np.diagonal(covariances, axis1=-2, axis2=-1), 0.0))  # [B, 2]
    low.append(np.minimum(quantiles[0], (means - half_extent).min(axis=0)))
    high.append(np.maximum(quantiles[1], (means + half_extent).max(axis=0)))
  low, high = np.min(low, axis=0), np.max(high, axis=0)
  centre, half_width = (low + high) / 2, 1.05 * np.max(high - low) / 2
  axis_limits = np.stack([centre - half_width, centre + half_width])  # [2, 2]

  num_models = len(models_by_name)
  figure = _canvas.new_figure(4.5 * num_models, 4.5 + 1.2)
  panels, strip = figure.subfigures(2, 1, height_ratios=[4.5, 1.2])
  model_axes = panels.subplots(1, num_models, squeeze=False)[0]
  axis_0 = np.linspace(*axis_limits[:, 0], grid_points)
  axis_1 = np.linspace(*axis_limits[:, 1], grid_points)
  grid_0, grid_1 = np.meshgrid(axis_0, axis_1)  # [G, G] each
  grid_latents = np.stack([grid_0.ravel(), grid_1.ravel()],
                          axis=-1).astype(np.float32)  # [G * G, 2]
  for axes, (name, model) in zip(model_axes, models_by_name.items()):
    prior_density = np.exp(np.asarray(
        model.prior_distribution().log_prob(grid_latents),
        np.float64)).reshape(grid_0.shape)  # [G, G]
    axes.contourf(grid_0, grid_1, prior_density, levels=8, cmap='Greys',
                  alpha=0.35)
    axes.contour(grid_0, grid_1, prior_density, levels=8, colors='0.5',
                 linewidths=0.6)
    means, covariances, samples = posteriors[name]
    for index, (color, mean, covariance) in enumerate(
        zip(colors, means, covariances)):
      if samples is None:
        width, height, angle = figures.covariance_ellipse(covariance, num_std)
        axes.add_patch(matplotlib.patches.Ellipse(
            mean, width, height, angle=angle, facecolor=(*color[:3], 0.15),
            edgecolor=color, linewidth=1.8))
      else:  # No ellipse describes a flow: its samples show its shape.
        axes.scatter(samples[:, index, 0], samples[:, index, 1], s=2,
                     color=color, alpha=0.35, linewidths=0)
      axes.plot(*mean, marker='o', markersize=3, color=color)
    posterior_kind = {'diag': 'diagonal', 'full_cov': 'full covariance',
                      'low_rank': 'low-rank plus diagonal',
                      'iaf': f'{_FLOW_SAMPLES_PER_IMAGE} samples of an IAF',
                      'deterministic': 'point mass'}.get(
                          model.model_config.posterior,
                          model.model_config.posterior)
    axes.set_title(f'{name}: {posterior_kind} q(z|x)')
    axes.set_xlim(*axis_limits[:, 0])
    axes.set_ylim(*axis_limits[:, 1])
    axes.set_aspect('equal')
    axes.set_xlabel('z[0]')
    axes.set_ylabel('z[1]')
  panels.suptitle(f'Posteriors q(z|x): {num_std:g}-sd ellipses of '
                  f'{num_images} test images over the prior p(z) (grey '
                  'contours)')
  # The images themselves, framed in their ellipse's colour.
  strip_axes = strip.subplots(1, num_images, squeeze=False)[0]
  for index, (axes, color, image) in enumerate(
      zip(strip_axes, colors, images)):
    _canvas.show_image(axes, image)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
      spine.set_edgecolor(color)
      spine.set_linewidth(3)
    axes.set_xlabel(f'image {index}', fontsize=8)
  return figure


def plot_posterior_ellipses(models_by_name, images, path, num_images=8,
                            num_std=1.0):
  """Saves each model's posterior ellipses for the same images over p(z).

  One subplot per model (all with 2-D latents, all on the same axes
  limits): grey contours of the prior density p(z), evaluated with
  `prior_distribution().log_prob` on a grid, and for each of the first
  `num_images` images the `num_std`-standard-deviation ellipse of
  q(z|x) = N(mean, covariance) from `encode(x).covariance()`, with its mean
  as a dot. Image i has the same colour in every subplot, and a strip below
  shows the images framed in their colours.

  A diagonal posterior can only give axis-aligned ellipses; a full-covariance
  (or low-rank) posterior can tilt them to follow the correlation of the
  true posterior, which is what it buys. A point-mass posterior is drawn as
  its dots alone. A posterior that is not Gaussian (the IAF) has no
  ellipse: it is drawn as 300 seeded samples per image, and its dot is the
  flow of its base mean (`objectives.posterior_location`).

  Args:
    models_by_name: dict `{name: VariationalAutoencoder}` with
      `latent_dim == 2`, e.g. `{'diag': model_1, 'full_cov': model_2}`.
    images: `[N, H, W, C]` array or tensor, e.g. test images.
    path: where to write the PNG.
    num_images: Python `int`, how many of the first images to show.
      Default 8.
    num_std: Python `float`, the ellipses' size in standard deviations.
      Default 1.

  Returns:
    `path`.

  Raises:
    ValueError: if `models_by_name` is empty or a model's latent_dim is not 2
      (naming the model).
  """
  figure = _posterior_ellipses_figure(models_by_name, images,
                                      num_images=num_images, num_std=num_std)
  return _canvas.save_figure(figure, path)
