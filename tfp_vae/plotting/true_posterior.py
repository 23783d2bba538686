"""The true posterior p(z|x) of a 2-D latent, with q(z|x) and q*_x over it.

For a model with a 2-dimensional latent the exact posterior needs no
approximation to be seen: p(z|x) is proportional to p(x|z) p(z), which the
decoder and the prior give at any z, so on a fine grid of z it is known up
to the grid's resolution. Drawing the encoder's q(z|x) and the locally
optimized q*_x (`evaluation.local_fit`) over it shows both gaps of
`evaluation.gaps`: how far the best member of the family is from p(z|x) (the
approximation gap) and how far the encoder's guess is from that best member
(the amortization gap). The figure is what shows what a full-covariance
posterior buys: a diagonal q cannot tilt to follow a correlated p(z|x).

  `true_posterior_grid`    p(z|x) for a batch of x on a grid, normalized on it
  `grid_moments`           its mean and covariance
  `plot_true_posteriors`   the figure: one row per image, one column per model

Densities are drawn as contours of `log_prob` on the same grid, so any
family with a density (diagonal, full covariance, flows) is drawn the same
way.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfp_vae.evaluation import local_fit
from tfp_vae.plotting import _canvas
from tfp_vae.plotting import model_figures

__all__ = ['PosteriorGrid', 'true_posterior_grid', 'grid_moments',
           'plot_true_posteriors']

# Latents decoded at once when evaluating p(x|z) on a grid: grid points *
# images, so that e.g. 4 MNIST images on a 150 x 150 grid decode in chunks
# of ~10k rows (the chunk size the importance sampler found fastest).
_GRID_ROWS_PER_CHUNK = 10000

# Contours of a density at exp(-r^2 / 2) of its peak, r = 1, 2, 3: for a
# Gaussian, its 1-, 2- and 3-sd ellipses; for any other density, the same
# relative heights.
_CONTOUR_RADII = (3., 2., 1.)


class PosteriorGrid(NamedTuple):
  """p(z|x) on a grid, for B examples.

  axis_0, axis_1: `[G0]`, `[G1]` grid coordinates of z[0] and z[1].
  log_density: `[B, G1, G0]` (rows follow axis_1, as `np.meshgrid` lays them
    out): log p(z|x) at the grid points, normalized so that the density
    integrates to 1 over the grid (sum(exp(log_density)) * cell_area = 1).
  log_normalizer: `[B]`, log of the grid's Riemann sum of p(x|z) p(z): an
    estimate of log p(x), exact as the grid gets fine and covers the mass.
  """
  axis_0: np.ndarray
  axis_1: np.ndarray
  log_density: np.ndarray
  log_normalizer: np.ndarray


def true_posterior_grid(images, decode, prior, limits, grid_points=150):
  """Evaluates p(z|x) = p(x|z) p(z) / p(x) on a grid of 2-D latents.

  Args:
    images: array `[B, ...]`, the examples x.
    decode: callable, latents `[n, B, 2]` -> p(x|z) with batch `[n, B]`, e.g.
      `model.decode`.
    prior: p(z), event `[2]`.
    limits: array `[2, 2]` or `[B, 2, 2]`: `[[low_0, low_1], [high_0,
      high_1]]`, the grid's window (one for all examples, or one each).
    grid_points: Python `int` >= 2, points per axis (default 150).

  Returns:
    A `PosteriorGrid` (float64). With per-example `limits` its axes are
    `[B, G]` instead of `[G]`.

  Raises:
    ValueError: for `limits` of the wrong shape or with low >= high, or
      `grid_points` < 2.

  ```none
  log_joint[b, i, j] = log p(x_b | z_ij) + log p(z_ij)
  log_normalizer[b]  = logsumexp_ij log_joint[b, i, j] + log(cell_area)
  log_density        = log_joint - log_normalizer
  ```
  """
  images = np.asarray(images)
  num_examples = images.shape[0]
  if (isinstance(grid_points, bool) or
      not isinstance(grid_points, (int, np.integer)) or grid_points < 2):
    raise ValueError(f'`grid_points` must be an integer >= 2; got '
                     f'{grid_points!r}.')
  limits = np.asarray(limits, np.float64)
  per_example = limits.ndim == 3
  if limits.shape[-2:] != (2, 2) or (per_example and
                                     limits.shape[0] != num_examples):
    raise ValueError('`limits` must have shape [2, 2] or [num_examples, 2, '
                     f'2]; got {limits.shape}.')
  if not np.all(limits[..., 0, :] < limits[..., 1, :]):
    raise ValueError(f'`limits` must have low < high on both axes; got '
                     f'{limits.tolist()}.')
  limits = np.broadcast_to(limits, [num_examples, 2, 2])
  fractions = np.linspace(0., 1., grid_points)  # [G]
  axes = limits[:, :1, :] + fractions[:, np.newaxis] * (
      limits[:, 1:, :] - limits[:, :1, :])  # [B, G, 2]
  axis_0, axis_1 = axes[..., 0], axes[..., 1]  # [B, G] each
  # Every example's grid, as latents [G1 * G0, B, 2] (row-major: z[1] is
  # the slow index).
  latents = np.stack([
      np.broadcast_to(axis_0[:, np.newaxis, :], [num_examples, grid_points,
                                                 grid_points]),
      np.broadcast_to(axis_1[:, :, np.newaxis], [num_examples, grid_points,
                                                 grid_points])],
                     axis=-1).reshape([num_examples, -1, 2]).transpose(
                         [1, 0, 2])  # [G * G, B, 2]
  dtype = prior.dtype.as_numpy_dtype
  latents = latents.astype(dtype)
  batch_images = tf.convert_to_tensor(images.astype(dtype))
  points_per_chunk = max(1, _GRID_ROWS_PER_CHUNK // num_examples)
  log_joint = []
  for start in range(0, latents.shape[0], points_per_chunk):
    chunk = tf.convert_to_tensor(latents[start:start + points_per_chunk])
    log_joint.append(np.asarray(
        decode(chunk).log_prob(batch_images) + prior.log_prob(chunk),
        np.float64))  # [chunk, B]
  log_joint = np.concatenate(log_joint).T.reshape(
      [num_examples, grid_points, grid_points])  # [B, G1, G0]
  cell_area = ((axis_0[:, 1] - axis_0[:, 0]) *
               (axis_1[:, 1] - axis_1[:, 0]))  # [B]
  log_normalizer = (tf.reduce_logsumexp(log_joint, axis=[1, 2]).numpy() +
                    np.log(cell_area))  # [B]
  log_density = log_joint - log_normalizer[:, np.newaxis, np.newaxis]
  if not per_example:
    axis_0, axis_1 = axis_0[0], axis_1[0]
  return PosteriorGrid(axis_0=axis_0, axis_1=axis_1, log_density=log_density,
                       log_normalizer=log_normalizer)


def grid_moments(grid):
  """Mean `[B, 2]` and covariance `[B, 2, 2]` of a `PosteriorGrid`'s density.

  Sums over the grid points with weights density * cell_area (which sum to
  1): exact for the grid's discretization of the density.
  """
  log_density = np.asarray(grid.log_density, np.float64)  # [B, G1, G0]
  num_examples = log_density.shape[0]
  axis_0 = np.broadcast_to(grid.axis_0, [num_examples, grid.axis_0.shape[-1]])
  axis_1 = np.broadcast_to(grid.axis_1, [num_examples, grid.axis_1.shape[-1]])
  weights = np.exp(log_density - np.max(log_density, axis=(1, 2),
                                        keepdims=True))
  weights /= np.sum(weights, axis=(1, 2), keepdims=True)  # [B, G1, G0]
  z_0 = axis_0[:, np.newaxis, :]  # [B, 1, G0]
  z_1 = axis_1[:, :, np.newaxis]  # [B, G1, 1]
  mean_0 = np.sum(weights * z_0, axis=(1, 2))
  mean_1 = np.sum(weights * z_1, axis=(1, 2))
  centred_0 = z_0 - mean_0[:, np.newaxis, np.newaxis]
  centred_1 = z_1 - mean_1[:, np.newaxis, np.newaxis]
  var_0 = np.sum(weights * centred_0**2, axis=(1, 2))
  var_1 = np.sum(weights * centred_1**2, axis=(1, 2))
  cov_01 = np.sum(weights * centred_0 * centred_1, axis=(1, 2))
  mean = np.stack([mean_0, mean_1], axis=-1)
  covariance = np.stack([np.stack([var_0, cov_01], -1),
                         np.stack([cov_01, var_1], -1)], axis=-2)
  return mean, covariance


def _density_on_grid(approx_posterior, axis_0, axis_1):
  """log q(z) `[B, G1, G0]` for per-example axes `[B, G]`."""
  grid_0, grid_1 = axis_0[:, np.newaxis, :], axis_1[:, :, np.newaxis]
  shape = [axis_0.shape[0], axis_1.shape[1], axis_0.shape[1]]
  latents = np.stack([np.broadcast_to(grid_0, shape),
                      np.broadcast_to(grid_1, shape)], axis=-1)
  latents = latents.reshape([shape[0], -1, 2]).transpose([1, 0, 2])
  log_prob = approx_posterior.log_prob(
      latents.astype(approx_posterior.dtype.as_numpy_dtype))  # [G * G, B]
  return np.asarray(log_prob, np.float64).T.reshape(shape)


def _window(mean, covariance, extra_means, extra_covariances, num_std=4.):
  """Per-example square window `[B, 2, 2]` around the given Gaussians."""
  centres = [mean] + list(extra_means)
  spreads = [covariance] + list(extra_covariances)
  low = np.min([c - num_std * np.sqrt(np.diagonal(s, axis1=-2, axis2=-1))
                for c, s in zip(centres, spreads)], axis=0)  # [B, 2]
  high = np.max([c + num_std * np.sqrt(np.diagonal(s, axis1=-2, axis2=-1))
                 for c, s in zip(centres, spreads)], axis=0)
  centre = (low + high) / 2
  half_width = np.max(high - low, axis=-1, keepdims=True) / 2  # [B, 1]
  return np.stack([centre - half_width, centre + half_width], axis=1)


def _contour_levels(log_density):
  """Contour heights at exp(-r^2 / 2) of the peak, ascending."""
  peak = np.max(log_density)
  return [float(np.exp(peak - 0.5 * r**2)) for r in _CONTOUR_RADII]


def _panel_data(model, images, grid_points, fit_kwargs):
  """Grid posterior, q and q* densities for one model, per image."""
  prior = model.prior_distribution()
  initial_params = np.asarray(model.encoder(images))
  fit = local_fit.fit_local_posteriors(images, initial_params,
                                  model.posterior_layer, model.decode, prior,
                                  **fit_kwargs)
  amortized = model.posterior_layer(initial_params)
  optimized = model.posterior_layer(fit.params)
  # A coarse grid over the prior's central mass finds where p(z|x) is; the
  # fine grid then frames it and both approximations.
  coarse = true_posterior_grid(
      images, model.decode, prior,
      model_figures.prior_marginal_quantiles(prior, [0.0005, 0.9995]),
      grid_points=100)
  mean, covariance = grid_moments(coarse)
  limits = _window(
      mean, covariance,
      [np.asarray(q.mean(), np.float64) for q in (amortized, optimized)],
      [np.asarray(q.covariance(), np.float64) for q in (amortized, optimized)])
  grid = true_posterior_grid(images, model.decode, prior, limits,
                             grid_points=grid_points)
  return (grid, _density_on_grid(amortized, grid.axis_0, grid.axis_1),
          _density_on_grid(optimized, grid.axis_0, grid.axis_1))


def _true_posteriors_figure(models_by_name, images, num_images, grid_points,
                            fit_kwargs):
  if not models_by_name:
    raise ValueError('models_by_name must name at least one model.')
  for name, model in models_by_name.items():
    model_figures._require_2d_latent(  # pylint: disable=protected-access
        model, 'plot_true_posteriors', model_name=name)
    if not model.model_config.posterior_has_density:
      raise ValueError(
          f'plot_true_posteriors needs posteriors with a density; model '
          f'{name!r} has posterior={model.model_config.posterior!r}.')
  images = _canvas.as_images(images)[:num_images]
  num_images = images.shape[0]
  panels = {name: _panel_data(model, images, grid_points, fit_kwargs)
            for name, model in models_by_name.items()}

  num_models = len(models_by_name)
  figure = _canvas.new_figure(1.2 + 3.2 * num_models, 3.2 * num_images)
  axes_grid = figure.subplots(
      num_images, 1 + num_models, squeeze=False,
      gridspec_kw={'width_ratios': [0.4] + [1.] * num_models})
  for row in range(num_images):
    image_axes = axes_grid[row, 0]
    _canvas.show_image(image_axes, images[row])
    image_axes.set_xticks([])
    image_axes.set_yticks([])
    image_axes.set_title(f'image {row}', fontsize=9)
    for column, name in enumerate(models_by_name, start=1):
      axes = axes_grid[row, column]
      grid, log_amortized, log_optimized = panels[name]
      grid_0, grid_1 = np.meshgrid(grid.axis_0[row], grid.axis_1[row])
      # Filled between the same relative heights as the approximations'
      # contours, so that their sizes compare directly.
      true_log_density = grid.log_density[row]
      axes.contourf(grid_0, grid_1, np.exp(true_log_density),
                    levels=_contour_levels(true_log_density) + [
                        float(np.exp(np.max(true_log_density))) * 1.001],
                    colors=['0.85', '0.65', '0.45'])
      for log_density, color, style, label in (
          (log_amortized[row], 'tab:blue', 'solid', 'q(z|x)'),
          (log_optimized[row], 'tab:red', 'dashed', 'q*_x')):
        axes.contour(grid_0, grid_1, np.exp(log_density),
                     levels=_contour_levels(log_density), colors=color,
                     linestyles=style, linewidths=1.2)
        # Contour sets have no legend entry of their own; an empty line does.
        axes.plot([], [], color=color, linestyle=style, label=label)
      axes.set_aspect('equal')
      if row == 0:
        kind = models_by_name[name].model_config.posterior
        axes.set_title(name if name == kind else f'{name} ({kind})')
        axes.legend(loc='upper right', fontsize=7)
      if row == num_images - 1:
        axes.set_xlabel('z[0]')
      axes.set_ylabel('z[1]')
  figure.suptitle('True posterior p(z|x) (grey, on a grid), the encoder\'s '
                  'q(z|x) (blue)\nand the optimized q*_x (red, dashed); '
                  'contours at 1, 2, 3 sd (exp(-r^2 / 2) of the peak)')
  return figure


def plot_true_posteriors(models_by_name, images, path, num_images=4,
                         grid_points=150, **fit_kwargs):
  """Saves p(z|x) on a grid with q(z|x) and q*_x over it, per model.

  One row per image (the image itself in the first column), one column per
  model (all with 2-D latents): grey bands of the exact posterior p(z|x)
  (`true_posterior_grid`, on a window around it and both approximations),
  and contours of the encoder's q(z|x) (blue) and of q*_x
  (red, dashed), the member of the same family fitted to that image alone
  by `local_fit.fit_local_posteriors`. Bands and contours are at
  exp(-r^2 / 2) of each density's peak, r = 1, 2, 3: a Gaussian's 1-, 2-, 3-sd ellipses.

  Args:
    models_by_name: dict `{name: VariationalAutoencoder}` with
      `latent_dim == 2` and a posterior with a density, e.g. `{'diag':
      model_1, 'full_cov': model_2}`.
    images: `[N, H, W, C]` array, e.g. test images.
    path: where to write the PNG.
    num_images: Python `int`, how many of the first images (default 4).
    grid_points: Python `int`, grid points per axis (default 150).
    **fit_kwargs: arguments of `local_fit.fit_local_posteriors` (`max_steps`,
      `seed`, ...).

  Returns:
    `path`.

  Raises:
    ValueError: for an empty `models_by_name`, a model whose latent_dim is
      not 2 or whose posterior is a point mass (naming the model).
  """
  figure = _true_posteriors_figure(models_by_name, images, num_images,
                                   grid_points, fit_kwargs)
  return _canvas.save_figure(figure, path)
