"""What the scripts print: TensorFlow's start-up noise off unless asked for.

Every script calls `quiet_tensorflow()` first in `main`, before anything
imports TensorFlow (the C++ log level is read once, at import).
"""

import contextlib
import logging as std_logging
import os
import sys

from absl import flags
from absl import logging


def quiet_tensorflow():
  """Silences TensorFlow's C++ and Python logs, unless --verbosity was given.

  Without --verbosity: TF_CPP_MIN_LOG_LEVEL=3 (unless the environment sets
  it) drops the C++ start-up lines, cuInit errors on hosts without a GPU,
  XLA's "Sharding callback duration" and "Ignoring Assert operator" lines;
  absl and the `tensorflow` Python logger show warnings and errors only. A
  failure still surfaces as a Python exception. With --verbosity (absl's
  flag: 0 info, 1 debug) everything is shown as TensorFlow would.
  """
  if flags.FLAGS['verbosity'].present:
    return
  # Level 3 also drops C++ ERROR lines: the ones a default run prints
  # (cuInit without a GPU) are not errors of the run.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('tensorflow').setLevel(std_logging.ERROR)



@contextlib.contextmanager
def quiet_imports():
  """Imports TensorFlow and the library within, without start-up lines.

  TensorFlow 2.21 logs its first C++ lines (oneDNN, "Could not find cuda
  drivers", "All log messages before absl::InitializeLog() ...") before its
  logging reads TF_CPP_MIN_LOG_LEVEL, once per native library loaded, so
  the level cannot drop them: the imports in this block run with the
  process's stderr (file descriptor 2) pointed at /dev/null, unless
  --verbosity was given. An import error still raises, and is reported once
  stderr is back.

  Example:

    with _console.quiet_imports():
      from tfp_vae import training
  """
  if flags.FLAGS['verbosity'].present:
    yield
    return
  sys.stderr.flush()
  saved_stderr = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    # pylint: disable=g-import-not-at-top,unused-import
    import tensorflow
    import tensorflow_probability
    # pylint: enable=g-import-not-at-top,unused-import
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    os.close(devnull)
