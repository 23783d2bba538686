"""Figures drawn from arrays alone: image grids, latent scatter, ellipses.

Every `plot_*` function draws one figure, writes it as a PNG to `path` (any
`tf.io.gfile` path, so a `gs://` model directory works; parent directories are
created) and returns `path`. Nothing here needs a model; learning curves
are in `learning_curves`.

  `plot_image_grid`                  images tiled into a grid
  `plot_image_rows`                  rows of images, each row labelled
  `plot_reconstructions`             originals above their reconstructions
  `plot_latent_scatter`              encodings by class (PCA when D > 2)

Pure helpers, also useful elsewhere:

  `image_summary_grid`               images -> one tiled image, `[1, H', W', C]`
                                     (also what TensorBoard image summaries get)
  `covariance_ellipse`               2x2 covariance -> (width, height, angle)
  `principal_components`             PCA by SVD: points -> leading coordinates
"""

import math

import numpy as np

from tfp_vae.plotting import _canvas

__all__ = [
    'INPUT_ROW_LABELS',
    'covariance_ellipse',
    'image_summary_grid',
    'plot_image_grid',
    'plot_image_rows',
    'plot_latent_scatter',
    'plot_reconstructions',
    'principal_components',
]

def image_summary_grid(images, num_columns=None, padding=0, pad_value=1.0):
  """Tiles a batch of images into one image, row by row.

  Image `i` goes to row `i // num_columns`, column `i % num_columns`; tiles
  of an unfilled last row are `pad_value`. The result is what
  `tf.summary.image` takes, and what the PNG grids of this module show.

  Args:
    images: `[N, H, W, C]` (or `[N, H, W]`) array or tensor, values usually in
      [0, 1].
    num_columns: Python `int` > 0, tiles per row. Default: the divisor of
      N nearest `sqrt(N)`, a square-ish grid without empty tiles (see
      `_canvas.balanced_columns` for counts without such a divisor).
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
  images = _canvas.as_images(images)
  num_images, height, width, channels = images.shape
  if num_columns is None:
    num_columns = _canvas.balanced_columns(num_images, math.sqrt(num_images))
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


def plot_image_grid(images, path, title=None, num_columns=None):
  """Saves images tiled into a grid as a PNG.

  Args:
    images: `[N, H, W, C]` (or `[N, H, W]`) array or tensor, values in [0, 1]
      (clipped); C = 1 is shown in grayscale, C = 3 in colour.
    path: where to write the PNG (any `tf.io.gfile` path).
    title: optional Python `str` above the grid.
    num_columns: tiles per row; default as in `image_summary_grid`, a
      square-ish grid without empty tiles.

  Returns:
    `path`.
  """
  grid = image_summary_grid(images, num_columns=num_columns, padding=1)[0]
  return _canvas.plot_tiled_image(grid, path, title)


# The label of a reconstruction figure's input row, by the data's
# binarization (`names.BINARIZATIONS`): what the model saw of an image.
INPUT_ROW_LABELS = {
    'dynamic': 'binarized input (what the model saw)',
    'static': 'input (binarized in the dataset files)',
    'none': 'original = input (grey levels)',
}


def _check_row_labels(rows, row_labels):
  if len(row_labels) != len(rows):
    raise ValueError(f'row_labels must name each of the {len(rows)} rows; '
                     f'got {len(row_labels)} labels.')


def _tile_rows(rows, rows_per_group, padding=1, group_gap=5, pad_value=1.0):
  """Stacks rows of tiles; returns the tiled image and each row's centre.

  Args:
    rows: list of R `[N, H, W, C]` arrays (the same shape).
    rows_per_group: rows between two wider gaps.

  Returns:
    `([H', W', C] array, [R] pixel rows of the row centres)`.
  """
  strips = [image_summary_grid(row, num_columns=len(row), padding=padding,
                               pad_value=pad_value)[0] for row in rows]
  height = rows[0].shape[1]
  pieces, centres, top = [], [], 0
  for index, strip in enumerate(strips):
    if index:
      gap = group_gap if index % rows_per_group == 0 else padding
      pieces.append(np.full((gap,) + strip.shape[1:], pad_value, np.float32))
      top += gap
    pieces.append(strip)
    centres.append(top + (height - 1) / 2)
    top += height
  return np.concatenate(pieces), centres


def plot_image_rows(rows, row_labels, path, title=None, column_labels=None,
                    xlabel=None, rows_per_group=1):
  """Saves rows of images, each with its label on the left.

  For sequences read along a row: a latent interpolation (one row), latent
  traversals (a row per latent coordinate), or originals above what a model
  made of them.

  Args:
    rows: `[R, N, H, W, C]` array, or a sequence of R `[N, H, W, C]` arrays
      of one shape; values in [0, 1].
    row_labels: R Python `str`s, one per row.
    path: where to write the PNG.
    title: optional Python `str` above the figure.
    column_labels: optional N Python `str`s, below the columns.
    xlabel: optional Python `str` below the column labels.
    rows_per_group: Python `int` > 0; every this many rows a wider gap
      separates groups (e.g. 3 for original, input, reconstruction).

  Returns:
    `path`.

  Raises:
    ValueError: if the rows differ in shape, or the labels in number.
  """
  rows = [_canvas.as_images(row, 'rows') for row in rows]
  if not rows:
    raise ValueError('rows must hold at least one row of images.')
  if any(row.shape != rows[0].shape for row in rows):
    raise ValueError(f'Every row must have the same shape; got '
                     f'{[row.shape for row in rows]}.')
  _check_row_labels(rows, row_labels)
  grid, centres = _tile_rows(rows, rows_per_group)
  column_ticks = ()
  if column_labels is not None:
    num_columns, width = rows[0].shape[0], rows[0].shape[2]
    if len(column_labels) != num_columns:
      raise ValueError(f'column_labels must name each of the {num_columns} '
                       f'columns; got {len(column_labels)} labels.')
    column_ticks = [(column * (width + 1) + (width - 1) / 2, text)
                    for column, text in enumerate(column_labels)]
  return _canvas.plot_tiled_image(grid, path, title,
                                  row_labels=list(zip(centres, row_labels)),
                                  column_labels=column_ticks, xlabel=xlabel)


def plot_reconstructions(originals, reconstructions, path, num_columns=None,
                         title='Test images and their reconstructions '
                         '(decoder means at the posterior mean)',
                         grey_originals=None, input_label='input',
                         grey_label='original (grey levels)',
                         reconstruction_label='reconstruction'):
  """Saves originals with their reconstructions right below them, labelled.

  Images are laid out in groups of labelled rows: a row of `num_columns`
  inputs (below their grey originals, when given), then the
  reconstructions of exactly those images, so that each reconstruction sits
  directly below what it reconstructs. Groups are separated by a wider gap.

  Show `grey_originals` when the model saw binarized pixels (dynamic
  binarization, or an image file binarized for the model): a reconstruction
  is then judged against the binary input, and the grey original says what
  that input was drawn from.

  Args:
    originals: `[N, H, W, C]` array or tensor in [0, 1]: what the model
      encoded.
    reconstructions: `[N, H, W, C]`, e.g. `model.reconstruct(originals)`.
    path: where to write the PNG.
    num_columns: images per row. Default: all N when N <= 12, else the
      divisor of N nearest 10, so that no tile is empty (see
      `_canvas.balanced_columns`).
    title: Python `str` above the figure (None for none).
    grey_originals: optional `[N, H, W, C]`, the grey-level images
      `originals` were binarized from; shown as a first row of each group.
    input_label, grey_label, reconstruction_label: Python `str`s, the labels
      of the rows of `originals`, `grey_originals` and `reconstructions`.

  Returns:
    `path`.

  Raises:
    ValueError: if the batches differ in shape.
  """
  originals = _canvas.as_images(originals, 'originals')
  batches = [originals]
  labels = [input_label]
  if grey_originals is not None:
    batches.insert(0, _canvas.as_images(grey_originals, 'grey_originals'))
    labels.insert(0, grey_label)
  batches.append(_canvas.as_images(reconstructions, 'reconstructions'))
  labels.append(reconstruction_label)
  for name, batch in zip(('grey_originals', 'reconstructions'),
                         (batches[0], batches[-1])):
    if batch.shape != originals.shape:
      raise ValueError(
          f'originals and {name} must have the same shape; got '
          f'{originals.shape} and {batch.shape}.')
  num_images = originals.shape[0]
  if num_columns is None:
    num_columns = num_images if num_images <= 12 else (
        _canvas.balanced_columns(num_images, 10))
  num_groups = int(math.ceil(num_images / num_columns))
  # Blank (white) tiles fill the last group's rows only when `num_columns`
  # does not divide N, so its reconstructions still start on a row of their
  # own.
  blank = np.ones([num_groups * num_columns - num_images] +
                  list(originals.shape[1:]), np.float32)
  batches = [np.concatenate([batch, blank]) for batch in batches]
  rows, row_labels = [], []
  for group in range(num_groups):
    chunk = slice(group * num_columns, (group + 1) * num_columns)
    rows.extend(batch[chunk] for batch in batches)
    row_labels.extend(labels)
  return plot_image_rows(rows, row_labels, path, title=title,
                         rows_per_group=len(batches))


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

  figure = _canvas.new_figure(7.5, 6.0)
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
      colors = _canvas.distinct_colors(len(classes))
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
  return _canvas.save_figure(figure, path)


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
