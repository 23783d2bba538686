"""Using a trained VAE: prior samples, reconstructions, interpolations, traversals.

Pictures of what a trained run learned, from its model directory, as PNGs
with titles that say what they show:

  prior         decoder means E[x | z] at z ~ p(z), an image grid
  reconstructions  images (of a data split, or files), the binarized input
                the model saw, and its reconstruction
  interpolation decoder means along the straight line between the posterior
                means of two images
  traversals    one latent coordinate at a time through the prior's
                quantiles, the others at an image's posterior mean, for each
                active coordinate (Burda et al. 2016's active units)

  `SampleRequest`, `write_samples`   all of it for a model directory (what
                                     scripts/sample.py calls)
  `interpolation_latents`, `traversal_latents`   the latent paths
  `interpolate`, `traverse`          their images under a model

Image files given instead of split images are read by
`data.load_image_files` and binarized for the model by `data.binarize`.

Every image is a decoder mean, never a draw from p(x | z): for a Bernoulli
decoder a draw is salt-and-pepper noise around the mean, which hides what
the model learned.

References:
  Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014 (Fig. 4: the
    prior's quantiles as latent coordinates).
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016
    (active units).
  Higgins et al., beta-VAE, ICLR 2017 (latent traversals).
"""

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from tfp_vae import _checks
from tfp_vae import data as data_lib
from tfp_vae import names
from tfp_vae import objectives
from tfp_vae import plotting
from tfp_vae import runs
from tfp_vae.evaluation import metrics

__all__ = [
    'FIGURES',
    'SampleRequest',
    'interpolate',
    'interpolation_latents',
    'traversal_latents',
    'traverse',
    'write_samples',
]

# The figures `write_samples` can make, in the order it makes them.
FIGURES = ('prior', 'reconstructions', 'interpolation', 'traversals')
# Each figure's file in the output directory.
FIGURE_FILES = {
    'prior': 'prior_samples.png',
    'reconstructions': 'reconstructions.png',
    'interpolation': 'interpolation.png',
    'traversals': 'traversals.png',
}
# Images of the split drawn (with the seed) when none are named: enough for
# a row of reconstructions, a pair to interpolate and one to traverse from.
DEFAULT_NUM_IMAGES = 8
# Split images whose posterior means decide the active coordinates.
_ACTIVE_UNITS_IMAGES = 1000
# Most coordinates a traversal figure shows (the most active ones).
MAX_TRAVERSED_DIMENSIONS = 16
# The traversals span the prior's central 90% in the varied coordinate, as
# the latent manifold does (plotting.plot_latent_manifold).
TRAVERSAL_PROBABILITY_RANGE = (0.05, 0.95)
# Pixels below this many images are encoded at once.
_BATCH_SIZE = 500


################################################################################
# Latent paths and their images.
################################################################################


def interpolation_latents(start, end, steps):
  """Evenly spaced points on the straight line from `start` to `end`.

  ```none
  t = linspace(0, 1, steps)
  z[i] = (1 - t[i]) * start + t[i] * end
  ```

  Args:
    start, end: `[D]` arrays, e.g. two posterior means.
    steps: Python `int` >= 2, points including both ends.

  Returns:
    `np.float32` `[steps, D]`; row 0 is `start`, row `steps - 1` is `end`.

  Raises:
    ValueError: if `steps` < 2 or the two points differ in shape.
  """
  _checks.check_flag_int_at_least(steps, 'steps', 2, allow_numpy=True)
  start = np.asarray(start, np.float64)
  end = np.asarray(end, np.float64)
  if start.shape != end.shape or start.ndim != 1:
    raise ValueError(f'start and end must be [D] vectors of one shape; got '
                     f'{start.shape} and {end.shape}.')
  fractions = np.linspace(0.0, 1.0, steps)[:, np.newaxis]  # [steps, 1]
  # (1 - t) * start + t * end, not start + t * (end - start): the ends are
  # then exactly `start` and `end`.
  return ((1.0 - fractions) * start + fractions * end).astype(np.float32)


