"""Image datasets for VAEs: file readers, splits and `tf.data` input pipelines.

Four datasets, each as float32 images in [0, 1] of shape `[N, H, W, 1]`:

  binarized_mnist  Larochelle & Murray's statically binarized MNIST (2011),
                   fixed 50000/10000/10000 split, `.amat` text files.
  mnist            LeCun et al.'s MNIST, IDX files; 10000 training images are
                   carved out (seeded) as the validation split.
  fashion_mnist    Xiao et al.'s Fashion-MNIST (2017), same files and splits.
  frey_face        Brendan Frey's 1965 face images (28x20), MATLAB v5 file;
                   10% test (a fixed draw) and 10% validation (seeded).

`load_dataset` finds the files (an explicit `data_dir`, then the system
location a Debian package installs, then a download cache it may fill from
the dataset's canonical URL), reads and validates them, and splits them.
`make_input_pipeline` turns one split into shuffled batches, optionally with
dynamic binarization: a fresh Bernoulli draw per batch and epoch.

Every data problem (a missing, truncated or corrupt file, bad pixel values, an
impossible split or batch size) raises `DataError`, whose message names the
file or value at fault. Nothing ever falls back to another dataset or to
random data.

The readers (`read_amat`, `read_idx`, `read_mat_v5`) read plain or gzipped
files (by the `.gz` suffix) and parse them with numpy only: no pickle, no
scipy.

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
import gzip
import http.client
import math
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = [
    'DATASET_NAMES',
    'DOWNLOAD_URL_BASES',
    'DataError',
    'ImageDataset',
    'SYSTEM_DATA_DIRS',
    'load_dataset',
    'make_input_pipeline',
    'read_amat',
    'read_idx',
    'read_mat_v5',
]

DATASET_NAMES = ('binarized_mnist', 'mnist', 'fashion_mnist', 'frey_face')

# Where each dataset's canonical files are served; `<base>/<file name>`.
# Module-level so that tests (or a mirror) can point them elsewhere.
DOWNLOAD_URL_BASES = {
    'binarized_mnist':
        'http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist',
    'mnist': 'https://storage.googleapis.com/cvdf-datasets/mnist',
    'fashion_mnist':
        'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com',
    'frey_face': 'https://cs.nyu.edu/~roweis/data',
}

# Directories that system packages install datasets into, searched in order
# before the download cache. Debian's `dataset-fashion-mnist` package puts
# the four IDX files in /usr/share/datasets/fashion-mnist.
SYSTEM_DATA_DIRS = {
    'fashion_mnist': ('/usr/share/datasets/fashion-mnist',),
}

# How to install a dataset from a system package, where one exists.
_SYSTEM_PACKAGE_HINTS = {
    'fashion_mnist': ('apt-get install dataset-fashion-mnist (Debian/Ubuntu; '
                      'installs /usr/share/datasets/fashion-mnist)'),
}

_DOWNLOAD_TIMEOUT_SECONDS = 60
_CACHE_DIR_ENVIRONMENT_VARIABLE = 'TFP_VAE_DATA_DIR'

_IDX_FILE_NAMES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                   't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
_AMAT_FILE_NAMES = ('binarized_mnist_train.amat', 'binarized_mnist_valid.amat',
                    'binarized_mnist_test.amat')
_FREY_FACE_FILE_NAME = 'frey_rawface.mat'

# Allowed binarizations per dataset; the first is the default.
_BINARIZATIONS = {
    'binarized_mnist': ('static',),
    'mnist': ('dynamic', 'none'),
    'fashion_mnist': ('dynamic', 'none'),
    'frey_face': ('none',),
}
_FILE_NAMES = {
    'binarized_mnist': _AMAT_FILE_NAMES,
    'mnist': _IDX_FILE_NAMES,
    'fashion_mnist': _IDX_FILE_NAMES,
    'frey_face': (_FREY_FACE_FILE_NAME,),
}

_SPLITS = ('train', 'validation', 'test')
_MNIST_VALIDATION_SIZE = 10000
_BINARIZED_MNIST_PIXELS = 28 * 28
_FREY_FACE_HEIGHT, _FREY_FACE_WIDTH = 28, 20
_FREY_FACE_HELD_OUT_FRACTION = 0.1
# The Frey Face test split is drawn with this fixed seed, not the run's seed,
# so that runs with different seeds are scored on the same test images.
_FREY_FACE_TEST_SPLIT_SEED = 20140101
# Second word of the numpy seed for the one-off binarization of the
# validation and test splits, keeping that stream apart from the split's.
_EVALUATION_BINARIZATION_STREAM = 1


class DataError(ValueError):
  """A dataset file is missing, unreadable or corrupt, or data is invalid."""


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no ==.
class ImageDataset:
  """One split set of a dataset, as float32 numpy arrays in [0, 1].

  Attributes:
    name: one of `DATASET_NAMES`.
    train_images: `[N_train, H, W, 1]` float32 in [0, 1]. Under 'dynamic'
      binarization these are grey-level intensities (Bernoulli means) that
      `make_input_pipeline(dynamic_binarization=True)` binarizes afresh each
      epoch; otherwise they are the pixels the model sees.
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


