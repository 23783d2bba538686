"""Small dataset files in each real format, for the tests that load data.

The session fixture `dataset_files` (tests/conftest.py) writes them once per
test process with `write_dataset_files` and records where; a test reads the
directory with `data_dir(name)` and passes it as `data_dir`/`--data_dir`:

  binarized_mnist  binarized_mnist_{train,valid,test}.amat.gz: gzipped text,
                   784 space-separated 0/1 values a line, rows sorted by
                   class like Larochelle's files.
  mnist            the four IDX files, gzipped, as LeCun's site serves them
  fashion_mnist    (train-images-idx3-ubyte.gz, ...): a magic number, the
                   big-endian dimensions, uint8 pixels or labels.
  frey_face        frey_rawface.mat: a MATLAB level-5 file holding `ff`, a
                   uint8 [560, N] matrix, one 28x20 face per column.

The bytes are written here from the formats' definitions, not with the
package's readers (or scipy), so a reader that misreads a format fails.

The images are class-structured, not noise: each class is a smooth
prototype, shifted a little per image, so the models in the tests have
something to learn. The split sizes are as small as the tests allow: up to
300 examples per split (`--max_train_examples=300`) and 300 validation
images (test_evaluate_script.py counts them).
"""

import gzip
import os
import struct

import numpy as np

# binarized_mnist: images per split, in file order (train, valid, test).
BINARIZED_MNIST_SIZES = {'train': 500, 'valid': 300, 'test': 300}
# mnist, fashion_mnist: the training file's images (the validation split is
# carved from them), and the t10k (test) file's.
IDX_TRAIN_SIZE, IDX_TEST_SIZE = 400, 200
# frey_face: one file; load_dataset holds out 10% for test, 10% validation.
FREY_FACE_SIZE = 300
NUM_CLASSES = 10

_FIXTURE = 'the `dataset_files` fixture of tests/conftest.py'
_directories = {}


def data_dir(name):
  """The directory holding the test files of dataset `name`.

  Raises:
    RuntimeError: if the `dataset_files` fixture has not run in this process
      (a test that loads data must use it: the test then fails, never skips).
  """
  if name not in _directories:
    raise RuntimeError(
        f'No test files for {name!r}: the test must use {_FIXTURE} '
        "(`@pytest.mark.usefixtures('dataset_files')`) and run under pytest.")
  return _directories[name]


def write_dataset_files(root, seed=0):
  """Writes every dataset's files under `root/<name>`; returns {name: dir}."""
  rng = np.random.default_rng(seed)
  writers = {'binarized_mnist': _write_binarized_mnist,
             'mnist': _write_idx_dataset, 'fashion_mnist': _write_idx_dataset,
             'frey_face': _write_frey_face}
  directories = {}
  for name, write in writers.items():
    directory = os.path.join(root, name)
    os.makedirs(directory)
    write(directory, rng)
    directories[name] = directory
  _directories.clear()
  _directories.update(directories)
  return directories


def forget_dataset_files():
  _directories.clear()


################################################################################
# Images.
################################################################################


def _prototypes(rng, height, width, num_bumps=3):
  """`[NUM_CLASSES, height, width]` intensities in [0, 1]: Gaussian bumps."""
  rows, columns = np.mgrid[:height, :width]
  prototypes = np.zeros((NUM_CLASSES, height, width))
  for prototype in prototypes:
    for _ in range(num_bumps):
      center_row = rng.uniform(0.25, 0.75) * height
      center_column = rng.uniform(0.25, 0.75) * width
      width_pixels = rng.uniform(1.5, 3.0)
      prototype += np.exp(-((rows - center_row)**2 +
                            (columns - center_column)**2) /
                          (2 * width_pixels**2))
  return np.clip(prototypes, 0., 1.)


def _class_images(rng, labels, height, width):
  """Intensities `[N, height, width]`: each label's prototype, shifted."""
  prototypes = _prototypes(rng, height, width)
  images = np.empty((len(labels), height, width))
  for index, label in enumerate(labels):
    shift = rng.integers(-2, 3, size=2)
    images[index] = np.roll(prototypes[label], shift, axis=(0, 1))
  return images


