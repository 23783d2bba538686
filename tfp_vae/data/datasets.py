"""The datasets: loading, splitting and checking images.

Four datasets, each as float32 images in [0, 1] of shape `[N, H, W, 1]`:

  binarized_mnist  Larochelle & Murray's statically binarized MNIST (2011),
                   fixed 50000/10000/10000 split, `.amat` text files.
  mnist            LeCun et al.'s MNIST, IDX files; 10000 training images are
                   carved out (seeded) as the validation split.
  fashion_mnist    Xiao et al.'s Fashion-MNIST (2017), same files and splits.
  frey_face        Brendan Frey's 1965 face images (28x20), MATLAB v5 file;
                   10% test (a fixed draw) and 10% validation (seeded).

`load_dataset` finds the files (`sources.locate_files`), reads them
(`formats`), checks every pixel and splits them. `load_data` does the same
for the dataset a `TrainConfig` names, subset as it asks; `check_pixels`
checks an `ImageDataset` built in code before training on it.

Every data problem (a missing, truncated or corrupt file, bad pixel values,
an impossible split) raises `DataError`, whose message names the file or
value at fault. Nothing ever falls back to another dataset or to random data.

#### References

Larochelle, H. & Murray, I. The Neural Autoregressive Distribution Estimator.
  AISTATS 2011.
LeCun, Y., Bottou, L., Bengio, Y. & Haffner, P. Gradient-based learning
  applied to document recognition. Proc. IEEE 1998.
Xiao, H., Rasul, K. & Vollgraf, R. Fashion-MNIST: a Novel Image Dataset for
  Benchmarking Machine Learning Algorithms. arXiv:1708.07747, 2017.
Kingma, D. P. & Welling, M. Auto-Encoding Variational Bayes. ICLR 2014
  (Frey Face experiments).
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from tfp_vae._checks import is_integer
from tfp_vae.data.formats import DataError
from tfp_vae.data.formats import read_amat
from tfp_vae.data.formats import read_idx
from tfp_vae.data.formats import read_mat_v5
from tfp_vae.data.sources import AMAT_FILE_NAMES
from tfp_vae.data.sources import FREY_FACE_FILE_NAME
from tfp_vae.data.sources import locate_files
from tfp_vae.names import DATASET_BINARIZATIONS
from tfp_vae.names import DATASET_IMAGE_SHAPES
from tfp_vae.names import DATASET_NAMES
from tfp_vae.names import SPLITS

__all__ = ['ImageDataset', 'check_pixels', 'load_data', 'load_dataset',
           'load_grey_images']

_MNIST_VALIDATION_SIZE = 10000
_BINARIZED_MNIST_SHAPE = DATASET_IMAGE_SHAPES['binarized_mnist']
_FREY_FACE_HEIGHT, _FREY_FACE_WIDTH, _ = DATASET_IMAGE_SHAPES['frey_face']
_FREY_FACE_HELD_OUT_FRACTION = 0.1
# The Frey Face test split is drawn with this fixed seed, not the run's seed,
# so that runs with different seeds are scored on the same test images.
_FREY_FACE_TEST_SPLIT_SEED = 20140101
# Second word of the numpy seed for the one-off binarization of the
# validation and test splits, keeping that stream apart from the split's.
_EVALUATION_BINARIZATION_STREAM = 1


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no ==.
class ImageDataset:
  """One split set of a dataset, as float32 numpy arrays in [0, 1].

  Attributes:
    name: one of `DATASET_NAMES`.
    train_images: `[N_train, H, W, 1]` float32 in [0, 1]. Under 'dynamic'
      binarization these are grey-level intensities (Bernoulli means) that
      `make_training_dataset(..., dynamic_binarization=True)` binarizes
      afresh for every batch; otherwise they are the pixels the model sees.
    validation_images: `[N_validation, H, W, 1]` float32 in [0, 1]; under
      'dynamic' binarization, binarized once (seeded) so evaluation is
      deterministic.
    test_images: `[N_test, H, W, 1]` float32 in [0, 1], like validation.
    train_labels: `[N_train]` int64 class labels, or `None` for datasets
      without labels (binarized_mnist, frey_face).
    validation_labels: `[N_validation]` int64 or `None`.
    test_labels: `[N_test]` int64 or `None`.
    binarization: 'static' (the files hold {0, 1} pixels), 'dynamic' (see
      above) or 'none' (continuous intensities).
    image_shape: `(H, W, 1)`.
    source: where the files were read from, for logs.
  """
  name: str
  train_images: np.ndarray
  validation_images: np.ndarray
  test_images: np.ndarray
  train_labels: Optional[np.ndarray]
  validation_labels: Optional[np.ndarray]
  test_labels: Optional[np.ndarray]
  binarization: str
  image_shape: Tuple[int, int, int]
  source: str




def _check_images(images, origin):
  """Raises DataError unless `images` is non-empty, finite and in [0, 1]."""
  if not images.shape[0]:
    raise DataError(f'{origin} holds no images.')
  finite = np.isfinite(images)
  if not np.all(finite):
    first_bad = np.argwhere(~finite)[0]
    raise DataError(
        f'{origin} has non-finite pixel values (first: '
        f'{images[tuple(first_bad)]} in image {first_bad[0]}).')
  smallest, largest = float(images.min()), float(images.max())
  if smallest < 0. or largest > 1.:
    raise DataError(f'{origin} has pixel values outside [0, 1] after scaling '
                    f'(min {smallest}, max {largest}).')


def _check_binary(images, origin):
  is_binary = (images == 0.) | (images == 1.)
  if not np.all(is_binary):
    first_bad = np.argwhere(~is_binary)[0]
    raise DataError(
        f'{origin} should hold only 0 and 1 but has '
        f'{images[tuple(first_bad)]} in image {first_bad[0]}.')


def _carve(num_examples, held_out_size, seed):
  """Random disjoint index sets: (kept, held out) with a seeded permutation."""
  permutation = np.random.default_rng(seed).permutation(num_examples)
  return permutation[held_out_size:], permutation[:held_out_size]


def _check_held_out_size(validation_size, num_available, name):
  if validation_size < 1:
    raise DataError(f'validation_size must be at least 1 (an empty validation '
                    f'split is not allowed), got {validation_size}.')
  if validation_size >= num_available:
    raise DataError(
        f'validation_size={validation_size} leaves no training images: '
        f'{name} has {num_available} images to split.')


def _binarize_once(images, rng):
  """A single Bernoulli draw with the pixel intensities as probabilities."""
  return (rng.random(images.shape, dtype=np.float32) < images).astype(
      np.float32)


# Each loader below returns (splits, split_files): the `ImageDataset` fields
# `{split}_images` and `{split}_labels`, and for each split the file its
# images came from, for error messages.


def _load_binarized_mnist(paths, validation_size):
  """binarized_mnist: the three .amat files are the three splits."""
  splits, split_files = {}, {}
  for split, file_name in zip(SPLITS, AMAT_FILE_NAMES):
    rows = read_amat(paths[file_name], math.prod(_BINARIZED_MNIST_SHAPE))
    splits[f'{split}_images'] = rows.reshape(-1, *_BINARIZED_MNIST_SHAPE)
    splits[f'{split}_labels'] = None
    split_files[split] = paths[file_name]
  num_validation = len(splits['validation_images'])
  if validation_size is not None and validation_size != num_validation:
    raise DataError(
        f'binarized_mnist has a fixed validation split of {num_validation} '
        f'images; validation_size must be None, got {validation_size}.')
  return splits, split_files


def _read_idx_split(paths, split_prefix):
  """Reads `{split_prefix}-images/labels`: (uint8 [N, H, W], int64 [N])."""
  images_path = paths[f'{split_prefix}-images-idx3-ubyte.gz']
  labels_path = paths[f'{split_prefix}-labels-idx1-ubyte.gz']
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.dtype != np.uint8 or images.ndim != 3:
    raise DataError(f'{images_path} should hold uint8 images [N, H, W], but '
                    f'holds {images.dtype} of shape {images.shape}.')
  if labels.ndim != 1:
    raise DataError(f'{labels_path} should hold labels [N], but holds shape '
                    f'{labels.shape}.')
  if len(images) != len(labels):
    raise DataError(f'{images_path} has {len(images)} images but '
                    f'{labels_path} has {len(labels)} labels.')
  return images, labels.astype(np.int64)


def _load_idx_dataset(name, paths, binarization, validation_size, seed):
  """mnist, fashion_mnist: validation carved from train, optional binarizing."""
  train_images, train_labels = _read_idx_split(paths, 'train')
  test_images, test_labels = _read_idx_split(paths, 't10k')
  if validation_size is None:
    validation_size = _MNIST_VALIDATION_SIZE
  _check_held_out_size(validation_size, len(train_images), name)
  train_index, validation_index = _carve(len(train_images), validation_size,
                                         seed)
  # [N, H, W] uint8 -> [N, H, W, 1] float32 intensities in [0, 1].
  def scale(images):
    return images[..., np.newaxis].astype(np.float32) / np.float32(255.)
  splits = dict(
      train_images=scale(train_images[train_index]),
      validation_images=scale(train_images[validation_index]),
      test_images=scale(test_images),
      train_labels=train_labels[train_index],
      validation_labels=train_labels[validation_index],
      test_labels=test_labels)
  if binarization == 'dynamic':
    # Evaluation splits are binarized once, so every evaluation of every
    # model trained with this seed scores the same binary images.
    rng = np.random.default_rng([seed, _EVALUATION_BINARIZATION_STREAM])
    splits['validation_images'] = _binarize_once(splits['validation_images'],
                                                 rng)
    splits['test_images'] = _binarize_once(splits['test_images'], rng)
  train_file = paths['train-images-idx3-ubyte.gz']
  return splits, dict(train=train_file, validation=train_file,
                      test=paths['t10k-images-idx3-ubyte.gz'])


def _load_frey_face(path, validation_size, seed):
  """frey_face: 28x20 images from `ff`; fixed test, seeded validation split."""
  variables = read_mat_v5(path)
  if 'ff' not in variables:
    raise DataError(f'{path} has no variable "ff" (variables found: '
                    f'{sorted(variables)}).')
  faces = variables['ff']  # [28 * 20, N], one image per column.
  num_pixels = _FREY_FACE_HEIGHT * _FREY_FACE_WIDTH
  if faces.dtype != np.uint8 or faces.ndim != 2 or faces.shape[0] != num_pixels:
    raise DataError(f'{path}: variable "ff" should be uint8 of shape '
                    f'[{num_pixels}, N], but is {faces.dtype} of shape '
                    f'{faces.shape}.')
  # Column i, read in row-major order 20 pixels at a time, is image i.
  images = faces.T.reshape(-1, _FREY_FACE_HEIGHT, _FREY_FACE_WIDTH, 1)
  images = images.astype(np.float32) / np.float32(255.)
  num_images = len(images)
  test_size = int(round(_FREY_FACE_HELD_OUT_FRACTION * num_images))
  if validation_size is None:
    validation_size = test_size
  if not test_size:
    raise DataError(f'{path} holds only {num_images} images, too few for a '
                    'test split.')
  rest_index, test_index = _carve(num_images, test_size,
                                  _FREY_FACE_TEST_SPLIT_SEED)
  _check_held_out_size(validation_size, len(rest_index), 'frey_face')
  train_index, validation_index = _carve(len(rest_index), validation_size,
                                         seed)
  splits = dict(train_images=images[rest_index[train_index]],
                validation_images=images[rest_index[validation_index]],
                test_images=images[test_index], train_labels=None,
                validation_labels=None, test_labels=None)
  return splits, dict.fromkeys(SPLITS, path)


def load_dataset(name, data_dir=None, binarization=None, validation_size=None,
                 seed=0, cache_dir=None, download=True):
  """Finds, reads, validates and splits a dataset.

  Files are looked for, in order: in `data_dir` if given (and only there);
  in the system location a package installs (`SYSTEM_DATA_DIRS`, e.g.
  /usr/share/datasets/fashion-mnist from Debian's `dataset-fashion-mnist`);
  in the download cache; and, if `download`, they are fetched from
  `DOWNLOAD_URL_BASES` into the cache. Gzipped (`.gz`) and plain files are
  both accepted.

  Args:
    name: str, one of `DATASET_NAMES`.
    data_dir: optional str, a directory holding the dataset's files. When
      given, no other place is searched.
    binarization: optional str. 'static' for binarized_mnist (its only
      choice); 'dynamic' (default) or 'none' for mnist and fashion_mnist;
      'none' for frey_face. 'dynamic' keeps the training images as
      intensities for `make_training_dataset(..., dynamic_binarization=True)`
      and
      binarizes validation and test once, seeded by `seed`.
    validation_size: optional int, images carved from the training set for
      validation: default 10000 for mnist and fashion_mnist, 10% of the
      images for frey_face; binarized_mnist has a fixed split and accepts
      only None (or its size, 10000).
    seed: non-negative int seeding the validation split and the one-off
      binarization of the evaluation splits. (The frey_face test split is
      a fixed draw, the same for every seed.)
    cache_dir: optional str, root of the download cache; files go to
      `<cache_dir>/<name>`. Default: `$TFP_VAE_DATA_DIR`, else
      `~/.cache/tfp_vae`.
    download: bool, whether to download files missing from the cache.

  Returns:
    An `ImageDataset`.

  Raises:
    DataError: for an unknown name or binarization (listing the allowed
      values), a bad validation_size or seed, files that cannot be found
      (listing every place tried and how to get them), and corrupt or
      invalid files (naming the file and the problem).

  #### Examples

  ```python
  dataset = load_dataset('fashion_mnist', seed=1)
  train_batches = make_training_dataset(
      dataset.train_images, 128, seed=1,
      dynamic_binarization=dataset.binarization == 'dynamic')
  ```
  """
  if name not in DATASET_NAMES:
    raise DataError(f'Unknown dataset {name!r}; known datasets: '
                    f'{", ".join(DATASET_NAMES)}.')
  allowed_binarizations = DATASET_BINARIZATIONS[name]
  if binarization is None:
    binarization = allowed_binarizations[0]
  if binarization not in allowed_binarizations:
    raise DataError(
        f'binarization {binarization!r} is not available for {name}; '
        f'choose one of: {", ".join(allowed_binarizations)}.')
  # DataError (a ValueError) rather than `_checks`' messages: every data
  # problem is a DataError.
  if validation_size is not None and not is_integer(validation_size):
    raise DataError(f'validation_size must be an integer or None, got '
                    f'{validation_size!r}.')
  if not is_integer(seed) or seed < 0:
    raise DataError(f'seed must be a non-negative integer, got {seed!r}.')

  paths, source, from_cache = locate_files(name, data_dir, cache_dir,
                                           download)
  try:
    if name == 'binarized_mnist':
      splits, split_files = _load_binarized_mnist(paths, validation_size)
    elif name == 'frey_face':
      splits, split_files = _load_frey_face(paths[FREY_FACE_FILE_NAME],
                                            validation_size, seed)
    else:
      splits, split_files = _load_idx_dataset(name, paths, binarization,
                                              validation_size, seed)
    for split in SPLITS:
      origin = f'{name} {split} split from {split_files[split]}'
      _check_images(splits[f'{split}_images'], origin)
      if binarization == 'static':
        _check_binary(splits[f'{split}_images'], origin)
  except DataError as error:
    if not from_cache:
      raise
    raise DataError(f'{error} (The file is in the download cache; delete it '
                    'to download it again.)') from error
  return ImageDataset(
      name=name, binarization=binarization,
      image_shape=tuple(splits['train_images'].shape[1:]), source=source,
      **splits)



################################################################################
# The dataset of a run.
################################################################################


def load_data(train_config, model_config=None):
  """Loads the dataset a `TrainConfig` names, subset as it asks.

  With `max_train_examples` > 0, each split is replaced by a seeded random
  subset of at most that many examples (random, never the first rows: files
  such as the binarized MNIST are sorted by class).

  Args:
    train_config: `config.TrainConfig`; its `dataset`, `data_dir`,
      `binarization`, `seed` and `max_train_examples` are used.
    model_config: optional `config.ModelConfig`, whose `image_shape` the
      images must have.

  Returns:
    An `ImageDataset`.

  Raises:
    DataError: for missing or corrupt files (the message says where it
      looked).
    ValueError: if the images' shape differs from `model_config.image_shape`.
  """
  dataset = load_dataset(
      train_config.dataset, data_dir=train_config.data_dir or None,
      binarization=train_config.binarization or None, seed=train_config.seed)
  if train_config.max_train_examples:
    rng = np.random.default_rng(train_config.seed)
    limit = train_config.max_train_examples
    subsets = {}
    for split in SPLITS:
      images = getattr(dataset, f'{split}_images')
      labels = getattr(dataset, f'{split}_labels')
      index = np.sort(rng.permutation(len(images))[:limit])
      subsets[f'{split}_images'] = images[index]
      subsets[f'{split}_labels'] = None if labels is None else labels[index]
    dataset = dataclasses.replace(dataset, **subsets)
  if model_config is not None and (
      tuple(dataset.image_shape) != tuple(model_config.image_shape)):
    raise ValueError(
        f'--dataset={train_config.dataset} has images of shape '
        f'{tuple(dataset.image_shape)}, but the model was built for '
        f'{tuple(model_config.image_shape)}.')
  return dataset


def check_pixels(dataset, train_config):
  """Raises ValueError unless every split holds finite pixels in [0, 1].

  `load_data` checks the files it reads; this also covers an `ImageDataset`
  built in code, before a bad pixel could waste a run on a NaN loss.

  Args:
    dataset: an `ImageDataset`.
    train_config: the `config.TrainConfig` whose `dataset` the messages name.

  Raises:
    ValueError: naming the split and --dataset, for an empty split, a
      non-finite pixel (the first one found) or a pixel outside [0, 1].
  """
  for split in SPLITS:
    images = np.asarray(getattr(dataset, f'{split}_images'))
    where = f'The {split} images of --dataset={train_config.dataset}'
    if not images.size:
      raise ValueError(f'{where} are empty (shape {images.shape}).')
    if not np.all(np.isfinite(images)):
      first_bad = tuple(np.argwhere(~np.isfinite(images))[0])
      raise ValueError(f'{where} hold non-finite pixels (first: '
                       f'{images[first_bad]} in image {first_bad[0]}).')
    if images.min() < 0 or images.max() > 1:
      raise ValueError(f'{where} hold pixels outside [0, 1] (min '
                       f'{images.min()}, max {images.max()}); scale them '
                       'to [0, 1].')


def load_grey_images(train_config, model_config=None, split='test'):
  """The grey levels a run's binarized split was drawn from.

  Under 'dynamic' binarization `load_data` binarizes the validation and
  test splits once; these are the same images (same seed, same split and
  subset) before that draw, for pictures that show what the binary input
  was drawn from. Under 'none' they are the split itself.

  Args:
    train_config: `config.TrainConfig` of a run on mnist or fashion_mnist
      (the datasets stored as grey levels).
    model_config: optional `config.ModelConfig`, as in `load_data`.
    split: one of `SPLITS`.

  Returns:
    `[N, H, W, 1]` float32 grey levels in [0, 1], image i the grey version
    of image i of `load_data(train_config)`'s split.

  Raises:
    ValueError: for a dataset stored binarized (binarized_mnist), or an
      unknown split.
    DataError: as `load_data`.
  """
  if 'none' not in DATASET_BINARIZATIONS[train_config.dataset]:
    raise ValueError(f'--dataset={train_config.dataset} is stored binarized: '
                     'it has no grey levels.')
  if split not in SPLITS:
    raise ValueError(f'split must be one of {", ".join(SPLITS)}; got '
                     f'{split!r}.')
  grey = load_data(dataclasses.replace(train_config, binarization='none'),
                   model_config)
  return getattr(grey, f'{split}_images')
