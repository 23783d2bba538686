"""Tests for tfp_vae.data: readers, lookup, download, splits and pipelines.

Every test writes its own small fixture files (IDX by hand with numpy and
gzip, `.amat` text, MAT files with scipy.io.savemat or by hand for big-endian)
in a temporary directory, or reads the session's test data files
(tests/_test_data.py). Downloads are served by a local `http.server`; no
test touches the internet or data outside the tests.
"""

import contextlib
import functools
import gzip
import http.server
import os
import shutil
import socket
import struct
import tempfile
import threading
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from tfp_vae import data
from tfp_vae import names
from tfp_vae.data import pipeline as pipeline_lib

import _test_data
_IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
              't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
_AMAT_NAMES = ('binarized_mnist_train.amat', 'binarized_mnist_valid.amat',
               'binarized_mnist_test.amat')


################################################################################
# Fixture writers.
################################################################################


def _write_bytes(path, payload):
  if path.endswith('.gz'):
    payload = gzip.compress(payload)
  with open(path, 'wb') as file:
    file.write(payload)
  return path


def _idx_bytes(array):
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
      f'>{array.ndim}I', *array.shape)
  return header + array.tobytes()


def _write_idx(path, array):
  return _write_bytes(path, _idx_bytes(array))


def _amat_text(rows, value_format='{:g}'):
  return ''.join(' '.join(value_format.format(value) for value in row) + '\n'
                 for row in rows).encode()


def _write_amat(path, rows, **kwargs):
  return _write_bytes(path, _amat_text(rows, **kwargs))


def _identifiable_images(num_images, rng):
  """uint8 [N, 28, 28] random images whose first two pixels encode the index."""
  images = rng.integers(0, 256, size=(num_images, 28, 28), dtype=np.uint8)
  images[:, 0, 0] = np.arange(num_images) % 256
  images[:, 0, 1] = np.arange(num_images) // 256
  return images


def _image_ids(images):
  """Recovers `_identifiable_images` indices from [N, 28, 28, 1] floats."""
  pixels = np.round(images[:, 0, :2, 0] * 255.).astype(np.int64)
  return pixels[:, 0] + 256 * pixels[:, 1]


def _write_mnist_files(directory, num_train=120, num_test=30, seed=0,
                       compress=True):
  """Writes the four IDX files; returns (train_images, test_images) uint8."""
  rng = np.random.default_rng(seed)
  train_images = _identifiable_images(num_train, rng)
  test_images = _identifiable_images(num_test, rng)
  suffix = '.gz' if compress else ''
  arrays = (train_images, np.arange(num_train) % 10, test_images,
            np.arange(num_test) % 10)
  for file_name, array in zip(_IDX_NAMES, arrays):
    _write_idx(os.path.join(directory, file_name + suffix), array)
  return train_images, test_images


def _write_binarized_mnist_files(directory, sizes=(20, 6, 5), seed=0,
                                 compress=False):
  """Writes the three .amat files of random {0,1} rows; returns the rows."""
  rng = np.random.default_rng(seed)
  splits = []
  for file_name, size in zip(_AMAT_NAMES, sizes):
    rows = rng.integers(0, 2, size=(size, 784))
    suffix = '.gz' if compress else ''
    _write_amat(os.path.join(directory, file_name + suffix), rows)
    splits.append(rows.astype(np.float32))
  return splits


def _write_frey_face_file(directory, num_images=50, seed=0, **savemat_kwargs):
  faces = np.random.default_rng(seed).integers(
      0, 256, size=(560, num_images), dtype=np.uint8)
  scipy.io.savemat(os.path.join(directory, 'frey_rawface.mat'), {'ff': faces},
                   **savemat_kwargs)
  return faces


def _big_endian_mat_bytes(variables):
  """A big-endian MAT v5 file written by hand (scipy writes native order)."""
  def element(data_type, payload):
    if len(payload) <= 4:  # Small data element: size and type in one word.
      return struct.pack('>HH', len(payload), data_type) + payload.ljust(4,
                                                                         b'\0')
    padding = b'\0' * (-len(payload) % 8)
    return struct.pack('>II', data_type, len(payload)) + payload + padding

  class_and_types = {np.dtype(np.uint8): (9, 2, '>u1'),
                     np.dtype(np.float64): (6, 9, '>f8')}
  contents = (b'MATLAB 5.0 MAT-file, written big-endian by test_data'.ljust(
      116) + b'\0' * 8 + struct.pack('>H', 0x0100) + b'MI')
  for name, array in variables.items():
    array_class, data_type, stored_dtype = class_and_types[array.dtype]
    matrix = (element(6, struct.pack('>II', array_class, 0)) +
              element(5, struct.pack(f'>{array.ndim}i', *array.shape)) +
              element(1, name.encode()) +
              element(data_type,
                      array.astype(stored_dtype).tobytes(order='F')))
    contents += struct.pack('>II', 14, len(matrix)) + matrix
  return contents


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    del args  # Keep the test output clean.


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
  """Promises 100000 bytes, sends 10 and hangs up: an interrupted download."""

  def do_GET(self):  # pylint: disable=invalid-name
    self.send_response(200)
    self.send_header('Content-Length', '100000')
    self.end_headers()
    self.wfile.write(b'\x1f\x8b' + b'\0' * 8)
    self.wfile.flush()
    self.close_connection = True

  def log_message(self, *args):
    del args


@contextlib.contextmanager
def _local_server(directory=None, handler=None):
  """Serves `directory` (or runs `handler`) on 127.0.0.1; yields its URL."""
  handler = handler or functools.partial(_QuietHandler, directory=directory)
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                            daemon=True)
  thread.start()
  try:
    # Never send loopback requests through a proxy from the environment.
    with mock.patch.dict(os.environ, {'no_proxy': '127.0.0.1,localhost',
                                      'NO_PROXY': '127.0.0.1,localhost'}):
      yield f'http://127.0.0.1:{server.server_address[1]}'
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


def _unused_port():
  with socket.socket() as probe:
    probe.bind(('127.0.0.1', 0))
    return probe.getsockname()[1]


def _batches(dataset):
  return [np.asarray(batch) for batch in dataset]


