"""Tests of tfp_vae.data.image_files: a user's image files as model inputs."""

import os
import shutil
import tempfile

import matplotlib.image
import numpy as np
import tensorflow as tf

from tfp_vae import data


def write_png(path, grey):
  """Writes grey levels `[H, W]` in [0, 1] as an 8-bit RGB(A) PNG."""
  # As RGB, not through a colour map, which would quantise them twice.
  matplotlib.image.imsave(path, np.repeat(grey[..., np.newaxis], 3, axis=-1))
  return path


class BinarizeTest(tf.test.TestCase):

  def test_binarize_draws_zero_and_one_where_certain(self):
    grey = np.array([0.0, 1.0, 0.5] * 1000)
    binary = data.binarize(grey, seed=3)
    self.assertAllEqual(binary[0::3], np.zeros(1000))
    self.assertAllEqual(binary[1::3], np.ones(1000))
    self.assertBetween(binary[2::3].mean(), 0.4, 0.6)
    self.assertAllEqual(binary, data.binarize(grey, seed=3))


class ImageFilesTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)

  def test_grey_image_of_the_model_shape_reads_back(self):
    grey = np.linspace(0, 1, 28 * 20).reshape(28, 20)
    path = write_png(os.path.join(self.directory, 'a.png'), grey)
    images = data.load_image_files([path], (28, 20, 1))
    self.assertEqual(images.shape, (1, 28, 20, 1))
    self.assertEqual(images.dtype, np.float32)
    # 8-bit PNG, which matplotlib writes by truncation: grey levels to
    # within one level.
    self.assertAllClose(images[0, ..., 0], grey, atol=1 / 255 + 1e-6)

  def test_colour_image_of_the_same_aspect_ratio_is_resized(self):
    rgb = np.zeros([56, 56, 3])
    rgb[:, :28] = [1.0, 1.0, 1.0]  # Left half white, right half black.
    path = os.path.join(self.directory, 'big.png')
    matplotlib.image.imsave(path, rgb)
    images = data.load_image_files([path], (28, 28, 1))
    self.assertEqual(images.shape, (1, 28, 28, 1))
    self.assertAllClose(images[0, :, :13, 0], np.ones([28, 13]), atol=0.01)
    self.assertAllClose(images[0, :, 15:, 0], np.zeros([28, 13]), atol=0.01)

  def test_other_aspect_ratio_names_the_file_and_shapes(self):
    path = write_png(os.path.join(self.directory, 'wide.png'),
                      np.zeros([30, 60]))
    with self.assertRaisesRegex(ValueError, r'wide\.png is 30x60 pixels.*'
                                r'takes 28x28'):
      data.load_image_files([path], (28, 28, 1))

  def test_file_that_is_no_image_names_the_file(self):
    path = os.path.join(self.directory, 'notes.png')
    with open(path, 'w') as f:
      f.write('not an image')
    with self.assertRaisesRegex(ValueError, r'--images: .*notes\.png cannot '
                                'be read'):
      data.load_image_files([path], (28, 28, 1))

  def test_missing_file_names_the_file(self):
    with self.assertRaisesRegex(ValueError, r'missing\.png does not exist'):
      data.load_image_files([os.path.join(self.directory, 'missing.png')],
                                (28, 28, 1))



if __name__ == '__main__':
  tf.test.main()
