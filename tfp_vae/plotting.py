"""Pictures of a VAE and its training: PNG files for a model directory.

Every `plot_*` function draws one figure, writes it as a PNG to `path` (any
`tf.io.gfile` path, so a `gs://` model directory works; parent directories are
created) and returns `path`. They take numpy arrays (or tensors) and trained
models; none of them trains or evaluates anything beyond a forward pass.

  `plot_learning_curves`             train vs validation curves of one run
  `plot_learning_curves_comparison`  several runs (each over seeds) overlaid
  `plot_image_grid`                  images tiled into a grid
  `plot_reconstructions`             originals above their reconstructions
  `plot_prior_samples`               decoder means at z ~ p(z)
  `plot_latent_manifold`             decoder means on a grid of z (D = 2)
  `plot_latent_scatter`              encodings by class (PCA when D > 2)
  `plot_posterior_ellipses`          q(z|x) 1-sd ellipses over p(z) (D = 2)

Pure helpers, also useful elsewhere:

  `image_summary_grid`               images -> one tiled image, `[1, H', W', C]`
                                     (also what TensorBoard image summaries get)
  `covariance_ellipse`               2x2 covariance -> (width, height, angle)
  `principal_components`             PCA by SVD: points -> leading coordinates

Figures are built with `matplotlib.figure.Figure`, never `pyplot`: no global
figure state, no GUI backend needed (this runs on headless training machines),
and nothing leaks between calls.
"""

import io
import math
import textwrap

import matplotlib
import matplotlib.figure
import matplotlib.patches
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = [
    'covariance_ellipse',
    'image_summary_grid',
    'plot_image_grid',
    'plot_latent_manifold',
    'plot_latent_scatter',
    'plot_learning_curves',
    'plot_learning_curves_comparison',
    'plot_posterior_ellipses',
    'plot_prior_samples',
    'plot_reconstructions',
    'principal_components',
]

_NATS_LABEL = 'nats per example'

# What each metric `VariationalAutoencoder` reports means, for subplot titles.
_METRIC_DESCRIPTIONS = {
    'loss': 'loss (training objective)',
    'elbo': 'ELBO',
    'kl': 'KL(q(z|x) || p(z)) (rate)',
    'nll': '-E_q[log p(x|z)] (distortion)',
    'iwae': 'IWAE bound',
}

# Kingma & Welling (2014), Fig. 4: the manifold spans the prior's quantiles
# from 5% to 95% in each latent coordinate.
_MANIFOLD_PROBABILITY_RANGE = (0.05, 0.95)

# Prior marginals drawn from this many samples when the prior has no
# closed-form quantile (the mixture prior); fixed seed so pictures repeat.
_NUM_PRIOR_QUANTILE_SAMPLES = 20000


# Saving #######################################################################


def _new_figure(width_inches, height_inches):
  return matplotlib.figure.Figure(figsize=(width_inches, height_inches),
                                  layout='constrained')


def _save_figure(figure, path, dpi=100):
  """Writes `figure` as a PNG through `tf.io.gfile`; returns `path`."""
  path = str(path)
  directory = path.rsplit('/', 1)[0] if '/' in path else ''
  if directory:
    tf.io.gfile.makedirs(directory)
  # Render to memory first: matplotlib writes local files only, tf.io.gfile
  # writes anywhere (local disk, gs://).
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=dpi)
  with tf.io.gfile.GFile(path, 'wb') as file:
    file.write(buffer.getvalue())
  return path


def _distinct_colors(count):
  """`count` colours, qualitative while a qualitative map has enough."""
  if count <= 10:
    return [matplotlib.colormaps['tab10'](i) for i in range(count)]
  if count <= 20:
    return [matplotlib.colormaps['tab20'](i) for i in range(count)]
  return [matplotlib.colormaps['turbo'](x) for x in np.linspace(0, 1, count)]


# Image grids ##################################################################


def _as_images(images, argument_name='images'):
  """Converts to a float numpy `[N, H, W, C]` array, adding C = 1 if absent."""
  images = np.asarray(images, dtype=np.float32)
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'{argument_name} must have shape [N, H, W] or '
                     f'[N, H, W, C] with N > 0; got shape {images.shape}.')
  return images