class _DataTestCase(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # No test may find the machine's own datasets or caches by accident.
    self.enter_context(mock.patch.dict(data.SYSTEM_DATA_DIRS, {}, clear=True))
    self.enter_context(mock.patch.dict(
        os.environ, {'TFP_VAE_DATA_DIR': self.make_dir()}))

  def make_dir(self):
    # tempfile, not create_tempdir: that needs absl flags parsed, which
    # pytest does not do.
    directory = tempfile.mkdtemp(prefix='tfp_vae_data_test_')
    self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return directory


################################################################################
# Readers.
################################################################################


class ReadersTest(_DataTestCase):

  @parameterized.named_parameters(
      ('binary_plain', '{:g}', lambda text: text, ''),
      ('binary_gzip', '{:g}', lambda text: text, '.gz'),
      ('no_final_newline', '{:g}', lambda text: text[:-1], ''),
      ('windows_line_ends', '{:g}',
       lambda text: text.replace(b'\n', b'\r\n'), ''),
      ('tabs_and_blank_lines', '{:g}',
       lambda text: b'\n' + text.replace(b'0 1', b'0\t 1') + b'\n  \n', ''),
      ('decimal_values', '{:.2f}', lambda text: text, '.gz'),
  )
  def test_read_amat_returns_the_written_values(self, value_format, edit,
                                                suffix):
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 2, size=(7, 784)).astype(np.float32)
    if value_format == '{:.2f}':
      rows = rows * 0.75  # Exactly representable: 0.00 or 0.75.
    path = _write_bytes(os.path.join(self.make_dir(), 'x.amat' + suffix),
                        edit(_amat_text(rows, value_format=value_format)))
    read = data.read_amat(path)
    self.assertEqual(read.dtype, np.float32)
    self.assertAllEqual(read, rows)

  def test_read_amat_names_the_line_with_too_few_values(self):
    rows = [[0] * 784, [1] * 784, [0] * 783, [1] * 784]
    path = _write_amat(os.path.join(self.make_dir(), 'short.amat'), rows)
    with self.assertRaisesRegex(data.DataError,
                                r'short\.amat, line 3: expected 784 values, '
                                r'found 783'):
      data.read_amat(path)

  def test_read_amat_names_the_line_with_a_non_number(self):
    text = _amat_text([[0] * 784]) + b'0 ' * 500 + b'x ' + b'1 ' * 283 + b'\n'
    path = _write_bytes(os.path.join(self.make_dir(), 'bad.amat.gz'), text)
    with self.assertRaisesRegex(
        data.DataError, r"bad\.amat\.gz, line 2: 'x' is not a number"):
      data.read_amat(path)

  def test_read_amat_rejects_an_empty_file(self):
    path = _write_bytes(os.path.join(self.make_dir(), 'empty.amat'), b'\n')
    with self.assertRaisesRegex(data.DataError, r'empty\.amat holds no images'):
      data.read_amat(path)

  @parameterized.named_parameters(('gzip', '.gz'), ('raw', ''))
  def test_read_idx_returns_the_written_values(self, suffix):
    directory = self.make_dir()
    images = np.random.default_rng(2).integers(0, 256, (9, 28, 28),
                                               dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5], np.uint8)
    read_images = data.read_idx(
        _write_idx(os.path.join(directory, 'images' + suffix), images))
    read_labels = data.read_idx(
        _write_idx(os.path.join(directory, 'labels' + suffix), labels))
    self.assertEqual(read_images.dtype, np.uint8)
    self.assertAllEqual(read_images, images)
    self.assertAllEqual(read_labels, labels)

  def test_read_idx_rejects_a_bad_magic_number(self):
    contents = b'\x12\x34\x56\x78' + b'\0' * 20
    path = _write_bytes(os.path.join(self.make_dir(), 'magic.idx'), contents)
    with self.assertRaisesRegex(
        data.DataError, r'magic\.idx has a bad IDX magic number 0x12345678'):
      data.read_idx(path)

  def test_read_idx_rejects_a_size_that_disagrees_with_the_header(self):
    contents = _idx_bytes(np.zeros((5, 28, 28)))[:-28]  # One row short.
    path = _write_bytes(os.path.join(self.make_dir(), 'cut.idx.gz'), contents)
    with self.assertRaisesRegex(
        data.DataError, r'cut\.idx\.gz: the IDX header says shape '
        r'\(5, 28, 28\) \(3920 bytes of data\), but the file holds 3892'):
      data.read_idx(path)

  @parameterized.named_parameters(
      ('amat', data.read_amat, b'0 1\n'),
      ('idx', data.read_idx, _idx_bytes(np.zeros((4, 28, 28)))),
      ('mat', data.read_mat_v5, b'\0' * 300),
  )
  def test_readers_reject_a_truncated_gzip_file(self, reader, contents):
    path = os.path.join(self.make_dir(), 'cut.gz')
    with open(path, 'wb') as file:
      file.write(gzip.compress(contents)[:-12])
    with self.assertRaisesRegex(
        data.DataError, r'cut\.gz is not a valid gzip file \(truncated'):
      reader(path)

  def test_readers_reject_a_file_that_is_not_gzip(self):
    path = _write_bytes(os.path.join(self.make_dir(), 'plain.amat'), b'0 1\n')
    os.rename(path, path + '.gz')
    with self.assertRaisesRegex(data.DataError,
                                r'plain\.amat\.gz is not a valid gzip file'):
      data.read_amat(path + '.gz')

  @parameterized.named_parameters(('compressed', True), ('uncompressed', False))
  def test_read_mat_v5_matches_savemat(self, do_compression):
    rng = np.random.default_rng(3)
    variables = {
        'ff': rng.integers(0, 256, size=(560, 7), dtype=np.uint8),
        'doubles_with_a_long_name': rng.normal(size=(3, 5)),
        'int16s': rng.integers(-999, 999, size=(4, 2)).astype(np.int16),
        'singles': rng.normal(size=(2, 2)).astype(np.float32),
        'mask': np.array([[True, False, True]]),
        'complex_values': np.array([[1 + 2j, -3.5j]]),
        'text': 'a string, skipped',
    }
    path = os.path.join(self.make_dir(), 'vars.mat')
    scipy.io.savemat(path, variables, do_compression=do_compression)
    read = data.read_mat_v5(path)
    self.assertNotIn('text', read)  # Strings are not numeric matrices.
    for name, expected in variables.items():
      if name == 'text':
        continue
      self.assertEqual(read[name].dtype, expected.dtype, msg=name)
      self.assertAllEqual(read[name], expected, msg=name)

  def test_read_mat_v5_reads_big_endian_files(self):
    rng = np.random.default_rng(4)
    variables = {'ff': rng.integers(0, 256, size=(560, 3), dtype=np.uint8),
                 'big_endian_doubles': rng.normal(size=(2, 7))}
    path = _write_bytes(os.path.join(self.make_dir(), 'big.mat'),
                        _big_endian_mat_bytes(variables))
    read = data.read_mat_v5(path)
    self.assertAllEqual(read['ff'], variables['ff'])
    self.assertAllEqual(read['big_endian_doubles'],
                        variables['big_endian_doubles'])

  def test_read_mat_v5_rejects_a_level_4_file(self):
    path = os.path.join(self.make_dir(), 'v4.mat')
    scipy.io.savemat(path, {'ff': np.ones((560, 2))}, format='4')
    with self.assertRaisesRegex(data.DataError,
                                r'v4\.mat is not a MATLAB level-5 MAT file'):
      data.read_mat_v5(path)

  def test_read_mat_v5_rejects_a_v73_header(self):
    header = (b'MATLAB 7.3 MAT-file'.ljust(116) + b'\0' * 8 +
              struct.pack('<H', 0x0200) + b'IM')
    path = _write_bytes(os.path.join(self.make_dir(), 'hdf5.mat'), header)
    with self.assertRaisesRegex(data.DataError,
                                r'hdf5\.mat is not a MATLAB level-5 MAT file: '
                                r'header version 0x0200'):
      data.read_mat_v5(path)

  @parameterized.named_parameters(('compressed', True), ('uncompressed', False))
  def test_read_mat_v5_rejects_a_truncated_file(self, do_compression):
    path = os.path.join(self.make_dir(), 'cut.mat')
    faces = np.random.default_rng(5).integers(0, 256, (560, 20), np.uint8)
    scipy.io.savemat(path, {'ff': faces}, do_compression=do_compression)
    with open(path, 'rb') as file:
      contents = file.read()
    _write_bytes(path, contents[:len(contents) // 2])
    with self.assertRaisesRegex(data.DataError, r'cut\.mat is truncated'):
      data.read_mat_v5(path)


################################################################################
# load_dataset: contents, splits and binarization.
################################################################################


class LoadDatasetTest(_DataTestCase):

  @parameterized.named_parameters(
      ('mnist_gzip', 'mnist', True), ('fashion_mnist_raw', 'fashion_mnist',
                                      False))
  def test_idx_splits_have_the_stated_sizes_and_are_disjoint(self, name,
                                                             compress):
    directory = self.make_dir()
    train, test = _write_mnist_files(directory, num_train=120, num_test=30,
                                     compress=compress)
    dataset = data.load_dataset(name, data_dir=directory, binarization='none',
                                validation_size=20, seed=7)
    self.assertEqual(dataset.name, name)
    self.assertEqual(dataset.image_shape, (28, 28, 1))
    self.assertEqual(dataset.binarization, 'none')
    self.assertEqual(dataset.train_images.shape, (100, 28, 28, 1))
    self.assertEqual(dataset.validation_images.shape, (20, 28, 28, 1))
    self.assertEqual(dataset.test_images.shape, (30, 28, 28, 1))
    self.assertEqual(dataset.train_images.dtype, np.float32)
    self.assertEqual(dataset.train_labels.dtype, np.int64)
    train_ids = _image_ids(dataset.train_images)
    validation_ids = _image_ids(dataset.validation_images)
    self.assertEmpty(np.intersect1d(train_ids, validation_ids))
    self.assertAllEqual(np.sort(np.concatenate([train_ids, validation_ids])),
                        np.arange(120))
    # Pixels are the file's bytes / 255, and labels travel with their image.
    self.assertAllClose(dataset.train_images[..., 0],
                        train[train_ids] / 255., atol=1e-7)
    self.assertAllEqual(dataset.train_labels, train_ids % 10)
    self.assertAllEqual(dataset.validation_labels, validation_ids % 10)
    self.assertAllClose(dataset.test_images[..., 0], test / 255., atol=1e-7)
    self.assertAllEqual(dataset.test_labels, np.arange(30) % 10)

  def test_validation_split_is_deterministic_for_a_seed(self):
    directory = self.make_dir()
    _write_mnist_files(directory)
    def validation_ids(seed):
      dataset = data.load_dataset('mnist', data_dir=directory,
                                  binarization='none', validation_size=20,
                                  seed=seed)
      return _image_ids(dataset.validation_images)
    self.assertAllEqual(validation_ids(3), validation_ids(3))
    self.assertNotAllEqual(np.sort(validation_ids(3)),
                           np.sort(validation_ids(4)))

  def test_mnist_default_validation_size_is_10000(self):
    directory = self.make_dir()
    _write_mnist_files(directory, num_train=10005, num_test=3, compress=False)
    dataset = data.load_dataset('mnist', data_dir=directory)
    self.assertLen(dataset.train_images, 5)
    self.assertLen(dataset.validation_images, 10000)
    self.assertLen(dataset.test_images, 3)

  def test_dynamic_binarization_binarizes_evaluation_splits_once(self):
    directory = self.make_dir()
    train, test = _write_mnist_files(directory)
    def load(seed):
      return data.load_dataset('mnist', data_dir=directory,
                               binarization='dynamic', validation_size=20,
                               seed=seed)
    dataset, again, other_seed = load(5), load(5), load(6)
    self.assertEqual(dataset.binarization, 'dynamic')
    # Training images stay intensities; the pipeline binarizes them.
    self.assertAllClose(dataset.train_images[..., 0],
                        train[_image_ids(again.train_images)] / 255.,
                        atol=1e-7)
    for split in ('validation_images', 'test_images'):
      images = getattr(dataset, split)
      self.assertAllInSet(images, (0., 1.))
      self.assertAllEqual(images, getattr(again, split))
    self.assertNotAllEqual(dataset.test_images, other_seed.test_images)
    self.assertNear(dataset.test_images.mean(), (test / 255.).mean(), 0.01)

  def test_binarization_none_keeps_evaluation_intensities(self):
    directory = self.make_dir()
    _, test = _write_mnist_files(directory)
    dataset = data.load_dataset('mnist', data_dir=directory,
                                binarization='none', validation_size=20)
    self.assertAllClose(dataset.test_images[..., 0], test / 255., atol=1e-7)

  @parameterized.named_parameters(('plain', False), ('gzip', True))
  def test_binarized_mnist_reads_the_three_files(self, compress):
    directory = self.make_dir()
    train, validation, test = _write_binarized_mnist_files(directory,
                                                           compress=compress)
    dataset = data.load_dataset('binarized_mnist', data_dir=directory)
    self.assertEqual(dataset.binarization, 'static')
    self.assertIsNone(dataset.train_labels)
    self.assertIsNone(dataset.test_labels)
    self.assertAllEqual(dataset.train_images, train.reshape(-1, 28, 28, 1))
    self.assertAllEqual(dataset.validation_images,
                        validation.reshape(-1, 28, 28, 1))
    self.assertAllEqual(dataset.test_images, test.reshape(-1, 28, 28, 1))

  def test_frey_face_images_are_columns_read_row_major(self):
    directory = self.make_dir()
    faces = _write_frey_face_file(directory, num_images=50)
    dataset = data.load_dataset('frey_face', data_dir=directory, seed=1)
    self.assertEqual(dataset.image_shape, (28, 20, 1))
    self.assertEqual(dataset.binarization, 'none')
    self.assertIsNone(dataset.train_labels)
    self.assertEqual([len(dataset.train_images), len(dataset.validation_images),
                      len(dataset.test_images)], [40, 5, 5])
    expected = {(faces[:, i].reshape(28, 20) / 255.).astype(np.float32)
                .tobytes(): i for i in range(50)}
    found = [expected.get(image[..., 0].tobytes())
             for split in ('train', 'validation', 'test')
             for image in getattr(dataset, f'{split}_images')]
    # Every image is some column of ff, each column exactly once: the splits
    # are disjoint and cover the file.
    self.assertNotIn(None, found)
    self.assertCountEqual(found, range(50))

  def test_frey_face_validation_follows_the_seed_and_test_does_not(self):
    directory = self.make_dir()
    _write_frey_face_file(directory, num_images=50, do_compression=True)
    first, same, other = [
        data.load_dataset('frey_face', data_dir=directory, seed=seed)
        for seed in (1, 1, 2)]
    self.assertAllEqual(first.validation_images, same.validation_images)
    self.assertNotAllEqual(first.validation_images, other.validation_images)
    self.assertAllEqual(first.test_images, other.test_images)

  def test_frey_face_validation_size(self):
    directory = self.make_dir()
    _write_frey_face_file(directory, num_images=50)
    dataset = data.load_dataset('frey_face', data_dir=directory,
                                validation_size=12)
    self.assertEqual([len(dataset.train_images), len(dataset.validation_images),
                      len(dataset.test_images)], [33, 12, 5])


################################################################################
# load_dataset: errors.
################################################################################


class LoadDatasetErrorsTest(_DataTestCase):

  def test_unknown_dataset_lists_the_known_ones(self):
    with self.assertRaisesRegex(
        data.DataError, r"Unknown dataset 'cifar10'; known datasets: "
        r'binarized_mnist, mnist, fashion_mnist, frey_face'):
      data.load_dataset('cifar10')

  @parameterized.named_parameters(
      ('binarized_dynamic', 'binarized_mnist', 'dynamic', 'static'),
      ('binarized_none', 'binarized_mnist', 'none', 'static'),
      ('mnist_static', 'mnist', 'static', 'dynamic, none'),
      ('fashion_typo', 'fashion_mnist', 'dynamc', 'dynamic, none'),
      ('frey_dynamic', 'frey_face', 'dynamic', 'none'),
  )
  def test_unknown_binarization_lists_the_allowed_ones(self, name, value,
                                                       allowed):
    with self.assertRaisesRegex(
        data.DataError, f"binarization '{value}' is not available for {name}; "
        f'choose one of: {allowed}'):
      data.load_dataset(name, data_dir=self.make_dir(), binarization=value)

  def test_data_dir_that_does_not_exist(self):
    missing = os.path.join(self.make_dir(), 'nowhere')
    with self.assertRaisesRegex(data.DataError,
                                f"data_dir '{missing}' does not exist"):
      data.load_dataset('mnist', data_dir=missing)

  def test_data_dir_lacking_files_lists_them(self):
    directory = self.make_dir()
    _write_mnist_files(directory)
    os.remove(os.path.join(directory, 't10k-labels-idx1-ubyte.gz'))
    with self.assertRaisesRegex(
        data.DataError, f"data_dir '{directory}' lacks 1 of the 4 mnist "
        r'files: t10k-labels-idx1-ubyte\.gz \(or t10k-labels-idx1-ubyte\)'):
      data.load_dataset('mnist', data_dir=directory)

  def test_data_dir_lacking_files_does_not_fall_back(self):
    system = self.make_dir()
    _write_mnist_files(system)
    data.SYSTEM_DATA_DIRS['fashion_mnist'] = (system,)
    with self.assertRaisesRegex(data.DataError, 'lacks 4 of the 4'):
      data.load_dataset('fashion_mnist', data_dir=self.make_dir())

  def test_images_and_labels_count_mismatch(self):
    directory = self.make_dir()
    _write_mnist_files(directory)
    _write_idx(os.path.join(directory, 'train-labels-idx1-ubyte.gz'),
               np.zeros(119))
    with self.assertRaisesRegex(
        data.DataError, r'train-images-idx3-ubyte\.gz has 120 images but '
        r'\S*train-labels-idx1-ubyte\.gz has 119 labels'):
      data.load_dataset('mnist', data_dir=directory, validation_size=20)

  def test_idx_images_of_the_wrong_rank(self):
    directory = self.make_dir()
    _write_mnist_files(directory)
    _write_idx(os.path.join(directory, 't10k-images-idx3-ubyte.gz'),
               np.zeros((30, 784)))
    with self.assertRaisesRegex(
        data.DataError, r't10k-images-idx3-ubyte\.gz should hold uint8 images'):
      data.load_dataset('mnist', data_dir=directory, validation_size=20)

  @parameterized.named_parameters(
      ('nan', 'nan', r'has non-finite pixel values \(first: nan in image 1'),
      ('infinite', 'inf', r'has non-finite pixel values \(first: inf in'),
      ('above_one', '2', r'has pixel values outside \[0, 1\] after scaling '
       r'\(min 0.0, max 2.0\)'),
      ('negative', '-1', r'has pixel values outside \[0, 1\] after scaling '
       r'\(min -1.0'),
      ('not_binary', '0.5', r'should hold only 0 and 1 but has 0.5 in image 1'),
  )
  def test_bad_pixels_name_the_file(self, bad_value, message):
    directory = self.make_dir()
    _write_binarized_mnist_files(directory)
    rows = [['0'] * 784, ['1'] * 783 + [bad_value]]
    _write_amat(os.path.join(directory, 'binarized_mnist_valid.amat'), rows,
                value_format='{}')
    with self.assertRaisesRegex(
        data.DataError, r'binarized_mnist_valid\.amat ' + message):
      data.load_dataset('binarized_mnist', data_dir=directory)

  def test_empty_split_is_rejected(self):
    directory = self.make_dir()
    _write_mnist_files(directory, num_test=0)
    with self.assertRaisesRegex(
        data.DataError,
        r'mnist test split from \S*t10k-images-idx3-ubyte\.gz holds no images'):
      data.load_dataset('mnist', data_dir=directory, validation_size=20)

  def test_empty_amat_file_is_rejected(self):
    directory = self.make_dir()
    _write_binarized_mnist_files(directory)
    _write_bytes(os.path.join(directory, 'binarized_mnist_test.amat'), b'')
    with self.assertRaisesRegex(data.DataError,
                                r'binarized_mnist_test\.amat holds no images'):
      data.load_dataset('binarized_mnist', data_dir=directory)

  @parameterized.named_parameters(
      ('zero', 0, 'must be at least 1'),
      ('all_of_train', 120, 'validation_size=120 leaves no training images'),
      ('not_an_int', 12.5, 'must be an integer or None, got 12.5'),
  )
  def test_bad_validation_size(self, validation_size, message):
    directory = self.make_dir()
    _write_mnist_files(directory)
    with self.assertRaisesRegex(data.DataError, message):
      data.load_dataset('mnist', data_dir=directory,
                        validation_size=validation_size)

  def test_binarized_mnist_has_a_fixed_validation_split(self):
    directory = self.make_dir()
    _write_binarized_mnist_files(directory)
    with self.assertRaisesRegex(data.DataError,
                                'fixed validation split of 6 images; '
                                'validation_size must be None, got 3'):
      data.load_dataset('binarized_mnist', data_dir=directory,
                        validation_size=3)

  def test_negative_seed(self):
    with self.assertRaisesRegex(data.DataError,
                                'seed must be a non-negative integer, got -1'):
      data.load_dataset('mnist', data_dir=self.make_dir(), seed=-1)

  def test_frey_face_file_without_ff(self):
    directory = self.make_dir()
    scipy.io.savemat(os.path.join(directory, 'frey_rawface.mat'),
                     {'faces': np.zeros((560, 3), np.uint8)})
    with self.assertRaisesRegex(
        data.DataError, r'frey_rawface\.mat has no variable "ff" \(variables '
        r"found: \['faces'\]\)"):
      data.load_dataset('frey_face', data_dir=directory)

  def test_frey_face_ff_of_the_wrong_shape(self):
    directory = self.make_dir()
    scipy.io.savemat(os.path.join(directory, 'frey_rawface.mat'),
                     {'ff': np.zeros((28, 20), np.uint8)})
    with self.assertRaisesRegex(
        data.DataError, r'variable "ff" should be uint8 of shape \[560, N\], '
        r'but is uint8 of shape \(28, 20\)'):
      data.load_dataset('frey_face', data_dir=directory)

  def test_frey_face_with_too_few_images_for_a_test_split(self):
    directory = self.make_dir()
    _write_frey_face_file(directory, num_images=4)
    with self.assertRaisesRegex(
        data.DataError, r'frey_rawface\.mat holds only 4 images, too few'):
      data.load_dataset('frey_face', data_dir=directory)

  def test_frey_face_file_that_is_not_a_mat_file(self):
    directory = self.make_dir()
    _write_bytes(os.path.join(directory, 'frey_rawface.mat'), b'<html>' * 30)
    with self.assertRaisesRegex(
        data.DataError, r'frey_rawface\.mat is not a MATLAB level-5 MAT file'):
      data.load_dataset('frey_face', data_dir=directory)


################################################################################
# Where files come from: data_dir, system location, cache, download.
################################################################################


class LookupTest(_DataTestCase):

  def _write_fashion(self, num_train):
    directory = self.make_dir()
    _write_mnist_files(directory, num_train=num_train, num_test=5)
    return directory

  def test_data_dir_then_system_location_then_cache(self):
    data_dir = self._write_fashion(num_train=31)
    system_dir = self._write_fashion(num_train=32)
    cache_root = self.make_dir()
    cache = os.path.join(cache_root, 'fashion_mnist')
    os.makedirs(cache)
    _write_mnist_files(cache, num_train=33, num_test=5)
    data.SYSTEM_DATA_DIRS['fashion_mnist'] = (
        os.path.join(self.make_dir(), 'absent'), system_dir)

    def load(**kwargs):
      dataset = data.load_dataset('fashion_mnist', validation_size=1,
                                  cache_dir=cache_root, download=False,
                                  **kwargs)
      return len(dataset.train_images) + 1, dataset.source

    self.assertEqual(load(data_dir=data_dir), (31, f'data_dir {data_dir}'))
    self.assertEqual(load(), (32, f'system location {system_dir}'))
    data.SYSTEM_DATA_DIRS['fashion_mnist'] = ()
    self.assertEqual(load(), (33, f'download cache {cache}'))

  def test_system_location_missing_a_file_is_skipped(self):
    system_dir = self._write_fashion(num_train=32)
    os.remove(os.path.join(system_dir, 'train-images-idx3-ubyte.gz'))
    data.SYSTEM_DATA_DIRS['fashion_mnist'] = (system_dir,)
    with self.assertRaisesRegex(
        data.DataError, f'{system_dir}: lacks train-images-idx3-ubyte.gz'):
      data.load_dataset('fashion_mnist', download=False)

  def test_default_cache_root_is_the_environment_variable(self):
    cache_root = self.make_dir()
    os.makedirs(os.path.join(cache_root, 'mnist'))
    _write_mnist_files(os.path.join(cache_root, 'mnist'))
    with mock.patch.dict(os.environ, {'TFP_VAE_DATA_DIR': cache_root}):
      dataset = data.load_dataset('mnist', validation_size=20, download=False)
    self.assertEqual(dataset.source,
                     f'download cache {os.path.join(cache_root, "mnist")}')

  def test_nothing_found_lists_every_place_and_how_to_get_it(self):
    absent = os.path.join(self.make_dir(), 'absent')
    data.SYSTEM_DATA_DIRS['fashion_mnist'] = (absent,)
    cache_root = self.make_dir()
    with self.assertRaises(data.DataError) as raised:
      data.load_dataset('fashion_mnist', cache_dir=cache_root, download=False)
    message = str(raised.exception)
    self.assertIn(f'{absent}: does not exist', message)
    self.assertIn(f'{os.path.join(cache_root, "fashion_mnist")}: does not '
                  'exist', message)
    self.assertIn(data.DOWNLOAD_URL_BASES['fashion_mnist'], message)
    self.assertIn('not downloaded (download=False)', message)
    self.assertIn('apt-get install dataset-fashion-mnist', message)
    self.assertIn('data_dir', message)

  def test_corrupt_cached_file_says_to_delete_it(self):
    cache_root = self.make_dir()
    cache = os.path.join(cache_root, 'frey_face')
    os.makedirs(cache)
    _write_bytes(os.path.join(cache, 'frey_rawface.mat'), b'\0' * 10)
    with self.assertRaisesRegex(
        data.DataError, r'frey_rawface\.mat is not a MATLAB.*in the download '
        'cache; delete it'):
      data.load_dataset('frey_face', cache_dir=cache_root, download=False)


class DownloadTest(_DataTestCase):

  @parameterized.named_parameters(
      ('mnist', 'mnist', _IDX_NAMES, '.gz'),
      ('binarized_mnist', 'binarized_mnist', _AMAT_NAMES, ''),
      ('frey_face', 'frey_face', ('frey_rawface.mat',), ''),
  )
  def test_downloads_into_the_cache_then_reads_it(self, name, file_names,
                                                  suffix):
    served = os.path.join(self.make_dir(), 'files')
    os.makedirs(served)
    if name == 'mnist':
      _write_mnist_files(served)
    elif name == 'binarized_mnist':
      _write_binarized_mnist_files(served)
    else:
      _write_frey_face_file(served)
    expected = data.load_dataset(name, data_dir=served, validation_size=None
                                 if name != 'mnist' else 20)
    cache_root = self.make_dir()
    cache = os.path.join(cache_root, name)
    with _local_server(os.path.dirname(served)) as url:
      with mock.patch.dict(data.DOWNLOAD_URL_BASES, {name: url + '/files/'}):
        dataset = data.load_dataset(
            name, cache_dir=cache_root,
            validation_size=20 if name == 'mnist' else None)
    self.assertStartsWith(dataset.source, f'download cache {cache} '
                          f'(downloaded from {url}/files/)')
    self.assertCountEqual(os.listdir(cache),
                          [file_name + suffix for file_name in file_names])
    self.assertAllEqual(dataset.train_images, expected.train_images)
    self.assertAllEqual(dataset.test_images, expected.test_images)
    # The next load finds the files without the server.
    again = data.load_dataset(name, cache_dir=cache_root, download=False,
                              validation_size=20 if name == 'mnist' else None)
    self.assertEqual(again.source, f'download cache {cache}')

  def test_http_404_lists_where_it_looked(self):
    cache_root = self.make_dir()
    with _local_server(self.make_dir()) as url:
      with mock.patch.dict(data.DOWNLOAD_URL_BASES, {'mnist': url}):
        with self.assertRaises(data.DataError) as raised:
          data.load_dataset('mnist', cache_dir=cache_root)
    message = str(raised.exception)
    self.assertIn('Could not find the mnist dataset', message)
    self.assertIn(f'{os.path.join(cache_root, "mnist")}: does not exist',
                  message)
    self.assertIn(f'{url}/train-images-idx3-ubyte.gz: download failed: HTTP '
                  'Error 404', message)
    self.assertIn('data_dir', message)
    self.assertEqual(os.listdir(os.path.join(cache_root, 'mnist')), [])

  def test_refused_connection_lists_where_it_looked(self):
    url = f'http://127.0.0.1:{_unused_port()}/data'
    cache_root = self.make_dir()
    with mock.patch.dict(os.environ, {'no_proxy': '127.0.0.1'}), \
        mock.patch.dict(data.DOWNLOAD_URL_BASES, {'frey_face': url}):
      with self.assertRaisesRegex(
          data.DataError, f'{url}/frey_rawface.mat: download failed: '
          '.*refused'):
        data.load_dataset('frey_face', cache_dir=cache_root)

  def test_interrupted_download_leaves_no_file(self):
    cache_root = self.make_dir()
    with _local_server(handler=_TruncatingHandler) as url:
      with mock.patch.dict(data.DOWNLOAD_URL_BASES, {'frey_face': url}):
        with self.assertRaisesRegex(data.DataError,
                                    'frey_rawface.mat: download failed'):
          data.load_dataset('frey_face', cache_dir=cache_root)
    self.assertEqual(os.listdir(os.path.join(cache_root, 'frey_face')), [])


################################################################################
# The input pipeline: make_training_dataset, make_evaluation_dataset.
################################################################################

_IMAGE_SHAPE = (8, 8, 1)


def _take_batches(dataset, count):
  return np.stack([batch.numpy() for batch in dataset.take(count)])


class MakeTrainingDatasetTest(tf.test.TestCase, parameterized.TestCase):
  """The training stream: order, resume position and binarization."""

  # 50 images in batches of 8: 6 full batches per epoch, 2 images left out.
  NUM_IMAGES, BATCH = 50, 8
  STEPS = NUM_IMAGES // BATCH

  def numbered_images(self):
    """Image i has every pixel equal to i / NUM_IMAGES, so it can be named."""
    values = np.arange(self.NUM_IMAGES, dtype=np.float32) / self.NUM_IMAGES
    return np.broadcast_to(values[:, None, None, None],
                           (self.NUM_IMAGES,) + _IMAGE_SHAPE).copy()

  def image_ids(self, batches):
    ids = np.round(batches[..., 0, 0, 0] * self.NUM_IMAGES).astype(int)
    # The batches hold these images, whole and unchanged.
    self.assertAllEqual(batches, self.numbered_images()[ids])
    return ids  # [num_batches, BATCH]

  def test_each_epoch_is_a_new_permutation_in_full_batches(self):
    num_epochs = 3
    stream = data.make_training_dataset(self.numbered_images(), self.BATCH,
                                        seed=5)
    self.assertEqual(stream.element_spec.dtype, tf.float32)
    batches = _take_batches(stream, num_epochs * self.STEPS)
    self.assertEqual(batches.shape, (num_epochs * self.STEPS, self.BATCH) +
                     _IMAGE_SHAPE)
    ids = self.image_ids(batches).reshape(num_epochs, -1)
    orders = []
    for epoch_ids in ids:
      # Each image at most once per epoch; STEPS full batches of it.
      self.assertLen(set(epoch_ids), self.STEPS * self.BATCH)
      self.assertTrue(set(epoch_ids) <= set(range(self.NUM_IMAGES)))
      orders.append(tuple(epoch_ids))
    self.assertLen(set(orders), num_epochs, 'epochs repeat an order')
    # Over three epochs, the images an epoch leaves out are not always the
    # same ones.
    self.assertGreater(len(set(ids.ravel())), self.STEPS * self.BATCH)

  def test_the_order_is_a_function_of_the_seed(self):
    images = self.numbered_images()
    first = _take_batches(
        data.make_training_dataset(images, self.BATCH, seed=5), 12)
    again = _take_batches(
        data.make_training_dataset(images, self.BATCH, seed=5), 12)
    other_seed = _take_batches(
        data.make_training_dataset(images, self.BATCH, seed=6), 12)
    self.assertAllEqual(first, again)
    self.assertNotAllClose(first, other_seed)

  @parameterized.parameters((0, 0), (0, 1), (0, 5), (1, 0), (1, 3), (2, 5))
  def test_a_start_position_yields_the_tail_of_the_stream(self, start_epoch,
                                                          start_step):
    images = self.numbered_images()
    count = 8
    whole = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=3), 3 * self.STEPS + count)
    tail = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=3, start_epoch=start_epoch,
        start_step=start_step), count)
    start = start_epoch * self.STEPS + start_step
    self.assertAllEqual(tail, whole[start:start + count])

  def test_a_start_position_yields_the_tail_of_a_binarized_stream(self):
    images = np.random.default_rng(0).uniform(
        size=(self.NUM_IMAGES,) + _IMAGE_SHAPE).astype(np.float32)
    whole = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=3, dynamic_binarization=True), 20)
    tail = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=3, start_epoch=1, start_step=4,
        dynamic_binarization=True), 20 - self.STEPS - 4)
    self.assertAllEqual(tail, whole[self.STEPS + 4:])

  def test_dynamic_binarization_draws_afresh_each_epoch(self):
    # All images alike, so batches differ only by their binarization.
    images = np.full((self.NUM_IMAGES,) + _IMAGE_SHAPE, 0.5, np.float32)

    def stream(seed):
      return _take_batches(data.make_training_dataset(
          images, self.BATCH, seed=seed, dynamic_binarization=True),
                           2 * self.STEPS)

    batches = stream(seed=2)
    self.assertEqual(set(np.unique(batches)), {0.0, 1.0})
    self.assertAllClose(batches.mean(), 0.5, atol=0.05)
    epoch_0, epoch_1 = batches[:self.STEPS], batches[self.STEPS:]
    self.assertNotAllClose(epoch_0, epoch_1)
    self.assertNotAllClose(epoch_0[0], epoch_0[1])  # and each batch
    self.assertAllEqual(stream(seed=2), batches)  # reproducible
    self.assertNotAllClose(stream(seed=3), batches)

  def test_dynamic_binarization_follows_the_intensities(self):
    # Half the pixels black, half white: binarization keeps them as they are.
    images = np.zeros((self.NUM_IMAGES,) + _IMAGE_SHAPE, np.float32)
    images[:, :4] = 1.0
    batches = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=2, dynamic_binarization=True), self.STEPS)
    self.assertAllEqual(batches, np.broadcast_to(images[0], batches.shape))

  def test_without_dynamic_binarization_pixels_pass_unchanged(self):
    images = self.numbered_images()
    batches = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=2), self.STEPS)
    self.image_ids(batches)  # every batch holds whole, unchanged images

  def test_a_class_sorted_input_gives_mixed_first_batches(self):
    # Ten classes of 20 images, sorted by class as binarized MNIST is.
    num_classes, per_class, batch = 10, 20, 16
    labels = np.repeat(np.arange(num_classes), per_class)
    images = np.broadcast_to(
        (labels / num_classes).astype(np.float32)[:, None, None, None],
        (len(labels),) + _IMAGE_SHAPE).copy()
    steps = len(labels) // batch
    batches = _take_batches(data.make_training_dataset(
        images, batch, seed=0), 2 * steps)
    for epoch in range(2):
      first_batch = batches[epoch * steps]
      classes = set(np.round(first_batch[:, 0, 0, 0] * num_classes).astype(
          int))
      # In file order it would be one class; a shuffle gives about eight.
      self.assertGreaterEqual(len(classes), 5, f'epoch {epoch}: {classes}')

  def test_each_pixel_is_one_with_its_intensity_as_probability(self):
    # Every image alike, so pixel (i, j) is a Bernoulli(intensity[i, j])
    # draw in every batch: its frequency of ones approaches the intensity.
    intensities = np.random.default_rng(0).uniform(
        size=_IMAGE_SHAPE).astype(np.float32)
    images = np.broadcast_to(intensities, (self.NUM_IMAGES,) +
                             _IMAGE_SHAPE).copy()
    batches = _take_batches(data.make_training_dataset(
        images, self.BATCH, seed=11, dynamic_binarization=True),
                            10 * self.STEPS)  # [60, 8, 8, 8, 1]
    self.assertAllInSet(batches, (0., 1.))
    self.assertEqual(batches.dtype, np.float32)
    # 480 draws per pixel: the frequency's standard deviation is <= 0.023.
    frequencies = batches.mean(axis=(0, 1))
    self.assertLess(np.abs(frequencies - intensities).max(), 0.1)
    self.assertNear(batches.mean(), intensities.mean(), 0.01)


