"""What every figure of `plotting` shares: a fresh figure, saving, colours.

Figures are built with `matplotlib.figure.Figure`, never `pyplot`: no global
figure state, no GUI backend needed (this runs on headless training machines),
and nothing leaks between calls.
"""

import io
import math
import textwrap

import matplotlib
import matplotlib.figure
import numpy as np
import tensorflow as tf


def new_figure(width_inches, height_inches):
  return matplotlib.figure.Figure(figsize=(width_inches, height_inches),
                                  layout='constrained')


def save_figure(figure, path, dpi=100):
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


def distinct_colors(count):
  """`count` colours, qualitative while a qualitative map has enough."""
  if count <= 10:
    return [matplotlib.colormaps['tab10'](i) for i in range(count)]
  if count <= 20:
    return [matplotlib.colormaps['tab20'](i) for i in range(count)]
  return [matplotlib.colormaps['turbo'](x) for x in np.linspace(0, 1, count)]


def as_images(images, argument_name='images'):
  """Converts to a float numpy `[N, H, W, C]` array, adding C = 1 if absent."""
  images = np.asarray(images, dtype=np.float32)
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'{argument_name} must have shape [N, H, W] or '
                     f'[N, H, W, C] with N > 0; got shape {images.shape}.')
  return images


def show_image(axes, image):
  """Shows one `[H, W, C]` image in [0, 1] on `axes`; grayscale if C == 1."""
  image = np.clip(image, 0.0, 1.0)
  if image.shape[-1] == 1:
    axes.imshow(image[..., 0], cmap='gray', vmin=0.0, vmax=1.0,
                interpolation='nearest')
  else:
    axes.imshow(image, interpolation='nearest')


def figure_inches(grid_height, grid_width, pixels_per_inch=40.0,
                   smallest=4.5, largest=12.0):
  """Figure size for a tiled image: a few screen pixels per image pixel."""
  scale = max(grid_height, grid_width) / pixels_per_inch
  scale = min(max(scale, smallest), largest) / scale
  return (grid_width / pixels_per_inch * scale,
          grid_height / pixels_per_inch * scale)


def balanced_columns(count, target):
  """Tiles per row for `count` tiles: a divisor of `count` near `target`.

  A divisor fills every row, so a grid has no empty cell. The smallest
  divisor from `target` up to `max(2 * target, 8)` is taken (grids a little
  wider than tall suit screens and pages; a short row of up to 8 tiles
  beats a block with holes), else the largest from `target / 2` up. A count
  with no divisor there (a prime 13 near `sqrt(13)`) gets
  `ceil(count / rows)` columns for `rows = ceil(count / target)`, rows as
  even as they can be: only the last row is short, by fewer tiles than
  there are rows.

  Args:
    count: Python `int` > 0, the number of tiles.
    target: Python `float` > 0, the preferred number of columns (e.g.
      `sqrt(count)` for a square grid).

  Returns:
    Python `int` in [1, count].

  #### Examples

  ```python
  balanced_columns(12, math.sqrt(12))  # 4: 3 rows of 4
  balanced_columns(7, math.sqrt(7))    # 7: one row
  balanced_columns(13, math.sqrt(13))  # 4: rows of 4, 4, 4 and 1
  ```
  """
  target = min(max(float(target), 1.0), float(count))
  divisors = [c for c in range(1, count + 1) if count % c == 0]
  wider = [c for c in divisors if target <= c <= max(2 * target, 8)]
  if wider:
    return min(wider)
  narrower = [c for c in divisors if target / 2 <= c < target]
  if narrower:
    return max(narrower)
  rows = math.ceil(count / target)
  return math.ceil(count / rows)


def plot_tiled_image(grid, path, title, row_labels=(), column_labels=(),
                     xlabel=None):
  """Saves a `[H', W', C]` tiled image, unadorned but for a title and labels.

  Args:
    grid: `[H', W', C]` array in [0, 1].
    path: where to write the PNG.
    title: Python `str` above the image, or None.
    row_labels: `(y, text)` pairs: `text` left of the image at pixel row `y`.
    column_labels: `(x, text)` pairs: `text` below the image at pixel column
      `x`.
    xlabel: optional Python `str` below the column labels.
  """
  width_inches, height_inches = figure_inches(*grid.shape[:2])
  # The image keeps its size and the margins are laid out around it, in
  # inches, from the labels' lengths: a layout engine would shrink the image
  # to fit long row labels, or (for an image of fixed aspect) clip them.
  # About 0.075 inch a character at the row labels' 9 points.
  left = 0.1 + 0.075 * max([len(text) for _, text in row_labels], default=0)
  right = 0.1
  figure_width = left + width_inches + right
  # About 9 characters per inch at the title's 12 points, with a margin;
  # long titles wrap rather than run off a narrow figure.
  title_lines = textwrap.wrap(title, max(20, int(9 * figure_width))) if (
      title) else []
  top = 0.1 + 0.22 * len(title_lines)
  bottom = 0.1 + 0.2 * bool(column_labels) + 0.22 * bool(xlabel)
  figure_height = top + height_inches + bottom
  figure = matplotlib.figure.Figure(figsize=(figure_width, figure_height))
  axes = figure.add_axes([left / figure_width, bottom / figure_height,
                          width_inches / figure_width,
                          height_inches / figure_height])
  show_image(axes, grid)
  axes.set_xticks([x for x, _ in column_labels],
                  [text for _, text in column_labels], fontsize=8)
  axes.set_yticks([y for y, _ in row_labels],
                  [text for _, text in row_labels], fontsize=9)
  axes.tick_params(length=0, pad=2)
  for spine in axes.spines.values():
    spine.set_visible(False)
  if xlabel:
    axes.set_xlabel(xlabel, fontsize=9, labelpad=1)
  if title_lines:
    # Centred on the figure, whose width the wrapping assumed, not on the
    # image, which long row labels push to the right.
    figure.text(0.5, 1 - 0.06 / figure_height, '\n'.join(title_lines),
                ha='center', va='top', fontsize=12, linespacing=1.3)
  return save_figure(figure, path)