def traversal_latents(base, dimensions, values):
  """Copies of `base` with one coordinate at a time set to given values.

  ```none
  z[k, p] = base, except z[k, p, dimensions[k]] = values[p, dimensions[k]]
  ```

  Args:
    base: `[D]` array, e.g. an image's posterior mean.
    dimensions: sequence of K coordinate indices in [0, D).
    values: `[P, D]` array: row p holds the p-th value of every coordinate
      (e.g. `prior_marginal_quantiles` at P probabilities).

  Returns:
    `np.float32` `[K, P, D]`.

  Raises:
    ValueError: for shapes that do not fit or a coordinate out of range.
  """
  base = np.asarray(base, np.float64)
  values = np.asarray(values, np.float64)
  if base.ndim != 1 or values.ndim != 2 or values.shape[1] != base.shape[0]:
    raise ValueError(f'base must be [D] and values [P, D]; got '
                     f'{base.shape} and {values.shape}.')
  latent_dim = base.shape[0]
  for dimension in dimensions:
    if not _checks.is_integer(dimension) or not 0 <= dimension < latent_dim:
      raise ValueError(f'dimensions must be coordinates in [0, {latent_dim})'
                       f'; got {list(dimensions)}.')
  latents = np.tile(base, [len(dimensions), values.shape[0], 1])  # [K, P, D]
  for k, dimension in enumerate(dimensions):
    latents[k, :, dimension] = values[:, dimension]
  return latents.astype(np.float32)


def _posterior_means(model, images):
  """E_q[z | x] of each image: `[N, H, W, C]` -> `np.float32` `[N, D]`.

  For the IAF posterior, the flow of its base mean instead
  (`objectives.posterior_location`).
  """
  means = [np.asarray(objectives.posterior_location(
      model.encode(images[start:start + _BATCH_SIZE])))
           for start in range(0, len(images), _BATCH_SIZE)]
  return np.concatenate(means).astype(np.float32)


def _decoder_means(model, latents):
  """E[x | z] for `[..., D]` latents: `[..., H, W, C]`, numpy."""
  return np.asarray(model.decode(np.asarray(latents, np.float32)).mean())


def interpolate(model, image_a, image_b, steps=9):
  """Decoder means along the line between two images' posterior means.

  Args:
    model: a `VariationalAutoencoder`.
    image_a, image_b: `[H, W, C]` arrays, the images as the model sees them
      (binarized, for a model trained on binary pixels).
    steps: Python `int` >= 2, points including both ends. Default 9.

  Returns:
    `(images, latents)`: `[steps, H, W, C]` decoder means and the
    `[steps, D]` latents they decode (`interpolation_latents` between the
    posterior means).
  """
  means = _posterior_means(model, np.stack([image_a, image_b]).astype(
      np.float32))  # [2, D]
  latents = interpolation_latents(means[0], means[1], steps)  # [steps, D]
  return _decoder_means(model, latents), latents


def traverse(model, image, dimensions, steps=9,
             probability_range=TRAVERSAL_PROBABILITY_RANGE):
  """Decoder means as one latent coordinate at a time sweeps the prior.

  The coordinate takes the prior's marginal quantiles at `steps`
  probabilities evenly spaced in `probability_range`; the others stay at
  the image's posterior mean.

  Args:
    model: a `VariationalAutoencoder`.
    image: `[H, W, C]` array, as the model sees it.
    dimensions: sequence of K coordinates to vary, e.g. the active ones.
    steps: Python `int` >= 2, values per coordinate. Default 9.
    probability_range: `(low, high)` in (0, 1). Default (0.05, 0.95).

  Returns:
    `(images, latents, probabilities)`: `[K, steps, H, W, C]` decoder
    means, the `[K, steps, D]` latents they decode and the `[steps]`
    probabilities of the quantiles.
  """
  _checks.check_flag_int_at_least(steps, 'steps', 2, allow_numpy=True)
  probabilities = np.linspace(*probability_range, steps)
  values = plotting.prior_marginal_quantiles(model.prior_distribution(),
                                             probabilities)  # [steps, D]
  base = _posterior_means(model, np.asarray(image, np.float32)[np.newaxis])[0]
  latents = traversal_latents(base, dimensions, values)  # [K, steps, D]
  return _decoder_means(model, latents), latents, probabilities