################################################################################
# Readers.
################################################################################


def _read_file_bytes(path):
  """Returns the contents of `path`, gunzipped if its name ends in `.gz`."""
  try:
    with open(path, 'rb') as file:
      contents = file.read()
  except OSError as error:
    raise DataError(f'Cannot read {path}: {error}') from error
  if path.endswith('.gz'):
    try:
      contents = gzip.decompress(contents)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
      raise DataError(
          f'{path} is not a valid gzip file (truncated or corrupt): '
          f'{error}') from error
  return contents


def read_amat(path, values_per_row=_BINARIZED_MNIST_PIXELS):
  """Reads a `.amat` text file (one image per line, values split by spaces).

  This is the format of Larochelle's binarized MNIST: each line holds 784
  values, '0' or '1', separated by single spaces. Files of single-digit
  values (whatever the whitespace) are parsed with vectorized numpy; anything
  else (decimal values, errors) goes through a slower line-by-line parser
  that names the line of any problem.

  Args:
    path: str, path to the file; gunzipped first if it ends in `.gz`.
    values_per_row: int, how many values each line must hold (default 784).

  Returns:
    `[N, values_per_row]` float32 array, row i from line i (blank lines are
    skipped).

  Raises:
    DataError: if the file cannot be read or gunzipped, is empty, a line
      holds the wrong number of values, or a value is not a number (the
      message names the line).
  """
  text = _read_file_bytes(path)
  rows = _parse_single_digit_amat(text, values_per_row)
  if rows is None:  # Retry with Windows line ends, tabs, extra blanks undone.
    rows = _parse_single_digit_amat(_normalize_whitespace(text),
                                    values_per_row)
  if rows is None:  # On the original text, so line numbers are right.
    rows = _parse_amat_line_by_line(text, values_per_row, path)
  if not rows.shape[0]:
    raise DataError(f'{path} holds no images.')
  return rows


def _parse_single_digit_amat(text, values_per_row):
  """Parses rows of single digits split by single spaces; `None` otherwise."""
  # Such a row is 2 * values_per_row bytes: digit, space, ..., digit, '\n'.
  # Viewing the file as [N, row bytes] puts digits in the even columns and
  # separators in the odd ones, so the whole check is a few array compares.
  row_bytes = 2 * values_per_row
  if text and not text.endswith(b'\n'):
    text += b'\n'  # A last line without its newline.
  if not text or len(text) % row_bytes:
    return None
  characters = np.frombuffer(text, np.uint8).reshape(-1, row_bytes)
  separators = characters[:, 1::2]  # [N, values_per_row]
  if not (np.all(separators[:, :-1] == ord(' ')) and
          np.all(separators[:, -1] == ord('\n'))):
    return None
  digits = characters[:, 0::2] - np.uint8(ord('0'))  # Non-digits wrap > 9.
  if np.any(digits > 9):
    return None
  return digits.astype(np.float32)


