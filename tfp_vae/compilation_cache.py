"""A persistent cache of compiled XLA executables, shared safely by processes.

Every run compiles its training loop and its evaluation step with XLA in its
first epoch, and every resumed or repeated run of the same model compiles
them again, as would every other seed of a study: seconds of CPU before a
step is taken (BENCHMARKS.md, "Whole runs"). The seed is read from a
variable, so the compiled steps are the same for every seed and one entry
serves them all. TensorFlow can keep compiled executables on disk
(`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`). An entry is keyed
by fingerprints of the function's signature and of its HLO module, and the
whole HLO is compared when an entry is loaded, so an entry only ever serves
the computation it was compiled from: same HLO, same machine code, the same
numbers as a fresh compilation.

Used as it is, one directory serves one process at a time: TensorFlow writes
an entry in place, and a compilation whose entry exists but cannot be read
fails, without falling back to compiling. Two runs of one model started
together (seeds of a study), or a run killed in the middle of a write, would
break later runs. So the shared directory only ever receives complete
entries, and TensorFlow never writes into it:

```none
<root>/<key>/                  published entries, complete files only
<root>/<key>/.process-<id>/    one process's view: hard links to the
                               published entries, plus what it compiles
```

`enable(root)` builds the process's view and points TensorFlow at it;
`publish()` (also run at exit) moves the entries TensorFlow wrote there into
`<root>/<key>/`, each with one atomic link or rename, so a reader sees an
entry whole or not at all. A compilation has returned before Python runs
again, so the entries a process holds when `publish` runs are complete.

`<key>` names the TensorFlow version, the CPU (model and instruction-set
flags: an executable holds machine code for the CPU that compiled it) and
the number of threads an XLA computation may use (it shapes how XLA splits
loops among them). Where the version cannot be read, the cache stays off.
TensorFlow fails a compilation whose entry it cannot write (a full disk):
`--xla_cache_dir=` turns the cache off.

TensorFlow reads `TF_XLA_FLAGS` once, at its first XLA compilation, so
`enable` must run before that (the scripts call it before importing
TensorFlow). This module does not import TensorFlow. With TensorFlow's C++
logs on (`--verbosity`), a run that loads entries logs two kinds of harmless
ERROR lines: "Error parsing text-format tensorflow.XlaSerializedCacheEntry"
(TensorFlow tries the text format before the binary one) and "Target
machine feature +prefer-no-scatter is not supported" (tuning hints, not
instructions, that its check of the CPU does not know).
"""

import atexit
import hashlib
from importlib import metadata
import os
import platform
import shutil
import socket
import tempfile
import time

__all__ = ['enable', 'publish', 'default_root', 'cache_key', 'MAX_CACHE_BYTES',
           'ROOT_ENVIRONMENT_VARIABLE']

# Where the scripts' cache lives unless --xla_cache_dir says otherwise.
ROOT_ENVIRONMENT_VARIABLE = 'TFP_VAE_XLA_CACHE_DIR'
_TF_FLAG = '--tf_xla_persistent_cache_directory'
_VIEW_PREFIX = '.process-'
_TEMP_PREFIX = '.publishing-'
# A view whose process cannot be checked (another host) is removed once it
# is this old: no run keeps compiling for a day.
_STALE_VIEW_SECONDS = 24 * 3600
# The published entries are kept under this many bytes, the oldest removed
# first (an entry of the usual MLP model is 1-3 MB).
MAX_CACHE_BYTES = 1 << 30

# The view of this process, the shared directory it publishes to, and
# whether the exit handler is registered.
_state = {'view': None, 'shared': None, 'at_exit': False}


def default_root():
  """`$TFP_VAE_XLA_CACHE_DIR`, else `~/.cache/tfp_vae/xla`."""
  return (os.environ.get(ROOT_ENVIRONMENT_VARIABLE) or
          os.path.join(os.path.expanduser('~'), '.cache', 'tfp_vae', 'xla'))


def _cpu_description():
  """The CPU's model name and instruction-set flags, as Linux reports them."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
  except OSError:
    return platform.processor()
  wanted = ('model name', 'flags', 'features', 'cpu model', 'isa')
  first_cpu = {}
  for line in lines:
    name, _, value = line.partition(':')
    name = name.strip().lower()
    if name in wanted and name not in first_cpu:
      first_cpu[name] = ' '.join(sorted(value.split()))
  return ';'.join(f'{k}={first_cpu[k]}' for k in sorted(first_cpu))


def _num_threads():
  """Threads an XLA computation may use: TensorFlow's intra-op pool size."""
  configured = os.environ.get('TF_NUM_INTRAOP_THREADS', '')
  if configured.strip().isdigit() and int(configured):
    return int(configured)
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def _tensorflow_version():
  """The installed TensorFlow's version, read without importing it; or None.

  The distribution may be `tensorflow` or another name that provides the
  `tensorflow` package (`tensorflow-cpu`, `tf-nightly`, ...).
  """
  try:
    return metadata.version('tensorflow')
  except metadata.PackageNotFoundError:
    pass
  for distribution in metadata.packages_distributions().get('tensorflow', ()):
    try:
      return f'{distribution}-{metadata.version(distribution)}'
    except metadata.PackageNotFoundError:
      continue
  return None


def cache_key():
  """`tf<version>-<machine>-<hash of the CPU>-threads<N>`: one subdirectory.

  None when TensorFlow's version cannot be read: an executable of another
  version could then be loaded, so the cache stays off.
  """
  version = _tensorflow_version()
  if version is None:
    return None
  cpu = hashlib.sha256(_cpu_description().encode()).hexdigest()[:12]
  return f'tf{version}-{platform.machine()}-{cpu}-threads{_num_threads()}'