################################################################################
# A model directory.
################################################################################


@dataclasses.dataclass(frozen=True)
class SampleRequest:
  """What `write_samples` makes from a trained run; fields are sample.py's flags.

  Attributes:
    model_dir: the run's directory (holding config.json).
    what: figures to make, from `FIGURES`; empty makes every one the
      images allow (an interpolation needs two images).
    num_prior_samples: prior samples in the grid; a positive integer.
    seed: seeds the prior samples, the default images and binarization.
    split: the data split `indices` index ('test', 'validation', 'train').
    indices: images of `split` to reconstruct, interpolate (the first two)
      and traverse from (the first); integers >= 0. With neither `indices`
      nor `image_files`, `DEFAULT_NUM_IMAGES` images of `split` drawn with
      `seed`.
    image_files: image files to use instead of split images.
    steps: points along an interpolation and values per traversed
      coordinate; an integer >= 2.
    output_dir: where the PNGs go; empty: `<model_dir>/samples`.
    data_dir: where the dataset files are; empty: the run's own.

  Raises:
    ValueError: naming the flag (`--name=value`) for a bad value.
  """
  model_dir: str
  what: Tuple[str, ...] = ()
  num_prior_samples: int = 64
  seed: int = 0
  split: str = 'test'
  indices: Tuple[int, ...] = ()
  image_files: Tuple[str, ...] = ()
  steps: int = 9
  output_dir: str = ''
  data_dir: str = ''

  def __post_init__(self):
    if not self.model_dir:
      _checks.fail_flag('model_dir', self.model_dir,
                        'name a directory written by scripts/train.py')
    for value in self.what:
      _checks.check_flag_choice(value, 'what', FIGURES)
    _checks.check_flag_positive_int(self.num_prior_samples,
                                    'num_prior_samples')
    _checks.check_flag_int_at_least(self.seed, 'seed', 0)
    _checks.check_flag_choice(self.split, 'split', names.EVALUATION_SPLITS)
    for index in self.indices:
      if not _checks.is_integer(index, allow_numpy=False) or index < 0:
        _checks.fail_flag('indices', ','.join(map(str, self.indices)),
                          'be integers >= 0, e.g. 3,17,42')
    _checks.check_flag_int_at_least(self.steps, 'steps', 2)
    if self.indices and self.image_files:
      raise ValueError('Give --indices or --images, not both; got '
                       f'--indices={",".join(map(str, self.indices))} and '
                       f'--images={",".join(self.image_files)}.')
    if 'interpolation' in self.what and (
        len(self.indices) == 1 or len(self.image_files) == 1):
      raise ValueError('--what=interpolation needs two images; got one ('
                       'give two or more with --indices or --images).')

  @property
  def samples_dir(self):
    """Where the PNGs go."""
    return self.output_dir or os.path.join(self.model_dir, 'samples')


@dataclasses.dataclass(frozen=True)
class _Images:
  """The images a request names, as the model sees them and as they were."""
  inputs: np.ndarray           # [N, H, W, C], what the model encodes
  grey: Optional[np.ndarray]   # [N, H, W, C] grey levels, or None
  names: Tuple[str, ...]       # e.g. 'test image 17 (Sneaker)', 'a.png'
  input_label: str             # the inputs' row label


def _load_dataset(loaded, request):
  train_config = loaded.train_config
  if request.data_dir:
    train_config = dataclasses.replace(train_config, data_dir=request.data_dir)
  return train_config, data_lib.load_data(train_config, loaded.model_config)