class CompactStorageTest(tf.test.TestCase, parameterized.TestCase):
  """Both streams hold 8-bit pixels as uint8 and give them back bit for bit.

  The kinds of pixels the datasets have: binary ones, and the grey levels
  k / 255 of the IDX files (every one of the 256); other values are held as
  float32.
  """

  def images(self, kind):
    rng = np.random.default_rng(5)
    if kind == 'binary':
      return (rng.random((40, 16, 16, 1)) < 0.5).astype(np.float32)
    if kind == 'grey':  # Image i's 256 pixels are the 256 levels, permuted.
      levels = np.arange(256, dtype=np.uint8)
      codes = np.stack([rng.permutation(levels) for _ in range(40)])
      return (codes.reshape(40, 16, 16, 1).astype(np.float32) /
              np.float32(255.))
    images = (rng.integers(0, 256, (40, 16, 16, 1)).astype(np.float32) /
              np.float32(255.))
    # One pixel off the grid, by one ulp.
    images[17, 3, 4, 0] = np.nextafter(images[17, 3, 4, 0], np.float32(2.))
    return images

  @parameterized.parameters(('binary', tf.uint8), ('grey', tf.uint8),
                            ('one_pixel_off_the_grid', tf.float32))
  def test_the_storage_dtype(self, kind, dtype):
    codes, _ = pipeline_lib._compact(self.images(kind))
    self.assertEqual(codes.dtype, dtype)

  @parameterized.parameters('binary', 'grey', 'one_pixel_off_the_grid')
  def test_evaluation_batches_are_the_pixels_bit_for_bit(self, kind):
    images = self.images(kind)
    batches = np.concatenate(
        [b.numpy() for b, _, _ in data.make_evaluation_dataset(images, 16)])
    self.assertEqual(batches.dtype, np.float32)
    self.assertAllEqual(batches[:40].view(np.uint32), images.view(np.uint32))

  @parameterized.parameters('binary', 'grey', 'one_pixel_off_the_grid')
  def test_training_batches_are_the_pixels_bit_for_bit(self, kind):
    images = self.images(kind)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(40), seed=tf.constant([4, 0], tf.int64)).numpy()
    batches = _take_batches(data.make_training_dataset(images, 8, seed=4), 5)
    self.assertAllEqual(batches.reshape(40, 16, 16, 1).view(np.uint32),
                        images[order].view(np.uint32))

  def test_dynamic_binarization_is_that_of_float32_storage(self):
    # The grey levels and the same images with one pixel off the grid (so
    # stored as float32) give the same draws everywhere but at that pixel.
    grey = self.images('grey')
    off_grid = grey.copy()
    off_grid[17, 3, 4, 0] = np.nextafter(grey[17, 3, 4, 0], np.float32(2.))
    self.assertEqual(pipeline_lib._compact(off_grid)[0].dtype, tf.float32)
    draws = [_take_batches(data.make_training_dataset(
        images, 8, seed=6, dynamic_binarization=True), 10)
             for images in (grey, off_grid)]
    elsewhere = np.ones(draws[0].shape, bool)
    elsewhere[..., 3, 4, 0] = False
    self.assertAllEqual(draws[0][elsewhere], draws[1][elsewhere])


