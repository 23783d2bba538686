"""Shared pytest setup: quiet TensorFlow, the test data files, no "Not a test".

* TensorFlow's C++ logging is quieted before any test module imports it.
* `dataset_files`: small files of every dataset in its real format, written
  once per test process (each pytest-xdist worker has its own) into a
  temporary directory; see tests/_test_data.py. A test that loads data
  uses it with `@pytest.mark.usefixtures('dataset_files')` and finds the
  files with `_test_data.data_dir(name)`. Being session-scoped, it is set
  up before any class's `setUpClass`.
* The scripts' persistent XLA cache (`tfp_vae.compilation_cache`) goes to
  a temporary directory of the test process, never the user's
  ~/.cache: `$TFP_VAE_XLA_CACHE_DIR`, which the scripts run by tests
  inherit. Runs of one small model in several tests then compile it once.
* `tf.test.TestCase` has a method `test_session` (a deprecated session
  helper, not a test). pytest would collect it in every test class and
  report it skipped ("Not a test."); it is marked as no test instead.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import sys

import pytest

import _test_data


def pytest_collectstart(collector):
  """Marks `tf.test.TestCase.test_session` as no test before a class is read.

  pytest's unittest collector leaves out methods whose `__test__` is false.
  Done here, once a test module has imported TensorFlow, rather than by
  importing TensorFlow in this file: pytest-xdist's controller process,
  which collects nothing, then never imports it.
  """
  tensorflow = sys.modules.get('tensorflow')
  if isinstance(collector, pytest.Class) and tensorflow is not None:
    tensorflow.test.TestCase.test_session.__test__ = False


@pytest.fixture(scope='session', autouse=True)
def xla_cache_dir(tmp_path_factory):
  """$TFP_VAE_XLA_CACHE_DIR: a temporary directory, for the whole session."""
  root = str(tmp_path_factory.mktemp('xla_cache'))
  previous = os.environ.get('TFP_VAE_XLA_CACHE_DIR')
  os.environ['TFP_VAE_XLA_CACHE_DIR'] = root
  yield root
  if previous is None:
    del os.environ['TFP_VAE_XLA_CACHE_DIR']
  else:
    os.environ['TFP_VAE_XLA_CACHE_DIR'] = previous


@pytest.fixture(scope='session')
def dataset_files(tmp_path_factory):
  """{dataset name: directory of its files}, for the whole test session."""
  root = tmp_path_factory.mktemp('datasets')
  directories = _test_data.write_dataset_files(str(root))
  yield directories
  _test_data.forget_dataset_files()