def _split_inputs(dataset, split, seed):
  """A split's images as the model sees them (train: binarized once)."""
  images = getattr(dataset, f'{split}_images')
  if split == 'train' and dataset.binarization == 'dynamic':
    # Training images are grey levels binarized afresh each batch; show one
    # seeded binarization, as the validation and test splits hold.
    return images, data_lib.binarize(images, [seed, 1])
  return images, images


def _split_images(loaded, request, train_config, dataset):
  """The images of `request.indices` (or drawn ones) of its split."""
  split = request.split
  grey_split, inputs_split = _split_inputs(dataset, split, request.seed)
  num_images = len(inputs_split)
  indices = list(request.indices)
  if not indices:
    indices = sorted(np.random.default_rng(request.seed).permutation(
        num_images)[:DEFAULT_NUM_IMAGES].tolist())
  bad = [i for i in indices if i >= num_images]
  if bad:
    raise ValueError(
        f'--indices={",".join(map(str, request.indices))}: '
        f'{", ".join(map(str, bad))} out of range for the {num_images} '
        f'{split} images of {dataset.name} (indices 0 to {num_images - 1}).')
  labels = getattr(dataset, f'{split}_labels')
  class_names = names.DATASET_CLASS_NAMES.get(dataset.name)
  image_names = []
  for index in indices:
    name = f'{split} image {index}'
    if labels is not None:
      label = int(labels[index])
      name += f' ({class_names[label] if class_names else label})'
    image_names.append(name)
  if dataset.binarization == 'dynamic':
    if split != 'train':
      # The split holds one seeded binarization of these grey levels.
      grey_split = data_lib.load_grey_images(train_config,
                                             loaded.model_config, split)
    grey = grey_split[indices]
  else:
    grey = None
  return _Images(inputs_split[indices], grey, tuple(image_names),
                 plotting.INPUT_ROW_LABELS[dataset.binarization])


def _file_images(loaded, request):
  grey = data_lib.load_image_files(request.image_files,
                                   loaded.model_config.image_shape)
  binarization = loaded.train_config.binarization or (
      names.DATASET_BINARIZATIONS[loaded.train_config.dataset][0])
  image_names = tuple(os.path.basename(p) for p in request.image_files)
  if binarization == 'none':
    return _Images(grey, None, image_names, plotting.INPUT_ROW_LABELS['none'])
  # Static or dynamic: the model saw binary pixels only.
  return _Images(data_lib.binarize(grey, request.seed), grey, image_names,
                 plotting.INPUT_ROW_LABELS['dynamic'])


def _traversed_dimensions(model, inputs):
  """(coordinates to traverse, what the title says of them)."""
  latent_means = _posterior_means(model, inputs)  # [N, D]
  active, variances = metrics.active_dimensions(latent_means)
  shown = active[:MAX_TRAVERSED_DIMENSIONS]
  where = f'posterior-mean variance > 0.01 over {len(inputs)} images'
  if not active:
    # A collapsed posterior: no coordinate is used, so show the least
    # unused ones rather than nothing, and say so.
    shown = [int(d) for d in np.argsort(-variances, kind='stable')[:4]]
    return shown, (f'no active coordinate ({where}); the {len(shown)} '
                   'most variable shown')
  more = (f', the {len(shown)} most active shown' if len(active) > len(shown)
          else '')
  return shown, f'{len(active)} active coordinates ({where}){more}'


def _list_names(image_names, split):
  """'test images 3 (Bag), 17 (Coat)' rather than 'test image 3 (Bag), ...'."""
  prefix = f'{split} image '
  if len(image_names) > 1 and all(n.startswith(prefix) for n in image_names):
    return f'{split} images ' + ', '.join(n[len(prefix):] for n in image_names)
  return ', '.join(image_names)