def image_summary_grid(images, num_columns=None, padding=0, pad_value=1.0):
  """Tiles a batch of images into one image, row by row.

  Image `i` goes to row `i // num_columns`, column `i % num_columns`; tiles
  of an unfilled last row are `pad_value`. The result is what
  `tf.summary.image` takes, and what the PNG grids of this module show.

  Args:
    images: `[N, H, W, C]` (or `[N, H, W]`) array or tensor, values usually in
      [0, 1].
    num_columns: Python `int` > 0, tiles per row. Default:
      `ceil(sqrt(N))`, a square-ish grid.
    padding: Python `int` >= 0, pixels of `pad_value` between neighbouring
      tiles (none around the border). Default 0.
    pad_value: Python `float`, the value of padding and empty tiles.
      Default 1.0 (white).

  Returns:
    `np.float32` array `[1, rows * H + (rows - 1) * padding,
    num_columns * W + (num_columns - 1) * padding, C]`, with
    `rows = ceil(N / num_columns)`.

  Raises:
    ValueError: if `images` is not a non-empty image batch, or `num_columns`
      or `padding` is not a valid integer.

  #### Example

  ```python
  grid = image_summary_grid(model.sample(16), num_columns=4)  # [1, 4H, 4W, C]
  tf.summary.image('prior_samples', grid, step=step)
  ```
  """
  images = _as_images(images)
  num_images, height, width, channels = images.shape
  if num_columns is None:
    num_columns = int(math.ceil(math.sqrt(num_images)))
  if isinstance(num_columns, bool) or int(num_columns) != num_columns or (
      num_columns <= 0):
    raise ValueError(f'num_columns must be a positive integer; got '
                     f'{num_columns!r}.')
  if isinstance(padding, bool) or int(padding) != padding or padding < 0:
    raise ValueError(f'padding must be an integer >= 0; got {padding!r}.')
  num_columns, padding = int(num_columns), int(padding)
  num_rows = int(math.ceil(num_images / num_columns))
  grid = np.full(
      [num_rows * height + (num_rows - 1) * padding,
       num_columns * width + (num_columns - 1) * padding, channels],
      pad_value, dtype=np.float32)
  for index, image in enumerate(images):
    top = (index // num_columns) * (height + padding)
    left = (index % num_columns) * (width + padding)
    grid[top:top + height, left:left + width] = image
  return grid[np.newaxis]  # [1, H', W', C]


def _show_image(axes, image):
  """Shows one `[H, W, C]` image in [0, 1] on `axes`; grayscale if C == 1."""
  image = np.clip(image, 0.0, 1.0)
  if image.shape[-1] == 1:
    axes.imshow(image[..., 0], cmap='gray', vmin=0.0, vmax=1.0,
                interpolation='nearest')
  else:
    axes.imshow(image, interpolation='nearest')


def _figure_inches(grid_height, grid_width, pixels_per_inch=40.0,
                   smallest=4.5, largest=12.0):
  """Figure size for a tiled image: a few screen pixels per image pixel."""
  scale = max(grid_height, grid_width) / pixels_per_inch
  scale = min(max(scale, smallest), largest) / scale
  return (grid_width / pixels_per_inch * scale,
          grid_height / pixels_per_inch * scale)


def _plot_tiled_image(grid, path, title):
  """Saves a `[H', W', C]` tiled image, unadorned but for a title."""
  width_inches, height_inches = _figure_inches(*grid.shape[:2])
  # About 11 characters per inch at the title's font size; long titles wrap
  # rather than run off a narrow figure.
  title_lines = textwrap.wrap(title, max(20, int(11 * width_inches))) if (
      title) else []
  figure = _new_figure(width_inches, height_inches + 0.25 * len(title_lines))
  axes = figure.add_subplot()
  _show_image(axes, grid)
  axes.set_axis_off()
  if title_lines:
    axes.set_title('\n'.join(title_lines))
  return _save_figure(figure, path)


def plot_image_grid(images, path, title=None, num_columns=None):
  """Saves images tiled into a grid as a PNG.

  Args:
    images: `[N, H, W, C]` (or `[N, H, W]`) array or tensor, values in [0, 1]
      (clipped); C = 1 is shown in grayscale, C = 3 in colour.
    path: where to write the PNG (any `tf.io.gfile` path).
    title: optional Python `str` above the grid.
    num_columns: tiles per row; default `ceil(sqrt(N))`.

  Returns:
    `path`.
  """
  grid = image_summary_grid(images, num_columns=num_columns, padding=1)[0]
  return _plot_tiled_image(grid, path, title)


def plot_reconstructions(originals, reconstructions, path, num_columns=None,
                         title='Originals (upper row of each pair) and '
                         'their reconstructions (lower row)'):
  """Saves originals with their reconstructions right below them.

  Images are laid out in pairs of rows: a row of `num_columns` originals,
  then the reconstructions of exactly those images, so each reconstruction
  sits directly below its original. Pairs are separated by a wider gap.

  Args:
    originals: `[N, H, W, C]` array or tensor in [0, 1].
    reconstructions: `[N, H, W, C]`, e.g. `model.reconstruct(originals)`.
    path: where to write the PNG.
    num_columns: images per row; default `min(N, 10)`.
    title: Python `str` above the figure (None for none).

  Returns:
    `path`.

  Raises:
    ValueError: if the two batches differ in shape.
  """
  originals = _as_images(originals, 'originals')
  reconstructions = _as_images(reconstructions, 'reconstructions')
  if originals.shape != reconstructions.shape:
    raise ValueError(
        f'originals and reconstructions must have the same shape; got '
        f'{originals.shape} and {reconstructions.shape}.')
  num_images = originals.shape[0]
  if num_columns is None:
    num_columns = min(num_images, 10)
  num_pairs = int(math.ceil(num_images / num_columns))
  # Blank (white) tiles fill the last pair's rows, so its reconstructions
  # still start on a row of their own.
  blank = np.ones([num_pairs * num_columns - num_images] +
                  list(originals.shape[1:]), np.float32)
  originals = np.concatenate([originals, blank])
  reconstructions = np.concatenate([reconstructions, blank])
  pair_grids = []
  for pair in range(num_pairs):
    chunk = slice(pair * num_columns, (pair + 1) * num_columns)
    pair_grids.append(image_summary_grid(
        np.concatenate([originals[chunk], reconstructions[chunk]]),
        num_columns=num_columns, padding=1)[0])  # [2H + 1, W', C]
  grid = image_summary_grid(np.stack(pair_grids), num_columns=1,
                            padding=4)[0]
  return _plot_tiled_image(grid, path, title)


def plot_prior_samples(model, path, num_samples=64, seed=0, num_columns=None):
  """Saves decoder means at latents drawn from the prior: `model.sample`.

  Args:
    model: a `VariationalAutoencoder` (anything with `sample(n, seed)`
      returning `[n, H, W, C]`).
    path: where to write the PNG.
    num_samples: Python `int`, how many images. Default 64.
    seed: Python `int`, the stateless sampling seed. Default 0.
    num_columns: tiles per row; default `ceil(sqrt(num_samples))`.

  Returns:
    `path`.
  """
  images = np.asarray(model.sample(num_samples, seed=seed))
  return plot_image_grid(
      images, path, num_columns=num_columns,
      title=f'Decoder means at z ~ p(z) ({num_samples} samples, seed {seed})')


# The latent space #############################################################


def _prior_marginal_quantiles(prior, probabilities):
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
  quantiles = _prior_marginal_quantiles(model.prior_distribution(),
                                        probabilities)  # [G, 2]
  # Row 0 is the top of the picture, so it takes the largest z[1].
  z0, z1 = np.meshgrid(quantiles[:, 0], quantiles[::-1, 1])  # [G, G] each
  latents = np.stack([z0.ravel(), z1.ravel()], axis=-1)  # [G * G, 2]
  images = np.asarray(model.decode(latents.astype(np.float32)).mean())
  grid = image_summary_grid(images, num_columns=grid_size)[0]  # [G*H, G*W, C]

  figure = _new_figure(7.0, 7.0)
  axes = figure.add_subplot()
  _show_image(axes, grid)
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
  return _save_figure(figure, path)


def principal_components(points, num_components=2):
  """Projects points onto their leading principal components (PCA by SVD).

  ```none
  centred = points - mean(points, axis=0)
  U, S, Vt = svd(centred)
  projected = centred @ Vt[:num_components].T
  explained_variance_ratio = S[:num_components]**2 / sum(S**2)
  ```

  Each component's sign is fixed so that its largest-magnitude loading is
  positive, so the same data always gives the same picture.

  Args:
    points: `[N, D]` array, N >= 1.
    num_components: Python `int`, 1 <= num_components <= D. Default 2.

  Returns:
    projected: `np.float64` `[N, num_components]`, coordinates in an
      orthonormal basis, so distances within the leading subspace are kept.
    explained_variance_ratio: `[num_components]`, the fraction of the total
      variance along each component (zeros if the points are all equal).

  Raises:
    ValueError: if `points` is not 2-D or `num_components` is out of range.
  """
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[0] == 0:
    raise ValueError(f'points must have shape [N, D] with N > 0; got shape '
                     f'{points.shape}.')
  if (isinstance(num_components, bool) or
      not isinstance(num_components, (int, np.integer)) or
      not 1 <= num_components <= points.shape[1]):
    raise ValueError(f'num_components must be between 1 and D='
                     f'{points.shape[1]}; got {num_components}.')
  centred = points - points.mean(axis=0)
  _, singular_values, components = np.linalg.svd(centred,
                                                  full_matrices=False)
  components = components[:num_components]  # [K, D]
  largest = np.argmax(np.abs(components), axis=1)
  components *= np.sign(components[np.arange(num_components), largest])[:, None]
  total_variance = np.sum(singular_values**2)
  explained = singular_values[:num_components]**2
  explained = explained / total_variance if total_variance > 0 else (
      np.zeros_like(explained))
  return centred @ components.T, explained


def _is_discrete(labels):
  return (np.issubdtype(labels.dtype, np.integer) or
          np.issubdtype(labels.dtype, np.bool_) or
          (np.issubdtype(labels.dtype, np.floating) and
           np.all(labels == np.round(labels))))


def plot_latent_scatter(latent_means, path, labels=None, method='auto',
                        class_names=None, max_legend_classes=20):
  """Saves a scatter plot of encodings (e.g. posterior means of a test set).

  Args:
    latent_means: `[N, D]` array, e.g. `model.encode(test_images).mean()`,
      D >= 2.
    path: where to write the PNG.
    labels: optional `[N]` array. Integer class labels get one colour per
      class and a legend (a colour bar beyond `max_legend_classes` classes);
      other values get a continuous colour bar. None: one colour.
    method: 'auto' (the latents themselves when D == 2, else 'pca'),
      'direct' (the latents themselves; needs D == 2) or 'pca' (the two
      leading principal components, see `principal_components`). The method
      is named in the title.
    class_names: optional sequence or dict, the legend name of each class
      label (e.g. Fashion-MNIST's 'T-shirt/top', ...). Default: the label.
    max_legend_classes: Python `int`, most classes given a legend entry.

  Returns:
    `path`.

  Raises:
    ValueError: for an unknown `method`, D < 2, 'direct' with D != 2, or
      labels whose length differs from N.
  """
  latent_means = np.asarray(latent_means, np.float64)
  if latent_means.ndim != 2 or latent_means.shape[1] < 2:
    raise ValueError(f'latent_means must have shape [N, D] with D >= 2; got '
                     f'shape {latent_means.shape}.')
  latent_dim = latent_means.shape[1]
  if method not in ('auto', 'direct', 'pca'):
    raise ValueError(f"method must be 'auto', 'direct' or 'pca'; got "
                     f'{method!r}.')
  if method == 'auto':
    method = 'direct' if latent_dim == 2 else 'pca'
  if method == 'direct':
    if latent_dim != 2:
      raise ValueError(f"method='direct' needs latent_dim=2; got latent_dim="
                       f"{latent_dim}. Use method='pca'.")
    coordinates = latent_means
    title = f'Latent means (D = 2), {len(latent_means)} examples'
    axis_labels = ('z[0]', 'z[1]')
  else:
    coordinates, explained = principal_components(latent_means, 2)
    title = (f'Latent means (D = {latent_dim}), PCA projection: '
             f'{100 * explained.sum():.0f}% of variance')
    axis_labels = tuple(f'principal component {i + 1} '
                        f'({100 * explained[i]:.0f}%)' for i in range(2))

  figure = _new_figure(7.5, 6.0)
  axes = figure.add_subplot()
  # Marker area (points^2) shrinks with N so a 10k-example test set stays
  # legible, and small sets stay visible.
  marker_size = float(np.clip(20000.0 / len(coordinates), 3.0, 30.0))
  if labels is None:
    axes.scatter(coordinates[:, 0], coordinates[:, 1], s=marker_size,
                 alpha=0.6, linewidths=0)
  else:
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != coordinates.shape[0]:
      raise ValueError(f'labels must have one entry per latent '
                       f'({len(coordinates)}); got {labels.shape[0]}.')
    classes = np.unique(labels)
    if _is_discrete(labels) and len(classes) <= max_legend_classes:
      colors = _distinct_colors(len(classes))
      for color, label in zip(colors, classes):
        chosen = labels == label
        if class_names is None:
          name = str(label.item())
        else:
          name = str(class_names[int(label)])
        axes.scatter(coordinates[chosen, 0], coordinates[chosen, 1],
                     s=marker_size, color=color, alpha=0.6, linewidths=0,
                     label=name)
      axes.legend(title='class', loc='center left', bbox_to_anchor=(1.01, 0.5),
                  markerscale=max(1.0, 20.0 / marker_size) ** 0.5,
                  frameon=False)
    else:
      points = axes.scatter(coordinates[:, 0], coordinates[:, 1],
                            s=marker_size, c=labels.astype(np.float64),
                            cmap='viridis', alpha=0.6, linewidths=0)
      figure.colorbar(points, ax=axes, label='label')
  axes.set_xlabel(axis_labels[0])
  axes.set_ylabel(axis_labels[1])
  axes.set_title(title)
  return _save_figure(figure, path)


def covariance_ellipse(covariance, num_std=1.0):
  """The `num_std`-standard-deviation ellipse of a 2-D Gaussian.

  The ellipse {x : x^T C^-1 x = num_std^2} has its axes along C's
  eigenvectors, with half-lengths `num_std * sqrt(eigenvalue)`.

  ```none
  eigenvalues l_major >= l_minor, eigenvectors v_major, v_minor of C
  width = 2 * num_std * sqrt(l_major)       # full length along v_major
  height = 2 * num_std * sqrt(l_minor)
  angle_degrees = atan2(v_major[1], v_major[0]) in [0, 180)
  ```

  The values are the arguments of `matplotlib.patches.Ellipse(center,
  width, height, angle=angle_degrees)`: `width` runs along the x axis before
  the counter-clockwise rotation by `angle_degrees`.

  Args:
    covariance: `[2, 2]` symmetric positive semi-definite array.
    num_std: Python `float` > 0, how many standard deviations. Default 1.

  Returns:
    `(width, height, angle_degrees)`, Python floats; `width >= height`.
    A diagonal covariance gives angle 0 or 90 (axis-aligned).

  Raises:
    ValueError: if `covariance` is not `[2, 2]` or `num_std <= 0`.

  #### Example

  ```python
  covariance_ellipse([[4., 0.], [0., 1.]])  # (4.0, 2.0, 0.0)
  ```
  """
  covariance = np.asarray(covariance, np.float64)
  if covariance.shape != (2, 2):
    raise ValueError(f'covariance must have shape [2, 2]; got '
                     f'{covariance.shape}.')
  if not num_std > 0:
    raise ValueError(f'num_std must be > 0; got {num_std!r}.')
  # Symmetrise first: a covariance computed as L @ L^T in float32 is
  # symmetric only up to rounding, and eigh reads one triangle.
  covariance = 0.5 * (covariance + covariance.T)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
  # Rounding can leave a tiny negative eigenvalue for a singular covariance.
  eigenvalues = np.maximum(eigenvalues, 0.0)
  major_axis = eigenvectors[:, 1]
  angle = math.degrees(math.atan2(major_axis[1], major_axis[0])) % 180.0
  if math.isclose(angle, 180.0):
    angle = 0.0
  return (float(2 * num_std * math.sqrt(eigenvalues[1])),
          float(2 * num_std * math.sqrt(eigenvalues[0])),
          float(angle))


def _posterior_ellipses_figure(models_by_name, images, num_images=8,
                               num_std=1.0, grid_points=200):
  """Builds the figure of `plot_posterior_ellipses` (see there)."""
  if not models_by_name:
    raise ValueError('models_by_name must name at least one model.')
  for name, model in models_by_name.items():
    _require_2d_latent(model, 'plot_posterior_ellipses', model_name=name)
  images = _as_images(images)[:num_images]
  num_images = images.shape[0]
  colors = _distinct_colors(num_images)

  # Each model's posteriors for the same images: means [B, 2], covariances
  # [B, 2, 2] (zero for a point-mass posterior, which has no spread).
  posteriors = {}
  for name, model in models_by_name.items():
    approx_posterior = model.encode(images)
    means = np.asarray(approx_posterior.mean(), np.float64)  # [B, 2]
    if model.model_config.posterior_has_density:
      covariances = np.asarray(approx_posterior.covariance(),
                               np.float64)  # [B, 2, 2]
    else:
      covariances = np.zeros([num_images, 2, 2])
    posteriors[name] = (means, covariances)

  # One square window for all subplots, so they compare at a glance: the
  # priors' central 99.8% and every ellipse, with a margin.
  low, high = [], []
  for name, model in models_by_name.items():
    quantiles = _prior_marginal_quantiles(model.prior_distribution(),
                                          [0.001, 0.999])  # [2, 2]
    means, covariances = posteriors[name]
    half_extent = num_std * np.sqrt(np.maximum(
        np.diagonal(covariances, axis1=-2, axis2=-1), 0.0))  # [B, 2]
    low.append(np.minimum(quantiles[0], (means - half_extent).min(axis=0)))
    high.append(np.maximum(quantiles[1], (means + half_extent).max(axis=0)))
  low, high = np.min(low, axis=0), np.max(high, axis=0)
  centre, half_width = (low + high) / 2, 1.05 * np.max(high - low) / 2
  axis_limits = np.stack([centre - half_width, centre + half_width])  # [2, 2]

  num_models = len(models_by_name)
  figure = _new_figure(4.5 * num_models, 4.5 + 1.2)
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
    means, covariances = posteriors[name]
    for color, mean, covariance in zip(colors, means, covariances):
      width, height, angle = covariance_ellipse(covariance, num_std)
      axes.add_patch(matplotlib.patches.Ellipse(
          mean, width, height, angle=angle, facecolor=(*color[:3], 0.15),
          edgecolor=color, linewidth=1.8))
      axes.plot(*mean, marker='o', markersize=3, color=color)
    posterior_kind = {'diag': 'diagonal', 'full_cov': 'full covariance',
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
    _show_image(axes, image)
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
  posterior can tilt them to follow the correlation of the true posterior,
  which is what it buys. A point-mass posterior is drawn as its dots alone.

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
  return _save_figure(figure, path)


# Learning curves ##############################################################


def _as_history_dict(history):
  """A Keras `History` or a dict of per-epoch lists -> dict of arrays."""
  history = getattr(history, 'history', history)
  if not isinstance(history, dict):
    raise ValueError(f'history must be a dict of per-epoch lists (or a Keras '
                     f'History); got {type(history).__name__}.')
  return {key: np.asarray(values, np.float64).reshape(-1)
          for key, values in history.items()}


def _as_metric_list(metrics, argument_name):
  metrics = [metrics] if isinstance(metrics, str) else list(metrics)
  if not metrics:
    raise ValueError(f'{argument_name} must name at least one metric.')
  return metrics


def _metric_title(metric):
  prefix = 'validation ' if metric.startswith('val_') else ''
  base = metric[len('val_'):] if prefix else metric
  return prefix + _METRIC_DESCRIPTIONS.get(base, base)


def plot_learning_curves(history, path, metrics=('loss', 'kl', 'nll')):
  """Saves train and validation curves over epochs, one subplot per metric.

  Args:
    history: dict `{name: [value per epoch]}`, as `model.fit(...).history`
      returns (a Keras `History` is accepted too), e.g. with keys 'loss',
      'kl', 'nll', 'elbo' and their 'val_' versions.
    path: where to write the PNG.
    metrics: Python `str` or sequence of metric names (without 'val_').
      Metrics absent from `history` are skipped; a metric without a 'val_'
      entry is plotted for training only. Default ('loss', 'kl', 'nll').

  Returns:
    `path`.

  Raises:
    ValueError: if none of `metrics` is in `history` (naming what is).
  """
  history = _as_history_dict(history)
  metrics = [m for m in _as_metric_list(metrics, 'metrics') if m in history]
  if not metrics:
    raise ValueError(f'None of the requested metrics is in history; it has '
                     f'{sorted(history)}.')
  figure = _new_figure(4.2 * len(metrics), 3.6)
  for axes, metric in zip(
      figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
    train = history[metric]
    axes.plot(np.arange(1, len(train) + 1), train, marker='.', label='train')
    validation = history.get('val_' + metric)
    if validation is not None:
      axes.plot(np.arange(1, len(validation) + 1), validation, marker='.',
                label='validation')
    axes.set_title(_metric_title(metric))
    axes.set_xlabel('epoch')
    axes.set_ylabel(_NATS_LABEL)
    axes.grid(alpha=0.3)
    axes.legend()
  return _save_figure(figure, path)


def plot_learning_curves_comparison(histories_by_name, path,
                                    metric='val_elbo'):
  """Saves the learning curves of several runs overlaid, one subplot per metric.

  Each run may have been repeated over seeds: its curve is then the mean over
  seeds at each epoch, with a band from the minimum to the maximum. Runs of
  different lengths (early stopping) are averaged over the seeds that reached
  each epoch.

  Args:
    histories_by_name: dict `{name: history}` or `{name: [history, ...]}`
      (one history per seed); each history as for `plot_learning_curves`.
    path: where to write the PNG.
    metric: Python `str` or sequence of metric names as they appear in the
      histories, e.g. 'val_elbo' or ['val_elbo', 'val_kl']. A run lacking
      a metric is left out of that subplot; metrics no run has are skipped.
      Default 'val_elbo'.

  Returns:
    `path`.

  Raises:
    ValueError: if `histories_by_name` is empty, a run has no histories, or
      no run has any of the metrics.
  """
  if not histories_by_name:
    raise ValueError('histories_by_name must name at least one run.')
  runs = {}
  for name, histories in histories_by_name.items():
    if isinstance(histories, (list, tuple)):
      histories = [_as_history_dict(h) for h in histories]
    else:
      histories = [_as_history_dict(histories)]
    if not histories:
      raise ValueError(f'Run {name!r} has no histories.')
    runs[name] = histories
  requested = _as_metric_list(metric, 'metric')
  metrics = [m for m in requested
             if any(m in h for histories in runs.values() for h in histories)]
  if not metrics:
    available = sorted({k for histories in runs.values() for h in histories
                        for k in h})
    raise ValueError(f'No run has any of the metrics {requested}; the '
                     f'histories have {available}.')

  colors = dict(zip(runs, _distinct_colors(len(runs))))
  figure = _new_figure(5.0 * len(metrics), 3.8)
  for axes, name_of_metric in zip(
      figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
    for name, histories in runs.items():
      curves = [h[name_of_metric] for h in histories if name_of_metric in h]
      if not curves:
        continue
      num_epochs = max(len(c) for c in curves)
      # NaN-padded to the longest run: [num_seeds, num_epochs].
      values = np.full([len(curves), num_epochs], np.nan)
      for seed_index, curve in enumerate(curves):
        values[seed_index, :len(curve)] = curve
      epochs = np.arange(1, num_epochs + 1)
      label = name if len(curves) == 1 else f'{name} ({len(curves)} seeds)'
      axes.plot(epochs, np.nanmean(values, axis=0), color=colors[name],
                label=label)
      if len(curves) > 1:
        axes.fill_between(epochs, np.nanmin(values, axis=0),
                          np.nanmax(values, axis=0), color=colors[name],
                          alpha=0.2, linewidth=0)
    axes.set_title(_metric_title(name_of_metric) +
                   ('\nmean over seeds; band: min to max'
                    if any(len(h) > 1 for h in runs.values()) else ''))
    axes.set_xlabel('epoch')
    axes.set_ylabel(_NATS_LABEL)
    axes.grid(alpha=0.3)
    axes.legend()
  return _save_figure(figure, path)
