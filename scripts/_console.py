"""What the scripts print: TensorFlow's start-up noise off unless asked for.

Every script calls `quiet_tensorflow()` first in `main`, before anything
imports TensorFlow (the C++ log level is read once, at import).
"""

import logging as std_logging
import os

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