def write_samples(request):
  """Writes the figures of `request` for a trained run; see the module doc.

  Restores the run (`runs.load_trained_model`: the final model, else its
  newest readable checkpoint), loads its data if the request needs split
  images (the data the run trained on, or `request.data_dir`), and writes
  one PNG per figure to `request.samples_dir`.

  Args:
    request: a `SampleRequest`.

  Returns:
    dict `{figure: path}` of the PNGs written, in `FIGURES` order.

  Raises:
    ValueError: naming the flag, for a model_dir without config.json, an
      index out of range, an image file that cannot be used, or a figure
      the images do not allow.
    data.DataError: if the dataset files cannot be read.

  #### Example

  ```python
  paths = write_samples(SampleRequest('runs/mnist-diag', indices=(3, 17)))
  paths['interpolation']  # 'runs/mnist-diag/samples/interpolation.png'
  ```
  """
  config_path = os.path.join(request.model_dir, runs.CONFIG_FILE)
  if not os.path.isfile(config_path):
    _checks.fail_flag('model_dir', request.model_dir,
                      f'be a directory written by scripts/train.py; '
                      f'{config_path} does not exist')
  loaded = runs.load_trained_model(request.model_dir)
  model = loaded.model
  what = request.what
  if not what:
    single = len(request.indices) == 1 or len(request.image_files) == 1
    what = tuple(f for f in FIGURES if not (single and f == 'interpolation'))
  what = [f for f in FIGURES if f in what]
  needs_images = [f for f in what if f != 'prior']
  needs_data = ('traversals' in what or
                (needs_images and not request.image_files))
  train_config = dataset = images = None
  if needs_data:
    train_config, dataset = _load_dataset(loaded, request)
  if needs_images:
    images = (_file_images(loaded, request) if request.image_files else
              _split_images(loaded, request, train_config, dataset))
  output_dir = request.samples_dir
  os.makedirs(output_dir, exist_ok=True)
  run_name = os.path.basename(os.path.normpath(request.model_dir))
  paths = {}
  for figure in what:
    path = os.path.join(output_dir, FIGURE_FILES[figure])
    if figure == 'prior':
      plotting.plot_prior_samples(model, path,
                                  num_samples=request.num_prior_samples,
                                  seed=request.seed)
    elif figure == 'reconstructions':
      shown = _list_names(images.names, request.split)
      plotting.plot_reconstructions(
          images.inputs, np.asarray(model.reconstruct(images.inputs)), path,
          grey_originals=images.grey, input_label=images.input_label,
          reconstruction_label='reconstruction (decoder mean)',
          title=f'{run_name}: reconstructions, decoder means at the '
          f'posterior mean, of {shown}')
    elif figure == 'interpolation':
      decoded, _ = interpolate(model, images.inputs[0], images.inputs[1],
                               steps=request.steps)
      fractions = np.linspace(0.0, 1.0, request.steps)
      plotting.plot_image_rows(
          [decoded], ['decoder mean'], path,
          title=f'{run_name}: interpolation from {images.names[0]} to '
          f'{images.names[1]}, decoder means at z = (1 - t) * mean q(z|a) '
          '+ t * mean q(z|b)',
          column_labels=[f'{t:.2f}' for t in fractions], xlabel='t')
    else:  # traversals
      _, inputs_split = _split_inputs(dataset, request.split, request.seed)
      subset = np.sort(np.random.default_rng(request.seed).permutation(
          len(inputs_split))[:_ACTIVE_UNITS_IMAGES])
      dimensions, which = _traversed_dimensions(model, inputs_split[subset])
      decoded, _, probabilities = traverse(model, images.inputs[0],
                                           dimensions, steps=request.steps)
      plotting.plot_image_rows(
          list(decoded), [f'z[{d}]' for d in dimensions], path,
          title=f'{run_name}: latent traversals from {images.names[0]}: '
          'one coordinate through the prior quantiles below, the others at '
          f'its posterior mean; decoder means. {which}',
          column_labels=[f'{p:.2f}' for p in probabilities],
          xlabel="prior quantile level of the varied coordinate")
    paths[figure] = path
  return paths
