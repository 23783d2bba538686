"""Where dataset files are found: data_dir, system location, cache, download.

`locate_files` looks, in order: in an explicit `data_dir` (and only there);
in the directories a system package installs into (`SYSTEM_DATA_DIRS`); in
the download cache (`<cache root>/<dataset>`); and, if allowed, downloads
the missing files from the dataset's canonical URL (`DOWNLOAD_URL_BASES`)
into the cache. When no place has the files, the `DataError` lists every
place tried, why it failed, and how to get the files.

Files are looked for under their canonical names (`FILE_NAMES`), gzipped or
not: `train-images-idx3-ubyte.gz` or `train-images-idx3-ubyte`.
"""

import http.client
import os
import shutil
import tempfile
import urllib.request

from tfp_vae.data.formats import DataError

__all__ = ['DOWNLOAD_URL_BASES', 'FILE_NAMES', 'SYSTEM_DATA_DIRS',
           'locate_files']

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

IDX_FILE_NAMES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                  't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
# The train, validation and test splits, in that order.
AMAT_FILE_NAMES = ('binarized_mnist_train.amat', 'binarized_mnist_valid.amat',
                   'binarized_mnist_test.amat')
FREY_FACE_FILE_NAME = 'frey_rawface.mat'
# Each dataset's canonical file names, as served at its download URL.
FILE_NAMES = {
    'binarized_mnist': AMAT_FILE_NAMES,
    'mnist': IDX_FILE_NAMES,
    'fashion_mnist': IDX_FILE_NAMES,
    'frey_face': (FREY_FACE_FILE_NAME,),
}


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


def locate_files(name, data_dir, cache_dir, download):
  """Finds or downloads a dataset's files.

  Returns:
    ({canonical file name: path}, human-readable source description,
     whether the files are in the download cache).

  Raises:
    DataError: if `data_dir` is given but lacks files, or if no place has
      them; the message lists every place tried and why it failed.
  """
  file_names = FILE_NAMES[name]
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

