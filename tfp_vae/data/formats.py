"""Readers of the three file formats the datasets come in: amat, IDX, MAT v5.

  read_amat    Larochelle's `.amat` text (binarized MNIST): one image per
               line, values split by whitespace.
  read_idx     LeCun's IDX binary (MNIST, Fashion-MNIST): a magic number,
               big-endian dimensions, then the values.
  read_mat_v5  MATLAB level-5 MAT files (Frey Face): tagged data elements,
               optionally zlib-compressed.

Each reads a plain or a gzipped file (by the `.gz` suffix) and parses it
with numpy only: no pickle, no scipy, so no code from a file ever runs.
Every problem (a missing, truncated or corrupt file) raises `DataError`,
whose message names the file and the problem.
"""

import gzip
import math
import struct
import zlib

import numpy as np

__all__ = ['DataError', 'read_amat', 'read_idx', 'read_mat_v5']

# Values per line of binarized MNIST's .amat files: 28 * 28 pixels.
_BINARIZED_MNIST_PIXELS = 28 * 28


class DataError(ValueError):
  """A dataset file is missing, unreadable or corrupt, or data is invalid."""


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