def _normalize_whitespace(text):
  """Single spaces between values, one '\\n' after each non-blank line."""
  # bytes.replace runs in C; a regular expression here takes seconds.
  text = text.translate(bytes.maketrans(b'\t\r\f\v', b'    '))
  for run, replacement in ((b'  ', b' '), (b' \n', b'\n'), (b'\n ', b'\n'),
                           (b'\n\n', b'\n')):
    while run in text:
      text = text.replace(run, replacement)
  return text.lstrip(b' \n')


def _parse_amat_line_by_line(text, values_per_row, path):
  """Parses any whitespace-separated numbers, naming the line of an error."""
  rows = []
  for line_number, line in enumerate(text.splitlines(), start=1):
    tokens = line.split()
    if not tokens:
      continue
    if len(tokens) != values_per_row:
      raise DataError(
          f'{path}, line {line_number}: expected {values_per_row} values, '
          f'found {len(tokens)}.')
    try:
      rows.append(np.array(tokens).astype(np.float32))
    except ValueError:
      for token in tokens:
        try:
          float(token)
        except ValueError:
          raise DataError(
              f'{path}, line {line_number}: {token.decode(errors="replace")!r}'
              ' is not a number.') from None
      raise
  if not rows:
    return np.zeros([0, values_per_row], np.float32)
  return np.stack(rows)