class NoAutotuneThreadTest(tf.test.TestCase):
  """Both streams run without tf.data's autotuning thread.

  An autotuned iterator's destructor waits for that thread, which under
  `fit` lasted up to a minute after the last epoch (issue 16's post-fit
  stall; BENCHMARKS.md). Without the tuning model there is no thread to
  wait for.
  """

  def test_the_training_stream_is_not_autotuned(self):
    dataset = data.make_training_dataset(np.ones((16, 2, 2, 1)), 4, seed=0)
    self.assertFalse(dataset.options().autotune.enabled)

  def test_the_evaluation_stream_is_not_autotuned(self):
    dataset = data.make_evaluation_dataset(np.ones((10, 2, 2, 1)), 4)
    self.assertFalse(dataset.options().autotune.enabled)


class MakeEvaluationDatasetTest(tf.test.TestCase):

  def test_batches_keep_the_order_and_every_image(self):
    images = np.arange(50, dtype=np.float64).reshape(50, 1, 1, 1) / 50.
    batches = list(data.make_evaluation_dataset(images, 16))
    self.assertLen(batches, 4)
    for batch_images, target, weights in batches:
      self.assertEqual(batch_images.dtype, tf.float32)
      self.assertEqual(batch_images.shape, (16, 1, 1, 1))
      self.assertAllEqual(target, weights)  # y is unused: no None (see why).
      self.assertEqual(weights.shape, (16,))
    padded_images = np.concatenate([b[0] for b in batches])
    self.assertAllEqual(padded_images[:50], images.astype(np.float32))
    self.assertAllEqual(padded_images[50:], np.zeros((14, 1, 1, 1)))

  def test_the_padding_and_only_the_padding_weighs_zero(self):
    images = np.ones((50, 1, 1, 1), np.float32)
    weights = np.concatenate(
        [w for _, _, w in data.make_evaluation_dataset(images, 16)])
    self.assertAllEqual(weights, [1.0] * 50 + [0.0] * 14)

  def test_a_divisible_split_has_no_padding(self):
    images = np.ones((32, 2, 2, 1), np.float32)
    weights = np.concatenate(
        [w for _, _, w in data.make_evaluation_dataset(images, 16)])
    self.assertAllEqual(weights, np.ones(32))

  def test_every_batch_has_one_static_shape(self):
    # What lets the XLA-compiled evaluation step compile once.
    dataset = data.make_evaluation_dataset(np.ones((10, 3, 3, 1)), 4)
    images_spec, _, weights_spec = dataset.element_spec
    self.assertEqual(images_spec.shape, (4, 3, 3, 1))
    self.assertEqual(weights_spec.shape, (4,))

  def test_a_second_pass_gives_the_same_batches(self):
    images = np.random.default_rng(1).uniform(size=(10, 3)).astype(np.float32)
    dataset = data.make_evaluation_dataset(images, 4)
    first = [(b.numpy(), w.numpy()) for b, _, w in dataset]
    second = [(b.numpy(), w.numpy()) for b, _, w in dataset]
    for (b1, w1), (b2, w2) in zip(first, second):
      self.assertAllEqual(b1, b2)
      self.assertAllEqual(w1, w2)