################################################################################
# File formats.
################################################################################


def _write(path, payload):
  if path.endswith('.gz'):
    payload = gzip.compress(payload, compresslevel=1)  # Speed over size.
  with open(path, 'wb') as file:
    file.write(payload)


def _write_binarized_mnist(directory, rng):
  """Three .amat.gz files of 0/1 rows, sorted by class."""
  for split, size in BINARIZED_MNIST_SIZES.items():
    labels = np.sort(rng.integers(0, NUM_CLASSES, size))
    intensities = _class_images(rng, labels, 28, 28)
    pixels = (rng.random(intensities.shape) < intensities).astype(np.uint8)
    # "0 1 0 ... 1\n": one digit per value, single spaces, one row a line.
    text = np.full((size, 2 * 28 * 28), ord(' '), np.uint8)
    text[:, 0::2] = ord('0') + pixels.reshape(size, -1)
    text[:, -1] = ord('\n')
    _write(os.path.join(directory, f'binarized_mnist_{split}.amat.gz'),
           text.tobytes())


def _idx_bytes(array):
  """IDX: 0x00 0x00, type 0x08 (uint8), rank; big-endian uint32 dims; data."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim])
  header += struct.pack(f'>{array.ndim}I', *array.shape)
  return header + array.tobytes()


def _write_idx_dataset(directory, rng):
  """The four gzipped IDX files of MNIST and Fashion-MNIST."""
  for prefix, size in (('train', IDX_TRAIN_SIZE), ('t10k', IDX_TEST_SIZE)):
    labels = rng.integers(0, NUM_CLASSES, size)
    intensities = _class_images(rng, labels, 28, 28)
    noisy = np.clip(intensities + rng.normal(0., 0.05, intensities.shape),
                    0., 1.)
    _write(os.path.join(directory, f'{prefix}-images-idx3-ubyte.gz'),
           _idx_bytes(np.round(255 * noisy)))
    _write(os.path.join(directory, f'{prefix}-labels-idx1-ubyte.gz'),
           _idx_bytes(labels))


def _mat_element(data_type, payload):
  """A level-5 data element: an 8-byte tag, the payload, 8-byte padding."""
  if len(payload) <= 4:
    # Small data element: byte count and type in one word, then the data.
    return struct.pack('<HH', data_type, len(payload)) + payload.ljust(
        4, b'\0')
  padding = -len(payload) % 8
  return struct.pack('<II', data_type, len(payload)) + payload + b'\0' * (
      padding)


def _mat_v5_bytes(name, matrix):
  """A little-endian MAT v5 file holding one uint8 matrix, uncompressed."""
  mi_int8, mi_uint8, mi_int32, mi_uint32, mi_matrix = 1, 2, 5, 6, 14
  mx_uint8_class = 9
  text = b'MATLAB 5.0 MAT-file, written by tests/_test_data.py'
  # 116 bytes of text, 8 of subsystem offset, the version, and 'IM': the
  # characters 'MI' written as one little-endian 16-bit integer.
  header = text.ljust(116, b' ') + b'\0' * 8 + struct.pack('<H', 0x0100) + (
      b'IM')
  matrix = np.asarray(matrix, np.uint8)
  body = (_mat_element(mi_uint32, struct.pack('<II', mx_uint8_class, 0)) +
          _mat_element(mi_int32, struct.pack('<2i', *matrix.shape)) +
          _mat_element(mi_int8, name.encode('ascii')) +
          # Column-major, as MATLAB stores matrices.
          _mat_element(mi_uint8, matrix.tobytes(order='F')))
  return header + _mat_element(mi_matrix, body)


def _write_frey_face(directory, rng):
  """frey_rawface.mat: `ff`, uint8 [28 * 20, N], image i in column i."""
  labels = rng.integers(0, NUM_CLASSES, FREY_FACE_SIZE)
  faces = np.round(255 * _class_images(rng, labels, 28, 20))  # [N, 28, 20]
  # Column i is image i read row by row (20 pixels at a time).
  ff = faces.reshape(FREY_FACE_SIZE, 28 * 20).T
  _write(os.path.join(directory, 'frey_rawface.mat'), _mat_v5_bytes('ff', ff))