# IDX type codes (third byte of the magic number) to big-endian dtypes.
_IDX_DTYPES = {
    0x08: np.dtype('>u1'),
    0x09: np.dtype('>i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}


def read_idx(path):
  """Reads an IDX file (the format of the MNIST and Fashion-MNIST files).

  The header is a 4-byte magic number (two zero bytes, a type code, 0x08 for
  uint8, and the number of dimensions), then each dimension as a big-endian
  uint32, then the values in row-major order.

  Args:
    path: str, path to the file; gunzipped first if it ends in `.gz`.

  Returns:
    numpy array of the shape the header gives, in native byte order: uint8
    for the image and label files (other IDX types map to their dtypes).

  Raises:
    DataError: if the file cannot be read or gunzipped, the magic number is
      wrong, or the data size disagrees with the header's shape.
  """
  contents = _read_file_bytes(path)
  if len(contents) < 4:
    raise DataError(f'{path} is too short ({len(contents)} bytes) to be an '
                    'IDX file.')
  zero_high, zero_low, type_code, num_dims = contents[:4]
  if zero_high or zero_low or type_code not in _IDX_DTYPES or not num_dims:
    raise DataError(
        f'{path} has a bad IDX magic number 0x{contents[:4].hex()}: expected '
        '0x0000, a type code (0x08 for uint8) and the number of dimensions.')
  header_bytes = 4 + 4 * num_dims
  if len(contents) < header_bytes:
    raise DataError(f'{path} is truncated inside its IDX header.')
  shape = struct.unpack(f'>{num_dims}I', contents[4:header_bytes])
  dtype = _IDX_DTYPES[type_code]
  expected_bytes = math.prod(shape) * dtype.itemsize
  actual_bytes = len(contents) - header_bytes
  if actual_bytes != expected_bytes:
    raise DataError(
        f'{path}: the IDX header says shape {shape} ({expected_bytes} bytes '
        f'of data), but the file holds {actual_bytes} bytes of data.')
  values = np.frombuffer(contents, dtype, offset=header_bytes)
  return values.reshape(shape).astype(dtype.newbyteorder('='))


# MAT-file level 5 data types (the tag's type field) that hold numbers.
_MAT_NUMERIC_DTYPES = {
    1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 9: 'f8',
    12: 'i8', 13: 'u8',
}
_MI_INT32 = 5
_MI_UINT32 = 6
_MI_MATRIX = 14
_MI_COMPRESSED = 15
# MATLAB array classes (low byte of the array flags) of numeric matrices.
_MAT_CLASS_DTYPES = {
    6: 'f8', 7: 'f4', 8: 'i1', 9: 'u1', 10: 'i2', 11: 'u2', 12: 'i4',
    13: 'u4', 14: 'i8', 15: 'u8',
}
_MAT_COMPLEX_FLAG = 0x0800
_MAT_LOGICAL_FLAG = 0x0200
_MAT_HEADER_BYTES = 128


def read_mat_v5(path):
  """Reads the numeric matrices of a MATLAB level-5 MAT file (v6/v7).

  The file is a 128-byte header (text, subsystem offset, version 0x0100 and
  an endian indicator 'IM' or 'MI'), then data elements: each an 8-byte tag
  (type, byte count) or a 4-byte "small data element" tag for 1-4 bytes of
  data, padded to 8 bytes. A variable is an miMATRIX element, possibly
  zlib-compressed inside an miCOMPRESSED element, holding array flags
  (class), dimensions, name and the real (and imaginary) part in
  column-major order. Both byte orders are read.

  Only numeric, logical and complex matrices are returned; cells, structs,
  strings, sparse matrices and objects are skipped. No code from the file is
  ever run (no pickle, no scipy).

  Args:
    path: str, path to the file; gunzipped first if it ends in `.gz`.

  Returns:
    dict from variable name to numpy array with the variable's MATLAB shape
    and class dtype (e.g. uint8 for a `uint8` matrix).

  Raises:
    DataError: if the file cannot be read, is not a level-5 MAT file (for
      example level 4 or the HDF5-based v7.3), is truncated, or an element
      is malformed.
  """
  contents = _read_file_bytes(path)
  byte_order = _mat_v5_byte_order(contents, path)
  variables = {}
  offset = _MAT_HEADER_BYTES
  while offset < len(contents):
    element_type, payload, offset = _next_mat_element(
        contents, offset, byte_order, path)
    if element_type == _MI_COMPRESSED:
      try:
        payload = zlib.decompress(payload)
      except zlib.error as error:
        raise DataError(
            f'{path} holds a corrupt compressed variable: {error}') from error
      element_type, payload, _ = _next_mat_element(payload, 0, byte_order,
                                                   path)
    if element_type != _MI_MATRIX:
      continue
    variable = _parse_mat_matrix(payload, byte_order, path)
    if variable is not None:
      name, array = variable
      variables[name] = array
  return variables


def _mat_v5_byte_order(contents, path):
  """Checks the 128-byte MAT v5 header; returns '<' or '>' for struct/numpy."""
  if len(contents) < _MAT_HEADER_BYTES:
    raise DataError(f'{path} is not a MATLAB level-5 MAT file: it is shorter '
                    f'({len(contents)} bytes) than the 128-byte header.')
  # The writer stores the characters 'MI' as one 16-bit integer, so a
  # little-endian file reads 'IM' and a big-endian one 'MI'.
  byte_order = {b'IM': '<', b'MI': '>'}.get(contents[126:128])
  if byte_order is None:
    raise DataError(
        f'{path} is not a MATLAB level-5 MAT file (no endian indicator at '
        'byte 126; level-4 MAT files are not supported).')
  (version,) = struct.unpack_from(byte_order + 'H', contents, 124)
  if version != 0x0100:
    raise DataError(
        f'{path} is not a MATLAB level-5 MAT file: header version '
        f'0x{version:04x} (0x0200 is v7.3, an HDF5 file; re-save it with '
        "save(..., '-v7')).")
  return byte_order


def _next_mat_element(buffer, offset, byte_order, path):
  """Reads the data element at `offset`: (type, payload bytes, next offset)."""
  if offset + 8 > len(buffer):
    raise DataError(f'{path} is truncated: a data element tag at byte '
                    f'{offset} runs past the end.')
  (type_word,) = struct.unpack_from(byte_order + 'I', buffer, offset)
  small_element_bytes = type_word >> 16
  if small_element_bytes:
    # Small data element: byte count in the upper 16 bits of the type word,
    # up to 4 bytes of data in the tag's second word.
    if small_element_bytes > 4:
      raise DataError(f'{path}: malformed small data element at byte '
                      f'{offset} ({small_element_bytes} bytes, at most 4).')
    data_start = offset + 4
    return (type_word & 0xFFFF,
            buffer[data_start:data_start + small_element_bytes], offset + 8)
  (num_bytes,) = struct.unpack_from(byte_order + 'I', buffer, offset + 4)
  data_start = offset + 8
  data_end = data_start + num_bytes
  if data_end > len(buffer):
    raise DataError(
        f'{path} is truncated: a data element at byte {offset} claims '
        f'{num_bytes} bytes, but only {len(buffer) - data_start} remain.')
  # Elements are padded to 8 bytes, except compressed ones.
  padded_bytes = num_bytes if type_word == _MI_COMPRESSED else (
      -(-num_bytes // 8) * 8)
  next_offset = min(data_start + padded_bytes, len(buffer))
  return type_word, buffer[data_start:data_end], next_offset


def _parse_mat_matrix(payload, byte_order, path):
  """Parses an miMATRIX payload: (name, array), or `None` if not numeric."""
  flags_type, flags, offset = _next_mat_element(payload, 0, byte_order, path)
  if flags_type != _MI_UINT32 or len(flags) < 4:
    raise DataError(f'{path}: malformed array flags in a variable.')
  (flags_word,) = struct.unpack_from(byte_order + 'I', flags)
  dims_type, dims_bytes, offset = _next_mat_element(payload, offset,
                                                    byte_order, path)
  if dims_type != _MI_INT32 or len(dims_bytes) % 4:
    raise DataError(f'{path}: malformed dimensions in a variable.')
  shape = tuple(int(size) for size in
                np.frombuffer(dims_bytes, np.dtype(byte_order + 'i4')))
  _, name_bytes, offset = _next_mat_element(payload, offset, byte_order, path)
  name = name_bytes.decode('utf-8', errors='replace')
  class_dtype = _MAT_CLASS_DTYPES.get(flags_word & 0xFF)
  if class_dtype is None or any(size < 0 for size in shape):
    return None  # Not a numeric matrix (cell, struct, char, sparse, ...).

  def read_part(offset, part):
    part_type, part_bytes, offset = _next_mat_element(payload, offset,
                                                      byte_order, path)
    if part_type not in _MAT_NUMERIC_DTYPES:
      raise DataError(f'{path}: variable {name!r} has a {part} part of '
                      f'non-numeric data type {part_type}.')
    # MATLAB may store values in a narrower type than their class (a double
    # matrix of small integers as uint8), so read the stored type, then cast.
    stored_dtype = np.dtype(byte_order + _MAT_NUMERIC_DTYPES[part_type])
    expected_bytes = math.prod(shape) * stored_dtype.itemsize
    if len(part_bytes) != expected_bytes:
      raise DataError(
          f'{path}: variable {name!r} of shape {shape} needs {expected_bytes} '
          f'bytes for its {part} part, but holds {len(part_bytes)}.')
    values = np.frombuffer(part_bytes, stored_dtype).astype(class_dtype)
    return values.reshape(shape, order='F'), offset

  array, offset = read_part(offset, 'real')
  if flags_word & _MAT_COMPLEX_FLAG:
    imaginary, _ = read_part(offset, 'imaginary')
    array = array + 1j * imaginary
  elif flags_word & _MAT_LOGICAL_FLAG:
    array = array.astype(bool)
  return name, array


################################################################################
# Finding the files.
################################################################################


def _local_names(file_name):
  """File names accepted on disk for a canonical name: with and without .gz."""
  if file_name.endswith('.gz'):
    return (file_name, file_name[:-len('.gz')])
  return (file_name, file_name + '.gz')


def _find_files(directory, file_names):
  """Returns ({canonical name: path found}, [canonical names missing])."""
  found, missing = {}, []
  for file_name in file_names:
    for candidate in _local_names(file_name):
      path = os.path.join(directory, candidate)
      if os.path.isfile(path):
        found[file_name] = path
        break
    else:
      missing.append(file_name)
  return found, missing


def _describe_missing(file_names):
  return ', '.join(f'{name} (or {_local_names(name)[1]})'
                   for name in file_names)


def _download_url(name, file_name):
  return DOWNLOAD_URL_BASES[name].rstrip('/') + '/' + file_name


def _download(url, destination):
  """Downloads `url` to `destination` atomically; raises OSError on failure.

  The bytes go to a temporary file in the destination's directory, renamed
  over `destination` only once complete, so an interrupted download never
  leaves a half-written file under the final name.
  """
  directory = os.path.dirname(destination)
  os.makedirs(directory, exist_ok=True)
  file_descriptor, temporary_path = tempfile.mkstemp(
      dir=directory, prefix=f'.{os.path.basename(destination)}.',
      suffix='.part')
  try:
    with os.fdopen(file_descriptor, 'wb') as temporary_file:
      with urllib.request.urlopen(
          url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as response:
        expected_bytes = response.headers.get('Content-Length')
        shutil.copyfileobj(response, temporary_file)
        received_bytes = temporary_file.tell()
    if expected_bytes is not None and int(expected_bytes) != received_bytes:
      raise OSError(f'received {received_bytes} of {expected_bytes} bytes')
    os.replace(temporary_path, destination)
  except http.client.HTTPException as error:
    raise OSError(f'{type(error).__name__}: {error}') from error
  finally:
    if os.path.exists(temporary_path):
      os.remove(temporary_path)


def _cache_directory(name, cache_dir):
  # Always one subdirectory per dataset: MNIST and Fashion-MNIST files share
  # their names, and one must never be read for the other.
  root = (cache_dir or os.environ.get(_CACHE_DIR_ENVIRONMENT_VARIABLE) or
          os.path.join(os.path.expanduser('~'), '.cache', 'tfp_vae'))
  return os.path.join(root, name)


def _locate_files(name, data_dir, cache_dir, download):
  """Finds or downloads a dataset's files.

  Returns:
    ({canonical file name: path}, human-readable source description,
     whether the files are in the download cache).

  Raises:
    DataError: if `data_dir` is given but lacks files, or if no place has
      them; the message lists every place tried and why it failed.
  """
  file_names = _FILE_NAMES[name]
  if data_dir is not None:
    if not os.path.isdir(data_dir):
      raise DataError(f'data_dir {data_dir!r} does not exist or is not a '
                      'directory.')
    found, missing = _find_files(data_dir, file_names)
    if missing:
      raise DataError(
          f'data_dir {data_dir!r} lacks {len(missing)} of the '
          f'{len(file_names)} {name} files: {_describe_missing(missing)}. '
          f'They can be downloaded from {DOWNLOAD_URL_BASES[name]}.')
    return found, f'data_dir {data_dir}', False

  places_tried = []  # (place, why it failed)
  for directory in SYSTEM_DATA_DIRS.get(name, ()):
    if not os.path.isdir(directory):
      places_tried.append((directory, 'does not exist'))
      continue
    found, missing = _find_files(directory, file_names)
    if not missing:
      return found, f'system location {directory}', False
    places_tried.append((directory, f'lacks {_describe_missing(missing)}'))

  cache = _cache_directory(name, cache_dir)
  found, missing = _find_files(cache, file_names)
  if not missing:
    return found, f'download cache {cache}', True
  places_tried.append((cache, 'does not exist' if not os.path.isdir(cache)
                       else f'lacks {_describe_missing(missing)}'))
  if download:
    for file_name in missing:
      url = _download_url(name, file_name)
      destination = os.path.join(cache, file_name)
      try:
        _download(url, destination)
      except (OSError, ValueError) as error:  # ValueError: a malformed URL.
        places_tried.append((url, f'download failed: {error}'))
        break
      found[file_name] = destination
    else:
      return (found, f'download cache {cache} (downloaded from '
              f'{DOWNLOAD_URL_BASES[name]})', True)
  else:
    places_tried.append(
        (DOWNLOAD_URL_BASES[name], 'not downloaded (download=False)'))

  how_to_get = []
  if name in _SYSTEM_PACKAGE_HINTS:
    how_to_get.append(_SYSTEM_PACKAGE_HINTS[name])
  how_to_get.append(
      f'download {", ".join(file_names)} from {DOWNLOAD_URL_BASES[name]} '
      'into a directory and pass it as data_dir (--data_dir)')
  how_to_get.append(f'put the files in {cache} (set the cache root with '
                    f'cache_dir or ${_CACHE_DIR_ENVIRONMENT_VARIABLE})')
  raise DataError(
      f'Could not find the {name} dataset. Looked in:\n' +
      ''.join(f'  {place}: {reason}\n' for place, reason in places_tried) +
      'To get it, either:\n' + ''.join(f'  - {way}\n' for way in how_to_get))


################################################################################
# Loading, validating and splitting.
################################################################################


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
  for split, file_name in zip(_SPLITS, _AMAT_FILE_NAMES):
    rows = read_amat(paths[file_name], _BINARIZED_MNIST_PIXELS)
    splits[f'{split}_images'] = rows.reshape(-1, 28, 28, 1)
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
  return splits, dict.fromkeys(_SPLITS, path)


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
      intensities for `make_input_pipeline(dynamic_binarization=True)` and
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
  train = make_input_pipeline(dataset.train_images, 128, shuffle=True, seed=1,
                              dynamic_binarization=True)
  ```
  """
  if name not in DATASET_NAMES:
    raise DataError(f'Unknown dataset {name!r}; known datasets: '
                    f'{", ".join(DATASET_NAMES)}.')
  allowed_binarizations = _BINARIZATIONS[name]
  if binarization is None:
    binarization = allowed_binarizations[0]
  if binarization not in allowed_binarizations:
    raise DataError(
        f'binarization {binarization!r} is not available for {name}; '
        f'choose one of: {", ".join(allowed_binarizations)}.')
  if validation_size is not None and (
      isinstance(validation_size, bool) or
      not isinstance(validation_size, (int, np.integer))):
    raise DataError(f'validation_size must be an integer or None, got '
                    f'{validation_size!r}.')
  if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or
      seed < 0):
    raise DataError(f'seed must be a non-negative integer, got {seed!r}.')

  paths, source, from_cache = _locate_files(name, data_dir, cache_dir,
                                            download)
  try:
    if name == 'binarized_mnist':
      splits, split_files = _load_binarized_mnist(paths, validation_size)
    elif name == 'frey_face':
      splits, split_files = _load_frey_face(paths[_FREY_FACE_FILE_NAME],
                                            validation_size, seed)
    else:
      splits, split_files = _load_idx_dataset(name, paths, binarization,
                                              validation_size, seed)
    for split in _SPLITS:
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
# Input pipelines.
################################################################################


def _bernoulli_sample(intensities, noise_seed):
  """One Bernoulli draw per pixel; `noise_seed` is a [2] int64 tensor."""
  uniform = tf.random.stateless_uniform(tf.shape(intensities), seed=noise_seed)
  return tf.cast(uniform < intensities, tf.float32)


def make_input_pipeline(images, batch_size, *, shuffle, seed,
                        dynamic_binarization=False, repeat=False,
                        drop_remainder=False, labels=None):
  """A `tf.data.Dataset` of batches of one split.

  The images (and labels) are sliced into examples, shuffled with a buffer
  of the whole split (a fresh order each epoch), optionally repeated,
  batched and, with `dynamic_binarization`, binarized batch by batch, then
  prefetched. No Python runs per element.

  Dynamic binarization draws each batch's pixels from
  Bernoulli(intensity) with a stateless RNG. Its key comes from
  `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`, one per
  batch: every batch of every epoch gets a new key (whether epochs come from
  `repeat` or from iterating the dataset again), and a pipeline rebuilt with
  the same `seed` replays the same keys, so runs are reproducible.

  Args:
    images: `[N, ...]` array of pixels in [0, 1] (cast to float32).
    batch_size: positive int B.
    shuffle: bool, whether to shuffle (reshuffled each epoch).
    seed: int seeding the shuffle and the binarization; `None` for a
      non-reproducible pipeline.
    dynamic_binarization: bool, whether to binarize each batch afresh.
    repeat: bool, whether to repeat the split forever.
    drop_remainder: bool, whether to drop a last batch smaller than B (gives
      a static batch dimension).
    labels: optional `[N]` integer labels (cast to int64).

  Returns:
    `tf.data.Dataset` of float32 `[B, ...]` image batches, or of
    (images, int64 `[B]` labels) pairs when `labels` is given.

  Raises:
    DataError: if batch_size is not a positive int; images are empty; labels
      do not match the images in number; `drop_remainder` is set and
      batch_size exceeds the number of images (no batch would come out); or
      with `dynamic_binarization`, an intensity is outside [0, 1].

  #### Examples

  ```python
  batches = make_input_pipeline(dataset.train_images, 128, shuffle=True,
                                seed=0, dynamic_binarization=True,
                                drop_remainder=True)
  for epoch in range(num_epochs):
    for images in batches:  # [128, 28, 28, 1], fresh 0/1 draws each epoch.
      ...
  ```
  """
  if (isinstance(batch_size, bool) or
      not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
    raise DataError(f'batch_size must be a positive integer, got '
                    f'{batch_size!r}.')
  images = np.asarray(images, dtype=np.float32)
  if images.ndim < 1 or not images.shape[0]:
    raise DataError(f'images is empty (shape {images.shape}); there is '
                    'nothing to batch.')
  num_images = images.shape[0]
  if labels is not None:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (num_images,):
      raise DataError(f'labels has shape {labels.shape}, but there are '
                      f'{num_images} images (expected shape ({num_images},)).')
  if drop_remainder and batch_size > num_images:
    raise DataError(
        f'batch_size {batch_size} is larger than the {num_images} images, so '
        'drop_remainder=True would yield no batch at all.')
  if dynamic_binarization:
    smallest, largest = float(images.min()), float(images.max())
    if not 0. <= smallest <= largest <= 1.:
      raise DataError(
          'dynamic_binarization needs intensities in [0, 1], but images range '
          f'over [{smallest}, {largest}].')

  dataset = tf.data.Dataset.from_tensor_slices(
      images if labels is None else (images, labels))
  if shuffle:
    dataset = dataset.shuffle(num_images, seed=seed,
                              reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  if dynamic_binarization:
    # Binarizing whole batches, not single images, is one op per batch.
    noise_seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True).batch(2)  # [2] int64 each.

    def binarize(batch, noise_seed):
      if labels is None:
        return _bernoulli_sample(batch, noise_seed)
      batch_images, batch_labels = batch
      return _bernoulli_sample(batch_images, noise_seed), batch_labels

    dataset = tf.data.Dataset.zip(dataset, noise_seeds).map(
        binarize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)
