"""Image files a user gives, as a model's inputs: grey levels, binarized.

  `load_image_files`   PNG/JPEG files -> grey `[N, H, W, 1]` images of a
                       model's shape (resized when only the size differs)
  `binarize`           the binary pixels a model trained on binarized data
                       sees of grey levels: one Bernoulli draw per pixel

`sampling` reconstructs, interpolates and traverses from such images.
"""

import os

import numpy as np
import tensorflow as tf

__all__ = ['binarize', 'load_image_files']

# Images from files are resized when their aspect ratio is the model's to
# within this fraction (a scan or a screenshot is rarely exact).
_ASPECT_RATIO_TOLERANCE = 0.02


def _as_grey(pixels, path):
  """An image array as read by matplotlib -> float64 `[H, W]` in [0, 1]."""
  if np.issubdtype(pixels.dtype, np.integer):
    pixels = pixels / float(np.iinfo(pixels.dtype).max)
  pixels = np.asarray(pixels, np.float64)
  if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):
    # Alpha is dropped: the pixels' own values are the picture.
    pixels = pixels[..., :-1]
  if pixels.ndim == 3 and pixels.shape[-1] == 3:
    # ITU-R BT.601 luma, the weights of most image libraries' grey.
    pixels = pixels @ np.array([0.299, 0.587, 0.114])
  elif pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  if pixels.ndim != 2:
    raise ValueError(f'--images: {path} is not a grey or colour image '
                     f'(array of shape {pixels.shape}).')
  return np.clip(pixels, 0.0, 1.0)


def load_image_files(paths, image_shape):
  """Reads image files as grey images of a model's shape.

  Each file is read with matplotlib (PNG natively; JPEG and others through
  Pillow), converted to grey (BT.601 luma; alpha dropped) and scaled to
  [0, 1]. An image of the model's height and width is kept as it is; one of
  the same aspect ratio (within 2%) is resized with antialiasing; any other
  is refused. MNIST-like models expect a light figure on a dark ground.

  Args:
    paths: sequence of file paths.
    image_shape: the model's `(H, W, C)`; C must be 1.

  Returns:
    `np.float32` `[N, H, W, 1]` grey images in [0, 1].

  Raises:
    ValueError: naming the file, for one that is missing or unreadable, and
      naming the file and both shapes, for one of another aspect ratio.
  """
  # Imported here, not with the module: only this reader needs matplotlib,
  # and training (which imports `data`) need not pay for it.
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  height, width, channels = image_shape
  if channels != 1:
    raise ValueError(f'Image files can only be read for grey models; this '
                     f'model takes images of shape {tuple(image_shape)}.')
  images = []
  for path in paths:
    if not os.path.isfile(path):
      raise ValueError(f'--images: {path} does not exist or is not a file.')
    try:
      pixels = matplotlib.image.imread(path)
    except Exception as error:  # pylint: disable=broad-except
      # matplotlib and Pillow raise many types for a file they cannot read.
      raise ValueError(f'--images: {path} cannot be read as an image: '
                       f'{error}') from None
    grey = _as_grey(np.asarray(pixels), path)  # [h, w]
    if grey.shape != (height, width):
      file_ratio = grey.shape[1] / grey.shape[0]
      model_ratio = width / height
      if abs(file_ratio / model_ratio - 1.0) > _ASPECT_RATIO_TOLERANCE:
        raise ValueError(
            f'--images: {path} is {grey.shape[0]}x{grey.shape[1]} pixels '
            f'(height x width), but the model takes {height}x{width} '
            f'images; give an image of that shape, or of its aspect ratio '
            f'(width / height = {model_ratio:.3g}) to be resized.')
      grey = tf.image.resize(grey[..., np.newaxis], [height, width],
                             method='bilinear', antialias=True).numpy()[..., 0]
    images.append(np.clip(grey, 0.0, 1.0))
  return np.stack(images)[..., np.newaxis].astype(np.float32)


def binarize(grey_images, seed):
  """One Bernoulli draw per pixel, with the grey levels as probabilities.

  What a model trained on binary pixels (static or dynamic binarization)
  sees of a grey image: it never saw grey levels in training, and dynamic
  binarization draws exactly this way.

  Args:
    grey_images: array in [0, 1].
    seed: Python `int` >= 0, or a sequence of them (numpy's seed).

  Returns:
    `np.float32` array of the same shape, values in {0, 1}.
  """
  rng = np.random.default_rng(seed)
  return (rng.random(np.shape(grey_images)) < grey_images).astype(np.float32)
