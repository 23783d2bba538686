r"""Runs `scripts/train.py` for many command lines in one process.

  python tests/_train_cli.py CASES_JSON RESULTS_JSON

CASES_JSON holds `[[arg, ...], ...]`. Each command line goes through
`absl.app.run(main)` of `scripts/train.py`, as `python scripts/train.py
ARGS` would, but without paying for a TensorFlow import per case. For each
case RESULTS_JSON gets `{"exit_status": int, "message": str, "traceback":
str or null}`: the status the process would have exited with, what it would
have printed last on stderr (the `sys.exit` message, or absl's flag-parsing
error), and the traceback of any other exception (which a user would see as
traceback spam).
"""

import contextlib
import importlib.util
import io
import json
import os
import sys
import traceback

_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'scripts', 'train.py')


def _load_script():
  spec = importlib.util.spec_from_file_location('train_script', _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_case(module, args):
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.unparse_flags()
  stderr = io.StringIO()
  exit_status, message, trace = 0, '', None
  with contextlib.redirect_stderr(stderr):
    try:
      app.run(module.main, argv=[_SCRIPT, *args])
    except SystemExit as exit_:
      if isinstance(exit_.code, str):  # Python prints it, exits with 1.
        exit_status, message = 1, exit_.code
      else:
        exit_status = exit_.code or 0
    except BaseException:  # pylint: disable=broad-except
      exit_status, trace = 1, traceback.format_exc()
  if not message:
    message = stderr.getvalue()
  return {'exit_status': exit_status, 'message': message, 'traceback': trace}


def main(argv):
  with open(argv[1]) as f:
    cases = json.load(f)
  module = _load_script()
  results = [_run_case(module, args) for args in cases]
  with open(argv[2], 'w') as f:
    json.dump(results, f, indent=1)


if __name__ == '__main__':
  main(sys.argv)