def _is_entry(name):
  return name.endswith('.pb') and not name.startswith('.')


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def _remove_stale_views(shared):
  """Removes what processes that ended without cleaning up left behind.

  Their views, and half-copied entries of a publication that failed (a
  full disk, say).
  """
  host = socket.gethostname()
  for name in os.listdir(shared):
    path = os.path.join(shared, name)
    if name.startswith(_TEMP_PREFIX):
      try:
        if time.time() - os.path.getmtime(path) > _STALE_VIEW_SECONDS:
          os.remove(path)
      except OSError:
        pass
      continue
    if not name.startswith(_VIEW_PREFIX):
      continue
    # .process-<host>-<pid>-<random>: the host may itself hold dashes.
    owner, _, _ = name[len(_VIEW_PREFIX):].rpartition('-')
    view_host, _, pid = owner.rpartition('-')
    if view_host == host and pid.isdigit():
      stale = not _process_alive(int(pid))
    else:
      try:
        stale = time.time() - os.path.getmtime(path) > _STALE_VIEW_SECONDS
      except OSError:
        continue
    if stale:
      shutil.rmtree(path, ignore_errors=True)


def _remove_oldest_entries(shared, max_bytes):
  """Removes the oldest published entries until they fit in `max_bytes`.

  Safe while other processes run: a view holds its own links to the
  entries it read, and a removed entry is only compiled again.
  """
  entries = []
  for name in os.listdir(shared):
    if _is_entry(name):
      try:
        status = os.stat(os.path.join(shared, name))
      except OSError:
        continue
      entries.append((status.st_mtime, status.st_size, name))
  total = sum(size for _, size, _ in entries)
  for _, size, name in sorted(entries):
    if total <= max_bytes:
      break
    try:
      os.remove(os.path.join(shared, name))
    except OSError:
      continue
    total -= size


def _link_or_copy(source, target):
  """Makes `target` hold `source`'s bytes: a hard link, else a copy."""
  try:
    os.link(source, target)
  except OSError:
    shutil.copyfile(source, target)


def enable(root=None):
  """Points this process's XLA compilations at a shared persistent cache.

  Call before the process's first XLA compilation; a later call has no
  effect on TensorFlow (it reads its flags once). Does nothing when
  `TF_XLA_FLAGS` already names a cache directory (the user's own setting
  wins), and when `root` is '' (the cache turned off).

  Args:
    root: str, the cache's root directory (created if missing); `None` for
      `default_root()`, '' to leave the cache off.

  Returns:
    The process's view directory (TensorFlow's cache directory), or `None`
    when the cache stays off.

  Raises:
    OSError: when `root` cannot be created or written; the message names it.
  """
  if root is None:
    root = default_root()
  if not root or _TF_FLAG in os.environ.get('TF_XLA_FLAGS', ''):
    return None
  if _state['view']:
    return _state['view']
  key = cache_key()
  if key is None:
    return None
  shared = os.path.join(os.path.abspath(os.path.expanduser(root)), key)
  try:
    os.makedirs(shared, exist_ok=True)
    _remove_stale_views(shared)
    _remove_oldest_entries(shared, MAX_CACHE_BYTES)
    view = tempfile.mkdtemp(
        prefix=f'{_VIEW_PREFIX}{socket.gethostname()}-{os.getpid()}-',
        dir=shared)
  except OSError as error:
    raise OSError(f'the XLA compilation cache directory {root} cannot be '
                  f'used ({error}); pass --xla_cache_dir= to turn the cache '
                  'off, or another directory.') from error
  for name in os.listdir(shared):
    if _is_entry(name):
      _link_or_copy(os.path.join(shared, name), os.path.join(view, name))
  _state.update(view=view, shared=shared)
  os.environ['TF_XLA_FLAGS'] = (
      os.environ.get('TF_XLA_FLAGS', '') + f' {_TF_FLAG}={view}').strip()
  if not _state['at_exit']:
    atexit.register(_publish_and_remove_view)
    _state['at_exit'] = True
  return view


def publish():
  """Moves the entries this process compiled into the shared directory.

  Each new entry appears there in one step (a hard link, or a copy renamed
  into place), so other processes never read half an entry. An entry that
  another process published first is kept as it is: both were compiled from
  the same HLO.

  Returns:
    The number of entries published (0 when the cache is off).
  """
  view, shared = _state['view'], _state['shared']
  if not view or not os.path.isdir(view):
    return 0
  published = 0
  for name in sorted(os.listdir(view)):
    target = os.path.join(shared, name)
    if not _is_entry(name) or os.path.exists(target):
      continue
    source = os.path.join(view, name)
    try:
      os.link(source, target)
    except FileExistsError:
      continue
    except OSError:  # No hard links here: copy, then rename into place.
      temp = tempfile.NamedTemporaryFile(prefix=_TEMP_PREFIX, dir=shared,
                                         delete=False)
      temp.close()
      shutil.copyfile(source, temp.name)
      os.replace(temp.name, target)
    published += 1
  return published


def _publish_and_remove_view():
  """At exit: publish, then remove the view (its entries are shared now)."""
  if not _state['view']:
    return
  try:
    publish()
  except OSError:
    pass  # A cache that cannot be written must not fail a finished run.
  shutil.rmtree(_state['view'], ignore_errors=True)
  _state.update(view=None, shared=None)