################################################################################
# The test data files of tests/conftest.py, through load_dataset.
################################################################################


@pytest.mark.usefixtures('dataset_files')
class TestDataFilesTest(_DataTestCase):
  """The session's small files (tests/_test_data.py) load as the real ones.

  They are written from the formats' definitions, independently of the
  readers, so these tests check the readers on files like the real ones,
  and the other test modules can rely on them.
  """

  def test_binarized_mnist(self):
    dataset = data.load_dataset(
        'binarized_mnist', data_dir=_test_data.data_dir('binarized_mnist'))
    sizes = _test_data.BINARIZED_MNIST_SIZES
    self.assertEqual(
        [len(dataset.train_images), len(dataset.validation_images),
         len(dataset.test_images)],
        [sizes['train'], sizes['valid'], sizes['test']])
    self.assertEqual(dataset.image_shape,
                     names.DATASET_IMAGE_SHAPES['binarized_mnist'])
    self.assertEqual(dataset.binarization,
                     names.DATASET_BINARIZATIONS['binarized_mnist'][0])
    for images in (dataset.train_images, dataset.test_images):
      self.assertAllInSet(images, (0., 1.))
      self.assertBetween(images.mean(), 0.05, 0.3)  # Mostly background.

  @parameterized.parameters('mnist', 'fashion_mnist')
  def test_idx_datasets(self, name):
    validation_size = 100
    dataset = data.load_dataset(name, data_dir=_test_data.data_dir(name),
                                validation_size=validation_size)
    self.assertEqual(
        [len(dataset.train_images), len(dataset.validation_images),
         len(dataset.test_images)],
        [_test_data.IDX_TRAIN_SIZE - validation_size, validation_size,
         _test_data.IDX_TEST_SIZE])
    self.assertEqual(dataset.image_shape, names.DATASET_IMAGE_SHAPES[name])
    self.assertEqual(dataset.binarization,
                     names.DATASET_BINARIZATIONS[name][0])
    self.assertAllEqual(np.unique(dataset.train_labels),
                        np.arange(_test_data.NUM_CLASSES))
    # Training images keep their grey levels; evaluation splits are binary.
    self.assertGreater(len(np.unique(dataset.train_images)), 2)
    self.assertAllInSet(dataset.test_images, (0., 1.))

  def test_frey_face(self):
    dataset = data.load_dataset('frey_face',
                                data_dir=_test_data.data_dir('frey_face'))
    held_out = _test_data.FREY_FACE_SIZE // 10
    self.assertEqual(
        [len(dataset.train_images), len(dataset.validation_images),
         len(dataset.test_images)],
        [_test_data.FREY_FACE_SIZE - 2 * held_out, held_out, held_out])
    self.assertEqual(dataset.image_shape,
                     names.DATASET_IMAGE_SHAPES['frey_face'])
    self.assertEqual(dataset.binarization,
                     names.DATASET_BINARIZATIONS['frey_face'][0])
    self.assertGreater(len(np.unique(dataset.train_images)), 2)


if __name__ == '__main__':
  absltest.main()
